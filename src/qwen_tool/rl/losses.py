"""The RL losses as pure tensor functions: GRPO's and PPO's, their clipped policy and value terms, KL estimators and
the supervised term, each returning its statistics as a typed result.

Shapes are in the names: B sequences (episodes), T token positions. Every `mask_BT` is the action mask: 1 exactly at
tokens the policy sampled, 0 at prompt, padding and environment-inserted tokens (tool results), so those never
receive loss. Aggregations, each with the whole step's denominator N (`normalizer`) so that the results of several
micro-batches add up to the step's loss and accumulated gradients equal one big batch's:
- "token" (DAPO, TRL's default): Σ_{b,t} m·ℓ / N, N = Σ m over the step's action tokens;
- "sequence" (original GRPO): Σ_b [Σ_t m·ℓ / Σ_t m] / N, N = the step's episodes;
- "constant" (Dr. GRPO): Σ_{b,t} m·ℓ / N, N = episodes × L with L a fixed token budget: no length bias, and a
  denominator that does not move with the batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Self

import torch

Aggregation = Literal["token", "sequence", "constant"]
KLEstimator = Literal["k1", "k2", "k3"]


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ m·x / max(Σ m, 1) (over `dim`, or everything)."""
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def aggregate(per_token_BT: torch.Tensor, mask_BT: torch.Tensor, mode: Aggregation = "token",
              normalizer: float | torch.Tensor | None = None, max_length: int | None = None) -> torch.Tensor:
    """Reduce a per-token loss to a scalar (the three modes are in the module docstring).

    normalizer: the whole step's N; default: this batch's own (Σ m, B, or B · L with L = `max_length`, default T).
    """
    mask_BT = mask_BT.to(per_token_BT.dtype)
    if mode == "token":
        total, own = (per_token_BT * mask_BT).sum(), mask_BT.sum()
    elif mode == "sequence":
        total, own = masked_mean(per_token_BT, mask_BT, dim=-1).sum(), per_token_BT.new_tensor(per_token_BT.shape[0])
    elif mode == "constant":
        length = per_token_BT.shape[-1] if max_length is None else max_length
        total, own = (per_token_BT * mask_BT).sum(), per_token_BT.new_tensor(per_token_BT.shape[0] * length)
    else:
        raise ValueError(f"unknown aggregation {mode!r}; use token, sequence or constant")
    count = own if normalizer is None else torch.as_tensor(normalizer, dtype=per_token_BT.dtype)
    return total / count.clamp(min=1.0)


def kl_estimate(logprobs_BT: torch.Tensor, ref_logprobs_BT: torch.Tensor, estimator: KLEstimator = "k3"
                ) -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from samples of π (Schulman's estimators), with d = log π_ref − log π:
    k1 = −d (unbiased, can be negative); k2 = d²/2; k3 = e^d − d − 1 (unbiased, ≥ 0; GRPO's choice)."""
    delta_BT = ref_logprobs_BT - logprobs_BT
    if estimator == "k1":
        return -delta_BT
    if estimator == "k2":
        return 0.5 * delta_BT.square()
    if estimator == "k3":
        return torch.exp(delta_BT) - delta_BT - 1
    raise ValueError(f"unknown KL estimator {estimator!r}; use k1, k2 or k3")


def clipped_policy_loss(logprobs_BT: torch.Tensor, old_logprobs_BT: torch.Tensor, advantages_BT: torch.Tensor,
                        mask_BT: torch.Tensor, clip_low: float = 0.2, clip_high: float | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate per token: ℓ_t = −min(ρ_t Â_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) Â_t),
    ρ_t = exp(log π(a_t) − log π_old(a_t)). Returns (ℓ_BT, clipped_BT) where clipped marks tokens whose gradient the
    clip removed (the clip fraction's numerator). `advantages` may be (B,) (one per sequence) or (B, T)."""
    if advantages_BT.dim() == 1:
        advantages_BT = advantages_BT.unsqueeze(1)
    clip_high = clip_low if clip_high is None else clip_high
    ratio_BT = torch.exp(logprobs_BT - old_logprobs_BT)
    unclipped_BT = ratio_BT * advantages_BT
    clipped_BT = torch.clamp(ratio_BT, 1 - clip_low, 1 + clip_high) * advantages_BT
    loss_BT = -torch.min(unclipped_BT, clipped_BT)
    was_clipped_BT = (clipped_BT < unclipped_BT) & mask_BT.bool()
    return loss_BT, was_clipped_BT


def clipped_value_loss(values_BT: torch.Tensor, old_values_BT: torch.Tensor, returns_BT: torch.Tensor,
                       mask_BT: torch.Tensor, clip: float = 0.2,
                       normalizer: float | torch.Tensor | None = None) -> torch.Tensor:
    """PPO value loss: ½ · Σ m · max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²) / N, N = Σ m unless given
    (the action-token count of the whole step)."""
    clipped_BT = old_values_BT + torch.clamp(values_BT - old_values_BT, -clip, clip)
    loss_BT = torch.max((values_BT - returns_BT).square(), (clipped_BT - returns_BT).square())
    return 0.5 * aggregate(loss_BT, mask_BT, "token", normalizer)


def sft_nll(logprobs_BT: torch.Tensor, mask_BT: torch.Tensor,
            normalizer: float | torch.Tensor | None = None) -> torch.Tensor:
    """The supervised (PPO-ptx) term: L = −Σ_t m_t log π(y_t | y_<t) / N over gold tokens, N = Σ m unless given
    (the token count of the whole accumulated batch, as in `aggregate`)."""
    return aggregate(-logprobs_BT, mask_BT, "token", normalizer)


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class LossStats:
    """Detached sums over the action tokens of one loss evaluation. Add those of every micro-batch and epoch, then
    read the means once: the means are then over every token the step trained on, whatever the micro-batching."""

    action_tokens: torch.Tensor
    clipped_tokens: torch.Tensor
    """Tokens whose gradient the ratio clip removed."""
    kl_sum: torch.Tensor
    """Σ m · KL estimate (0 without a KL term)."""
    entropy_sum: torch.Tensor
    """Σ m · H_t (0 when no entropy was given)."""

    @classmethod
    def zero(cls) -> Self:
        """Nothing counted yet (the start of a sum, and the statistics of an update with no episode left)."""
        return cls(**{f.name: torch.zeros(()) for f in dataclasses.fields(cls)})

    def __add__(self, other: Self) -> Self:
        return dataclasses.replace(self, **{f.name: getattr(self, f.name) + getattr(other, f.name)
                                            for f in dataclasses.fields(self)})

    def _mean(self, total: torch.Tensor) -> float:
        return float(total / self.action_tokens.clamp(min=1.0))

    @property
    def clip_fraction(self) -> float:
        return self._mean(self.clipped_tokens)

    @property
    def kl(self) -> float:
        return self._mean(self.kl_sum)

    @property
    def entropy(self) -> float:
        return self._mean(self.entropy_sum)


@dataclass(frozen=True)
class GRPOStats(LossStats):
    """`LossStats` of `grpo_loss`."""


@dataclass(frozen=True)
class PPOStats(LossStats):
    """`LossStats` of `ppo_loss`, plus its two terms (each already divided by the step's N, so they add up too)."""

    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    """The value term before its coefficient."""


def _token_sums(mask_BT: torch.Tensor, clipped_BT: torch.Tensor, kl_BT: torch.Tensor | None,
                entropy_BT: torch.Tensor | None) -> dict[str, torch.Tensor]:
    mask_BT = mask_BT.to(torch.float32)
    zero = mask_BT.new_zeros(())
    return {"action_tokens": mask_BT.sum(), "clipped_tokens": (clipped_BT.float() * mask_BT).sum(),
            "kl_sum": zero if kl_BT is None else (kl_BT.detach().float() * mask_BT).sum(),
            "entropy_sum": zero if entropy_BT is None else (entropy_BT.detach().float() * mask_BT).sum()}


# ---------------------------------------------------------------- the two losses


def grpo_loss(logprobs_BT: torch.Tensor, old_logprobs_BT: torch.Tensor, advantages_B: torch.Tensor,
              mask_BT: torch.Tensor, *, ref_logprobs_BT: torch.Tensor | None = None, kl_coef: float = 0.0,
              clip_low: float = 0.2, clip_high: float | None = None, aggregation: Aggregation = "token",
              normalizer: float | torch.Tensor | None = None, max_length: int | None = None,
              kl_importance_weighted: bool = True, entropy_BT: torch.Tensor | None = None,
              entropy_coef: float = 0.0) -> tuple[torch.Tensor, GRPOStats]:
    """GRPO: L = agg_m[ −min(ρ Â, clip(ρ) Â) + β · ρ · k3(π ‖ π_ref) − c_H · H ], the KL as a loss term (TRL's
    formulation), Â one advantage per sequence (B,), or per token (B, T) with per-turn credit.

    The KL term is weighted by the importance ratio ρ (DeepSeek-V3.2's correction, TRL's default), which makes its
    gradient the unbiased reverse-KL gradient even off-policy; `kl_importance_weighted=False` drops ρ there.
    `entropy_BT` must come from the same forward as `logprobs_BT` (the bonus needs its gradient when c_H ≠ 0).
    With TRL's defaults (aggregation "token", β = 0, ε = 0.2) this equals TRL's `GRPOTrainer` loss on the same batch.
    """
    per_token_BT, clipped_BT = clipped_policy_loss(logprobs_BT, old_logprobs_BT, advantages_B, mask_BT,
                                                   clip_low, clip_high)
    kl_BT = None
    if kl_coef != 0.0:
        if ref_logprobs_BT is None:
            raise ValueError("kl_coef is set but no ref_logprobs_BT were given")
        kl_BT = kl_estimate(logprobs_BT, ref_logprobs_BT, "k3")
        weight_BT = torch.exp(logprobs_BT - old_logprobs_BT) if kl_importance_weighted else 1.0
        per_token_BT = per_token_BT + kl_coef * weight_BT * kl_BT
    if entropy_coef != 0.0:
        if entropy_BT is None:
            raise ValueError("entropy_coef is set but no entropy_BT was given")
        per_token_BT = per_token_BT - entropy_coef * entropy_BT
    loss = aggregate(per_token_BT, mask_BT, aggregation, normalizer, max_length)
    return loss, GRPOStats(**_token_sums(mask_BT, clipped_BT, kl_BT, entropy_BT))


def ppo_loss(logprobs_BT: torch.Tensor, old_logprobs_BT: torch.Tensor, advantages_BT: torch.Tensor,
             values_BT: torch.Tensor, old_values_BT: torch.Tensor, returns_BT: torch.Tensor, mask_BT: torch.Tensor, *,
             ref_logprobs_BT: torch.Tensor | None = None, kl_coef: float = 0.0, clip_low: float = 0.2,
             clip_high: float | None = None, value_clip: float = 0.2, value_coef: float = 0.5,
             entropy_BT: torch.Tensor | None = None, entropy_coef: float = 0.0,
             normalizer: float | torch.Tensor | None = None) -> tuple[torch.Tensor, PPOStats]:
    """PPO: L = Σ m [ −min(ρ Â, clip(ρ) Â) + β · k3(π ‖ π_ref) − c_H · H ] / N
               + c_V · ½ Σ m · max((V − R)², (V_old + clip(V − V_old, −ε_V, ε_V) − R)²) / N,
    with per-token advantages Â (GAE) and returns R, N = Σ m unless given (the step's action-token count).

    The KL is a loss term only when β ≠ 0 here; a KL already subtracted from the rewards (TL-Training's PPO) is
    passed as β = 0. `entropy_BT` must come from the same forward as `logprobs_BT`.
    """
    per_token_BT, clipped_BT = clipped_policy_loss(logprobs_BT, old_logprobs_BT, advantages_BT, mask_BT,
                                                   clip_low, clip_high)
    kl_BT = None
    if kl_coef != 0.0:
        if ref_logprobs_BT is None:
            raise ValueError("kl_coef is set but no ref_logprobs_BT were given")
        kl_BT = kl_estimate(logprobs_BT, ref_logprobs_BT, "k3")
        per_token_BT = per_token_BT + kl_coef * kl_BT
    if entropy_coef != 0.0:
        if entropy_BT is None:
            raise ValueError("entropy_coef is set but no entropy_BT was given")
        per_token_BT = per_token_BT - entropy_coef * entropy_BT
    policy_loss = aggregate(per_token_BT, mask_BT, "token", normalizer)
    value_loss = clipped_value_loss(values_BT, old_values_BT, returns_BT, mask_BT, value_clip, normalizer)
    stats = PPOStats(**_token_sums(mask_BT, clipped_BT, kl_BT, entropy_BT), policy_loss=policy_loss.detach(),
                     value_loss=value_loss.detach())
    return policy_loss + value_coef * value_loss, stats
