"""Calling a handler and capturing what happened, shared by the in-process executor and the sandbox's child."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwen_tool.tools.feedback import FeedbackCategory, ToolCallError, ToolInstabilityError

_INSTABILITY_ERRORS: tuple[type[BaseException], ...] = (
    ToolInstabilityError, TimeoutError, ConnectionError, MemoryError,
)


@dataclass
class RawOutcome:
    """What running a handler produced: a value, an exception (type name + message), or nothing (timeout)."""

    status: str  # "ok" | "error" | "timeout"
    value: Any = None
    error_type: str | None = None
    error_message: str | None = None
    instability: bool = False
    content: str | None = None  # verbatim text for the model (ToolCallError.content)
    category: FeedbackCategory | None = None  # overrides the category the executor would derive


def run_handler(handler: Any, arguments: dict[str, Any]) -> RawOutcome:
    """Call the handler and capture what happened; instability-type exceptions are marked as such."""
    try:
        return RawOutcome("ok", handler(**arguments))
    except ToolCallError as exc:
        return RawOutcome("error", error_type=type(exc).__name__, error_message=str(exc), content=exc.content)
    except _INSTABILITY_ERRORS as exc:
        return RawOutcome("error", error_type=type(exc).__name__, error_message=str(exc), instability=True)
    except Exception as exc:
        return RawOutcome("error", error_type=type(exc).__name__, error_message=str(exc))
