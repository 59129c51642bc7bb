"""Per-row token choice for a batch whose rows carry different settings (one greedy, one at temperature 0.8, ...).

Pure tensor functions: a decoder calls `choose_tokens` once per decoding step for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qwen_tool.decode.request import SamplingParams


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


def choose_tokens(logits_BV: torch.Tensor, params: Sequence[SamplingParams],
                  generators: Sequence[torch.Generator | None], shared: torch.Generator | None = None,
                  ) -> tuple[list[int], list[float] | None]:
    """Next token of each row, and log π(token) when some row asked for log-probs.

    π is `sampling_probs` (temperature T, nucleus top_p; T = 0 counts as 1). A row with `params.argmax` takes
    argmax_v z_v; the others draw v = argmax_v (log π_v − log E_v), E_v ~ Exp(1) i.i.d., an exact draw from π
    (E_v / π_v ~ Exp(rate π_v), and the smallest of independent exponentials has index v with probability π_v): one
    pass over the vocabulary, no cumulative sums. A row draws its noise from its own generator (a request's seed) or,
    without one, from `shared`.
    """
    logits_BV = logits_BV.float()
    want_logprobs = any(p.logprobs for p in params)
    sampled = [b for b, p in enumerate(params) if not p.argmax]
    tokens_B = logits_BV.argmax(-1)
    if not sampled and not want_logprobs:
        return tokens_B.tolist(), None
    temperature_B = torch.tensor([p.temperature for p in params], device=logits_BV.device)
    top_p_B = torch.tensor([p.top_p for p in params], device=logits_BV.device)
    logp_BV = sampling_probs(logits_BV, temperature_B, top_p_B).log()
    if sampled:
        noise_BV = torch.empty_like(logp_BV)
        for b in sampled:
            noise_BV[b].exponential_(1.0, generator=generators[b] if generators[b] is not None else shared)
        rows = torch.tensor(sampled, device=logits_BV.device)
        tokens_B[rows] = (logp_BV[rows] - noise_BV[rows].log()).argmax(-1)
    tokens = tokens_B.tolist()
    if not want_logprobs:
        return tokens, None
    return tokens, logp_BV.gather(-1, tokens_B[:, None]).squeeze(-1).tolist()
