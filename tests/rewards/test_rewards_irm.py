"""IRM against the reference table, one test per row, with the case each input falls into derived in a comment."""

from __future__ import annotations

import pytest

from qwen_tool.codec.types import ToolCall
from qwen_tool.rewards import IRM_VALUES, irm_reward

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"},
                                         "days": {"type": "integer"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}}}},
]
GOLD = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]


def weather(**arguments):
    return [ToolCall("get_weather", arguments)]


@pytest.mark.parametrize(("predicted", "expected", "why"), [
    (weather(city="Paris", unit="c"), 1.0, "exact"),
    (weather(city="Paris", unit="f"), -0.25, "right tool and keys, unit value differs"),
    (weather(city="Paris"), -0.5, "missing only: unit absent"),
    (weather(city="Paris", unit="c", days=3), -0.5, "redundant only: days is the tool's, gold does not use it"),
    (weather(city="Paris", unit="c", country="FR"), -0.8, "hallucination only: country is not a parameter"),
    (weather(city="Paris", country="FR"), -1.3, "hallucination + missing (unit)"),
    (weather(city="Paris", unit="c", days=3, country="FR"), -1.3, "hallucination + redundant (days)"),
    (weather(city="Paris", days=3), -1.0, "redundant (days) + missing (unit), no hallucination"),
    (weather(city="Paris", days=3, country="FR"), -1.8, "hallucination + redundant + missing"),
    ([ToolCall("get_time", {"zone": "CET"})], -1.5, "offered tool, but not the gold one"),
    ([ToolCall("get_forecast", {"city": "Paris"})], -2.0, "tool hallucination: not offered"),
])
def test_each_row_of_the_reference_table(predicted, expected, why):
    assert irm_reward(predicted, GOLD, TOOLS).total == pytest.approx(expected), why


def test_unparsable_output_is_minus_two():
    result = irm_reward([], GOLD, TOOLS, unparsable=True)
    assert result.total == -2.0 and result.components["irm_unparsable"] == 1.0


def test_table_values_are_the_reference_values():
    assert sorted(IRM_VALUES.values()) == [-2.0, -2.0, -1.8, -1.5, -1.3, -1.0, -0.8, -0.5, -0.25, 1.0]


def test_no_call_cases():
    # Silent when nothing is due: exact (+1). Silent when a call is due, or calling when none is: wrong tool (−1.5).
    assert irm_reward([], [], TOOLS).total == 1.0
    assert irm_reward([], GOLD, TOOLS).total == -1.5
    assert irm_reward(weather(city="Paris"), None, TOOLS).total == -1.5


def test_parallel_calls_average_over_matched_pairs():
    gold = GOLD + [{"name": "get_time", "arguments": {"zone": "CET"}}]
    # get_time matched by name and exact (+1); get_weather values differ (−0.25): mean 0.375, whatever the order.
    predicted = [ToolCall("get_time", {"zone": "CET"}), ToolCall("get_weather", {"city": "Paris", "unit": "k"})]
    assert irm_reward(predicted, gold, TOOLS).total == pytest.approx(0.375)
    # One of two gold calls made exactly (+1), the other missing (−1.5): mean −0.25.
    assert irm_reward(predicted[:1], gold, TOOLS).total == pytest.approx(-0.25)


def test_openai_shaped_calls_are_read():
    call = {"id": "c", "type": "function", "function": {"name": "get_weather",
                                                        "arguments": '{"unit": "c", "city": "Paris"}'}}
    assert irm_reward([call], GOLD, TOOLS).total == 1.0
