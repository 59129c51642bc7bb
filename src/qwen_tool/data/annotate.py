"""MAE annotation: find the erroneous assistant turns of a trajectory and say why they failed.

A call is replayed through the tools room's `Executor` against the offered schemas (unknown tool, missing or invented
argument, wrong type): that is structural. When the schema accepts it, the recorded tool feedback decides, through the
tools room's text classifier (a tool that raised, a service error). Tool instability is not the model's fault, so it
never marks a turn erroneous.
"""

from __future__ import annotations

import json
from typing import Any

from qwen_tool.codec.types import ToolCall
from qwen_tool.tools import Executor, FeedbackCategory, Tool, classify_feedback_text


def annotate(record: dict[str, Any], executor: Executor | None = None) -> dict[str, Any]:
    """`record` with `erroneous` / `feedback_category` set on assistant call turns and their tool messages."""
    executor = executor or Executor(concurrent=False)
    tools = {t["function"]["name"]: Tool.from_schema(t) for t in record.get("tools", [])}
    feedback = {m["tool_call_id"]: m for m in record["messages"] if m["role"] == "tool"}
    for message in record["messages"]:
        if message["role"] != "assistant" or not message.get("tool_calls"):
            continue
        worst = FeedbackCategory.OK
        for call in message["tool_calls"]:
            category = _category(call, tools, feedback.get(call["id"]), executor)
            if call["id"] in feedback:
                feedback[call["id"]]["feedback_category"] = category.value
            if worst is FeedbackCategory.OK or (not worst.is_model_error and category.is_model_error):
                worst = category
        message.pop("erroneous", None)
        message.pop("feedback_category", None)
        if worst.is_model_error:
            message["erroneous"] = True
            message["feedback_category"] = worst.value
    return record


def _category(call: dict[str, Any], tools: dict[str, Tool], feedback: dict[str, Any] | None,
              executor: Executor) -> FeedbackCategory:
    try:
        arguments = json.loads(call["function"]["arguments"])
    except json.JSONDecodeError:
        return FeedbackCategory.OTHER
    rejection = executor.reject(ToolCall(call["function"]["name"], arguments, call["id"]), tools)
    if rejection is not None:
        return rejection.category
    if feedback is None:
        return FeedbackCategory.OK
    return classify_feedback_text(feedback.get("content") or "")


__all__ = ["annotate"]
