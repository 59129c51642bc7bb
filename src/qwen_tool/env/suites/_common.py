"""Helpers shared by the built-in suites: task construction and id counters."""

from __future__ import annotations

from typing import Any

from qwen_tool.env.task import Task

SYSTEM_PROMPT = "You are a helpful assistant. Use the tools when they help; answer the user when you are done."


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """A gold call."""
    return {"name": name, "arguments": arguments}


def make_task(suite: str, index: int, query: str, steps: list[list[dict[str, Any]]], answer: str,
              seed: int = 0) -> Task:
    """A single-user-turn task: gold steps, then the answer step (an empty call list)."""
    return Task(
        id=f"{suite}-{index}", suite=suite, domain=suite, seed=seed,
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": query}],
        gold_calls=[*steps, []], gold_answer=answer,
    )


def next_id(data: dict[str, Any], prefix: str) -> str:
    """Sequential ids (deterministic, unlike uuid): PREFIX-1001, PREFIX-1002, ..."""
    counters = data.setdefault("_counters", {})
    counters[prefix] = counters.get(prefix, 1000) + 1
    return f"{prefix}-{counters[prefix]}"
