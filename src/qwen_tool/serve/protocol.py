"""The OpenAI chat-completions request, validated with pydantic: what we accept, and why a request is refused.

Unknown top-level fields are ignored (clients send vendor extras); known fields are checked strictly, so a malformed
request gets a 400 that names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qwen_tool.codec.values import Refused, fix_for, loads

FUNCTION_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"


@dataclass(frozen=True)
class RequestLimits:
    """How big one request may be. Past a limit the request is refused before any work, with the limit named: 413
    for the body, 400 for a field. Without them one client could make the server parse, render or generate without
    bound (and hold a batch slot for it)."""

    max_body_bytes: int = 4 * 1024 * 1024
    """Request body (JSON) size."""
    max_tokens: int = 32_768
    """`max_tokens` / `max_completion_tokens` a request may ask for."""
    max_messages: int = 2_048
    """Messages in one request."""
    max_tools: int = 128
    """Tools in one request (OpenAI's own limit)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionDefinition(_Strict):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(_Strict):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class FunctionCall(_Strict):
    name: str = Field(min_length=1)
    arguments: str

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            decoded = loads(value) if value.strip() else {}
        except ValueError as err:
            raise ValueError(f"arguments must be a JSON object encoded as a string ({err})") from err
        if isinstance(decoded, Refused):
            raise ValueError(f"the arguments' value {decoded.reason}; fix: {fix_for(decoded.reason)}")
        if not isinstance(decoded, dict):
            raise ValueError("arguments must be a JSON object encoded as a string")
        return value


class ToolCallIn(_Strict):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class ContentPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    id: str | None = None
    """Qwen-Agent's raw-API mode names a tool message's call `id` instead of `tool_call_id`; taken as that."""
    reasoning_content: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            self.tool_call_id = self.id
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs `tool_call_id` (the id of the call it answers)")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs `content` or `tool_calls`")
        if self.role in ("system", "developer", "user") and self.content is None:
            raise ValueError(f"a {self.role} message needs `content`")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry `tool_calls`")
        return self

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def as_openai(self) -> dict[str, Any]:
        """The plain dict the codec renders (developer is treated as system)."""
        message: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role,
                                   "content": self.text()}
        if self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.reasoning_content:
            message["reasoning_content"] = self.reasoning_content
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        if self.name:
            message["name"] = self.name
        return message


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"] = "function"
    function: NamedFunction


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="one choice per request")
    seed: int | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 16 or any(not s for s in stops):
            raise ValueError("stop takes up to 16 non-empty strings")
        return value

    @model_validator(mode="after")
    def _choice(self) -> ChatCompletionRequest:
        names = [tool.function.name for tool in self.tools or []]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique, got {names}")
        choice = self.tool_choice
        if choice in ("required",) or isinstance(choice, NamedToolChoice):
            if not names:
                raise ValueError("tool_choice asks for a call but no `tools` were given")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(f"tool_choice names {choice.function.name!r}, which is not among the tools {names}")
        return self

    def over_limit(self, limits: RequestLimits) -> tuple[str, str] | None:
        """(field, message) for the first field past the server's limits; None when the request is within them."""
        sizes = [("max_tokens", self.max_tokens, limits.max_tokens, "ask for fewer tokens"),
                 ("max_completion_tokens", self.max_completion_tokens, limits.max_tokens, "ask for fewer tokens"),
                 ("messages", len(self.messages), limits.max_messages, "send fewer messages (drop or summarise old "
                  "turns)"),
                 ("tools", len(self.tools or []), limits.max_tools, "offer fewer tools")]
        for name, size, limit, fix in sizes:
            if size is not None and size > limit:
                amount = f"is {size}" if name.startswith("max_") else f"has {size} entries"
                return name, f"{name} {amount}, over this server's limit of {limit}; fix: {fix}"
        return None

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def effective_tool_choice(self) -> str | NamedToolChoice:
        """OpenAI's defaults: `auto` when tools are given, `none` otherwise."""
        if self.tool_choice is not None:
            return self.tool_choice
        return "auto" if self.tools else "none"
