"""ToolRL, Tool-N1, shaping rewards and the composite, against hand-derived values."""

from __future__ import annotations

import pytest

from qwen_tool.rewards import (
    RewardError,
    Turn,
    call_timing_reward,
    coherence_reward,
    efficiency_reward,
    episode_reward,
    execution_reward,
    multiset_jaccard,
    tool_n1_reward,
    toolrl_reward,
    turn_reward,
)

GOLD = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}]


def test_multiset_jaccard():
    # {a, a, b} vs {a, b, c}: ∩ = {a, b} (2), |A| + |B| − 2 = 4 → 0.5
    assert multiset_jaccard(["a", "a", "b"], ["a", "b", "c"]) == 0.5
    assert multiset_jaccard([], []) == 1.0
    assert multiset_jaccard(["a"], []) == 0.0


def test_toolrl_partial_credit():
    # Values differ on city: J(names) = 1, J(keys) = 1, equal values = 1 (unit) → S = 3, S_max = 1 + (1 + 2) = 4,
    # R_correct = 6·3/4 − 3 = 1.5, plus format 1 → 2.5.
    pred = [{"name": "get_weather", "arguments": {"city": "London", "unit": "c"}}]
    result = toolrl_reward(pred, GOLD)
    assert result.total == pytest.approx(2.5) and result.components["toolrl_correct"] == pytest.approx(1.5)
    # Missing unit: J(keys) = 1/(2 + 1 − 1) = 0.5, one equal value → S = 2.5, R_correct = 6·2.5/4 − 3 = 0.75.
    assert toolrl_reward([{"name": "get_weather", "arguments": {"city": "Paris"}}], GOLD).total == pytest.approx(1.75)
    # Wrong name: J(names) = 0 and no same-name call → S = 0 → −3, plus format → −2.
    assert toolrl_reward([{"name": "other", "arguments": {}}], GOLD).total == pytest.approx(-2.0)


def test_toolrl_edges():
    assert toolrl_reward(GOLD, GOLD).total == 4.0  # exact: 3 + format 1
    assert toolrl_reward([], [], format_ok=True).total == 1.0  # no gold call: R_correct 0
    assert toolrl_reward([], GOLD, unparsable=True).total == -3.0  # format 0, R_correct −3


def test_tool_n1_binary():
    reordered = [{"name": "get_weather", "arguments": {"unit": "c", "city": "Paris"}}]
    assert tool_n1_reward(reordered, GOLD).total == 1.0
    assert tool_n1_reward(reordered, GOLD, format_ok=False).total == 0.0
    assert tool_n1_reward([{"name": "get_weather", "arguments": {"city": "Paris", "unit": "f"}}], GOLD).total == 0.0


def test_timing():
    assert call_timing_reward(called=True, call_due=True).total == 0.0
    unneeded = call_timing_reward(called=True, call_due=False)
    assert unneeded.total == -1.0 and unneeded.components["unneeded_call"] == 1.0
    missed = call_timing_reward(called=False, call_due=True)
    assert missed.total == -1.0 and missed.components["missed_call"] == 1.0


def test_tool_instability_is_not_penalised():
    assert execution_reward(["ok", "tool_instability"]).total == execution_reward(["ok"]).total == 1.0
    assert execution_reward(["ok", "parameter_missing"]).total == 0.0  # (1 − 1) / 2
    # Reached the end state; one model error (call_failure) costs 0.25, the 503 costs nothing → 0.75.
    steps = [["ok"], ["tool_instability"], ["call_failure"]]
    assert coherence_reward(end_state_reached=True, step_categories=steps).total == pytest.approx(0.75)


def test_efficiency():
    assert efficiency_reward(calls=5, gold_calls=3, penalty=0.1).total == pytest.approx(-0.2)
    assert efficiency_reward(calls=2, gold_calls=3).total == 0.0


def test_composite_weights():
    # irm exact (+1)·1 + format (1)·0.5 + timing (0)·1 = 1.5
    turn = Turn(predicted=GOLD, gold=GOLD, tools=TOOLS)
    result = turn_reward(turn, {"irm": 1.0, "format": 0.5, "timing": 1.0})
    assert result.total == pytest.approx(1.5) and result.components["format"] == 1.0
    # No call when one was due: irm −1.5, format 1·0.5, timing −1 → −2.0
    assert turn_reward(Turn([], GOLD, TOOLS), {"irm": 1.0, "format": 0.5, "timing": 1.0}).total == pytest.approx(-2.0)
    # Episode terms: coherence (1 − 0.25) · 2 + efficiency (−0.1 · 1) · 1 = 1.4
    total = episode_reward(end_state_reached=True, step_categories=[["call_failure"]], calls=3, gold_calls=2,
                           weights={"coherence": 2.0, "efficiency": 1.0}).total
    assert total == pytest.approx(1.4)
    with pytest.raises(RewardError, match="unknown reward"):
        turn_reward(turn, {"irn": 1.0})
