"""The loop end to end on the tiny model: GRPO and PPO (with value pre-training), a checkpoint and --resume, the final
model directory."""

from __future__ import annotations

import json

import pytest

from qwen_tool.config import RLTrainingConfig, load_config
from qwen_tool.rl.trainer import train_rl
from qwen_tool.testing import tiny_model, tiny_tokenizer

TRAJECTORY = {
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "messages": [{"role": "user", "content": "Weather in Oslo?"},
                 {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function", "function": {
                     "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}],
    "meta": {"id": "t0"},
}


def small_config(tmp_path, *overrides: str) -> RLTrainingConfig:
    return load_config(RLTrainingConfig, None, [f"output_dir={tmp_path}", "prompts_per_step=2", "samples_per_prompt=2",
                                                "max_new_tokens=4", "suites=[weather]", "multi_turn_share=0.5",
                                                "curriculum.enabled=false", *overrides])


def test_one_grpo_step_writes_the_final_model(tmp_path):
    final = train_rl(small_config(tmp_path, "steps=1", "kl_coef=0"), trajectories=[TRAJECTORY], policy=tiny_model(),
                     tokenizer=tiny_tokenizer())
    assert json.loads((final / "qwen_tool.json").read_text())["tool_format"] == "hermes"
    assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_train_resume_and_final_model(tmp_path, algo):
    tokenizer = tiny_tokenizer()
    cfg = small_config(tmp_path, f"algo={algo}", "steps=2", "save_steps=1", "value_pretrain_steps=1")
    final = train_rl(cfg, trajectories=[TRAJECTORY], policy=tiny_model(), reference=tiny_model(), tokenizer=tokenizer)
    assert json.loads((final / "qwen_tool.json").read_text())["tool_format"] == "hermes"
    assert (final / "config.json").is_file() and (final / "tokenizer.json").is_file()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    for key in ("reward", "kl", "entropy", "clip_fraction", "response_length", "calls_per_episode", "failure_rate"):
        assert key in lines[0]
    # Resume from checkpoint-1 and run one more step: steps 2 and 3 are logged again after the first two.
    more = small_config(tmp_path, f"algo={algo}", "steps=3", "save_steps=1")
    train_rl(more, resume=True, trajectories=[TRAJECTORY], policy=tiny_model(), reference=tiny_model(),
             tokenizer=tokenizer)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2, 3]


@pytest.mark.parametrize(("path", "algo"), [("configs/grpo-smollm2-cpu.yaml", "grpo"),
                                             ("configs/ppo-smollm2-cpu.yaml", "ppo")])
def test_shipped_recipes_load(path, algo):
    from pathlib import Path

    cfg = load_config(RLTrainingConfig, Path(__file__).parents[2] / path)
    assert cfg.algo == algo and cfg.prompts_per_step * cfg.samples_per_prompt == 16 and cfg.max_new_tokens == 64
