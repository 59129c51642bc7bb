"""The canonical types every wire format converts to and from: OpenAI-style tool calls."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


def new_call_id() -> str:
    """An OpenAI-style call id (`call_` + 24 hex characters)."""
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class ToolCall:
    """One function call: the name and the decoded JSON arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_call_id)

    def to_openai(self) -> dict[str, Any]:
        """As an entry of an OpenAI assistant message's `tool_calls` (arguments as a JSON string)."""
        import json

        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }


@dataclass
class ParsedOutput:
    """What a model's text means: visible content, reasoning (thinking), calls, and a parse error if any."""

    content: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    error: str | None = None
    """Set when the text held a malformed or truncated call; such a call is never returned half-built."""
    warnings: list[str] = field(default_factory=list)
    """One line per malformed piece the parser recovered because the model's intent was unambiguous (e.g. a missing
    close tag); see docs/codec-parsing.md. Nothing in a recovered call is invented."""
