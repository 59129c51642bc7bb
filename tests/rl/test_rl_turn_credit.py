"""Per-turn credit (`grpo.credit: turn`): turn advantages by hand, token by token, the single-turn equivalence, the
uniform-group filter, the update, and the config checks."""

from __future__ import annotations

import math

import pytest
import torch

from qwen_tool.config import ConfigError, RLTrainingConfig, load_config
from qwen_tool.rl.advantages import group_advantages, turn_advantages, varied_turn_rows
from qwen_tool.rl.batch import collate
from qwen_tool.rl.rollout import Rollout
from qwen_tool.testing import tiny_model

EPS = 1e-4


def _episode(completion: list[int], action_mask: list[int], turn_ends: list[int], turn_rewards: list[float],
             episode_reward: float = 0.0, turn_golds: list[int] | None = None) -> Rollout:
    """An episode whose turn k was scored against gold step k unless `turn_golds` says otherwise."""
    return Rollout("t", prompt_ids=[5, 6], completion_ids=completion, action_mask=action_mask,
                   old_logprobs=[-1.0 if m else 0.0 for m in action_mask], turn_ends=turn_ends,
                   turn_rewards=turn_rewards, episode_reward=episode_reward, turn_golds=turn_golds or [])


def _credit(batch, *args, **kwargs) -> torch.Tensor:
    return turn_advantages(batch.turn_rewards_BK, batch.turn_mask_BK, batch.turn_gold_BK, batch.episode_rewards_B,
                           *args, **kwargs)


def _varied(batch, group_size: int) -> torch.Tensor:
    return varied_turn_rows(batch.turn_rewards_BK, batch.turn_mask_BK, batch.turn_gold_BK, batch.episode_rewards_B,
                            group_size)


def _group() -> list[Rollout]:
    """One group of three: E0 two turns [1, 0.5] (episode reward 1), E1 two turns [−1, 1.5], E2 one turn [0] (it
    answered at once). Sampled ids are 1 in the action mask, the environment's reply 0."""
    return [
        _episode([11, 12, 90, 91, 13], [1, 1, 0, 0, 1], [1, 4], [1.0, 0.5], episode_reward=1.0),
        _episode([21, 92, 22, 23], [1, 0, 1, 1], [0, 3], [-1.0, 1.5]),
        _episode([31, 32, 33], [1, 1, 1], [2], [0.0]),
    ]


def _hand_advantages() -> list[list[float]]:
    # Turn 0, all three played it: r = (1, −1, 0), μ = 0, σ² = (1 + 1 + 0) / 2 = 1 → (1, −1, 0) / (1 + eps).
    # Turn 1, E0 and E1 played it: r = (0.5, 1.5), μ = 1, σ² = (0.25 + 0.25) / 1 = 0.5 → (∓0.5) / (√0.5 + eps).
    # Episode term: R = (1, 0, 0), μ = 1/3, σ² = (4/9 + 1/9 + 1/9) / 2 = 1/3 → (2/3, −1/3, −1/3) / (√(1/3) + eps).
    t0 = [1 / (1 + EPS), -1 / (1 + EPS), 0.0]
    t1 = [-0.5 / (math.sqrt(0.5) + EPS), 0.5 / (math.sqrt(0.5) + EPS)]
    ep = [(2 / 3) / (math.sqrt(1 / 3) + EPS), (-1 / 3) / (math.sqrt(1 / 3) + EPS), (-1 / 3) / (math.sqrt(1 / 3) + EPS)]
    return [[t0[0] + ep[0], t1[0] + ep[0]], [t0[1] + ep[1], t1[1] + ep[1]], [t0[2] + ep[2], 0.0]]


def test_turn_advantages_by_hand_token_by_token():
    batch = collate(_group(), pad_id=0)
    advantages_BK = _credit(batch, 3, eps=EPS)
    (a0, a1), (b0, b1), (c0, _) = _hand_advantages()
    assert advantages_BK.tolist() == [pytest.approx([a0, a1]), pytest.approx([b0, b1]), pytest.approx([c0, 0.0])]
    # Each sampled id carries its own turn's advantage; the environment's ids (mask 0) and the padding carry none.
    tokens_BC = advantages_BK.gather(1, batch.turn_index_BC) * batch.action_mask_BC
    assert tokens_BC.tolist() == [pytest.approx([a0, a0, 0.0, 0.0, a1]),
                                  pytest.approx([b0, 0.0, b1, b1, 0.0]),
                                  pytest.approx([c0, c0, c0, 0.0, 0.0])]


def test_dr_grpo_scale_drops_both_divisions():
    batch = collate(_group(), pad_id=0)
    advantages_BK = _credit(batch, 3, "none")
    # turn 0: (1, −1, 0) − 0; turn 1: (0.5, 1.5) − 1; episode: (1, 0, 0) − 1/3
    assert advantages_BK.tolist() == [pytest.approx([1 + 2 / 3, -0.5 + 2 / 3]),
                                      pytest.approx([-1 - 1 / 3, 0.5 - 1 / 3]), pytest.approx([-1 / 3, 0.0])]


@pytest.mark.parametrize("scale", ["std", "none"])
def test_single_turn_groups_get_the_episode_credit_advantage(scale):
    rewards = [0.3, -1.2, 2.0, 0.3, 1.0, 1.0]
    rollouts = [_episode([40 + i, 41], [1, 1], [1], [r]) for i, r in enumerate(rewards)]
    batch = collate(rollouts, pad_id=0)
    per_turn = _credit(batch, 3, scale)
    per_episode = group_advantages(batch.returns_B, 3, scale)
    assert per_turn[:, 0].tolist() == pytest.approx(per_episode.tolist(), abs=1e-6)


def test_a_group_of_one_is_reinforce():
    batch = collate(_group(), pad_id=0)
    advantages_BK = _credit(batch, 1)
    assert advantages_BK.tolist() == [[2.0, 1.5], [-1.0, 1.5], [0.0, 0.0]]  # r_k + R, 0 at turns not played


def test_groups_whose_turns_differ_are_kept_though_their_returns_agree():
    # Group a: returns 1.5 and 1.5, but turn 0 scored 1 vs 0.5: informative per turn, uniform per episode.
    # Group b: identical turns, identical episode rewards: dropped. Group c: only the episode rewards differ: kept.
    rollouts = [_episode([1, 2], [1, 1], [0, 1], [1.0, 0.5]), _episode([3, 4], [1, 1], [0, 1], [0.5, 1.0]),
                _episode([5], [1], [0], [0.2]), _episode([6], [1], [0], [0.2]),
                _episode([7], [1], [0], [0.2], episode_reward=1.0), _episode([8], [1], [0], [0.2])]
    batch = collate(rollouts, pad_id=0)
    rows = _varied(batch, 2)
    assert rows.tolist() == [0, 1, 4, 5]
    # a turn only one episode played (turn 1 of group c's first episode would be) compares with nothing
    lone = [_episode([1, 2], [1, 1], [0, 1], [0.2, 3.0]), _episode([3], [1], [0], [0.2])]
    batch = collate(lone, pad_id=0)
    assert _varied(batch, 2).tolist() == []


def test_a_turn_retrying_an_earlier_gold_step_is_compared_only_with_its_own_step():
    """Turn 1 of E1 retries gold step 0 after an error at turn 0; E0 and E2 face step 1 at turn 1.
    Turn 0, all at step 0: r = (1, −1, 0) → (1, −1, 0) / (1 + eps), as in `_hand_advantages`.
    Turn 1, step 1: E0 and E2, r = (0.5, 1.5), μ = 1, σ² = 0.5 → ∓0.5 / (√0.5 + eps); step 0: E1 alone → 0.
    (Pooled by turn index alone, E1's 1.0 would join them: μ = 1, σ² = 0.25 → E0 −1 instead of −0.707.)
    No episode reward: the episode term is 0."""
    rollouts = [_episode([11, 12], [1, 1], [0, 1], [1.0, 0.5], turn_golds=[0, 1]),
                _episode([21, 22], [1, 1], [0, 1], [-1.0, 1.0], turn_golds=[0, 0]),
                _episode([31, 32], [1, 1], [0, 1], [0.0, 1.5], turn_golds=[0, 1])]
    batch = collate(rollouts, pad_id=0)
    advantages_BK = _credit(batch, 3, eps=EPS)
    step1 = 0.5 / (math.sqrt(0.5) + EPS)
    assert advantages_BK.tolist() == [pytest.approx([1 / (1 + EPS), -step1]), pytest.approx([-1 / (1 + EPS), 0.0]),
                                      pytest.approx([0.0, step1])]
    assert turn_advantages(batch.turn_rewards_BK, batch.turn_mask_BK, batch.turn_gold_BK, batch.episode_rewards_B,
                           3, "none").tolist() == [pytest.approx([1.0, -0.5]), pytest.approx([-1.0, 0.0]),
                                                   pytest.approx([0.0, 0.5])]


def test_turns_that_differ_only_across_gold_steps_carry_no_signal():
    # Turn 0 alike; turn 1 differs, but the two episodes scored it against different gold steps: dropped.
    split = [_episode([1, 2], [1, 1], [0, 1], [0.2, 1.0], turn_golds=[0, 1]),
             _episode([3, 4], [1, 1], [0, 1], [0.2, -1.0], turn_golds=[0, 0])]
    batch = collate(split, pad_id=0)
    assert varied_turn_rows(batch.turn_rewards_BK, batch.turn_mask_BK, batch.turn_gold_BK, batch.episode_rewards_B,
                            2).tolist() == []
    same = [_episode([1, 2], [1, 1], [0, 1], [0.2, 1.0], turn_golds=[0, 1]),
            _episode([3, 4], [1, 1], [0, 1], [0.2, -1.0], turn_golds=[0, 1])]
    batch = collate(same, pad_id=0)
    assert varied_turn_rows(batch.turn_rewards_BK, batch.turn_mask_BK, batch.turn_gold_BK, batch.episode_rewards_B,
                            2).tolist() == [0, 1]


def test_the_update_trains_each_turn_on_its_own_advantage():
    """One GRPO step with credit turn equals one step whose loss takes the hand-derived advantages token by token."""
    from accelerate import Accelerator

    from qwen_tool.rl.losses import grpo_loss
    from qwen_tool.rl.policy import completion_forward
    from qwen_tool.rl.updates import RLModels, grpo_update

    overrides = ["samples_per_prompt=3", "kl_coef=0", "learning_rate=1e-2", "episodes_per_forward=2"]
    cfg = load_config(RLTrainingConfig, None, [*overrides, "grpo.credit=turn"])
    policy = tiny_model(seed=1)
    models = RLModels(policy, torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate))
    grpo_update(models, collate(_group(), 0), cfg, Accelerator(cpu=True))

    reference = tiny_model(seed=1)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=cfg.learning_rate)
    batch = collate(_group(), 0)
    (a0, a1), (b0, b1), (c0, _) = _hand_advantages()
    advantages_BC = torch.tensor([[a0, a0, 0, 0, a1], [b0, 0, b1, b1, 0], [c0, c0, c0, 0, 0]])
    out = completion_forward(reference, batch.prompt_ids_BP, batch.prompt_mask_BP, batch.completion_ids_BC,
                             batch.completion_mask_BC)
    loss, _ = grpo_loss(out.logprobs_BC, batch.old_logprobs_BC, advantages_BC, batch.action_mask_BC)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), cfg.max_grad_norm)
    optimizer.step()
    for trained, by_hand in zip(policy.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(trained, by_hand, atol=1e-6)


def test_turn_credit_refuses_what_it_ignores():
    with pytest.raises(ConfigError, match="turn_return"):
        load_config(RLTrainingConfig, None, ["grpo.credit=turn", "turn_return=mean"])
    with pytest.raises(ConfigError, match="grpo.credit"):
        load_config(RLTrainingConfig, None, ["algo=ppo", "grpo.credit=turn"])
    with pytest.raises(ConfigError, match="episode, turn|'episode' or 'turn'"):
        load_config(RLTrainingConfig, None, ["grpo.credit=turns"])
