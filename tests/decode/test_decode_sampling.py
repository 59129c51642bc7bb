"""Per-row token choice as pure functions, against hand-derived values and draw frequencies."""

from __future__ import annotations

import math

import torch

from qwen_tool.decode import SamplingParams
from qwen_tool.decode.sampling import choose_tokens, sampling_probs, top_p_filter


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


def assert_frequencies(tokens: list[int], probs: list[float]) -> None:
    """Each token's share of the draws within 4 standard errors of its probability (never drawn when p = 0)."""
    draws = len(tokens)
    counts = torch.bincount(torch.tensor(tokens), minlength=len(probs))
    for observed, p in zip((counts / draws).tolist(), probs, strict=True):
        assert abs(observed - p) <= 4 * math.sqrt(p * (1 - p) / draws), (observed, p)


def test_draws_follow_each_rows_own_distribution() -> None:
    """One batch, three settings: rows draw from softmax(z / T), nucleus-filtered, each with its own T and top_p."""
    logits = torch.log(torch.tensor([0.1, 0.6, 0.3]))
    settings = [SamplingParams(1, temperature=1.0),
                # T = 0.5: 0.01 : 0.36 : 0.09 (sum 0.46).
                SamplingParams(1, temperature=0.5),
                # top_p 0.8: sorted 0.6, 0.3, 0.1 with mass before 0, 0.6, 0.9 -> keep 0.6 and 0.3 -> 2/3, 1/3.
                SamplingParams(1, temperature=1.0, top_p=0.8)]
    rows = 3000
    params = [settings[b % 3] for b in range(3 * rows)]
    tokens, logprobs = choose_tokens(logits.repeat(3 * rows, 1), params, [None] * len(params),
                                     torch.Generator().manual_seed(0))
    assert logprobs is None  # no row asked for them
    assert_frequencies(tokens[0::3], [0.1, 0.6, 0.3])
    assert_frequencies(tokens[1::3], [0.01 / 0.46, 0.36 / 0.46, 0.09 / 0.46])
    assert_frequencies(tokens[2::3], [0.0, 2 / 3, 1 / 3])


def test_greedy_rows_take_the_argmax_and_seeded_rows_repeat() -> None:
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    params = [SamplingParams(1, temperature=0.0), SamplingParams(1, temperature=1.0, top_p=0.9, seed=7),
              SamplingParams(1, temperature=1.0, seed=8), SamplingParams(1, temperature=1.5, greedy=True)]

    def draw() -> list[int]:
        generators = [torch.Generator().manual_seed(p.seed) if p.seed is not None else None for p in params]
        return choose_tokens(logits, params, generators)[0]

    first = draw()
    assert first[0] == int(logits[0].argmax()) and first[3] == int(logits[3].argmax())
    assert draw() == first


def test_a_seeded_row_draws_the_same_whatever_shares_its_batch() -> None:
    """20 steps of a row seeded 7, alone and then third in a batch with an unseeded and another seeded row: its
    draws come from its own generator only, so they are the same."""
    logits_steps = torch.randn(20, 3, 50, generator=torch.Generator().manual_seed(2))
    seeded = SamplingParams(1, temperature=1.0, seed=7)

    alone_generator = torch.Generator().manual_seed(7)
    alone = [choose_tokens(step[2:3], [seeded], [alone_generator])[0][0] for step in logits_steps]

    params = [SamplingParams(1, temperature=1.0), SamplingParams(1, temperature=0.7, seed=3), seeded]
    generators = [None, torch.Generator().manual_seed(3), torch.Generator().manual_seed(7)]
    shared = torch.Generator().manual_seed(99)
    together = [choose_tokens(step, params, generators, shared)[0][2] for step in logits_steps]
    assert together == alone
    assert len(set(alone)) > 5  # the draws do vary: the equality above is not trivially true


def test_logprobs_come_from_the_tempered_distribution() -> None:
    logits = torch.log(torch.tensor([[0.2, 0.8], [0.2, 0.8], [0.2, 0.8]]))
    # Row 0 greedy at T = 0 (taken as T = 1): argmax 1, log 0.8.
    # Row 1 greedy at T = 0.5 (GRPO's greedy member): argmax 1, log 16/17 (see test_temperature_sharpens_and_flattens).
    # Row 2 samples at T = 0.5 with top_p 0.9: 16/17 = 0.94 >= 0.9 alone, so token 1 with probability 1, log 1 = 0.
    params = [SamplingParams(1, logprobs=True), SamplingParams(1, temperature=0.5, greedy=True, logprobs=True),
              SamplingParams(1, temperature=0.5, top_p=0.9)]
    tokens, logprobs = choose_tokens(logits, params, [None] * 3, torch.Generator().manual_seed(0))
    assert tokens == [1, 1, 1] and logprobs is not None
    torch.testing.assert_close(torch.tensor(logprobs), torch.tensor([math.log(0.8), math.log(16 / 17), 0.0]))
