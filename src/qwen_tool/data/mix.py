"""How a number of records splits across a category mix (used by both synthesis generators)."""

from __future__ import annotations


def allocate(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Largest-remainder counts per category summing to n (so the mix is met to within 1/n).

    Each category first gets ⌊n·wₖ⌋; the n − Σ⌊n·wₖ⌋ records left go one each to the largest remainders
    n·wₖ − ⌊n·wₖ⌋ (ties by name).
    """
    raw = {k: n * w for k, w in mix.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for key in sorted(raw, key=lambda k: (-(raw[k] - counts[k]), k))[: n - sum(counts.values())]:
        counts[key] += 1
    return counts


__all__ = ["allocate"]
