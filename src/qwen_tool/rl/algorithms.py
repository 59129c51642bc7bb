"""RL algorithms as pure tensor functions: advantages, policy/value losses, GAE, KL estimators, entropy.

Shapes are in the names: B sequences (episodes), T token positions, V vocabulary. Every `mask_BT` is the action mask:
1 exactly at tokens the policy sampled, 0 at prompt, padding and environment-inserted tokens (tool results), so those
never receive loss. Aggregations:
- "token" (DAPO, TRL's default): Σ_{b,t} m·ℓ / N with N = Σ m over the whole (accumulated) batch;
- "sequence" (original GRPO): (1/B) Σ_b [Σ_t m·ℓ / Σ_t m];
- "constant" (Dr. GRPO): Σ_{b,t} m·ℓ / (B · L_max), a constant denominator with no length bias.
"""

from __future__ import annotations

from typing import Literal

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
    """Reduce a per-token loss to a scalar (see the module docstring for the three modes).

    normalizer: for "token", the action-token count of the whole accumulated batch (default: this batch's);
    max_length: for "constant", L_max (default: T).
    """
    mask_BT = mask_BT.to(per_token_BT.dtype)
    if mode == "token":
        count = mask_BT.sum() if normalizer is None else torch.as_tensor(normalizer, dtype=per_token_BT.dtype)
        return (per_token_BT * mask_BT).sum() / count.clamp(min=1.0)
    if mode == "sequence":
        return masked_mean(per_token_BT, mask_BT, dim=-1).mean()
    if mode == "constant":
        length = per_token_BT.shape[-1] if max_length is None else max_length
        return (per_token_BT * mask_BT).sum() / (per_token_BT.shape[0] * length)
    raise ValueError(f"unknown aggregation {mode!r}; use token, sequence or constant")


def group_advantages(rewards_B: torch.Tensor, group_size: int, scale: Literal["std", "none"] = "std",
                     eps: float = 1e-4) -> torch.Tensor:
    """GRPO: Â_i = (r_i − mean_g r) / (std_g r + eps) within each group of `group_size` consecutive samples.

    std is the unbiased (Bessel-corrected) standard deviation, as in TRL. scale="none" is Dr. GRPO: Â_i = r_i −
    mean_g r (no division, which otherwise favours questions whose rewards barely vary). A group of one has no peers
    to compare with, so its advantage is the reward itself (baseline 0, scale 1): GRPO becomes REINFORCE.
    """
    if rewards_B.numel() % group_size:
        raise ValueError(f"{rewards_B.numel()} rewards do not split into groups of {group_size}")
    if group_size == 1:
        return rewards_B.clone()
    grouped_GN = rewards_B.view(-1, group_size)
    centred_GN = grouped_GN - grouped_GN.mean(dim=1, keepdim=True)
    if scale == "std":
        centred_GN = centred_GN / (grouped_GN.std(dim=1, keepdim=True) + eps)
    return centred_GN.reshape(-1)


def informative_rows(rewards_B: torch.Tensor, group_size: int) -> torch.Tensor:
    """Indices of the samples whose group's rewards are not all equal (DAPO's dynamic-sampling filter).

    A group whose samples all scored alike has Â_i = 0 for every sample, so its only gradient is the KL term; leaving
    it out of the update saves its forward and backward passes. With group_size 1 (REINFORCE) every row is kept.
    """
    if rewards_B.numel() % group_size:
        raise ValueError(f"{rewards_B.numel()} rewards do not split into groups of {group_size}")
    if group_size == 1:
        return torch.arange(rewards_B.numel())
    grouped_GN = rewards_B.view(-1, group_size)
    varied_G = (grouped_GN != grouped_GN[:, :1]).any(dim=1)
    return varied_G.repeat_interleave(group_size).nonzero().flatten()


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


def grpo_loss(logprobs_BT: torch.Tensor, old_logprobs_BT: torch.Tensor, advantages_B: torch.Tensor,
              mask_BT: torch.Tensor, *, ref_logprobs_BT: torch.Tensor | None = None, kl_coef: float = 0.0,
              clip_low: float = 0.2, clip_high: float | None = None, aggregation: Aggregation = "token",
              normalizer: float | torch.Tensor | None = None, max_length: int | None = None,
              kl_importance_weighted: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO: L = agg_m[ −min(ρ Â, clip(ρ) Â) + β · ρ · k3(π ‖ π_ref) ], the KL as a loss term (TRL's formulation).

    The KL term is weighted by the importance ratio ρ (DeepSeek-V3.2's correction, TRL's default), which makes its
    gradient the unbiased reverse-KL gradient even off-policy; `kl_importance_weighted=False` drops ρ there.
    With TRL's defaults (aggregation "token", β = 0, ε = 0.2) this equals TRL's `GRPOTrainer` loss on the same batch.
    Returns the loss and detached statistics (clip fraction, mean KL).
    """
    per_token_BT, clipped_BT = clipped_policy_loss(logprobs_BT, old_logprobs_BT, advantages_B, mask_BT,
                                                   clip_low, clip_high)
    stats = {"clip_fraction": masked_mean(clipped_BT.to(logprobs_BT.dtype), mask_BT).detach()}
    if kl_coef != 0.0:
        if ref_logprobs_BT is None:
            raise ValueError("kl_coef is set but no ref_logprobs_BT were given")
        kl_BT = kl_estimate(logprobs_BT, ref_logprobs_BT, "k3")
        weight_BT = torch.exp(logprobs_BT - old_logprobs_BT) if kl_importance_weighted else 1.0
        per_token_BT = per_token_BT + kl_coef * weight_BT * kl_BT
        stats["kl"] = masked_mean(kl_BT, mask_BT).detach()
    loss = aggregate(per_token_BT, mask_BT, aggregation, normalizer, max_length)
    return loss, stats


def sft_nll(logprobs_BT: torch.Tensor, mask_BT: torch.Tensor,
            normalizer: float | torch.Tensor | None = None) -> torch.Tensor:
    """The supervised (PPO-ptx) term: L = −Σ_t m_t log π(y_t | y_<t) / N over gold tokens, N = Σ m unless given
    (the token count of the whole accumulated batch, as in `aggregate`)."""
    return aggregate(-logprobs_BT, mask_BT, "token", normalizer)


def clipped_value_loss(values_BT: torch.Tensor, old_values_BT: torch.Tensor, returns_BT: torch.Tensor,
                       mask_BT: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """PPO value loss: ½ · mean_m max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²)."""
    clipped_BT = old_values_BT + torch.clamp(values_BT - old_values_BT, -clip, clip)
    loss_BT = torch.max((values_BT - returns_BT).square(), (clipped_BT - returns_BT).square())
    return 0.5 * masked_mean(loss_BT, mask_BT)


def gae(rewards_BT: torch.Tensor, values_BT: torch.Tensor, mask_BT: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the action tokens only (environment tokens are skipped, not steps):
    δ_t = r_t + γ V_{t'} − V_t,  Â_t = δ_t + γλ Â_{t'},  with t' the next action token (V = Â = 0 past the last).
    Returns (Â_BT, returns_BT = Â + V), both 0 where the mask is 0."""
    advantages_BT = torch.zeros_like(rewards_BT)
    next_value_B = torch.zeros_like(rewards_BT[:, 0])
    next_advantage_B = torch.zeros_like(rewards_BT[:, 0])
    mask_BT = mask_BT.to(rewards_BT.dtype)
    for t in reversed(range(rewards_BT.shape[1])):
        m_B = mask_BT[:, t]
        delta_B = rewards_BT[:, t] + gamma * next_value_B - values_BT[:, t]
        advantage_B = delta_B + gamma * lam * next_advantage_B
        advantages_BT[:, t] = advantage_B * m_B
        next_advantage_B = torch.where(m_B.bool(), advantage_B, next_advantage_B)
        next_value_B = torch.where(m_B.bool(), values_BT[:, t], next_value_B)
    return advantages_BT, (advantages_BT + values_BT) * mask_BT


def kl_shaped_rewards(scores_BT: torch.Tensor, kl_BT: torch.Tensor, mask_BT: torch.Tensor, kl_coef: float,
                      reward_clip: float | None = None) -> torch.Tensor:
    """The paper's PPO reward: r_t = clip(s_t, −c, c) − β · KL_t at action tokens, where s_t holds each turn's score
    at its last token (0 elsewhere): max E[Σ R(t_s) − β · KL(π ‖ π_sft)]."""
    if reward_clip is not None:
        scores_BT = scores_BT.clamp(-reward_clip, reward_clip)
    return (scores_BT - kl_coef * kl_BT) * mask_BT.to(scores_BT.dtype)


def token_logprobs(logits_BTV: torch.Tensor, tokens_BT: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(z / τ)[token] per position, via logsumexp so the (B, T, V) log-softmax is never materialised."""
    logits_BTV = logits_BTV / temperature if temperature != 1.0 else logits_BTV
    picked_BT = logits_BTV.gather(-1, tokens_BT.unsqueeze(-1)).squeeze(-1)
    return picked_BT - torch.logsumexp(logits_BTV, dim=-1)


def entropy_from_logits(logits_BTV: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """H_t = −Σ_v p_v log p_v with p = softmax(z / τ)."""
    logits_BTV = logits_BTV / temperature if temperature != 1.0 else logits_BTV
    logp_BTV = torch.log_softmax(logits_BTV, dim=-1)
    return -(logp_BTV.exp() * logp_BTV).sum(-1)
