"""A difficulty score per trajectory (synthesis writes it into `meta.difficulty`; `data stats` averages it per
category). The RL curriculum's stages are its own (`rl/curriculum.py`)."""

from __future__ import annotations

import json
from typing import Any


def nesting_depth(value: Any) -> int:
    """Depth of containers in a JSON value: a scalar is 0, {"a": 1} is 1, {"a": [1]} is 2."""
    if isinstance(value, dict):
        return 1 + max((nesting_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting_depth(v) for v in value), default=0)
    return 0


def difficulty(record: dict[str, Any]) -> float:
    """d = calls + 2·(call_steps − 1)⁺ + 0.5·distractors + nesting + 2·[error turn] + [no call needed].

    calls: tool calls in the trajectory; call_steps: assistant turns with calls; distractors: offered tools never
    called; nesting: deepest argument depth beyond the top-level object (0 for flat arguments).
    """
    call_turns = [m for m in record["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    calls = [c for m in call_turns for c in m["tool_calls"]]
    called = {c["function"]["name"] for c in calls}
    offered = {t["function"]["name"] for t in record.get("tools", [])}
    nesting = max((nesting_depth(json.loads(c["function"]["arguments"])) - 1 for c in calls), default=0)
    erroneous = any(m.get("erroneous") for m in call_turns)
    no_call = bool(offered) and not calls
    return (len(calls) + 2 * max(0, len(call_turns) - 1) + 0.5 * len(offered - called) + nesting
            + 2 * erroneous + no_call)


__all__ = ["difficulty", "nesting_depth"]
