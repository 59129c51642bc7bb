"""PKT and MAE as pure functions: which tokens are key, what weight a turn's key tokens get, and the weighted loss.

TL-Training (docs/references.md):
- MAE: an assistant turn whose call drew error feedback gets no gradient (weight 0) but stays in the context.
- PKT: in a turn s, the key tokens K_s are the tool-name tokens where the gold name first diverges from the other
  offered tools' names (the name's first token, and the first token after the longest common prefix with each other
  name) plus the argument tokens; every other trained token of the turn is in NK_s. Key tokens get
  w = CLIP(|NK_s| / |K_s|, 1, w_max), the rest weight 1, and the loss is normalised by the sum of weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix of `a` and `b` (os.path.commonprefix works on any strings)."""
    return len(os.path.commonprefix([a, b]))


def name_key_offsets(name: str, other_names: Iterable[str]) -> list[int]:
    """Character offsets, relative to the start of the rendered `name`, whose tokens are key: 0 (the name's first
    token), and for each other offered name the first character after the longest common prefix with it.

    When another name extends this one (gold "get_stock_price", other "get_stock_prices") the names diverge right after
    the gold name ends, so the offset is len(name): the token that closes the name is the decisive one.

    Example: name "get_stock_price", others ["get_stock_prices", "get_weather", "get_stock_price"]:
    prefix with "get_stock_prices" = 15 = len(name) → 15; with "get_weather" = "get_" → 4; the name itself is
    skipped. Result [0, 4, 15].
    """
    offsets = {0}
    for other in other_names:
        if other != name:
            offsets.add(common_prefix_length(name, other))
    return sorted(offsets)


def pkt_turn_weight(num_key: int, num_non_key: int, w_max: float) -> float:
    """w = CLIP(|NK| / |K|, 1, w_max); a turn without key tokens has nothing to up-weight, so 1.

    Example: 6 key and 30 non-key tokens, w_max 9 → 30/6 = 5. 2 key, 40 non-key → 20, clipped to 9.
    40 key, 10 non-key → 0.25, clipped up to 1.
    """
    if num_key <= 0:
        return 1.0
    return float(min(max(num_non_key / num_key, 1.0), w_max))


def token_ranges_overlapping(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indexes of tokens whose character range [a, b) overlaps [start, end) (empty tokens never do)."""
    return [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a]


def token_containing(offsets: Sequence[tuple[int, int]], position: int) -> int | None:
    """Index of the token whose character range contains `position`."""
    for i, (a, b) in enumerate(offsets):
        if a <= position < b:
            return i
    return None


def predicted_positions(labels_BT: torch.Tensor) -> torch.Tensor:
    """Positions t (0 ≤ t < T−1) whose logits predict a trained token in some row: labels[b, t+1] ≠ −100.

    Only about a tenth of a tool trajectory's tokens are trained, so computing the vocabulary projection at these
    positions alone (`logits_to_keep`) skips most of the LM head and its softmax. Example: labels of one row
    [−100, −100, 7, 8, −100] → positions [1, 2].
    """
    return labels_BT[:, 1:].ne(-100).any(dim=0).nonzero().squeeze(-1)


def weighted_nll_sum_at(logits_BPV: torch.Tensor, labels_BT: torch.Tensor, weights_BT: torch.Tensor,
                        positions_P: torch.Tensor) -> torch.Tensor:
    """Σ_{t ∈ P} w_{t+1} · (−log p(y_{t+1} | y_≤t)) from logits computed only at positions P (logits[:, i] belongs
    to position P[i]); labels −100 contribute nothing whatever their weight."""
    targets_BP = labels_BT[:, positions_P + 1]
    weights_BP = weights_BT[:, positions_P + 1].to(torch.float32)
    logits = logits_BPV.float()
    nll_BP = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets_BP.reshape(-1), ignore_index=-100,
                             reduction="none").view_as(targets_BP)
    return (nll_BP * weights_BP * targets_BP.ne(-100)).sum()


def weighted_nll_sum(logits_BTV: torch.Tensor, labels_BT: torch.Tensor, weights_BT: torch.Tensor) -> torch.Tensor:
    """Σ_t w_t · (−log p(y_t | y_<t)) over all positions, with the causal shift (logits at t predict labels at t+1).

    Positions with label −100 contribute nothing whatever their weight. Divide by Σ w (the PKT normaliser, computed
    over the whole accumulated batch) to get the loss; with every weight 1 that is the plain mean token NLL.
    """
    every_position = torch.arange(labels_BT.shape[1] - 1, device=labels_BT.device)
    return weighted_nll_sum_at(logits_BTV[:, :-1, :], labels_BT, weights_BT, every_position)


def weight_normaliser(labels_BT: torch.Tensor, weights_BT: torch.Tensor) -> torch.Tensor:
    """Σ w over the positions that are predicted (labels shifted by one, label −100 excluded)."""
    labels = labels_BT[:, 1:]
    return (weights_BT[:, 1:].float() * labels.ne(-100)).sum()
