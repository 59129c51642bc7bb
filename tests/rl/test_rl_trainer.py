"""The loop end to end on the tiny model: GRPO and PPO (with value pre-training), a checkpoint and --resume, the final
model directory."""

from __future__ import annotations

import json

import pytest
import torch

from qwen_tool.config import ConfigError, RLTrainingConfig, load_config
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
    final = train_rl(small_config(tmp_path, "steps=1", "kl_coef=0", "tool_rendering=compact"), [TRAJECTORY],
                     policy=tiny_model(), tokenizer=tiny_tokenizer())
    meta = json.loads((final / "qwen_tool.json").read_text())
    assert (meta["tool_format"], meta["tool_rendering"]) == ("hermes", "compact")
    assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()
    (line,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert line["seconds/rollouts"] > 0 and line["seconds/update"] > 0  # the step's time in its two parts
    assert line["seconds/rollouts"] + line["seconds/update"] == pytest.approx(line["seconds"])


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_train_resume_and_final_model(tmp_path, algo):
    tokenizer = tiny_tokenizer()
    pretrain = ["ppo.value_pretrain_steps=1"] if algo == "ppo" else []
    cfg = small_config(tmp_path, f"algo={algo}", "steps=2", "save_steps=1", *pretrain)
    final = train_rl(cfg, trajectories=[TRAJECTORY], policy=tiny_model(), reference=tiny_model(), tokenizer=tokenizer)
    assert json.loads((final / "qwen_tool.json").read_text())["tool_format"] == "hermes"
    assert (final / "config.json").is_file() and (final / "tokenizer.json").is_file()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    for key in ("reward", "kl", "entropy", "clip_fraction", "response_length", "calls_per_episode", "failure_rate"):
        assert key in lines[0]
    # Resume from checkpoint-1 and run one more step: step 2 runs again, and its line replaces the first run's.
    more = small_config(tmp_path, f"algo={algo}", "steps=3", "save_steps=1")
    train_rl(more, resume=True, trajectories=[TRAJECTORY], policy=tiny_model(), reference=tiny_model(),
             tokenizer=tokenizer)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_resume_passes_over_a_checkpoint_whose_save_was_cut_short(tmp_path):
    from qwen_tool.checkpoints import complete_checkpoints
    from qwen_tool.rl.checkpoints import STATE_FILE

    for step in (8, 16, 24):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (8, 16):  # checkpoint-24 lost its state file to a full disk
        (tmp_path / f"checkpoint-{step}" / STATE_FILE).write_text("{}")
    assert [path.name for path in complete_checkpoints(tmp_path, STATE_FILE)] == ["checkpoint-8", "checkpoint-16"]


@pytest.mark.parametrize(("path", "algo"), [("configs/grpo-smollm2-cpu.yaml", "grpo"),
                                             ("configs/ppo-smollm2-cpu.yaml", "ppo")])
def test_shipped_recipes_load(path, algo):
    from pathlib import Path

    cfg = load_config(RLTrainingConfig, Path(__file__).parents[2] / path)
    assert cfg.algo == algo and cfg.prompts_per_step * cfg.samples_per_prompt == 16 and cfg.max_new_tokens == 192
    if algo == "ppo":  # TL-Training's PPO: the KL in the reward, value pre-training first
        assert cfg.ppo.kl_in_reward and cfg.ppo.value_pretrain_steps == 3 and cfg.ppo.critic == "value_head"


def _rollout(task_id: str, completion: list[int], reward: float):
    from qwen_tool.rl.rollout import Rollout

    return Rollout(task_id, prompt_ids=[5, 6, 7], completion_ids=completion, action_mask=[1] * len(completion),
                   old_logprobs=[-2.0] * len(completion), turn_ends=[len(completion) - 1], turn_rewards=[reward])


def _updated_weights(rollouts, *overrides: str):
    """Parameters after one GRPO update (groups of 2, no KL) on `rollouts`, and the update's logged metrics."""
    from accelerate import Accelerator

    from qwen_tool.rl.batch import collate
    from qwen_tool.rl.updates import RLModels, grpo_update

    cfg = load_config(RLTrainingConfig, None, ["samples_per_prompt=2", "kl_coef=0", "learning_rate=1e-2",
                                               *overrides])
    policy = tiny_model(seed=1)
    models = RLModels(policy, torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate))
    metrics = grpo_update(models, collate(rollouts, 0), cfg, Accelerator(cpu=True))
    return [p.detach().clone() for p in policy.parameters()], metrics


def test_dropping_uniform_groups_trains_only_on_the_groups_that_disagree():
    uniform = [_rollout("a", [11, 12, 13, 14, 15, 16], 1.0), _rollout("a", [17, 18], 1.0)]
    varied = [_rollout("b", [21, 22, 23], 1.0), _rollout("b", [24, 25, 26, 27], 0.0)]
    filtered, metrics = _updated_weights(uniform + varied, "grpo.drop_uniform_groups=true")
    by_hand, _ = _updated_weights(varied)
    untouched = [p.detach() for p in tiny_model(seed=1).parameters()]
    assert metrics.updated_share == 0.5
    # the same update as on the disagreeing group alone: the uniform group's tokens no longer dilute the token mean
    assert all(torch.allclose(f, h) for f, h in zip(filtered, by_hand, strict=True))
    assert not all(torch.equal(f, u) for f, u in zip(filtered, untouched, strict=True))
    unfiltered, _ = _updated_weights(uniform + varied)
    assert not all(torch.allclose(f, u) for f, u in zip(filtered, unfiltered, strict=True))


def test_a_step_where_every_group_agrees_changes_nothing():
    same = [_rollout("a", [11, 12], 0.5), _rollout("a", [13], 0.5)]
    weights, metrics = _updated_weights(same, "grpo.drop_uniform_groups=true")
    assert metrics.updated_share == 0.0
    assert all(torch.equal(w, u) for w, u in zip(weights, (p.detach() for p in tiny_model(seed=1).parameters()),
                                                   strict=True))


@pytest.mark.parametrize("drop", ["grpo.drop_uniform_groups=false", "grpo.drop_uniform_groups=true"])
def test_the_supervised_term_adds_the_gradient_of_the_gold_nll(drop):
    """Zero advantages leave γ·NLL alone, also when every group agreeing drops every group from the policy loss."""
    from accelerate import Accelerator

    from qwen_tool.rl.batch import collate
    from qwen_tool.rl.losses import sft_nll
    from qwen_tool.rl.policy import completion_forward
    from qwen_tool.rl.rollout import gold_rollout
    from qwen_tool.rl.updates import RLModels, grpo_update

    gold = collate([gold_rollout(TRAJECTORY, tiny_tokenizer(), "hermes", 4096)], 0)
    agreeing = [_rollout("a", [11, 12], 0.5), _rollout("a", [13], 0.5)]  # zero advantages: no policy gradient
    cfg = load_config(RLTrainingConfig, None, ["samples_per_prompt=2", "kl_coef=0", "learning_rate=1e-2",
                                               "sft_coef=0.5", drop])
    policy = tiny_model(seed=1)
    models = RLModels(policy, torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate))
    metrics = grpo_update(models, collate(agreeing, 0), cfg, Accelerator(cpu=True), gold=gold)
    by_hand = tiny_model(seed=1)
    nll = sft_nll(completion_forward(by_hand, gold.prompt_ids_BP, gold.prompt_mask_BP, gold.completion_ids_BC,
                                     gold.completion_mask_BC).logprobs_BC, gold.action_mask_BC)
    (0.5 * nll).backward()
    torch.nn.utils.clip_grad_norm_(by_hand.parameters(), cfg.max_grad_norm)
    torch.optim.AdamW(by_hand.parameters(), lr=cfg.learning_rate).step()
    assert metrics.sft_nll == pytest.approx(nll.item(), rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(policy.parameters(), by_hand.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(policy.parameters(), tiny_model(seed=1).parameters(),
                                                       strict=True))


def test_the_supervised_term_needs_trajectories(tmp_path):
    from qwen_tool import QwenToolError

    with pytest.raises(QwenToolError, match="sft_coef.*fix"):
        train_rl(small_config(tmp_path, "steps=1", "kl_coef=0", "sft_coef=0.1"), [], policy=tiny_model(),
                 tokenizer=tiny_tokenizer())
    with pytest.raises(ConfigError, match="sft_coef"):
        small_config(tmp_path, "sft_coef=-1")


def test_dropping_groups_is_refused_for_ppo():
    with pytest.raises(ConfigError, match=r"algo is ppo, which ignores grpo.drop_uniform_groups; fix: remove them"):
        load_config(RLTrainingConfig, None, ["algo=ppo", "grpo.drop_uniform_groups=true"])


def test_unknown_turn_return_names_the_choices():
    with pytest.raises(ConfigError, match="turn_return.*'sum' or 'mean'|turn_return.*sum.*mean"):
        load_config(RLTrainingConfig, None, ["turn_return=median"])


def test_greedy_member_flags_the_first_episode_of_every_group(tmp_path, monkeypatch):
    from qwen_tool.rl import trainer

    seen = []

    def spy(*args, greedy=None, **kwargs):
        seen.append(list(greedy))
        return real(*args, greedy=greedy, **kwargs)

    real = trainer.run_episodes
    monkeypatch.setattr(trainer, "run_episodes", spy)
    train_rl(small_config(tmp_path, "steps=1", "kl_coef=0", "grpo.greedy_member=true"), [TRAJECTORY],
             policy=tiny_model(), tokenizer=tiny_tokenizer())
    assert seen == [[True, False, True, False]]  # 2 groups of 2: each group's first episode is greedy


def test_rollouts_decode_with_the_policy_itself_and_take_every_update(tmp_path, monkeypatch):
    """The transformers decoder holds the policy module (no weight copy) and is told after every optimiser step, so
    keys and values stored under the old weights are never reused."""
    from qwen_tool.decode.transformers_decoder import TransformersDecoder

    updates, decoders = [], []
    real = TransformersDecoder.update_weights

    def spy(self, model):
        decoders.append(self)
        updates.append((model, bool(self.prefixes.entries)))
        real(self, model)
        assert not self.prefixes.entries

    monkeypatch.setattr(TransformersDecoder, "update_weights", spy)
    policy = tiny_model()
    train_rl(small_config(tmp_path, "steps=2", "kl_coef=0", "suites=[]"), [TRAJECTORY], policy=policy,
             tokenizer=tiny_tokenizer())
    assert len(updates) == 2 and all(model is policy for model, _ in updates)
    assert decoders[0] is decoders[1] and decoders[0].model is policy
    assert updates[0][1]  # the step's finished episodes had left keys and values to drop


@pytest.mark.parametrize(("overrides", "message"), [
    (["grpo.greedy_member=true", "samples_per_prompt=1"], "greedy_member.*samples_per_prompt of at least 2"),
    (["grpo.greedy_member=true", "algo=ppo"], "algo is ppo, which ignores grpo.greedy_member")])
def test_greedy_member_needs_a_grpo_group_to_compete_in(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RLTrainingConfig, None, overrides)


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_the_supervised_term_is_logged_by_both_algorithms(tmp_path, algo):
    train_rl(small_config(tmp_path, f"algo={algo}", "steps=1", "kl_coef=0", "sft_coef=0.5", "suites=[]"),
             [TRAJECTORY], policy=tiny_model(), tokenizer=tiny_tokenizer())
    (line,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert line["sft_nll"] > 0  # a random tiny model is far from the gold tokens


def test_rl_data_comes_in_through_the_data_rooms_reader(tmp_path, capsys):
    """`train rl` reads data= with the validating reader every other command uses (no reader of its own): a binary
    file, a missing one and an invalid trajectory are one-line errors before any model loads."""
    from qwen_tool.testing import cli_user_error

    binary = tmp_path / "train.jsonl"
    binary.write_bytes(b"\x00\xff\xfe binary")
    assert "train.jsonl" in cli_user_error(capsys, "train", "rl", f"data={binary}", f"output_dir={tmp_path}")
    assert "missing.jsonl" in cli_user_error(capsys, "train", "rl", f"data={tmp_path / 'missing.jsonl'}")
    invalid = tmp_path / "invalid.jsonl"
    invalid.write_text(json.dumps(TRAJECTORY) + "\n" + json.dumps({"tools": [], "messages": []}) + "\n")
    assert "invalid.jsonl:2" in cli_user_error(capsys, "train", "rl", f"data={invalid}", f"output_dir={tmp_path}")
