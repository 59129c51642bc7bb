"""Tools: schema + handler, argument validation, the executor (timeouts, the sandbox), the feedback taxonomy and the
order-free pairing of predicted with gold calls (`call_pairing`)."""

from qwen_tool.tools.executor import Executor
from qwen_tool.tools.feedback import (
    CallOutcome,
    FeedbackCategory,
    ToolCallError,
    ToolInstabilityError,
    classify_feedback_text,
)
from qwen_tool.tools.tool import Tool, ToolDefinitionError, ToolRegistry, bfcl_to_json_schema, schema_for_type
from qwen_tool.tools.validation import ArgumentProblem, validate_arguments

__all__ = [
    "ArgumentProblem",
    "CallOutcome",
    "Executor",
    "FeedbackCategory",
    "Tool",
    "ToolCallError",
    "ToolDefinitionError",
    "ToolInstabilityError",
    "ToolRegistry",
    "bfcl_to_json_schema",
    "classify_feedback_text",
    "schema_for_type",
    "validate_arguments",
]
