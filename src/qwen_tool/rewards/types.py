"""What every reward returns, and the plain call form rewards compare: `(name, arguments)`.

Rewards accept calls in any of the shapes the project passes around: objects with `.name` / `.arguments` (the codec's
`ToolCall`), `{"name", "arguments"}` dicts (task gold), or OpenAI `tool_calls` entries (`{"function": {...}}`, with the
arguments as a JSON string).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qwen_tool import QwenToolError


class RewardError(QwenToolError):
    """A reward was given data it cannot read (a call without a name, an unknown reward name)."""


@dataclass(frozen=True)
class Call:
    """A call reduced to what rewards compare."""

    name: str
    arguments: dict[str, Any]


@dataclass
class RewardResult:
    """A scalar reward and the named parts it was built from (logged per component during training)."""

    total: float
    components: dict[str, float] = field(default_factory=dict)


def as_call(call: Any) -> Call:
    """One call in any accepted shape → `Call`."""
    if isinstance(call, Call):
        return call
    if isinstance(call, Mapping):
        body = call.get("function", call)
        name, arguments = body.get("name"), body.get("arguments", {})
    else:
        name, arguments = getattr(call, "name", None), getattr(call, "arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            arguments = {"__unparsable__": arguments}
    if not isinstance(name, str) or not isinstance(arguments, Mapping):
        raise RewardError(f"cannot read a tool call from {call!r:.120}; fix: pass ToolCall objects or "
                          "{'name': ..., 'arguments': {...}} dicts")
    return Call(name, dict(arguments))


def as_calls(calls: Iterable[Any] | None) -> list[Call]:
    return [as_call(c) for c in calls or []]


def tool_parameters(tools: Iterable[Mapping[str, Any]] | None) -> dict[str, set[str]]:
    """Offered tool name → its parameter names, from OpenAI tool schemas (or bare function schemas)."""
    out: dict[str, set[str]] = {}
    for tool in tools or []:
        body = tool.get("function", tool)
        properties = (body.get("parameters") or {}).get("properties") or {}
        out[body["name"]] = set(properties)
    return out


def canonical(arguments: Mapping[str, Any]) -> str:
    """Arguments as canonical JSON (sorted keys), so equal argument dicts compare equal as strings."""
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str)
