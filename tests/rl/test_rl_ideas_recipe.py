"""The recipe that switches on per-turn credit, trajectory replays and the recovery reward loads, and two GRPO steps
with all three run end to end on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

from qwen_tool.config import RLTrainingConfig, load_config
from qwen_tool.rl.replay import ReplayEpisode
from qwen_tool.rl.trainer import train_rl
from qwen_tool.testing import tiny_model, tiny_tokenizer

RECIPE = Path(__file__).parents[2] / "configs" / "grpo-ideas-smollm2-cpu.yaml"


def _call(call_id: str, arguments: dict) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": "get_rate", "arguments": json.dumps(arguments)}}


TOOLS = [{"type": "function", "function": {"name": "get_rate", "parameters": {
    "type": "object", "properties": {"base": {"type": "string"}, "quote": {"type": "string"}},
    "required": ["base", "quote"]}}}]
RECOVERY = {"tools": TOOLS, "meta": {"id": "recovery"}, "messages": [
    {"role": "user", "content": "EUR to USD rate?"},
    {"role": "assistant", "content": "", "tool_calls": [_call("w", {"from": "EUR", "quote": "USD"})],
     "erroneous": True},
    {"role": "tool", "tool_call_id": "w", "content": "Error: unknown parameter 'from'",
     "feedback_category": "parameter_hallucination"},
    {"role": "assistant", "content": "", "tool_calls": [_call("r", {"base": "EUR", "quote": "USD"})]},
    {"role": "tool", "tool_call_id": "r", "content": '{"rate": 1.1}', "feedback_category": "ok"},
    {"role": "assistant", "content": "It is 1.1."}]}
SINGLE = {"tools": TOOLS, "meta": {"id": "single"}, "messages": [
    {"role": "user", "content": "GBP to USD rate?"},
    {"role": "assistant", "content": "", "tool_calls": [_call("s", {"base": "GBP", "quote": "USD"})]}]}


def test_the_recipe_switches_the_three_ideas_on():
    cfg = load_config(RLTrainingConfig, RECIPE)
    assert cfg.grpo.credit == "turn" and cfg.multi_turn_trajectories and cfg.rewards.recovery > 0
    assert cfg.steps >= 100 and cfg.algo == "grpo"


def test_two_grpo_steps_with_all_three_on(tmp_path, monkeypatch):
    played = []
    step = ReplayEpisode.step
    monkeypatch.setattr(ReplayEpisode, "step", lambda self, *a, **k: played.append(self.task_id) or step(self, *a, **k))
    cfg = load_config(RLTrainingConfig, RECIPE, [f"output_dir={tmp_path}", "model=smollm2-135m-instruct", "steps=2",
                                                 "prompts_per_step=2", "samples_per_prompt=2", "max_new_tokens=4",
                                                 "suites=[]", "multi_turn_share=0.5", "curriculum.enabled=false",
                                                 "kl_coef=0", "save_steps=5"])
    final = train_rl(cfg, [RECOVERY, SINGLE], policy=tiny_model(), tokenizer=tiny_tokenizer())
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2] and all("advantage_abs" in line for line in lines)
    assert len(played) >= 4 and set(played) == {"recovery"}  # one replayed group of 2 episodes per step
    assert (final / "model.safetensors").is_file()
