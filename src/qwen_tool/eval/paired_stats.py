"""Paired statistics for comparing two evaluations on the same items: is B better than A, and by how much?

Pure functions over numpy arrays. Every metric here is a *mean of ratios of sums*: items carry a numerator and a
denominator (an accuracy has numerator 0/1 and denominator 1; parameter accuracy has matched and gold arguments), and
items may fall into strata (BFCL categories) whose ratios are averaged with equal weight. Each side may hold several
runs (seeds) of the same setting; runs of one side are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

CONFIDENCE = 0.95
"""Coverage of every interval; differences are called significant at the matching level 1 − CONFIDENCE."""

_CHUNK = 500
"""Resamples drawn at once: bounds memory to a few (resamples × items) arrays."""


@dataclass(frozen=True)
class Interval:
    """A difference B − A, its percentile bootstrap interval [low, high], and the resamples that gave it."""

    estimate: float
    low: float
    high: float
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test on paired right/wrong verdicts.

    Only discordant items carry evidence: `only_a` items A got right and B wrong, `only_b` the reverse. Under
    H0 (equal accuracy) each discordant item favours either side with probability 1/2, so with n = only_a + only_b,
    K ~ Binomial(n, 1/2) and

        p = min(1, 2 · Σ_{k=0}^{min(only_a, only_b)} C(n, k) / 2^n),   p = 1 when n = 0.

    (The same as `scipy.stats.binomtest(only_a, n, 0.5).pvalue`; computed exactly in integers.)
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be non-negative, got {only_a} and {only_b}")
    n = only_a + only_b
    tail = sum(comb(n, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)


def strata_codes(strata: np.ndarray | None, items: int) -> np.ndarray:
    """Integer stratum code per item (0..S−1, in order of first appearance); one stratum when `strata` is None."""
    if strata is None:
        return np.zeros(items, dtype=np.int64)
    labels = np.asarray(strata)
    if labels.shape != (items,):
        raise ValueError(f"strata has shape {labels.shape}, expected ({items},)")
    _, first, codes = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # renumber strata by first appearance
    return order[codes].astype(np.int64)


def metric_value(
    numerators: np.ndarray, denominators: np.ndarray, codes: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """The metric of each run (and each resample, given item `weights`):

        m = (1/S) Σ_s  (Σ_{i∈s} w_i · num_i) / (Σ_{i∈s} w_i · den_i),

    S strata, w_i how often item i was drawn (1 for the observed data). An empty denominator scores 0, as in
    `metrics.py`. Shapes: numerators/denominators (runs, items); weights (resamples, items) or None; the result is
    (runs,) without weights and (resamples, runs) with them.
    """
    strata = int(codes.max()) + 1 if codes.size else 1
    one_hot = np.zeros((codes.size, strata))  # (items, S)
    one_hot[np.arange(codes.size), codes] = 1.0
    runs = numerators.shape[0]
    w = np.ones((1, codes.size)) if weights is None else weights  # (R, items)

    def stratum_sums(per_item: np.ndarray) -> np.ndarray:
        """(R, items) @ (items, runs·S): every resample's per-stratum sums for every run in one product."""
        spread = (per_item[:, :, None] * one_hot).transpose(1, 0, 2).reshape(codes.size, runs * strata)
        return (w @ spread).reshape(-1, runs, strata)

    num, den = stratum_sums(numerators), stratum_sums(denominators)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
    value = ratio.mean(axis=2)  # (R, runs)
    return value[0] if weights is None else value


def resample_counts(codes: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each item is drawn in each resample, (resamples, items): within every stratum s its n_s items are
    drawn n_s times with replacement, so stratum sizes stay as observed (a stratified bootstrap; one stratum makes
    it the ordinary one)."""
    counts = np.zeros((resamples, codes.size))
    for stratum in np.unique(codes):
        members = np.flatnonzero(codes == stratum)
        counts[:, members] = rng.multinomial(members.size, np.full(members.size, 1.0 / members.size), size=resamples)
    return counts


def paired_bootstrap(
    num_a: np.ndarray,
    den_a: np.ndarray,
    num_b: np.ndarray,
    den_b: np.ndarray,
    strata: np.ndarray | None = None,
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Difference of means B − A over the same items, with a hierarchical paired percentile bootstrap interval.

    Arrays are (runs, items), items in the same order on both sides. The estimate is

        Δ = mean_r m(B_r) − mean_r m(A_r)        (m: `metric_value` of one run).

    Each resample draws the items with replacement (within strata), the same draw for both sides (the pairing), then
    draws each side's runs with replacement (independently: seeds of A and B are not paired) and takes
    Δ* = mean over drawn B runs − mean over drawn A runs of m on the drawn items. The interval is the
    ((1 − c)/2, (1 + c)/2) quantiles of Δ*. Drawing runs carries seed-to-seed spread into the interval (the
    hierarchical bootstrap); with one run per side it is the ordinary paired bootstrap over items. Deterministic
    for a given `seed`.
    """
    for name, array in (("num_a", num_a), ("den_a", den_a), ("num_b", num_b), ("den_b", den_b)):
        if array.ndim != 2 or array.shape[1] != num_a.shape[1] or array.shape[0] < 1:
            raise ValueError(f"{name} has shape {array.shape}; expected (runs ≥ 1, {num_a.shape[1]} items)")
    if num_a.shape != den_a.shape or num_b.shape != den_b.shape:
        raise ValueError("numerators and denominators of a side must have the same shape")
    if num_a.shape[1] == 0:
        raise ValueError("no items to compare")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError(f"resamples must be ≥ 1 and 0 < confidence < 1, got {resamples} and {confidence}")
    codes = strata_codes(strata, num_a.shape[1])
    estimate = float(metric_value(num_b, den_b, codes).mean() - metric_value(num_a, den_a, codes).mean())
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        weights = resample_counts(codes, size, rng)
        sides = []
        for num, den in ((num_a, den_a), (num_b, den_b)):
            values = metric_value(num, den, codes, weights)  # (size, runs)
            runs = values.shape[1]
            if runs > 1:
                values = np.take_along_axis(values, rng.integers(0, runs, size=(size, runs)), axis=1)
            sides.append(values.mean(axis=1))
        deltas.append(sides[1] - sides[0])
    delta = np.concatenate(deltas)
    low, high = np.quantile(delta, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(estimate, float(low), float(high), resamples)


def mean_and_spread(values: np.ndarray) -> tuple[float, float | None]:
    """(mean, sample standard deviation s = sqrt(Σ (x − x̄)² / (k − 1))) of k per-run values; s is None for k = 1."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), (float(values.std(ddof=1)) if values.size > 1 else None)


def discordant_counts(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(#items A right and B wrong, #items B right and A wrong) from paired 0/1 verdicts of one run each."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    return int((a & ~b).sum()), int((b & ~a).sum())
