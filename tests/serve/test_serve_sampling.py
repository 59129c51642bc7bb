"""Per-row sampling as pure functions, against hand-derived values."""

from __future__ import annotations

import math

import torch

from qwen_tool.serve.engine import stop_holdback
from qwen_tool.serve.sampling import exponential_race, sample_next, sampling_probs, top_p_filter


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3], [0.2, 0.5, 0.3]])
    # Sorted: 0.5, 0.3, 0.2; mass before each: 0, 0.5, 0.8.
    # top_p 0.6: keep 0.5 (0 < 0.6) and 0.3 (0.5 < 0.6), drop 0.2 (0.8 >= 0.6) -> 0.5/0.8, 0.3/0.8 = 0.625, 0.375.
    # top_p 0.5: keep 0.5 only (0.5 is not < 0.5) -> 1.0.  top_p 1.0: keep all.
    out = top_p_filter(probs, torch.tensor([0.6, 0.5, 1.0]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.625, 0.375], [0.0, 1.0, 0.0], [0.2, 0.5, 0.3]]))


def test_temperature_sharpens_and_flattens() -> None:
    logits = torch.log(torch.tensor([[0.2, 0.8], [0.2, 0.8]]))
    # T = 0.5 squares the odds: 0.2^2 : 0.8^2 = 0.04 : 0.64 -> 1/17, 16/17.  T = 1 leaves them.
    out = sampling_probs(logits, torch.tensor([0.5, 1.0]), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([[1 / 17, 16 / 17], [0.2, 0.8]]))


def test_exponential_race_draws_with_the_right_frequencies() -> None:
    probs = torch.tensor([0.1, 0.6, 0.3])
    generator = torch.Generator().manual_seed(0)
    draws = 6000
    counts = torch.bincount(torch.tensor([exponential_race(probs, generator) for _ in range(draws)]), minlength=3)
    for observed, p in zip((counts / draws).tolist(), probs.tolist(), strict=True):
        assert abs(observed - p) < 4 * math.sqrt(p * (1 - p) / draws)  # within 4 standard errors


def test_greedy_rows_take_the_argmax_and_seeded_rows_repeat() -> None:
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))

    def draw() -> list[int]:
        return sample_next(logits, [0.0, 1.0, 1.0], [1.0, 0.9, 1.0],
                           [None, torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)])

    first = draw()
    assert first[0] == int(logits[0].argmax())
    assert draw() == first


def test_stop_holdback_holds_only_a_growing_stop_string() -> None:
    assert stop_holdback("hello EN", ["END"]) == 2
    assert stop_holdback("hello E", ["END", "XY"]) == 1
    assert stop_holdback("hello", ["END"]) == 0
    assert stop_holdback("abc", []) == 0
