"""Bridge between OpenAI-compatible responses and the canonical message, in both directions.

Servers put calls in `message.tool_calls`, in `content` as text (no tool parser), or both; streamed or not. Every
case becomes one canonical assistant message `{"role", "content", "reasoning_content", "tool_calls"}`; and a canonical
message becomes the text of any format (for clients that parse calls from text, like Qwen-Agent).
"""

from __future__ import annotations

from typing import Any

from qwen_tool.codec.base import Codec, StartState, StreamParser, dumps, normalise_calls, result_text, visible
from qwen_tool.codec.types import ToolCall
from qwen_tool.codec.values import loads


def as_dict(obj: Any) -> dict:
    """An OpenAI SDK object (pydantic) or a dict, as a plain dict."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_none=True)
    return dict(vars(obj))


def _codec(fmt: str | Codec) -> Codec:
    if isinstance(fmt, Codec):
        return fmt
    from qwen_tool.codec import get_codec

    return get_codec(fmt)


def _same(a: ToolCall, b: ToolCall) -> bool:
    return a.name == b.name and a.arguments == b.arguments


def merge_calls(field_calls: list[ToolCall], text_calls: list[ToolCall]) -> list[ToolCall]:
    """Calls from the `tool_calls` field first, then those parsed from text that the field did not already hold."""
    merged = list(field_calls)
    merged += [call for call in text_calls if not any(_same(call, seen) for seen in field_calls)]
    return merged


def canonical_message(content: str, reasoning: str | None, calls: list[ToolCall]) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [call.to_openai() for call in calls]
    return message


def normalise_message(message: Any, fmt: str | Codec = "auto", tools: list[dict] | None = None, *,
                      keep_malformed: bool = False, start: StartState | None = None) -> dict:
    """A (non-streamed) assistant message from any OpenAI-compatible server → the canonical message.

    With `keep_malformed`, the text of a call in `content` that does not parse stays in the content, and the parse
    error comes back under `parse_error` (as `text_to_message` reports it). `start`: where the prompt left the
    parser (`Codec.start_state`).
    """
    raw = as_dict(message)
    parsed = _codec(fmt).parse(result_text(raw) if raw.get("content") else "", tools, keep_malformed=keep_malformed,
                               start=start)
    reasoning = raw.get("reasoning_content") or raw.get("reasoning") or parsed.reasoning
    canonical = canonical_message(parsed.content, reasoning, merge_calls(normalise_calls(raw.get("tool_calls")),
                                                                         parsed.tool_calls))
    if keep_malformed and parsed.error:
        canonical["parse_error"] = parsed.error
    return canonical


def normalise_response(response: Any, fmt: str | Codec = "auto", tools: list[dict] | None = None) -> dict:
    """A chat completion (SDK object or dict) → the canonical message of its first choice."""
    choices = as_dict(response).get("choices") or []
    return normalise_message(as_dict(choices[0]).get("message") if choices else {}, fmt, tools)


class ToolCallAccumulator:
    """Merges streamed tool-call fragments by their integer `index` (the OpenAI contract).

    A fragment without `index` continues the call with the same `id`, else the latest call: servers that omit the
    index are handled, but never by merging two calls that carry different indexes.
    """

    def __init__(self) -> None:
        self.entries: dict[int, dict[str, Any]] = {}
        self._by_id: dict[str, int] = {}
        self._last: int | None = None

    def add(self, fragment: Any) -> int:
        frag = as_dict(fragment)
        function = as_dict(frag.get("function"))
        index = frag.get("index")
        if not isinstance(index, int):
            call_id = frag.get("id")
            if call_id and call_id in self._by_id:
                index = self._by_id[call_id]
            elif call_id or self._last is None:
                index = max(self.entries, default=-1) + 1
            else:
                index = self._last
        entry = self.entries.setdefault(index, {"id": None, "name": [], "arguments": []})
        if frag.get("id") and not entry["id"]:
            entry["id"] = frag["id"]
            self._by_id[frag["id"]] = index
        entry["name"].append(function.get("name") or "")
        arguments = function.get("arguments")
        entry["arguments"].append(arguments if isinstance(arguments, str) else (dumps(arguments) if arguments else ""))
        self._last = index
        return index

    def calls(self, complete_only: bool = False) -> list[ToolCall]:
        """Calls so far in index order; with `complete_only`, those whose arguments already decode as JSON."""
        out = []
        for _, entry in sorted(self.entries.items()):
            text, name = "".join(entry["arguments"]), "".join(entry["name"])
            try:
                arguments = loads(text) if text.strip() else {}
            except ValueError:
                if complete_only:
                    continue
                arguments = {}
            if not isinstance(arguments, dict) or not name:
                continue
            call = ToolCall(name, arguments)
            if entry["id"]:
                call.id = entry["id"]
            out.append(call)
        return out


class StreamAssembler:
    """Streamed chunks → canonical deltas and, at the end, the canonical message.

    Content is run through the format's streaming parser, so calls written as text are found too; `tool_calls`
    fragments are merged by index.
    """

    def __init__(self, fmt: str | Codec = "auto", tools: list[dict] | None = None, *,
                 start: StartState | None = None) -> None:
        """`start`: where the prompt left the parser of the content text (`Codec.start_state`)."""
        self.field = ToolCallAccumulator()
        self.text: StreamParser = _codec(fmt).stream(tools, start=start)
        self.text_calls = ToolCallAccumulator()
        self._content: list[str] = []
        self._reasoning: list[str] = []
        """Pieces, joined when read: appending to one string per delta costs O(n²) over a long answer."""
        self._finished = False

    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def _absorb(self, deltas: list[dict]) -> list[dict]:
        for delta in deltas:
            self._content.append(delta.get("content", ""))
            self._reasoning.append(delta.get("reasoning_content", ""))
            for fragment in delta.get("tool_calls", []):
                self.text_calls.add(fragment)
        return deltas

    def add_chunk(self, chunk: Any) -> list[dict]:
        """One `chat.completion.chunk` (SDK object or dict) → canonical deltas."""
        choices = as_dict(chunk).get("choices") or []
        if not choices:
            return []
        delta = as_dict(as_dict(choices[0]).get("delta"))
        out: list[dict] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            self._reasoning.append(reasoning)
            out.append({"reasoning_content": reasoning})
        if delta.get("content"):
            out += self._absorb(self.text.feed(delta["content"]))
        for fragment in delta.get("tool_calls") or []:
            self.field.add(fragment)
        return out

    def finish(self) -> list[dict]:
        if self._finished:
            return []
        self._finished = True
        return self._absorb(self.text.finish())

    def calls(self, complete_only: bool = False) -> list[ToolCall]:
        return merge_calls(self.field.calls(complete_only), self.text_calls.calls(complete_only))

    def message(self) -> dict:
        self.finish()
        return canonical_message(visible(self.content), visible(self.reasoning) or None, self.calls())


def message_to_text(message: dict, fmt: str | Codec = "hermes") -> str:
    """Reverse direction: a canonical (or OpenAI) assistant message as the text a model of `fmt` would write."""
    return _codec(fmt).render_assistant(message.get("content") or None, normalise_calls(message.get("tool_calls")),
                                        None).text


def text_to_message(text: str, fmt: str | Codec = "auto", tools: list[dict] | None = None, *,
                    start: StartState | None = None) -> dict:
    """Model text → the canonical message (what `qwen-tool parse` prints), with `parse_error` and `parse_warnings`
    (recovered malformed output) when there are any. `start`: where the prompt left the parser."""
    parsed = _codec(fmt).parse(text, tools, start=start)
    message = canonical_message(parsed.content, parsed.reasoning, parsed.tool_calls)
    if parsed.error:
        message["parse_error"] = parsed.error
    if parsed.warnings:
        message["parse_warnings"] = parsed.warnings
    return message
