"""Rollouts as padded tensors in the policy's layout, and the micro-batches an update runs them in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from qwen_tool.rl.rollout import Rollout


@dataclass
class RolloutBatch:
    """Rollouts as padded tensors in the policy layout (left-padded prompts, right-padded completions)."""

    prompt_ids_BP: torch.Tensor
    prompt_mask_BP: torch.Tensor
    completion_ids_BC: torch.Tensor
    completion_mask_BC: torch.Tensor
    """1 at every real completion id (sampled or inserted): what attention sees."""
    action_mask_BC: torch.Tensor
    """1 only at sampled ids: what receives loss."""
    old_logprobs_BC: torch.Tensor
    scores_BC: torch.Tensor
    """Each turn's reward (times the rollout's turn weight) at its last sampled id, the episode reward added at the
    final one (PPO's sparse reward); a row sums to its return."""
    returns_B: torch.Tensor
    turn_rewards_BK: torch.Tensor
    """Each episode's turn rewards by turn index k (as scored, before any turn weight), 0 past its last turn."""
    turn_mask_BK: torch.Tensor
    """1 at the turns an episode played."""
    turn_gold_BK: torch.Tensor
    """The gold step each turn was scored against, −1 past an episode's last turn."""
    turn_index_BC: torch.Tensor
    """The turn each completion id belongs to: its sampled ids, and the environment's reply before them."""
    episode_rewards_B: torch.Tensor
    """The episode-level reward (coherence, efficiency) of each episode."""

    def to(self, device: torch.device | str) -> RolloutBatch:
        return RolloutBatch(**{k: v.to(device) for k, v in self.__dict__.items()})

    def select(self, rows: Sequence[int] | torch.Tensor) -> RolloutBatch:
        """A micro-batch, trimmed to its own widest prompt and completion."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        parts = {k: v[rows] for k, v in self.__dict__.items()}
        keep_P = parts["prompt_mask_BP"].sum(0) > 0
        keep_C = parts["completion_mask_BC"].sum(0) > 0
        for key in ("prompt_ids_BP", "prompt_mask_BP"):
            parts[key] = parts[key][:, keep_P]
        for key in ("completion_ids_BC", "completion_mask_BC", "action_mask_BC", "old_logprobs_BC", "scores_BC",
                    "turn_index_BC"):
            parts[key] = parts[key][:, keep_C]
        return RolloutBatch(**parts)


def collate(rollouts: Sequence[Rollout], pad_id: int) -> RolloutBatch:
    """Pad rollouts into a `RolloutBatch`."""
    B = len(rollouts)
    P = max(len(r.prompt_ids) for r in rollouts)
    C = max(1, max(len(r.completion_ids) for r in rollouts))
    prompt_ids = torch.full((B, P), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((B, P), dtype=torch.long)
    completion_ids = torch.full((B, C), pad_id, dtype=torch.long)
    completion_mask = torch.zeros((B, C), dtype=torch.long)
    action_mask = torch.zeros((B, C), dtype=torch.long)
    old_logprobs = torch.zeros((B, C))
    scores = torch.zeros((B, C))
    K = max(1, max(r.turns for r in rollouts))
    turn_rewards = torch.zeros((B, K))
    turn_mask = torch.zeros((B, K), dtype=torch.long)
    turn_gold = torch.full((B, K), -1, dtype=torch.long)
    turn_index = torch.zeros((B, C), dtype=torch.long)
    for b, r in enumerate(rollouts):
        turn_rewards[b, :r.turns] = torch.tensor(r.turn_rewards, dtype=torch.float32)
        turn_mask[b, :r.turns] = 1
        turn_gold[b, :r.turns] = torch.tensor(r.turn_golds or range(r.turns), dtype=torch.long)
        prompt_ids[b, P - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
        prompt_mask[b, P - len(r.prompt_ids):] = 1
        n = len(r.completion_ids)
        if n:
            completion_ids[b, :n] = torch.tensor(r.completion_ids)
            completion_mask[b, :n] = 1
            action_mask[b, :n] = torch.tensor(r.action_mask)
            old_logprobs[b, :n] = torch.tensor(r.old_logprobs)
            for end, reward in zip(r.turn_ends, r.turn_rewards, strict=True):
                scores[b, end] += r.turn_weight * reward
            scores[b, r.turn_ends[-1]] += r.episode_reward
            # position j belongs to the first turn whose last sampled id is at or after it
            turn_index[b, :n] = torch.searchsorted(torch.tensor(r.turn_ends), torch.arange(n)).clamp(max=K - 1)
    returns = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
    episode_rewards = torch.tensor([r.episode_reward for r in rollouts], dtype=torch.float32)
    return RolloutBatch(prompt_ids, prompt_mask, completion_ids, completion_mask, action_mask, old_logprobs, scores,
                        returns, turn_rewards, turn_mask, turn_gold, turn_index, episode_rewards)


def micro_batches(batch: RolloutBatch, per_forward: int) -> list[tuple[list[int], RolloutBatch]]:
    """The batch in consecutive micro-batches of at most `per_forward` episodes: (row indices, micro-batch)."""
    size = batch.returns_B.shape[0]
    groups = [list(range(start, min(start + per_forward, size))) for start in range(0, size, per_forward)]
    return [(rows, batch.select(rows)) for rows in groups]
