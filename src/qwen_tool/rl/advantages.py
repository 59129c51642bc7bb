"""Advantages as pure tensor functions: GRPO's group-relative ones, and PPO's token rewards and GAE.

Shapes are in the names: B sequences (episodes), T token positions, G groups of N samples. A `mask_BT` is the action
mask (1 at sampled tokens only; environment-inserted tokens are skipped, not steps).
"""

from __future__ import annotations

from typing import Literal

import torch


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


def kl_shaped_rewards(scores_BT: torch.Tensor, kl_BT: torch.Tensor, mask_BT: torch.Tensor, kl_coef: float,
                      reward_clip: float | None = None) -> torch.Tensor:
    """The paper's PPO reward: r_t = clip(s_t, −c, c) − β · KL_t at action tokens, where s_t holds each turn's score
    at its last token (0 elsewhere): max E[Σ R(t_s) − β · KL(π ‖ π_sft)]."""
    if reward_clip is not None:
        scores_BT = scores_BT.clamp(-reward_clip, reward_clip)
    return (scores_BT - kl_coef * kl_BT) * mask_BT.to(scores_BT.dtype)


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

