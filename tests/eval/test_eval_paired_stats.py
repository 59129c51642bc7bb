"""Paired statistics against values derived by hand (in the comments) and against properties any bootstrap must have."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qwen_tool.eval.paired_stats import (
    discordant_counts,
    mcnemar_exact_p,
    mean_and_spread,
    metric_value,
    paired_bootstrap,
    resample_counts,
    strata_codes,
)


@pytest.mark.parametrize(
    ("only_a", "only_b", "expected"),
    [
        (0, 0, 1.0),  # no discordant pair: no evidence
        (0, 5, 2 / 32),  # n = 5: 2 · C(5,0) / 2^5 = 0.0625
        (1, 4, 2 * (1 + 5) / 32),  # 2 · (C(5,0) + C(5,1)) / 2^5 = 0.375
        (0, 6, 2 / 64),  # 0.03125: six to none is significant at 5 %, five to none is not
        (2, 2, 1.0),  # 2 · (1 + 4 + 6) / 16 > 1, capped
        (3, 10, 2 * (1 + 13 + 78 + 286) / 2**13),  # 756 / 8192 = 0.0923
    ],
)
def test_mcnemar_exact_p_by_hand(only_a: int, only_b: int, expected: float) -> None:
    assert mcnemar_exact_p(only_a, only_b) == pytest.approx(expected, abs=1e-15)
    assert mcnemar_exact_p(only_b, only_a) == pytest.approx(expected, abs=1e-15)  # two-sided: symmetric


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        mcnemar_exact_p(-1, 3)


def test_discordant_counts() -> None:
    # item 2: A right, B wrong; items 3 and 4: B right, A wrong; item 1 agrees.
    assert discordant_counts(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 1])) == (1, 2)


def test_metric_value_ratio_of_sums_and_strata() -> None:
    num, den = np.array([[1.0, 0.0, 1.0]]), np.ones((1, 3))
    # one stratum: (1 + 0 + 1) / 3
    assert metric_value(num, den, strata_codes(None, 3)) == pytest.approx([2 / 3])
    # strata x = {1, 2}, y = {3}: (1/2 + 1/1) / 2 = 0.75, not the pooled 2/3
    assert metric_value(num, den, strata_codes(np.array(["x", "x", "y"]), 3)) == pytest.approx([0.75])
    # a ratio of sums: (1 + 2) / (2 + 2 + 4) = 3/8; an empty denominator scores 0
    assert metric_value(
        np.array([[1.0, 2.0, 0.0]]), np.array([[2.0, 2.0, 4.0]]), strata_codes(None, 3)
    ) == pytest.approx([3 / 8])
    assert metric_value(np.zeros((1, 2)), np.zeros((1, 2)), strata_codes(None, 2)) == pytest.approx([0.0])
    # weights = draw counts: item 1 twice, item 2 never, item 3 once -> (2·1 + 1) / 3 = 1
    weighted = metric_value(num, den, strata_codes(None, 3), np.array([[2.0, 0.0, 1.0]]))
    assert weighted.shape == (1, 1) and weighted[0, 0] == pytest.approx(1.0)


def test_strata_codes_number_by_first_appearance() -> None:
    assert strata_codes(np.array(["b", "a", "b", "c"]), 4).tolist() == [0, 1, 0, 2]


def test_resample_counts_keep_stratum_sizes() -> None:
    codes = strata_codes(np.array(["a"] * 3 + ["b"] * 5), 8)
    counts = resample_counts(codes, 200, np.random.default_rng(1))
    assert (counts[:, :3].sum(axis=1) == 3).all() and (counts[:, 3:].sum(axis=1) == 5).all()
    assert counts.min() >= 0 and len({tuple(row) for row in counts}) > 1  # draws vary


def test_identical_runs_give_a_zero_interval() -> None:
    correct = np.random.default_rng(0).integers(0, 2, size=(1, 50)).astype(float)
    interval = paired_bootstrap(correct, np.ones_like(correct), correct, np.ones_like(correct))
    assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert not interval.excludes_zero


def test_two_items_exact_bootstrap_distribution() -> None:
    # B fixes item 1 only: Δ* is the mean of two draws from {1, 0}: 0 (p 1/4), 0.5 (1/2), 1 (1/4), so the 2.5 % and
    # 97.5 % quantiles are 0 and 1; the estimate is 0.5.
    a, b, ones = np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.ones((1, 2))
    interval = paired_bootstrap(a, ones, b, ones, resamples=4000, seed=3)
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.0, 1.0)


def test_interval_matches_the_normal_approximation() -> None:
    # 400 items, 46 only B right (d = +1), 46 only A right (d = -1): Δ = 0, var(d) = 92/400 = 0.23,
    # SE = sqrt(0.23 / 400) = 0.02398, so 1.96 · SE = 0.0470 either side.
    a = np.zeros((1, 400))
    b = np.zeros((1, 400))
    a[0, :46] = 1
    b[0, 46:92] = 1
    interval = paired_bootstrap(a, np.ones_like(a), b, np.ones_like(b), resamples=10_000, seed=0)
    assert interval.estimate == 0.0
    assert interval.low == pytest.approx(-0.047, abs=0.004) and interval.high == pytest.approx(0.047, abs=0.004)
    assert not interval.excludes_zero


def test_bootstrap_is_deterministic_under_a_seed_and_contains_the_estimate() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 2, size=(1, 120)).astype(float), rng.integers(0, 2, size=(1, 120)).astype(float)
    ones = np.ones_like(a)
    first = paired_bootstrap(a, ones, b, ones, resamples=1500, seed=11)
    assert paired_bootstrap(a, ones, b, ones, resamples=1500, seed=11) == first
    assert paired_bootstrap(a, ones, b, ones, resamples=1500, seed=12) != first
    assert first.low <= first.estimate <= first.high
    assert first.estimate == pytest.approx(b.mean() - a.mean())


def test_a_clear_gain_is_significant() -> None:
    # B right on 30 more of 100 items and never worse: every resample has Δ* > 0.
    a, b = np.zeros((1, 100)), np.zeros((1, 100))
    b[0, :30] = 1
    interval = paired_bootstrap(a, np.ones_like(a), b, np.ones_like(b), resamples=2000)
    assert interval.estimate == pytest.approx(0.3) and interval.low > 0.15 and interval.excludes_zero


def test_hierarchical_bootstrap_carries_seed_spread() -> None:
    # A: one run, all 0. B: two seeds, one all 1, one all 0. Item draws change nothing (every item alike within a
    # run); run draws give B's mean 1 (p 1/4), 0.5 (1/2) or 0 (1/4): the estimate is 0.5, the interval [0, 1].
    a = np.zeros((1, 5))
    b = np.vstack([np.ones(5), np.zeros(5)])
    interval = paired_bootstrap(a, np.ones_like(a), b, np.ones_like(b), resamples=4000, seed=0)
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.0, 1.0)
    # Averaging the two seeds per item first would have hidden that spread: a zero-width interval at 0.5.
    averaged = paired_bootstrap(a, np.ones_like(a), b.mean(axis=0, keepdims=True), np.ones_like(a), resamples=500)
    assert (averaged.low, averaged.high) == (0.5, 0.5)


def test_stratified_mean_over_categories() -> None:
    # Category x (2 items): A 0/2, B 2/2 -> +1; category y (2 items): both 1/2 -> 0. Mean over categories: +0.5.
    a = np.array([[0.0, 0.0, 1.0, 0.0]])
    b = np.array([[1.0, 1.0, 1.0, 0.0]])
    strata = np.array(["x", "x", "y", "y"])
    interval = paired_bootstrap(a, np.ones_like(a), b, np.ones_like(b), strata, resamples=1000)
    assert interval.estimate == pytest.approx(0.5)
    # Stratified draws keep x's two items (Δ_x = 1 always); y's draws give Δ_y = 0 always: the interval is a point.
    assert (interval.low, interval.high) == pytest.approx((0.5, 0.5))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.5, 0.7], (0.6, math.sqrt(0.02))),  # deviations ±0.1: s² = 0.02 / (2 − 1)
        ([0.4], (0.4, None)),
    ],
)
def test_mean_and_spread(values: list[float], expected: tuple[float, float | None]) -> None:
    mean, sd = mean_and_spread(np.array(values))
    assert mean == pytest.approx(expected[0])
    assert sd == (None if expected[1] is None else pytest.approx(expected[1]))


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="items"):
        paired_bootstrap(np.ones((1, 3)), np.ones((1, 3)), np.ones((1, 4)), np.ones((1, 4)))
    with pytest.raises(ValueError, match="no items"):
        paired_bootstrap(np.ones((1, 0)), np.ones((1, 0)), np.ones((1, 0)), np.ones((1, 0)))
