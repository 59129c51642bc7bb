"""Parallel calls are unordered: every reward that compares calls scores a turn the same in any call order, and a
genuinely wrong call still scores its own category. Values derived by hand in the comments."""

from __future__ import annotations

from itertools import permutations

import pytest

from qwen_tool.rewards import Turn, irm_reward, toolrl_reward, turn_reward

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}]


def weather(city: str, **more: str) -> dict:
    return {"name": "get_weather", "arguments": {"city": city, **more}}


PARIS, ROME, OSLO = weather("Paris", unit="c"), weather("Rome", unit="c"), weather("Oslo", unit="c")


def test_irm_scores_reordered_correct_parallel_calls_as_exact():
    # Both pairs exact → +1 in either order (pairing by position gave two values_differ pairs, −0.25).
    assert irm_reward([PARIS, ROME], [PARIS, ROME], TOOLS).total == 1.0
    result = irm_reward([ROME, PARIS], [PARIS, ROME], TOOLS)
    assert result.total == 1.0 and result.components["irm_exact"] == 1.0


def test_irm_still_scores_a_wrong_parallel_call_by_its_category():
    # Rome in fahrenheit: Paris↔Paris exact (+1), Rome f↔Rome c values_differ (−0.25) → mean 0.375, either order.
    rome_f = weather("Rome", unit="f")
    for predicted in ([PARIS, rome_f], [rome_f, PARIS]):
        result = irm_reward(predicted, [PARIS, ROME], TOOLS)
        assert result.total == pytest.approx(0.375)
        assert result.components["irm_exact"] == 0.5 and result.components["irm_values_differ"] == 0.5


def test_irm_takes_the_best_pairing_not_the_first():
    # Gold Paris, Rome, Oslo; predicted Oslo (exact) and Paris without unit (missing). Best pairing: Oslo↔Oslo +1,
    # Paris↔Paris or ↔Rome missing −0.5, the third gold call unmatched: wrong tool −1.5 → (1 − 0.5 − 1.5)/3 = −1/3.
    # (First-come pairing in gold order gave Oslo↔Paris −0.25, Paris↔Rome −0.5, Oslo missing −1.5 → −0.75.)
    predicted = [OSLO, weather("Paris")]
    for gold in permutations([PARIS, ROME, OSLO]):
        assert irm_reward(predicted, list(gold), TOOLS).total == pytest.approx(-1 / 3)
        assert irm_reward(predicted[::-1], list(gold), TOOLS).total == pytest.approx(-1 / 3)


def test_toolrl_takes_the_best_pairing_in_any_order():
    # gold g1 = f(a=1, b=1), g2 = f(a=1, b=2); predicted p = f(a=1, b=2), q = f(a=1, b=3). A pair's share of S is
    # J(keys) + #equal values: p·g1 = 1 + 1, p·g2 = 1 + 2, q·g1 = 1 + 1, q·g2 = 1 + 1. Best: p↔g2 + q↔g1 = 5, plus
    # J(names) = 1 → S = 6; S_max = 1 + (1 + 2) + (1 + 2) = 7; R_correct = 6·6/7 − 3 = 15/7, plus format 1 → 22/7.
    # (Greedy gold by gold takes p for g1 when p comes first, S = 5 → 9/7 + 1.)
    gold = [{"name": "f", "arguments": {"a": 1, "b": 1}}, {"name": "f", "arguments": {"a": 1, "b": 2}}]
    p, q = {"name": "f", "arguments": {"a": 1, "b": 2}}, {"name": "f", "arguments": {"a": 1, "b": 3}}
    for predicted in ([p, q], [q, p]):
        result = toolrl_reward(predicted, gold)
        assert result.total == pytest.approx(22 / 7) and result.components["toolrl_correct"] == pytest.approx(15 / 7)
    assert toolrl_reward([ROME, PARIS], [PARIS, ROME]).total == 4.0  # exact as a multiset: 3 + format 1


def test_the_composite_turn_reward_ignores_call_order():
    # irm +1, toolrl 3 + 1, tool_n1 1, timing 0, execution (2 − 0)/2 = 1 → 7 in both orders.
    weights = {"irm": 1.0, "toolrl": 1.0, "tool_n1": 1.0, "timing": 1.0, "execution": 1.0}
    for predicted in ([PARIS, ROME], [ROME, PARIS]):
        turn = Turn(predicted, [PARIS, ROME], TOOLS, categories=["ok", "ok"])
        assert turn_reward(turn, weights).total == pytest.approx(7.0)
