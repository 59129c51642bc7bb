"""Per-row sampling for a batch whose rows carry different settings (one greedy, one at temperature 0.8, ...).

Pure tensor functions: the engine calls `sample_next` once per decoding step for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def top_p_filter(probs_BV: torch.Tensor, top_p_B: torch.Tensor) -> torch.Tensor:
    """Nucleus filtering, renormalised: keep the smallest set S of most likely tokens with sum_{v in S} p_v >= top_p.

    With tokens sorted by probability p_(1) >= p_(2) >= ..., token (k) is kept iff sum_{j<k} p_(j) < top_p
    (the mass strictly before it has not yet reached top_p); the kept probabilities are divided by their sum.
    The most likely token is always kept, so every row stays a distribution.
    """
    sorted_BV, order_BV = probs_BV.sort(dim=-1, descending=True)
    mass_before_BV = sorted_BV.cumsum(dim=-1) - sorted_BV
    keep_sorted_BV = mass_before_BV < top_p_B[:, None]
    keep_sorted_BV[:, 0] = True
    keep_BV = torch.zeros_like(keep_sorted_BV).scatter(-1, order_BV, keep_sorted_BV)
    kept_BV = probs_BV * keep_BV
    return kept_BV / kept_BV.sum(dim=-1, keepdim=True)


def sampling_probs(logits_BV: torch.Tensor, temperature_B: torch.Tensor, top_p_B: torch.Tensor) -> torch.Tensor:
    """p = top_p_filter(softmax(z / T)) per row (greedy rows, T = 0, are never sampled: their T is taken as 1).

    The nucleus sort is skipped when every row has top_p = 1 (it would keep every token).
    """
    safe_temperature_B = torch.where(temperature_B > 0, temperature_B, torch.ones_like(temperature_B))
    probs_BV = torch.softmax(logits_BV.float() / safe_temperature_B[:, None], dim=-1)
    if bool((top_p_B >= 1).all()):
        return probs_BV
    return top_p_filter(probs_BV, top_p_B)


def exponential_race(probs_V: torch.Tensor, generator: torch.Generator | None) -> int:
    """One draw from p as argmax_v p_v / E_v with E_v ~ Exp(1) i.i.d.

    P(argmax = v) = p_v: E_v / p_v ~ Exp(rate p_v), and the smallest of independent exponentials is the one of rate
    p_v with probability p_v / sum_u p_u. One pass over the vocabulary, no cumulative sums (cheaper than multinomial).
    """
    noise_V = torch.empty_like(probs_V).exponential_(1.0, generator=generator)
    return int((probs_V / noise_V).argmax().item())


def sample_next(logits_BV: torch.Tensor, temperatures: Sequence[float], top_ps: Sequence[float],
                generators: Sequence[torch.Generator | None]) -> list[int]:
    """Next token of each row: argmax where temperature is 0, else a draw from `sampling_probs` (own generator if any).

    A row's generator makes its draws reproducible (`seed` in the request) whatever else shares the batch.
    """
    tokens = logits_BV.argmax(dim=-1).tolist()
    sampled_rows = [b for b, t in enumerate(temperatures) if t > 0]
    if not sampled_rows:
        return tokens
    rows = torch.tensor(sampled_rows, device=logits_BV.device)
    probs_RV = sampling_probs(logits_BV[rows], torch.tensor([temperatures[b] for b in sampled_rows]).to(logits_BV),
                              torch.tensor([top_ps[b] for b in sampled_rows]).to(logits_BV)).float().cpu()
    for r, b in enumerate(sampled_rows):
        tokens[b] = exponential_race(probs_RV[r], generators[b])
    return tokens
