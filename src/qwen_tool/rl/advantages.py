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



def _same_turn_and_gold(turn_mask_BK: torch.Tensor, turn_gold_BK: torch.Tensor, group_size: int) -> torch.Tensor:
    """(G, N, N, K): whether episodes i and j of group g both played turn k and compared it with the same gold step."""
    K = turn_mask_BK.shape[1]
    played_GNK = turn_mask_BK.view(-1, group_size, K).bool()
    gold_GNK = turn_gold_BK.view(-1, group_size, K)
    same_gold_GNNK = gold_GNK.unsqueeze(2) == gold_GNK.unsqueeze(1)
    return same_gold_GNNK & played_GNK.unsqueeze(2) & played_GNK.unsqueeze(1)


def turn_advantages(turn_rewards_BK: torch.Tensor, turn_mask_BK: torch.Tensor, turn_gold_BK: torch.Tensor,
                    episode_rewards_B: torch.Tensor, group_size: int, scale: Literal["std", "none"] = "std",
                    eps: float = 1e-4) -> torch.Tensor:
    """Per-turn credit for GRPO: one advantage per turn k of each episode i, for that turn's sampled tokens.

        Â_{i,k} = (r_{i,k} − μ_{i,k}) / (σ_{i,k} + eps)  +  (R_i − mean_g R) / (std_g R + eps),

    r_{i,k} the reward of turn k, scored against gold step s_{i,k} (`ToolEnv.gold_index`: step k until the episode's
    first model error or tool failure, then the step being retried); R_i the episode-level reward (coherence,
    efficiency); μ_{i,k} and σ_{i,k} (unbiased) are over S_{i,k}, the episodes j of i's group that played turn k
    against the same gold step (s_{j,k} = s_{i,k}); the second term is `group_advantages` of R. scale="none" drops
    both divisions (Dr. GRPO).

    Why per turn index and gold step: siblings at turn k that none erred before face the same step of the same task,
    so their scores are each other's fair baseline; one that erred is retrying an earlier step, a different question,
    and is compared only with siblings retrying that step at that turn. Pooling every turn of the group would compare
    a hard call against an easy closing answer, and reward the answer for being easy. In a replay (`rl.replay`) a
    sibling reaches turn k only by matching every earlier step, so s_{i,k} = k. A turn with no sibling in S_{i,k} has
    nothing to compare with: its turn term is 0 (with group_size 1, REINFORCE, it is r_{i,k}). The credit is myopic by
    design: a turn is not paid for later turns' rewards, only the episode term (the end state) reaches every turn. A
    single-turn group with no episode reward gets exactly `group_advantages` of its rewards.
    Returns (B, K), 0 at turns not played.
    """
    if turn_rewards_BK.shape[0] % group_size:
        raise ValueError(f"{turn_rewards_BK.shape[0]} episodes do not split into groups of {group_size}")
    mask_BK = turn_mask_BK.to(turn_rewards_BK.dtype)
    episode_B = group_advantages(episode_rewards_B, group_size, scale, eps)
    if group_size == 1:
        return (turn_rewards_BK + episode_B.unsqueeze(1)) * mask_BK
    K = turn_rewards_BK.shape[1]
    same_GNNK = _same_turn_and_gold(turn_mask_BK, turn_gold_BK, group_size).to(turn_rewards_BK.dtype)
    rewards_G1NK = turn_rewards_BK.view(-1, 1, group_size, K)
    count_GNK = same_GNNK.sum(2)
    mean_GNK = (same_GNNK * rewards_G1NK).sum(2) / count_GNK.clamp(min=1)
    centred_GNK = rewards_G1NK.squeeze(1) - mean_GNK
    if scale == "std":
        spread_GNK = (same_GNNK * (rewards_G1NK - mean_GNK.unsqueeze(2)).square()).sum(2)
        centred_GNK = centred_GNK / ((spread_GNK / (count_GNK - 1).clamp(min=1)).sqrt() + eps)
    turn_BK = (centred_GNK * (count_GNK >= 2)).reshape(-1, K)
    return (turn_BK + episode_B.unsqueeze(1)) * mask_BK


def varied_turn_rows(turn_rewards_BK: torch.Tensor, turn_mask_BK: torch.Tensor, turn_gold_BK: torch.Tensor,
                     episode_rewards_B: torch.Tensor, group_size: int) -> torch.Tensor:
    """`informative_rows` for per-turn credit: the episodes of groups where the rewards of some turn index and gold step
    (among the episodes that played it against that step) or the episode rewards differ; the other groups have Â = 0
    at every turn."""
    if group_size == 1:
        return torch.arange(turn_rewards_BK.shape[0])
    K = turn_rewards_BK.shape[1]
    same_GNNK = _same_turn_and_gold(turn_mask_BK, turn_gold_BK, group_size)
    rewards_G1NK = turn_rewards_BK.view(-1, 1, group_size, K)
    highest_GNK = rewards_G1NK.masked_fill(~same_GNNK, float("-inf")).amax(2)
    lowest_GNK = rewards_G1NK.masked_fill(~same_GNNK, float("inf")).amin(2)
    turns_varied_G = (highest_GNK > lowest_GNK).flatten(1).any(1)
    episodes_GN = episode_rewards_B.view(-1, group_size)
    varied_G = turns_varied_G | (episodes_GN != episodes_GN[:, :1]).any(1)
    return varied_G.repeat_interleave(group_size).nonzero().flatten()
