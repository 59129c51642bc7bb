"""Tool-call wire formats: render tools, calls and results into model text, and parse model text back."""

from qwen_tool.codec.types import ParsedOutput, ToolCall

__all__ = ["ParsedOutput", "ToolCall"]
