"""The feedback taxonomy of TL-Training (docs/references.md, TL-Training): what went wrong with one tool call, and
whose fault it was.

Calls we execute are classified structurally (schema validation, exception type, timeout); recorded feedback from
datasets that carry only the tool's output text is classified by `classify_feedback_text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from qwen_tool.codec.types import ToolCall


class FeedbackCategory(StrEnum):
    """The seven outcomes of a call (paper Fig. 3 / Table 14)."""

    OK = "ok"
    TOOL_INSTABILITY = "tool_instability"  # timeouts, 5xx, resource limits: not the model's fault
    CALL_FAILURE = "call_failure"  # wrong value or type, the tool raised
    TOOL_HALLUCINATION = "tool_hallucination"  # name not among the offered tools
    PARAMETER_HALLUCINATION = "parameter_hallucination"  # argument the tool does not have
    PARAMETER_MISSING = "parameter_missing"  # required argument absent
    OTHER = "other"  # malformed call text, unserialisable result, anything else

    @property
    def is_model_error(self) -> bool:
        """True when the model caused it: the assistant turn is an erroneous path (MAE drops its gradient)."""
        return self not in (FeedbackCategory.OK, FeedbackCategory.TOOL_INSTABILITY)


class ToolInstabilityError(Exception):
    """Raised by a tool (or a fault injector) for a failure of the service, not of the call: 5xx, network, timeout."""


class ToolCallError(Exception):
    """Raised by a tool that rejects the call's values; `content` (when given) is sent to the model verbatim."""

    def __init__(self, message: str, content: str | None = None) -> None:
        super().__init__(message)
        self.content = content


@dataclass
class CallOutcome:
    """One executed (or rejected) call: its category, the text sent back to the model, and why it failed."""

    call: ToolCall | None
    category: FeedbackCategory
    content: str
    error_type: str | None = None
    error_message: str | None = None
    elapsed_s: float = 0.0
    result: Any = None
    """The handler's raw return value (None on failure); `content` is its capped text form."""

    @property
    def ok(self) -> bool:
        return self.category is FeedbackCategory.OK


# Ordered: the first category whose pattern matches wins, so specific patterns come before the catch-all "error".
_TEXT_PATTERNS: list[tuple[FeedbackCategory, re.Pattern[str]]] = [
    (
        FeedbackCategory.TOOL_INSTABILITY,
        re.compile(
            r"time[ -]?out|timed out|did not answer within|connection (error|refused|reset|aborted)"
            r"|\b5\d\d\b.*(error|server)|server error"
            r"|service unavailable|bad gateway|gateway time|rate limit|too many requests|\b429\b"
            r"|temporarily unavailable|network (error|is unreachable)|max retries exceeded",
            re.I,
        ),
    ),
    (
        FeedbackCategory.TOOL_HALLUCINATION,
        re.compile(
            r"is not defined|unknown (tool|function|api)|no such (tool|function|api)|(tool|function|api) .{0,40}"
            r"(not found|does not exist|is not available)|not a valid (tool|function)|invalid (tool|function) name"
            r"|has no attribute",
            re.I,
        ),
    ),
    (
        FeedbackCategory.PARAMETER_HALLUCINATION,
        re.compile(
            r"unexpected (keyword )?(argument|parameter)|additional properties are not allowed"
            r"|unrecognized (argument|parameter)|unknown (argument|parameter)|invalid (argument|parameter) name",
            re.I,
        ),
    ),
    (
        FeedbackCategory.PARAMETER_MISSING,
        re.compile(
            r"missing \d* ?required|missing (argument|parameter)|is a required (property|parameter|argument)"
            r"|required (argument|parameter) .{0,40}(missing|not provided)",
            re.I,
        ),
    ),
    (
        FeedbackCategory.CALL_FAILURE,
        re.compile(
            r"\berror\b|exception|traceback|invalid|not supported|positional argument|failed|400 client error"
            r"|bad request|not found|cannot|can't|unable to|must be|\bwrong\b",
            re.I,
        ),
    ),
]


def classify_feedback_text(text: str) -> FeedbackCategory:
    """Category of recorded tool feedback from its text alone (for datasets without structured outcomes).

    A fallback only: the TL-Training reference matches patterns such as "is not defined", "unexpected keyword",
    "Invalid API call", "400 Client Error", "connection error"; we order them from specific to general.
    """
    for category, pattern in _TEXT_PATTERNS:
        if pattern.search(text):
            return category
    return FeedbackCategory.OK
