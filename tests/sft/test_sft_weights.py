"""PKT/MAE pure functions against hand-derived values."""

from __future__ import annotations

import math

import pytest
import torch

from qwen_tool.sft.weights import (
    name_key_offsets,
    pkt_turn_weight,
    predicted_positions,
    token_containing,
    token_ranges_overlapping,
    weight_normaliser,
    weighted_nll_sum,
    weighted_nll_sum_at,
)


def test_name_key_offsets_by_hand():
    # "get_stock_price" vs "get_stock_prices": the whole name is shared (15 chars) → the token after it (offset 15);
    # vs "get_weather": shared "get_" → offset 4; itself ignored; offset 0 always.
    assert name_key_offsets("get_stock_price", ["get_stock_prices", "get_weather", "get_stock_price"]) == [0, 4, 15]
    # No other tool: only the first token.
    assert name_key_offsets("convert_units", []) == [0]
    # "send_message" vs "send_messages" → 12; vs "search" → shared "se" → 2.
    assert name_key_offsets("send_message", ["send_messages", "search"]) == [0, 2, 12]


@pytest.mark.parametrize(
    ("num_key", "num_non_key", "w_max", "expected"),
    [
        (6, 30, 9, 5.0),  # 30 / 6 = 5, inside [1, 9]
        (2, 40, 9, 9.0),  # 40 / 2 = 20, clipped to w_max
        (40, 10, 9, 1.0),  # 10 / 40 = 0.25, clipped up to 1
        (0, 10, 9, 1.0),  # no key token: nothing to up-weight
        (3, 10, 2.5, 2.5),  # 10 / 3 = 3.33, clipped to 2.5
    ],
)
def test_pkt_turn_weight(num_key, num_non_key, w_max, expected):
    assert pkt_turn_weight(num_key, num_non_key, w_max) == pytest.approx(expected)


def test_token_lookup_helpers():
    offsets = [(0, 3), (3, 4), (4, 4), (4, 9)]  # an empty (special) token at 4
    assert token_ranges_overlapping(offsets, 2, 5) == [0, 1, 3]
    assert token_ranges_overlapping(offsets, 4, 4) == []
    assert token_containing(offsets, 3) == 1
    assert token_containing(offsets, 9) is None


def test_weighted_nll_by_hand():
    # Vocabulary of 2, uniform logits → every NLL is log 2. Sequence of 4 tokens: position 0 is never predicted.
    logits = torch.zeros(1, 4, 2)
    labels = torch.tensor([[-100, 1, -100, 0]])
    weights = torch.tensor([[0.0, 3.0, 5.0, 1.0]])
    # Predicted positions 1 and 3 (label 2 is ignored even though its weight is 5): Σ w·NLL = (3 + 1)·log 2.
    assert weighted_nll_sum(logits, labels, weights).item() == pytest.approx(4 * math.log(2))
    assert weight_normaliser(labels, weights).item() == pytest.approx(4.0)

    # A confident correct prediction costs ~0: logits at t=0 predict label at t=1 (token 1).
    logits = torch.tensor([[[0.0, 20.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 1, -100, -100]])
    assert weighted_nll_sum(logits, labels, torch.ones(1, 4)).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_from_kept_positions_only_by_hand():
    # Two rows of 5 tokens; labels at t+1 are trained at t = 1, 2 (row 0) and t = 2 (row 1) → positions [1, 2].
    labels = torch.tensor([[-100, -100, 4, 1, -100], [-100, -100, -100, 0, -100]])
    weights = torch.tensor([[0.0, 0.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 7.0, 0.0]])
    positions = predicted_positions(labels)
    assert positions.tolist() == [1, 2]
    # Uniform logits over a vocabulary of 5: every NLL is log 5; Σ w·NLL = (2 + 1 + 7)·log 5.
    kept = torch.zeros(2, 2, 5)
    assert weighted_nll_sum_at(kept, labels, weights, positions).item() == pytest.approx(10 * math.log(5))
    # The same as projecting every position.
    full = torch.randn(2, 5, 5)
    assert weighted_nll_sum_at(full[:, positions], labels, weights, positions).item() == pytest.approx(
        weighted_nll_sum(full, labels, weights).item())
