"""The error-recovery reward against hand-derived cases, alone and in the composite."""

from __future__ import annotations

import pytest

from qwen_tool.codec.types import ToolCall
from qwen_tool.rewards import Turn, recovery_reward, turn_reward

FAILED = {"name": "get_rate", "arguments": {"from": "EUR", "quote": "USD"}}
FIXED = {"name": "get_rate", "arguments": {"base": "EUR", "quote": "USD"}}
TOOLS = [{"type": "function", "function": {"name": "get_rate", "parameters": {
    "type": "object", "properties": {"base": {"type": "string"}, "quote": {"type": "string"}}}}}]


@pytest.mark.parametrize(("failed_before", "succeeded", "expected"), [
    ([FAILED], [FIXED], 1.0),  # a corrected call that succeeded
    ([FAILED], [ToolCall("get_rate", {"quote": "USD", "base": "EUR"})], 1.0),  # any call shape, key order ignored
    ([FAILED], [FAILED], 0.0),  # the failing call repeated earns nothing, even if it went through this time
    ([FAILED], [], 0.0),  # nothing succeeded
    ([], [FIXED], 0.0),  # nothing to recover from
    ([FAILED, FIXED], [FIXED, {"name": "get_rate", "arguments": {"base": "GBP", "quote": "USD"}}], 1.0),  # once
])
def test_recovery_reward(failed_before, succeeded, expected):
    result = recovery_reward(failed_before=failed_before, succeeded=succeeded)
    assert result.total == expected and result.components == {"recovery": expected}


def test_recovery_in_the_composite_is_weighted_and_skipped_at_weight_zero():
    turn = Turn([FIXED], [FIXED], TOOLS, failed_before=[FAILED], succeeded=[FIXED])
    assert turn_reward(turn, {"recovery": 0.5}).total == 0.5
    # IRM of an exact call (+1) plus the recovery weight; at weight 0 the term is not computed at all
    assert turn_reward(turn, {"irm": 1.0, "recovery": 0.25}).total == pytest.approx(1.25)
    assert "recovery" not in turn_reward(turn, {"irm": 1.0}).components
