"""One chat completion, transport aside: request → prompt (codec) → engine → OpenAI deltas (codec) → message.

Stream and non-stream share `CompletionRun.deltas()`; the non-stream message is those deltas folded together, so the
two can never disagree. `tool_choice` is enforced by the prompt (tools rendered, or left out for `none`) and by a
forced prefix: the generation starts with the format's call opener (`required`) and the function name (named).
Tool calls decode under the offered tools' schemas, as in evaluation (`qwen_tool.codec.guided`): free text stays free,
and a call the model opens (or the server forced open) must fit its tool's schema.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.codec import Codec, CodecError, get_codec
from qwen_tool.codec.base import StartState, StreamParser
from qwen_tool.codec.chat import render_prompt
from qwen_tool.codec.guided import structural_tag
from qwen_tool.codec.types import ToolCall
from qwen_tool.decode import SamplingParams
from qwen_tool.log import logger
from qwen_tool.serve.engine import Engine, GenerationHandle, ServeParams
from qwen_tool.serve.protocol import ChatCompletionRequest, NamedToolChoice

PROBE_NAME = "qwen_tool_probe"
GUIDE_MAX_WHITESPACE = 1
"""Whitespace characters a guided call may write wherever JSON allows them: room for the formats' own compact style
(`{"city": "Paris"}`), none for a weak model to fill max_tokens with whitespace under the grammar."""


class RequestTimeout(QwenToolError):
    """The request ran past the server's per-request timeout (HTTP 504)."""


def forced_call_prefix(codec: Codec, name: str | None) -> str:
    """Text a forced call starts with, cut from the format's own rendering of a call.

    `name` None (`tool_choice="required"`): everything before the function name (e.g. `<tool_call>\\n{"name": "`).
    A name: everything before the arguments (e.g. `<tool_call>\\n{"name": "f", "arguments": `), or up to the end of
    the name where the format marks no arguments span. Empty when the format's rendering marks no name.
    """
    rendered = codec.render_calls([ToolCall(name or PROBE_NAME, {"probe": 1})])
    name_span = next((span for span in rendered.spans if span.kind == "name"), None)
    if name_span is None:
        return ""
    if name is None:
        return rendered.text[:name_span.start]
    arguments = next((span for span in rendered.spans if span.kind == "arguments" and span.start >= name_span.end),
                     None)
    if arguments is not None:
        return rendered.text[:arguments.start]
    return rendered.text[:name_span.end]


@dataclass
class ChatPlan:
    """Everything the engine and the parser need for one request."""

    prompt: str
    prefix: str
    """Forced start of the generation (already at the end of `prompt`); the parser reads it first."""
    params: ServeParams
    codec: Codec
    tools: list[dict] | None
    parallel_tool_calls: bool
    unguided: str | None = None
    """Why tool calls decode without a guide; None when `params.sampling.guide` holds them to their schemas."""
    start: StartState = field(default_factory=StartState)
    """Where the rendered prompt left the parser (e.g. inside a think block the template opened)."""

    def metadata(self) -> dict[str, Any]:
        """What the response reports about this request's decoding (OpenAI clients ignore the extra field)."""
        if self.unguided is None:
            return {"guided": True}
        return {"guided": False, "unguided_reason": self.unguided}


def guide_for(tool_format: str, tools: list[dict], prefix: str) -> tuple[str | None, str | None]:
    """(structural tag, None), or (None, why not): a format without a template, or schemas xgrammar cannot build a
    grammar for, are served unguided rather than refused (the request was valid OpenAI)."""
    try:
        guide = structural_tag(tool_format, tools, prefix, max_whitespace=GUIDE_MAX_WHITESPACE)
    except CodecError as err:
        return None, str(err)
    import xgrammar

    try:
        xgrammar.Grammar.from_structural_tag(guide)  # milliseconds; in the decoder it would fail the request
    except RuntimeError as err:
        return None, f"xgrammar cannot guide these tool schemas ({str(err).strip().splitlines()[-1]})"
    return guide, None


def _messages(request: ChatCompletionRequest) -> list[dict]:
    """OpenAI messages as dicts; tool messages get the `name` of the call they answer (some formats print it)."""
    names: dict[str, str] = {}
    messages = []
    for message in request.messages:
        as_dict = message.as_openai()
        for call in message.tool_calls or []:
            names[call.id] = call.function.name
        if as_dict["role"] == "tool" and "name" not in as_dict and as_dict.get("tool_call_id") in names:
            as_dict["name"] = names[as_dict["tool_call_id"]]
        messages.append(as_dict)
    return messages


def plan_chat(request: ChatCompletionRequest, tokenizer: Any, tool_format: str, default_max_tokens: int,
              tool_rendering: str = "json", unguided: str | None = None) -> ChatPlan:
    """Render the prompt (tools listed as `tool_rendering` says), choose the parser and build the guide for a
    validated request (CodecError on messages the codec refuses). `unguided`: why this server decodes every call
    unguided (None: it guides them)."""
    codec = get_codec(tool_format, tool_rendering=tool_rendering)
    tools = [tool.model_dump(exclude_none=True) for tool in request.tools or []] or None
    choice = request.effective_tool_choice()
    prefix = ""
    parser_codec = codec
    if choice == "none":
        tools = None
        parser_codec = Codec()  # reasoning tags only: a call written anyway stays visible text, never `tool_calls`
        parser_codec.think_tags = codec.think_tags
    elif choice == "required":
        prefix = forced_call_prefix(codec, None)
    elif isinstance(choice, NamedToolChoice):
        prefix = forced_call_prefix(codec, choice.function.name)
    rendered = render_prompt(tokenizer, _messages(request), tools, codec)
    prompt = rendered + prefix
    guide = None
    if tools is None:
        unguided = "tool_choice is none" if request.tools else "no tools were offered"
    elif unguided is None:
        guide, unguided = guide_for(tool_format, tools, prefix)
    sampling = SamplingParams(
        max_tokens=request.max_completion_tokens or request.max_tokens or default_max_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        seed=request.seed,
        guide=guide,
    )
    return ChatPlan(prompt, prefix, ServeParams(sampling, request.stops()), parser_codec, tools,
                    request.parallel_tool_calls, unguided, parser_codec.start_state(rendered))


@dataclass
class CompletionRun:
    """Reads one request's pieces from the engine and turns them into OpenAI deltas."""

    plan: ChatPlan
    handle: GenerationHandle
    deadline: float
    """`time.monotonic()` after which the request is abandoned with RequestTimeout."""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    calls: int = 0
    warnings: list[str] = field(default_factory=list)
    """Malformed output the parser recovered (logged, and reported in the response's `qwen_tool` field)."""
    parser: StreamParser = field(init=False)

    def __post_init__(self) -> None:
        self.parser = self.plan.codec.stream(self.plan.tools, start=self.plan.start)
        self.prompt_tokens = self.handle.prompt_tokens

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    async def deltas(self) -> AsyncIterator[dict]:
        """OpenAI deltas (content, reasoning_content, tool_calls with an integer index); sets finish_reason.

        The engine request is cancelled when this ends early (client gone, timeout, or the one call that
        `parallel_tool_calls=false` allows is complete).
        """
        try:
            pending = self.parser.feed(self.plan.prefix)
            engine_reason = None
            while engine_reason is None:
                for delta in self._admit(pending):
                    yield delta
                if self._enough_calls():
                    engine_reason = "stop"
                    break
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeout("the request ran past the server's per-request timeout; fix: lower "
                                         "max_tokens or raise --request-timeout")
                try:
                    piece = await asyncio.wait_for(self.handle.__anext__(), remaining)
                except TimeoutError as err:
                    raise RequestTimeout("the request ran past the server's per-request timeout; fix: lower "
                                         "max_tokens or raise --request-timeout") from err
                pending = self.parser.feed(piece.text) if piece.text else []
                self.completion_tokens = piece.completion_tokens
                if piece.finish_reason is not None:
                    engine_reason = piece.finish_reason
                    self.error = piece.error
            if not self._enough_calls():
                for delta in self._admit(pending + self.parser.finish()):
                    yield delta
            self.finish_reason = "tool_calls" if self.calls else engine_reason
            self.warnings = self.parser.result().warnings
            for warning in self.warnings:
                logger.warning("recovered malformed model output: %s", warning)
        finally:
            self.handle.cancel()

    def _enough_calls(self) -> bool:
        return not self.plan.parallel_tool_calls and self.calls >= 1

    def _admit(self, deltas: list[dict]) -> list[dict]:
        """Drop calls past the first when parallel calls are off; count the calls let through."""
        out = []
        for delta in deltas:
            fragments = delta.get("tool_calls")
            if fragments is None:
                out.append(delta)
                continue
            index = fragments[0]["index"]
            if self._enough_calls() and index >= self.calls:
                continue
            if "id" in fragments[0]:
                self.calls += 1
            out.append(delta)
        return out


def fold_deltas(deltas: list[dict]) -> dict[str, Any]:
    """Stream deltas → the assistant message a non-streamed response carries."""
    content, reasoning = [], []
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        content.append(delta.get("content", ""))
        reasoning.append(delta.get("reasoning_content", ""))
        for fragment in delta.get("tool_calls", []):
            entry = calls.setdefault(fragment["index"], {"id": None, "type": "function",
                                                         "function": {"name": "", "arguments": ""}})
            entry["id"] = fragment.get("id") or entry["id"]
            entry["function"]["name"] += fragment.get("function", {}).get("name", "")
            entry["function"]["arguments"] += fragment.get("function", {}).get("arguments", "")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or (None if calls else "")}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return message


def submit(engine: Engine, plan: ChatPlan, timeout_s: float) -> CompletionRun:
    """Queue the plan (EngineBusy / PromptTooLong propagate) and return the run that reads it."""
    handle = engine.submit(plan.prompt, plan.params)
    return CompletionRun(plan, handle, time.monotonic() + timeout_s)
