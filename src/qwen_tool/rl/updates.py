"""One optimisation step per algorithm on a step's rollouts: `grpo_update`, `ppo_update`, and `fit_critic` (PPO's
value pre-training).

Each splits the step's episodes into micro-batches of `episodes_per_forward`, runs the policy once per micro-batch
(log-probs, entropy and, with a value head, hidden states from that one forward), and calls the pure loss of
`qwen_tool.rl.losses` with the whole step's denominator, so the accumulated gradient equals one big batch's; then it
clips and steps, `epochs_per_step` times.

In a multi-process run (`rl.distributed`) each process updates on its own episodes: the denominators, the whitening
and the returned metrics are taken over every process's episodes, and the policy is called once per micro-batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import torch

from qwen_tool.config import RLTrainingConfig
from qwen_tool.rl.advantages import (
    gae,
    group_advantages,
    informative_rows,
    kl_shaped_rewards,
    turn_advantages,
    varied_turn_rows,
)
from qwen_tool.rl.batch import RolloutBatch, collate, micro_batches
from qwen_tool.rl.distributed import (
    is_distributed,
    mean_and_std_over_processes,
    mean_over_processes,
    normalizer_over_processes,
    sum_over_processes,
    token_normalizer,
)
from qwen_tool.rl.losses import (
    GRPOStats,
    LossStats,
    PPOStats,
    clipped_value_loss,
    grpo_loss,
    kl_estimate,
    ppo_loss,
    sft_nll,
)
from qwen_tool.rl.policy import ForwardOut, SeparateCritic, completion_forward
from qwen_tool.rl.rollout import Rollout


@dataclass
class RLModels:
    """What a run trains and consults: the policy, the KL reference (None without KL, or with LoRA, where the
    reference is the policy with its adapters off), the critic (PPO only) and their optimisers."""

    policy: Any
    optimizer: torch.optim.Optimizer
    reference: Any | None = None
    critic: torch.nn.Module | None = None
    critic_optimizer: torch.optim.Optimizer | None = None
    shared_trunk: bool = False
    """The critic is a value head on the policy's last hidden state."""


@dataclass
class UpdateMetrics:
    """What one update logs, over every process's episodes (None: not part of this algorithm's update)."""

    clip_fraction: float = 0.0
    kl: float = 0.0
    entropy: float = 0.0
    grad_norm: float = 0.0
    loss: float | None = None
    """GRPO: the policy loss, averaged over the epochs."""
    policy_loss: float | None = None
    """PPO: the policy term, averaged over the epochs."""
    value_loss: float | None = None
    """PPO: the value term before its coefficient, averaged over the epochs."""
    advantage_abs: float | None = None
    """GRPO: mean |Â| of the updated episodes (with per-turn credit: of the turns they played)."""
    updated_share: float | None = None
    """GRPO: share of the step's episodes left in the update (below 1 with `grpo.drop_uniform_groups`)."""
    sft_nll: float | None = None
    """The supervised term's NLL, averaged over the epochs (with a gold batch)."""

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


Stats = TypeVar("Stats", bound=LossStats)


def token_sums_over_processes(stats: Stats, device: torch.device) -> Stats:
    """`stats` with its token sums (action tokens, clipped tokens, KL, entropy) summed over every process, so the
    means read from them are over every process's tokens; PPO's loss terms stay this process's."""
    names = [f.name for f in fields(LossStats)]
    totals = sum_over_processes(torch.stack([getattr(stats, name).detach().float().to(device) for name in names]))
    return replace(stats, **dict(zip(names, totals.unbind(), strict=True)))


def averaged_over_processes(metrics: UpdateMetrics) -> UpdateMetrics:
    """Every process's metrics averaged. A process's loss is S_r / n with n = N / W (`normalizer_over_processes`),
    so their mean is Σ_r S_r / N, the loss over every process's episodes; the token means are already the same on
    every process (`token_sums_over_processes`), and the processes hold equally many episodes, so per-episode means
    average to the mean over all of them."""
    return UpdateMetrics(**mean_over_processes(metrics.as_dict()))


def policy_forward(model: Any, mb: RolloutBatch, temperature: float, **kwargs: Any) -> ForwardOut:
    """`completion_forward` on a micro-batch; with several processes one model call per micro-batch on every process
    (sharing prompts would make the number of calls, each a collective, depend on the episodes)."""
    return completion_forward(model, mb.prompt_ids_BP, mb.prompt_mask_BP, mb.completion_ids_BC, mb.completion_mask_BC,
                              temperature=temperature, share_prompts=not is_distributed(), **kwargs)


def unwrap(model: Any) -> Any:
    """The module inside an accelerate/DDP wrapper."""
    return getattr(model, "module", model)


def reference_logprobs(models: RLModels, mb: RolloutBatch, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        if models.reference is None:  # LoRA: the reference is the policy with its adapters switched off
            with unwrap(models.policy).disable_adapter():
                return policy_forward(models.policy, mb, temperature).logprobs_BC
        return policy_forward(models.reference, mb, temperature).logprobs_BC


def draw_gold_batch(gold: Sequence[Rollout], cfg: RLTrainingConfig, pad_id: int, rng: random.Random,
                    device: torch.device) -> RolloutBatch | None:
    """The supervised term's examples for one update: `sft_examples_per_step` of `gold` (None without any)."""
    if not gold:
        return None
    return collate(rng.sample(list(gold), min(cfg.sft_examples_per_step, len(gold))), pad_id).to(device)


def add_supervised_gradient(models: RLModels, gold: RolloutBatch | None, cfg: RLTrainingConfig,
                            accelerator: Any) -> float:
    """Accumulate the gradient of γ · NLL of the gold batch's assistant tokens (untempered); return the NLL (0 without
    a gold batch)."""
    if gold is None:
        return 0.0
    total_tokens, nll = token_normalizer(gold.action_mask_BC), 0.0
    for _, mb in micro_batches(gold, cfg.episodes_per_forward):
        loss = sft_nll(policy_forward(models.policy, mb, 1.0).logprobs_BC, mb.action_mask_BC, normalizer=total_tokens)
        accelerator.backward(cfg.sft_coef * loss)
        nll += loss.item()
    return nll


# ---------------------------------------------------------------- GRPO


def grpo_normalizer(batch: RolloutBatch, step_episodes: int, cfg: RLTrainingConfig) -> torch.Tensor:
    """The step's denominator N for `cfg.grpo.loss_aggregation`: the updated action tokens (token), the updated
    episodes (sequence), or every episode of the step × L (constant, Dr. GRPO; L = `grpo.max_completion_tokens`,
    default `max_new_tokens`): a constant that neither completion width, tool results nor dropped groups move.
    Each count is over every process's episodes, as this process's share (`normalizer_over_processes`)."""
    aggregation = cfg.grpo.loss_aggregation
    if aggregation == "token":
        return token_normalizer(batch.action_mask_BC)
    if aggregation == "sequence":
        return normalizer_over_processes(batch.returns_B.new_tensor(float(batch.returns_B.shape[0])))
    budget = cfg.grpo.max_completion_tokens or cfg.max_new_tokens
    return normalizer_over_processes(batch.returns_B.new_tensor(float(step_episodes * budget)))


def grpo_update(models: RLModels, batch: RolloutBatch, cfg: RLTrainingConfig, accelerator: Any,
                gold: RolloutBatch | None = None) -> UpdateMetrics:
    """Group-normalised advantages (`grpo.credit` episode: one per episode, from its return; turn: one per turn,
    `turn_advantages`, spread over that turn's sampled tokens), then `epochs_per_step` passes of `grpo_loss` (+ γ·NLL
    of the `gold` trajectories when given). With `grpo.drop_uniform_groups`, groups whose episodes all scored alike
    are left out first; if all are, only the supervised term (if any) moves the policy."""
    step_episodes = batch.returns_B.shape[0]
    per_turn = cfg.grpo.credit == "turn"
    if per_turn:  # (B, K): one advantage per turn
        advantages_B = turn_advantages(batch.turn_rewards_BK, batch.turn_mask_BK, batch.turn_gold_BK,
                                       batch.episode_rewards_B, cfg.samples_per_prompt, cfg.grpo.advantage_scale)
    else:
        advantages_B = group_advantages(batch.returns_B, cfg.samples_per_prompt, cfg.grpo.advantage_scale)
    if cfg.grpo.drop_uniform_groups:
        rows_B = (varied_turn_rows(batch.turn_rewards_BK, batch.turn_mask_BK, batch.turn_gold_BK,
                                   batch.episode_rewards_B, cfg.samples_per_prompt) if per_turn
                  else informative_rows(batch.returns_B, cfg.samples_per_prompt))
        batch, advantages_B = batch.select(rows_B), advantages_B[rows_B]
    normalizer = grpo_normalizer(batch, step_episodes, cfg)
    micro = micro_batches(batch, cfg.episodes_per_forward)
    references = [reference_logprobs(models, mb, cfg.temperature) if cfg.kl_coef else None for _, mb in micro]
    stats, loss_sum, nll_sum, grad_norm = GRPOStats.zero(), 0.0, 0.0, 0.0
    for _ in range(cfg.epochs_per_step):
        models.optimizer.zero_grad()
        for (rows, mb), ref_BC in zip(micro, references, strict=True):
            out = policy_forward(models.policy, mb, cfg.temperature, with_entropy=True,
                                 entropy_grad=cfg.entropy_coef != 0.0)
            mb_advantages = advantages_B[rows].gather(1, mb.turn_index_BC) if per_turn else advantages_B[rows]
            loss, mb_stats = grpo_loss(out.logprobs_BC, mb.old_logprobs_BC, mb_advantages, mb.action_mask_BC,
                                       ref_logprobs_BT=ref_BC, kl_coef=cfg.kl_coef, clip_low=cfg.clip_low,
                                       clip_high=cfg.clip_high, aggregation=cfg.grpo.loss_aggregation,
                                       normalizer=normalizer, entropy_BT=out.entropy_BC,
                                       entropy_coef=cfg.entropy_coef)
            accelerator.backward(loss)
            loss_sum += loss.item()
            stats = stats + mb_stats
        nll_sum += add_supervised_gradient(models, gold, cfg, accelerator)
        grad_norm = float(accelerator.clip_grad_norm_(models.policy.parameters(), cfg.max_grad_norm))
        models.optimizer.step()
    epochs, stats = cfg.epochs_per_step, token_sums_over_processes(stats, accelerator.device)
    return averaged_over_processes(UpdateMetrics(
        clip_fraction=stats.clip_fraction, kl=stats.kl, entropy=stats.entropy, grad_norm=grad_norm,
        loss=loss_sum / epochs, advantage_abs=mean_abs_advantage(advantages_B, batch, per_turn),
        updated_share=batch.returns_B.shape[0] / step_episodes, sft_nll=nll_sum / epochs if gold is not None else None))


def mean_abs_advantage(advantages: torch.Tensor, batch: RolloutBatch, per_turn: bool) -> float:
    """Mean |Â| over the updated episodes, or (per-turn credit) over the turns they played."""
    if not advantages.numel():
        return 0.0
    if per_turn:
        mask_BK = batch.turn_mask_BK.to(advantages.dtype)
        return float((advantages.abs() * mask_BK).sum() / mask_BK.sum().clamp(min=1))
    return advantages.abs().mean().item()


# ---------------------------------------------------------------- PPO


@dataclass
class PPOTargets:
    """What a PPO update holds fixed for one micro-batch, computed before any gradient step."""

    rows: list[int]
    batch: RolloutBatch
    values_BC: torch.Tensor
    returns_BC: torch.Tensor
    advantages_BC: torch.Tensor
    ref_logprobs_BC: torch.Tensor | None
    reward_kl_sum: torch.Tensor
    """Σ m · KL of the sampled tokens (estimator `ppo.kl_estimator`) when the KL is in the reward, else 0."""


def critic_values(models: RLModels, mb: RolloutBatch, hidden_BCH: torch.Tensor | None) -> torch.Tensor:
    if models.shared_trunk:
        assert models.critic is not None and hidden_BCH is not None
        return models.critic(hidden_BCH)
    assert isinstance(unwrap(models.critic), SeparateCritic)
    return models.critic(mb.prompt_ids_BP, mb.prompt_mask_BP, mb.completion_ids_BC, mb.completion_mask_BC)


def ppo_targets(models: RLModels, batch: RolloutBatch, cfg: RLTrainingConfig) -> list[PPOTargets]:
    """Per micro-batch, without gradients: old values, reference log-probs (with β ≠ 0), token rewards (turn scores at
    turn ends, −β·KL per token with `ppo.kl_in_reward`), GAE advantages and returns; advantages whitened over the
    whole step's action tokens (every process's) with `ppo.whiten_advantages`."""
    settings, targets = cfg.ppo, []
    with torch.no_grad():
        for rows, mb in micro_batches(batch, cfg.episodes_per_forward):
            out = policy_forward(models.policy, mb, cfg.temperature, with_hidden=models.shared_trunk)
            values_BC = critic_values(models, mb, out.hidden_BCH)
            ref_BC = reference_logprobs(models, mb, cfg.temperature) if cfg.kl_coef else None
            kl_BC = torch.zeros_like(values_BC)
            if ref_BC is not None and settings.kl_in_reward:
                kl_BC = kl_estimate(mb.old_logprobs_BC, ref_BC, settings.kl_estimator)
            rewards_BC = kl_shaped_rewards(mb.scores_BC, kl_BC, mb.action_mask_BC,
                                           cfg.kl_coef if settings.kl_in_reward else 0.0, settings.reward_clip)
            advantages_BC, returns_BC = gae(rewards_BC, values_BC, mb.action_mask_BC, settings.gamma, settings.lam)
            targets.append(PPOTargets(rows, mb, values_BC, returns_BC, advantages_BC, ref_BC,
                                      (kl_BC * mb.action_mask_BC).sum()))
    if settings.whiten_advantages and targets:
        # Â' = (Â − mean) / std, mean and unbiased std over every action token of the step
        mean, std = mean_and_std_over_processes(torch.cat([t.advantages_BC[t.batch.action_mask_BC.bool()]
                                                           for t in targets]))
        for t in targets:
            t.advantages_BC = (t.advantages_BC - mean) / std * t.batch.action_mask_BC
    return targets


def ppo_update(models: RLModels, batch: RolloutBatch, cfg: RLTrainingConfig, accelerator: Any,
               gold: RolloutBatch | None = None) -> UpdateMetrics:
    """`ppo_targets`, then `epochs_per_step` passes of `ppo_loss` (policy and critic together; + γ·NLL of the `gold`
    trajectories when given)."""
    assert models.critic is not None and models.critic_optimizer is not None
    targets = ppo_targets(models, batch, cfg)
    normalizer = token_normalizer(batch.action_mask_BC)
    kl_in_loss = 0.0 if cfg.ppo.kl_in_reward else cfg.kl_coef
    stats, nll_sum, grad_norm = PPOStats.zero(), 0.0, 0.0
    for _ in range(cfg.epochs_per_step):
        models.optimizer.zero_grad()
        models.critic_optimizer.zero_grad()
        for t in targets:
            out = policy_forward(models.policy, t.batch, cfg.temperature, with_hidden=models.shared_trunk,
                                 with_entropy=True, entropy_grad=cfg.entropy_coef != 0.0)
            loss, mb_stats = ppo_loss(out.logprobs_BC, t.batch.old_logprobs_BC, t.advantages_BC,
                                      critic_values(models, t.batch, out.hidden_BCH), t.values_BC, t.returns_BC,
                                      t.batch.action_mask_BC, ref_logprobs_BT=t.ref_logprobs_BC, kl_coef=kl_in_loss,
                                      clip_low=cfg.clip_low, clip_high=cfg.clip_high, value_clip=cfg.ppo.value_clip,
                                      value_coef=cfg.ppo.value_coef, entropy_BT=out.entropy_BC,
                                      entropy_coef=cfg.entropy_coef, normalizer=normalizer)
            if cfg.ppo.kl_in_reward:  # the KL the rewards paid, not a loss term
                mb_stats = replace(mb_stats, kl_sum=t.reward_kl_sum)
            accelerator.backward(loss)
            stats = stats + mb_stats
        accelerator.clip_grad_norm_(models.critic.parameters(), cfg.max_grad_norm)
        models.critic_optimizer.step()
        nll_sum += add_supervised_gradient(models, gold, cfg, accelerator)
        grad_norm = float(accelerator.clip_grad_norm_(models.policy.parameters(), cfg.max_grad_norm))
        models.optimizer.step()
    epochs, stats = cfg.epochs_per_step, token_sums_over_processes(stats, accelerator.device)
    return averaged_over_processes(UpdateMetrics(
        clip_fraction=stats.clip_fraction, kl=stats.kl, entropy=stats.entropy, grad_norm=grad_norm,
        policy_loss=float(stats.policy_loss) / epochs, value_loss=float(stats.value_loss) / epochs,
        sft_nll=nll_sum / epochs if gold is not None else None))


def fit_critic(models: RLModels, batch: RolloutBatch, cfg: RLTrainingConfig, accelerator: Any) -> float:
    """Value pre-training: `epochs_per_step` passes of the clipped value loss alone (the policy is not updated);
    returns the value loss, averaged over the epochs (and the processes)."""
    assert models.critic is not None and models.critic_optimizer is not None
    targets = ppo_targets(models, batch, cfg)
    normalizer = token_normalizer(batch.action_mask_BC)
    value_sum = 0.0
    for _ in range(cfg.epochs_per_step):
        models.critic_optimizer.zero_grad()
        for t in targets:
            hidden_BCH = None
            if models.shared_trunk:
                with torch.no_grad():
                    hidden_BCH = policy_forward(models.policy, t.batch, cfg.temperature, with_hidden=True).hidden_BCH
            value_loss = clipped_value_loss(critic_values(models, t.batch, hidden_BCH), t.values_BC, t.returns_BC,
                                            t.batch.action_mask_BC, cfg.ppo.value_clip, normalizer)
            accelerator.backward(cfg.ppo.value_coef * value_loss)
            value_sum += value_loss.item()
        accelerator.clip_grad_norm_(models.critic.parameters(), cfg.max_grad_norm)
        models.critic_optimizer.step()
    return mean_over_processes({"value_loss": value_sum / cfg.epochs_per_step})["value_loss"]
