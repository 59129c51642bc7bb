"""Algorithms against hand-derived values (derivations in the comments), and the REINFORCE reduction."""

from __future__ import annotations

import math

import pytest
import torch

from qwen_tool.rl.advantages import gae, group_advantages, informative_rows, kl_shaped_rewards
from qwen_tool.rl.losses import (
    aggregate,
    clipped_policy_loss,
    clipped_value_loss,
    grpo_loss,
    kl_estimate,
    ppo_loss,
    sft_nll,
)
from qwen_tool.rl.policy import token_logprobs


def test_informative_rows_keeps_groups_whose_rewards_differ():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5])
    assert informative_rows(rewards, 2).tolist() == [2, 3]
    assert informative_rows(rewards, 3).tolist() == [0, 1, 2, 3, 4, 5]  # each group of 3 holds a differing reward
    assert informative_rows(torch.tensor([1.0, 1.0]), 1).tolist() == [0, 1]  # REINFORCE: nothing to compare
    with pytest.raises(ValueError):
        informative_rows(rewards, 4)


def test_group_advantages_std_and_dr_grpo():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # Group [1, 0]: mean 0.5, unbiased std sqrt((0.25 + 0.25) / 1) = 0.70711 → ±0.5 / (0.70711 + 1e-4).
    # Group [0, 0]: nothing to prefer → 0.
    expected = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert group_advantages(rewards, 2).tolist() == pytest.approx([expected, -expected, 0.0, 0.0])
    assert group_advantages(rewards, 2, scale="none").tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])
    assert group_advantages(rewards, 1).tolist() == [1.0, 0.0, 0.0, 0.0]  # REINFORCE: the reward itself
    with pytest.raises(ValueError):
        group_advantages(rewards, 3)


def test_clipped_policy_loss_four_quadrants():
    # ρ = 1.5, Â = +1: min(1.5, 1.2) = 1.2 → −1.2, clipped.   ρ = 1.5, Â = −1: min(−1.5, −1.2) = −1.5 → 1.5.
    # ρ = 0.5, Â = +1: min(0.5, 0.8) = 0.5 → −0.5.            ρ = 0.5, Â = −1: min(−0.5, −0.8) = −0.8 → 0.8, clipped.
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]]))
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, clipped = clipped_policy_loss(new, old, adv, torch.ones(1, 4))
    assert loss.tolist()[0] == pytest.approx([-1.2, 1.5, -0.5, 0.8])
    assert clipped.tolist()[0] == [True, False, False, True]
    # Asymmetric (DAPO clip-higher, ε_high = 0.6): ρ = 1.5 is inside [0.8, 1.6], so −1.5 and not clipped.
    loss_high, _ = clipped_policy_loss(new, old, adv, torch.ones(1, 4), clip_high=0.6)
    assert loss_high[0, 0].item() == pytest.approx(-1.5)


def test_aggregations():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(per_token, mask, "token").item() == pytest.approx(10 / 4)  # (1+2+3+4) / 4 tokens
    assert aggregate(per_token, mask, "sequence").item() == pytest.approx(3.0)  # mean(6/3, 4/1)
    assert aggregate(per_token, mask, "constant").item() == pytest.approx(10 / 6)  # 10 / (B=2 · T=3)
    assert aggregate(per_token, mask, "constant", max_length=5).item() == pytest.approx(1.0)  # 10 / (2 · 5)
    assert aggregate(per_token, mask, "token", normalizer=8).item() == pytest.approx(10 / 8)


def test_kl_estimators():
    # π = 0.5, π_ref = 0.25: d = ln(0.25/0.5) = −ln 2. k1 = ln 2, k2 = (ln 2)²/2, k3 = 0.5 + ln 2 − 1.
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    ln2 = math.log(2)
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(ln2)
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(ln2**2 / 2)
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 + ln2 - 1)


def test_clipped_value_loss():
    # V = 1.0, V_old = 0.5, R = 2: unclipped (1 − 2)² = 1; clipped V = 0.5 + 0.2 = 0.7 → 1.69; ½ · max = 0.845.
    one = torch.ones(1, 1)
    assert clipped_value_loss(one, 0.5 * one, 2 * one, one, clip=0.2).item() == pytest.approx(0.845)


def test_gae_skips_environment_tokens():
    # r = [0, 0, 1], V = [0.5, 0.6, 0.7], the middle token is a tool result (mask 0), γ = 1, λ = 0.5.
    # t=2: δ = 1 + 0 − 0.7 = 0.3, Â = 0.3.  t=1: skipped.  t=0: δ = 0 + V_2 − 0.5 = 0.2, Â = 0.2 + 0.5 · 0.3 = 0.35.
    adv, ret = gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.7]]), torch.tensor([[1, 0, 1]]),
                   gamma=1.0, lam=0.5)
    assert adv.tolist()[0] == pytest.approx([0.35, 0.0, 0.3])
    assert ret.tolist()[0] == pytest.approx([0.85, 0.0, 1.0])
    # γ = 0.9, λ = 1, one step of two tokens, r = [0, 1], V = 0: Â_1 = 1, Â_0 = 0 + 0.9·0 − 0 + 0.9 · 1 = 0.9.
    adv2, _ = gae(torch.tensor([[0.0, 1.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.9, lam=1.0)
    assert adv2.tolist()[0] == pytest.approx([0.9, 1.0])


def test_sft_nll_is_the_mean_negative_log_likelihood_of_the_gold_tokens():
    logprobs = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -9.0, -9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert sft_nll(logprobs, mask).item() == pytest.approx((1.0 + 2.0 + 0.5) / 3)
    # a micro-batch's share of a 7-token accumulated batch
    assert sft_nll(logprobs, mask, normalizer=7).item() == pytest.approx(3.5 / 7)


def test_kl_shaped_rewards():
    # score 7 clipped to 5 at the last token; −β · KL = −0.4 · 0.5 = −0.2 everywhere; env token (mask 0) gets 0.
    scores = torch.tensor([[0.0, 0.0, 7.0]])
    out = kl_shaped_rewards(scores, torch.full((1, 3), 0.5), torch.tensor([[1, 0, 1]]), kl_coef=0.4, reward_clip=5)
    assert out.tolist()[0] == pytest.approx([-0.2, 0.0, 4.8])


def test_grpo_with_one_sample_per_group_and_no_kl_is_reinforce():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, requires_grad=True)
    tokens = torch.randint(0, 11, (3, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 1]])
    rewards = torch.tensor([1.0, -0.5, 2.0])
    logp = token_logprobs(logits, tokens)
    loss, _ = grpo_loss(logp, logp.detach(), group_advantages(rewards, 1), mask, kl_coef=0.0)
    (grad,) = torch.autograd.grad(loss, logits)
    # REINFORCE: ∇ −(1/N) Σ_b r_b Σ_t m log π(a_t) with N the action-token count (on-policy, ρ = 1, nothing clipped).
    logits2 = logits.detach().clone().requires_grad_()
    reinforce = -(rewards[:, None] * token_logprobs(logits2, tokens) * mask).sum() / mask.sum()
    (grad2,) = torch.autograd.grad(reinforce, logits2)
    assert torch.allclose(grad, grad2, atol=1e-7)
    assert loss.item() == pytest.approx(-(rewards[:, None] * mask).sum().item() / mask.sum().item())


def test_masked_tokens_get_zero_gradient():
    torch.manual_seed(1)
    logp = torch.randn(2, 6).requires_grad_()
    ref = torch.randn(2, 6)
    mask = torch.tensor([[1, 1, 0, 0, 1, 1], [0, 1, 1, 1, 0, 0]])
    for aggregation in ("token", "sequence", "constant"):
        loss, _ = grpo_loss(logp, logp.detach() + 0.1, torch.tensor([1.0, -1.0]), mask, ref_logprobs_BT=ref,
                            kl_coef=0.1, aggregation=aggregation)
        (grad,) = torch.autograd.grad(loss, logp)
        assert torch.all(grad[mask == 0] == 0) and torch.all(grad[mask == 1] != 0), aggregation


def test_aggregations_with_the_whole_steps_denominator():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # sequence: (6/3 + 4/1) = 6 over the step's 4 episodes; constant: 10 over 2 episodes × L = 8.
    assert aggregate(per_token, mask, "sequence", normalizer=4).item() == pytest.approx(1.5)
    assert aggregate(per_token, mask, "constant", normalizer=16).item() == pytest.approx(10 / 16)
    # Micro-batches with the step's N add up to the step's aggregate, in every mode.
    for mode, whole_n in (("token", 4), ("sequence", 2), ("constant", 6)):
        halves = sum(aggregate(per_token[b:b + 1, :], mask[b:b + 1, :], mode, normalizer=whole_n) for b in (0, 1))
        assert halves.item() == pytest.approx(aggregate(per_token, mask, mode).item()), mode


def test_grpo_loss_entropy_bonus():
    # On-policy (ρ = 1), Â = 1, H = [0.5, 1.5], c_H = 0.1: ℓ = −1 − 0.1 · H = [−1.05, −1.15]; token mean −1.1.
    logp = torch.zeros(1, 2)
    entropy = torch.tensor([[0.5, 1.5]], requires_grad=True)
    loss, stats = grpo_loss(logp, logp, torch.tensor([1.0]), torch.ones(1, 2), entropy_BT=entropy, entropy_coef=0.1)
    assert loss.item() == pytest.approx(-1.1)
    (grad,) = torch.autograd.grad(loss, entropy)
    assert grad.tolist()[0] == pytest.approx([-0.05, -0.05])  # −c_H / N per token: the bonus raises entropy
    assert stats.entropy == pytest.approx(1.0) and stats.clip_fraction == 0.0 and stats.kl == 0.0
    with pytest.raises(ValueError, match="entropy_coef"):
        grpo_loss(logp, logp, torch.tensor([1.0]), torch.ones(1, 2), entropy_coef=0.1)


def test_ppo_loss_by_hand():
    # ρ = 1, Â = [1, −2]: policy ℓ = [−1, 2]; with c_H = 0.1 and H = [1, 3]: [−1.1, 1.7], sum 0.6.
    # Value: t0 V = 1, V_old = 0.5, R = 2: max((1 − 2)², (0.7 − 2)²) = 1.69; t1 V = V_old = 0, R = 1: 1. Sum 2.69.
    # N = 2: 0.6 / 2 + 0.5 · ½ · 2.69 / 2 = 0.3 + 0.33625 = 0.63625.  N = 4 (a micro-batch of a 4-token step): half.
    logp = torch.zeros(1, 2)
    args = (logp, logp, torch.tensor([[1.0, -2.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]),
            torch.tensor([[2.0, 1.0]]), torch.ones(1, 2))
    kwargs = {"value_clip": 0.2, "value_coef": 0.5, "entropy_BT": torch.tensor([[1.0, 3.0]]), "entropy_coef": 0.1}
    loss, stats = ppo_loss(*args, **kwargs)
    assert loss.item() == pytest.approx(0.63625)
    assert stats.policy_loss.item() == pytest.approx(0.3) and stats.value_loss.item() == pytest.approx(0.6725)
    assert stats.entropy == pytest.approx(2.0)
    assert ppo_loss(*args, **kwargs, normalizer=4)[0].item() == pytest.approx(0.63625 / 2)
    # The KL as a loss term: π = 0.5, π_ref = 0.25 at both tokens: k3 = 0.5 + ln 2 − 1 per token, β = 0.5.
    half = torch.full((1, 2), math.log(0.5))
    k3 = 0.5 + math.log(2) - 1
    with_kl, kl_stats = ppo_loss(half, half, *args[2:], **kwargs, ref_logprobs_BT=torch.full((1, 2), math.log(0.25)),
                                 kl_coef=0.5)
    assert with_kl.item() == pytest.approx(0.63625 + 0.5 * k3)
    assert kl_stats.kl == pytest.approx(k3)


def test_loss_stats_of_micro_batches_add_up_to_the_whole_batch():
    torch.manual_seed(2)
    logp, old = torch.randn(4, 5), torch.randn(4, 5)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 1], [1, 0, 0, 0, 0]])
    advantages, ref = torch.tensor([1.0, -1.0, 0.5, 2.0]), torch.randn(4, 5)
    whole, whole_stats = grpo_loss(logp, old, advantages, mask, ref_logprobs_BT=ref, kl_coef=0.1)
    parts = [grpo_loss(logp[rows], old[rows], advantages[rows], mask[rows], ref_logprobs_BT=ref[rows], kl_coef=0.1,
                       normalizer=mask.sum()) for rows in ([0, 1], [2, 3])]
    summed = parts[0][1] + parts[1][1]
    assert (parts[0][0] + parts[1][0]).item() == pytest.approx(whole.item())
    assert (summed.clip_fraction, summed.kl) == pytest.approx((whole_stats.clip_fraction, whole_stats.kl))
