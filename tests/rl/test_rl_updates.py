"""One update on the tiny model, read through the gradient it stepped with (SGD, no clipping, so the gradient's
scale shows, which Adam would hide): the entropy bonus comes from the loss's own forward, Dr. GRPO's denominator is a
constant, PPO's KL in the reward, and micro-batching changes nothing."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from qwen_tool.config import RLTrainingConfig, load_config
from qwen_tool.rl.batch import RolloutBatch, collate
from qwen_tool.rl.policy import ValueHead, completion_forward, entropy_from_logits
from qwen_tool.rl.rollout import Rollout
from qwen_tool.rl.updates import RLModels, grpo_update, ppo_targets, ppo_update
from qwen_tool.testing import tiny_model


def _rollout(prompt: list[int], completion: list[int], reward: float, sampled: list[int] | None = None) -> Rollout:
    mask = sampled if sampled is not None else [1] * len(completion)
    return Rollout("t", prompt_ids=prompt, completion_ids=completion, action_mask=mask,
                   old_logprobs=[0.0] * len(completion), turn_ends=[len(completion) - 1], turn_rewards=[reward])


def _on_policy(rollouts: list[Rollout], model) -> RolloutBatch:
    """The batch with the model's own log-probs as the sampling ones (ρ = 1 at the first epoch)."""
    batch = collate(rollouts, 0)
    with torch.no_grad():
        batch.old_logprobs_BC = completion_forward(model, batch.prompt_ids_BP, batch.prompt_mask_BP,
                                                   batch.completion_ids_BC, batch.completion_mask_BC).logprobs_BC
    return batch


def _sgd_step(cfg: RLTrainingConfig, batch: RolloutBatch, update=grpo_update, policy=None, **models):
    """(the gradient every policy parameter was stepped with, the update's metrics) after one update with SGD."""
    policy = policy if policy is not None else tiny_model(seed=1)
    rl_models = RLModels(policy, torch.optim.SGD(policy.parameters(), lr=1.0), **models)
    metrics = update(rl_models, batch, cfg, Accelerator(cpu=True))
    return [p.grad.clone() for p in policy.parameters()], metrics


def _config(*overrides: str) -> RLTrainingConfig:
    return load_config(RLTrainingConfig, None, ["kl_coef=0", "max_grad_norm=1e9", *overrides])


def _gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Largest difference between two parameter changes, relative to the largest entry of `b`."""
    scale = max(y.abs().max().item() for y in b)
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True)) / scale


def _close(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return _gap(a, b) < 1e-4


def _absolute_position_model():
    """A tiny GPT-2: learned absolute positions, so a shift of every position changes the logits (rotary models such
    as SmolLM2 barely notice a shift common to a whole row)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(4)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=64, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
                                      eos_token_id=0))


def test_the_entropy_bonus_is_taken_where_the_log_probs_are():
    """Prompts of different lengths are left-padded; the bonus must see each token at its own position (the forward
    the loss uses, with position ids that skip the padding), not at the padded positions a bare forward gives."""
    rollouts = [_rollout([5, 6, 7, 8, 9], [11, 12, 13], 0.0), _rollout([10, 11], [14, 15], 0.0),
                _rollout([20, 21, 22], [16, 17, 18, 19], 0.0)]  # rewards 0, groups of 1: Â = 0, so only H trains
    cfg = _config("samples_per_prompt=1", "entropy_coef=1.0", "episodes_per_forward=4")
    batch = collate(rollouts, 0)
    step, metrics = _sgd_step(cfg, batch, policy=_absolute_position_model())

    def entropy_gradient(forward) -> list[torch.Tensor]:
        model = _absolute_position_model()
        entropy_BC = forward(model)
        loss = -(entropy_BC * batch.action_mask_BC).sum() / batch.action_mask_BC.sum()  # −c_H · token mean of H
        loss.backward()
        return [p.grad for p in model.parameters()]

    same_forward = entropy_gradient(lambda m: completion_forward(
        m, batch.prompt_ids_BP, batch.prompt_mask_BP, batch.completion_ids_BC, batch.completion_mask_BC,
        with_entropy=True, entropy_grad=True).entropy_BC)
    input_ids = torch.cat([batch.prompt_ids_BP, batch.completion_ids_BC], 1)
    mask = torch.cat([batch.prompt_mask_BP, batch.completion_mask_BC], 1)
    width = batch.completion_ids_BC.shape[1]
    without_positions = entropy_gradient(lambda m: entropy_from_logits(m(
        input_ids=input_ids, attention_mask=mask, logits_to_keep=width + 1).logits[:, :-1].float()))
    assert _close(step, same_forward)
    assert _gap(step, without_positions) > 1e-2  # what the second, position-less forward trained
    assert metrics.entropy > 0


def test_dr_grpo_divides_by_episodes_times_a_fixed_budget():
    """loss_aggregation constant: Σ m·ℓ / (B · L) with L = grpo.max_completion_tokens, whatever the completion width,
    the tool results inside it, the micro-batching or the groups dropped."""
    model = tiny_model(seed=1)
    # Group [1, 0] (Â = ±0.5 with advantage_scale none): 3 sampled tokens, then 5 (a 2-token tool result between).
    varied = [_rollout([5, 6, 7], [11, 12, 13], 1.0), _rollout([5, 6, 7], [14, 15, 30, 31, 16, 17, 18], 0.0,
                                                                  sampled=[1, 1, 0, 0, 1, 1, 1])]
    uniform = [_rollout([8, 9], [21, 22], 1.0), _rollout([8, 9], [23], 1.0)]
    settings = ["samples_per_prompt=2", "grpo.advantage_scale=none", "grpo.loss_aggregation=constant",
                "grpo.max_completion_tokens=16"]
    step, metrics = _sgd_step(_config(*settings), _on_policy(varied, model))
    # On-policy ρ = 1, ℓ = −Â per sampled token: −(0.5 · 3 − 0.5 · 5) / (2 episodes · 16) = 1/32.
    assert metrics.loss == pytest.approx(1 / 32, abs=1e-5)
    one_at_a_time, _ = _sgd_step(_config(*settings, "episodes_per_forward=1"), _on_policy(varied, model))
    assert _close(step, one_at_a_time)
    # Four episodes, the uniform group dropped or not: the same gradient, half of the two-episode step's.
    dropped, _ = _sgd_step(_config(*settings, "grpo.drop_uniform_groups=true"), _on_policy(varied + uniform, model))
    kept, _ = _sgd_step(_config(*settings), _on_policy(varied + uniform, model))
    assert _close(dropped, kept)
    assert _close(dropped, [s / 2 for s in step])


def test_max_completion_tokens_defaults_to_max_new_tokens():
    model = tiny_model(seed=1)
    varied = [_rollout([5, 6, 7], [11, 12, 13], 1.0), _rollout([5, 6, 7], [14, 15], 0.0)]
    cfg = _config("samples_per_prompt=2", "grpo.advantage_scale=none", "grpo.loss_aggregation=constant",
                  "max_new_tokens=10")
    _, metrics = _sgd_step(cfg, _on_policy(varied, model))
    assert metrics.loss == pytest.approx(-(0.5 * 3 - 0.5 * 2) / (2 * 10), abs=1e-5)


def _ppo_models(policy_seed: int = 1) -> dict:
    head = ValueHead(tiny_model(seed=policy_seed).config.hidden_size)
    return {"critic": head, "critic_optimizer": torch.optim.SGD(head.parameters(), lr=1.0), "shared_trunk": True}


def test_ppo_kl_in_reward_shapes_the_token_rewards():
    """k1 = log π_old − log π_ref is subtracted, times β, from every sampled token's reward; the zero-initialised
    value head gives V = 0, so with γ = λ = 1 each advantage is the sum of the rewards from its token on."""
    policy, reference = tiny_model(seed=1), tiny_model(seed=1)
    batch = _on_policy([_rollout([5, 6, 7], [11, 12], 1.0)], reference)
    batch.old_logprobs_BC = batch.old_logprobs_BC + torch.tensor([[0.2, 0.4]])  # k1 = [0.2, 0.4]
    common = ["algo=ppo", "kl_coef=0.5", "ppo.gamma=1", "ppo.lam=1", "ppo.whiten_advantages=false",
              "ppo.reward_clip=null"]
    models = RLModels(policy, torch.optim.SGD(policy.parameters(), lr=1.0), reference, **_ppo_models())
    (shaped,) = ppo_targets(models, batch, _config(*common, "ppo.kl_in_reward=true"))
    # r = [0 − 0.5 · 0.2, 1 − 0.5 · 0.4] = [−0.1, 0.8] → Â = [0.7, 0.8].
    assert shaped.advantages_BC.tolist()[0] == pytest.approx([0.7, 0.8], abs=1e-5)
    assert shaped.reward_kl_sum.item() == pytest.approx(0.6, abs=1e-5)
    (plain,) = ppo_targets(models, batch, _config(*common))  # the KL is then a loss term: r = [0, 1]
    assert plain.advantages_BC.tolist()[0] == pytest.approx([1.0, 1.0])
    metrics = ppo_update(models, batch, _config(*common, "ppo.kl_in_reward=true"), Accelerator(cpu=True))
    assert metrics.kl == pytest.approx(0.3, abs=1e-5)  # the mean k1 the rewards paid


def test_ppo_micro_batching_changes_nothing():
    """Policy and value terms both divide by the step's action-token count, so 1 × 4 episodes equals 4 × 1."""
    model = tiny_model(seed=1)
    rollouts = [_rollout([5, 6, 7], [11, 12, 13], 1.0), _rollout([8, 9], [14, 15, 30, 16], 0.0, sampled=[1, 1, 0, 1]),
                _rollout([10, 11, 12, 13], [17], 0.5), _rollout([14], [18, 19], -1.0)]
    steps = []
    for per_forward in (4, 1):
        cfg = _config("algo=ppo", "samples_per_prompt=1", f"episodes_per_forward={per_forward}")
        steps.append(_sgd_step(cfg, _on_policy(rollouts, model), update=ppo_update, **_ppo_models()))
    (whole, whole_metrics), (split, split_metrics) = steps
    assert _close(whole, split)
    assert split_metrics.value_loss == pytest.approx(whole_metrics.value_loss, rel=1e-5)
