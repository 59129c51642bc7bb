"""`Task`: what one episode is about. Produced by data synthesis and the BFCL loader, consumed by ToolEnv and eval.

A task names its suite (the stateful tools that serve it) and holds the opening messages, the tools offered (names
from the suite, or full OpenAI schemas), and the gold: calls per assistant step, and optionally the final answer and
the end state. Multi-turn conversations (BFCL) add `follow_ups`: user turns delivered each time the assistant answers
without calling a tool.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class UserTurn:
    """A later user turn: its messages, and tools that become available from this turn on (BFCL miss_func)."""

    messages: list[dict[str, Any]]
    add_tools: list[str] = field(default_factory=list)


@dataclass
class Task:
    """One episode's specification (JSON round-trip with `to_dict` / `from_dict`).

    gold_calls: per assistant step, the list of calls `{"name": ..., "arguments": {...}}` it should make (parallel
        calls share a step); an empty list is a step that answers without calling (it closes a user turn).
    gold_state: the suite's `state()` after a perfect episode (compared at the end when given).
    seed: seeds the suite's initial state and the env's fault injection, so the same task replays identically.
    """

    id: str
    suite: str
    messages: list[dict[str, Any]]
    tools: list[str | dict[str, Any]] | None = None
    """Tool names of the suite (or OpenAI schemas); None offers every tool of the suite."""
    gold_calls: list[list[dict[str, Any]]] = field(default_factory=list)
    gold_answer: str | None = None
    gold_state: Any = None
    follow_ups: list[UserTurn] = field(default_factory=list)
    domain: str = ""
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        data = dict(data)
        data["follow_ups"] = [turn if isinstance(turn, UserTurn) else UserTurn(**turn)
                              for turn in data.get("follow_ups", [])]
        return cls(**data)
