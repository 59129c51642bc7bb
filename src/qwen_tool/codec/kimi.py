"""Kimi K2 and Kimi K3.

K2: `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{json}
<|tool_call_end|><|tool_calls_section_end|>`. The call id is the `functions.NAME:IDX` string itself.

K3 ("XTML"): every span is `<|open|>TAG attrs<|sep|>...<|close|>TAG<|sep|>`. A turn holds a `think` channel
(reasoning), a `response` channel (content) and a `tools` section of calls:
`<|open|>call tool="NAME" index="1"<|sep|><|open|>argument key="K" type="string"<|sep|>V<|close|>argument<|sep|>...
<|close|>call<|sep|>`. A value is raw text typed by its `type` attribute (`string`: as written; other types: JSON);
a `<|open|>json type="object"<|sep|>{...}<|close|>json<|sep|>` block may hold the arguments as one JSON object.

Inside either format's tool section, text that is not a call is never passed on silently: a K2 call written without its
`<|tool_call_begin|>` (its id right before `<|tool_call_argument_begin|>`) is read as the call it is; other text is
kept as content and reported in `error`. Where the markup comes from: docs/codec-sources.md.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from qwen_tool.codec.base import (
    CONTENT,
    REASONING,
    Codec,
    Handler,
    Region,
    Rendered,
    ScanState,
    Span,
    StartState,
    TextBuilder,
    add_json_object,
    argument_schema,
    awaiting_anew,
    call_from_obj,
    call_region,
    decode_json,
    drop,
    dumps,
    grows_into,
    malformed,
    refused_value,
    result_text,
    skip_ws,
    unclosed,
    waiting,
)
from qwen_tool.codec.schema_typing import marked_value
from qwen_tool.codec.types import ToolCall
from qwen_tool.codec.values import Refused, loads

SECTION_BEGIN, SECTION_END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
CALL_BEGIN, ARG_BEGIN, CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
KIMI_ID = re.compile(r"functions\.(.+):(\d+)$")
BARE_ID = re.compile(r"(?:functions\.)?[\w.\-]+(?::\d+)?\s*$")
"""A K2 call id (or a bare tool name) at the end of the text before `<|tool_call_argument_begin|>`, for a call written
without its `<|tool_call_begin|>`."""


def kimi_id(call: ToolCall, index: int) -> str:
    return call.id if KIMI_ID.match(call.id) else f"functions.{call.name}:{index}"


@dataclass
class SectionRest:
    """What follows a section's opening tag or one of its calls, up to the next call or the section's end."""

    end: int
    calls: list[ToolCall] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    error: str | None = None

    def region(self, first: Region | None = None) -> Region:
        """One region: `first` (a call, or None), then what this rest read."""
        calls = (first.calls if first else []) + self.calls
        error = (first.error if first else None) or self.error
        return Region(self.end, calls=calls, content="".join(self.stray), error=error,
                      unread_from=first.unread_from if first else None)


def section_rest(text: str, q: int, final: bool, tags: tuple[str, ...], what: str,
                 recover: Callable[[str, int, bool], Region | None] | None = None) -> SectionRest | None:
    """Read from `q` inside a tool section up to the next of `tags` (a call opener or the section's close), or any
    other special token (`<|`), which the scanner handles. Whitespace is dropped; a call `recover` reads is kept (it
    returns None to wait, or a region without calls when the text is not one); other text is kept as content with
    an error naming it. Waits (None) while streaming until what follows is known."""
    rest = SectionRest(q)
    while True:
        q = skip_ws(text, q)
        if q >= len(text) or text.startswith("<|", q):
            if not final and (q >= len(text) or grows_into(text, q, *tags)):
                return None
            rest.end = q
            return rest
        special = text.find("<|", q)
        if not final and (special < 0 or text.find("|>", special) < 0):
            return None  # the text, or the special token after it, is not complete yet
        stop = len(text) if special < 0 else special
        if recover is not None:
            region = recover(text, q, final)
            if region is None:
                return None
            if region.calls or region.error:
                rest.calls.extend(region.calls)
                rest.stray.append(region.content)
                rest.error = rest.error or region.error
                q = region.end
                continue
        rest.stray.append(text[q:stop])
        rest.error = rest.error or (f"stray text inside the {what} at char {q} is not a call; it was kept as "
                                    "content")
        q = stop


class KimiK2Codec(Codec):
    name = "kimi_k2"
    call_markers = (CALL_BEGIN, ARG_BEGIN)
    tool_result_role = "tool"
    section = "Kimi tool-call section"

    def markers(self, mode: str) -> dict[str, Handler]:
        table = dict(super().markers(mode))
        if mode == CONTENT:
            table.update({SECTION_BEGIN: self._section, SECTION_END: self._section_end, CALL_BEGIN: self._call,
                          CALL_END: drop(CALL_END), "<|im_end|>": drop("<|im_end|>")})
        return table

    def _rest(self, text: str, q: int, final: bool) -> SectionRest | None:
        return section_rest(text, q, final, (CALL_BEGIN, SECTION_END), self.section, self._bare_call)

    def _section(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        state.memo["kimi_section"] = True
        rest = self._rest(text, pos + len(SECTION_BEGIN), final)
        return None if rest is None else rest.region()

    @staticmethod
    def _section_end(text: str, pos: int, final: bool, state: ScanState) -> Region:
        state.memo.pop("kimi_section", None)
        return Region(pos + len(SECTION_END))

    def _call(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        if unclosed(text, pos, final, CALL_END, state):
            return None
        region = read_k2_call(text, pos, pos + len(CALL_BEGIN), final)
        if region is None or not state.memo.get("kimi_section"):
            return region
        rest = self._rest(text, region.end, final)
        return None if rest is None else rest.region(region)

    def _bare_call(self, text: str, q: int, final: bool) -> Region | None:
        """A call whose `<|tool_call_begin|>` is missing: an id right before `<|tool_call_argument_begin|>` (None to
        wait; a region without calls when the text at `q` is not that). Text before the id is kept as content, with
        an error naming it."""
        arg_at = text.find("<|", q)
        if arg_at < 0 or not text.startswith(ARG_BEGIN, arg_at):
            return Region(q)
        bare_id = BARE_ID.search(text, q, arg_at)
        if bare_id is None:
            return Region(q)
        region = read_k2_call(text, bare_id.start(), bare_id.start(), final)
        if region is not None and bare_id.start() > q:
            region.content = text[q:bare_id.start()]
            region.error = region.error or (f"stray text inside the {self.section} at char {q} is not a call; it "
                                            "was kept as content")
        return region

    def declarations(self, tools: list[dict]) -> str:
        return dumps([tool if "function" in tool else {"type": "function", "function": tool} for tool in tools])

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        return declarations  # Kimi's template declares the tools and nothing more

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder().add(SECTION_BEGIN)
        for index, call in enumerate(calls):
            call_id = kimi_id(call, index)
            prefix, _, suffix = call_id.partition(call.name)
            builder.add(CALL_BEGIN + prefix).add(call.name, "name", index).add(suffix + ARG_BEGIN)
            add_json_object(builder, call.arguments, index)
            builder.add(CALL_END)
        return builder.add(SECTION_END).build()

    def render_tool_result(self, result: dict) -> str:
        return f"## Return of {result.get('tool_call_id', '')}\n{result_text(result)}"


def read_k2_call(text: str, pos: int, id_start: int, final: bool) -> Region | None:
    """The K2 call whose id starts at `id_start` (its region starts at `pos`)."""
    what = "Kimi tool call"
    arg_at = text.find(ARG_BEGIN, id_start)
    if arg_at < 0:
        return waiting(text, pos, final, what)
    call_id = text[id_start:arg_at].strip()
    match = KIMI_ID.match(call_id)
    name = match.group(1) if match else call_id.split(":")[0].removeprefix("functions.")
    body = skip_ws(text, arg_at + len(ARG_BEGIN))
    decoded = decode_json(text, body) if body < len(text) else None
    if decoded is None:
        close = text.find(CALL_END, body)
        if close < 0 or not final:
            return waiting(text, pos, final, what)
        return Region(close + len(CALL_END), error=f"{what} at char {pos}: arguments are not JSON; dropped")
    arguments, end = decoded
    end = skip_ws(text, end)
    if text.startswith(CALL_END, end):
        end += len(CALL_END)
    elif grows_into(text, end, CALL_END):
        if not final:
            return None
        end = len(text)
    return call_region(end, call_from_obj({"name": name, "arguments": arguments, "id": call_id}), what, pos,
                       f"{what} at char {pos}: arguments are not an object; dropped")


# ---- Kimi K3 ------------------------------------------------------------------------------------------------------
OPEN, CLOSE, SEP, END_OF_MSG = "<|open|>", "<|close|>", "<|sep|>", "<|end_of_msg|>"


def opening(tag: str) -> str:
    return f"{OPEN}{tag}{SEP}"


def closing(tag: str) -> str:
    return f"{CLOSE}{tag}{SEP}"


K3_CALL, K3_CALL_END = OPEN + "call", closing("call")
K3_ARG, K3_ARG_END, K3_JSON, K3_JSON_END = OPEN + "argument", closing("argument"), OPEN + "json", closing("json")
K3_OPENINGS = (K3_CALL, opening("tools"), opening("think"), opening("response"), OPEN + "message")
K3_DROPPED_CLOSINGS = (closing("response"), closing("think"), closing("message"))
"""Tags that end a channel or the turn: never content."""
BACKSLASH_ESCAPE = re.compile(r"\\(.)")
K3_ATTRIBUTE = re.compile(r'([\w-]+)="((?:[^"\\]|\\.)*)"')


def literal(text: str, pos: int, final: bool, token: str, tags: tuple[str, ...], mode: str, state: ScanState
            ) -> Region | None:
    """While streaming, wait for text that may still grow into one of `tags` (in well-formed output, until it has);
    else `token` is text of `mode`'s channel, as written (a tag this codec does not know)."""
    if not final and grows_into(text, pos, *tags):
        return awaiting_anew(state, *tags)
    return Region(pos + len(token), content=token) if mode == CONTENT else Region(pos + len(token), reasoning=token)


def k3_attributes(header: str) -> dict[str, str]:
    """Attributes of a K3 tag; values unescaped (`\\"` and XML entities both occur)."""
    return {key: unescape(value) if "\\" in value or "&" in value else value
            for key, value in K3_ATTRIBUTE.findall(header)}


def unescape(value: str) -> str:
    """An attribute value with its backslash escapes and XML entities resolved."""
    return html.unescape(BACKSLASH_ESCAPE.sub(r"\1", value))


def k3_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", dict: "object"}.get(type(value), "array")


class KimiK3Codec(Codec):
    name = "kimi_k3"
    call_markers = (K3_CALL,)
    think_tags = False
    markup_glue = ""
    """Channel bodies are exact: the text before a tag is the body's own."""
    tool_result_role = "tool"
    tool_results_joiner = ""
    section = "Kimi K3 tools section"

    def start_state(self, prompt: str) -> StartState:
        """K3's generation prompt ends inside the think channel (`<|open|>think<|sep|>`): the output starts
        mid-reasoning."""
        return StartState(REASONING) if prompt.rstrip().endswith(opening("think")) else StartState()

    def markers(self, mode: str) -> dict[str, Handler]:
        """`<|open|>` and `<|close|>` (and `<|end_of_msg|>`), each read by the tag that follows: a stream scans its
        markers at every chunk, so fewer markers stream faster."""
        return {OPEN: self._opening, CLOSE: self._closing, END_OF_MSG: drop(END_OF_MSG)}

    def _opening(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        if text.startswith(K3_CALL, pos) and unclosed(text, pos, final, K3_CALL_END, state):
            return None  # a call still streaming
        if state.mode == REASONING:  # a response or tools section ends the think channel even when its close is
            if text.startswith(opening("response"), pos):  # missing
                return Region(pos + len(opening("response")), mode=CONTENT)
            if text.startswith(opening("tools"), pos):
                return self._section(text, pos, final, state)
            return literal(text, pos, final, OPEN, (opening("response"), opening("tools")), REASONING, state)
        if text.startswith(K3_CALL, pos):
            return self._call(text, pos, final, state)
        if text.startswith(opening("tools"), pos):
            return self._section(text, pos, final, state)
        if text.startswith(opening("think"), pos):
            return Region(pos + len(opening("think")), mode=REASONING)
        if text.startswith(opening("response"), pos):
            return Region(pos + len(opening("response")))
        if text.startswith(OPEN + "message", pos):
            return self._message_header(text, pos, final, state)
        return literal(text, pos, final, OPEN, K3_OPENINGS, CONTENT, state)

    def _closing(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        if state.mode == REASONING:
            if text.startswith(closing("think"), pos):
                return Region(pos + len(closing("think")), mode=CONTENT)
            return literal(text, pos, final, CLOSE, (closing("think"),), REASONING, state)
        if text.startswith(closing("tools"), pos):
            return self._section_end(text, pos, final, state)
        for tag in K3_DROPPED_CLOSINGS:
            if text.startswith(tag, pos):
                return Region(pos + len(tag))
        return literal(text, pos, final, CLOSE, (closing("tools"), *K3_DROPPED_CLOSINGS), CONTENT, state)

    @staticmethod
    def _message_header(text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        """`<|open|>message role="assistant"<|sep|>`: the turn's header, never content."""
        sep = text.find(SEP, pos)
        if sep < 0:
            return None if not final else Region(len(text))
        return Region(sep + len(SEP))

    def _rest(self, text: str, q: int, final: bool) -> SectionRest | None:
        return section_rest(text, q, final, (K3_CALL, closing("tools")), self.section)

    def _section(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        state.memo["kimi_section"] = True
        rest = self._rest(text, pos + len(opening("tools")), final)
        if rest is None:  # settled by what follows; in well-formed output, the first call or the close
            return awaiting_anew(state, K3_CALL, closing("tools"))
        region = rest.region()
        region.mode = CONTENT
        return region

    @staticmethod
    def _section_end(text: str, pos: int, final: bool, state: ScanState) -> Region:
        state.memo.pop("kimi_section", None)
        return Region(pos + len(closing("tools")))

    def _call(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        region = self._read_call(text, pos, final, state)
        if region is None or not state.memo.get("kimi_section"):
            return region
        rest = self._rest(text, region.end, final)
        if rest is None:  # what follows the call settles it; in well-formed output, the next call or the close
            return awaiting_anew(state, K3_CALL, closing("tools"))
        return rest.region(region)

    @staticmethod
    def _read_call(text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        what = "Kimi K3 call"
        if unclosed(text, pos, final, K3_CALL_END, state):
            return None
        header_end = text.find(SEP, pos)
        if header_end < 0:
            return waiting(text, pos, final, what)
        name = k3_attributes(text[pos + len(K3_CALL):header_end]).get("tool")
        if not name:
            return malformed(text, pos, final, K3_CALL_END, header_end, what)
        q = header_end + len(SEP)
        arguments: dict = {}
        while True:
            q = skip_ws(text, q)
            if text.startswith(K3_CALL_END, q):
                q += len(K3_CALL_END)
                break
            block = K3_ARG if text.startswith(K3_ARG, q) else K3_JSON if text.startswith(K3_JSON, q) else None
            if block is None:
                if final and grows_into(text, q, K3_CALL_END):
                    q = len(text)
                    break  # only (part of) the call's close tag is missing, at the very end
                if grows_into(text, q, K3_ARG, K3_JSON):
                    return waiting(text, pos, final, what)
                return malformed(text, pos, final, K3_CALL_END, q, what)
            sep = text.find(SEP, q)
            if sep < 0:
                return waiting(text, pos, final, what)
            attrs = k3_attributes(text[q + len(block):sep])
            close_tag = K3_ARG_END if block == K3_ARG else K3_JSON_END
            value_end = k3_value_end(text, sep + len(SEP), final, close_tag)
            if value_end is None:
                return waiting(text, pos, final, what)
            raw = text[sep + len(SEP):value_end]
            if block == K3_ARG:
                key = attrs.get("key")
                if key is None:
                    return malformed(text, pos, final, K3_CALL_END, q, what)
                arguments[key] = marked_value(raw, attrs["type"] == "string" if attrs.get("type") else None,
                                               argument_schema(state, name, key))
            else:
                try:
                    whole = loads(raw) if raw.strip() else {}
                except ValueError:
                    return malformed(text, pos, final, K3_CALL_END, q, what)
                if isinstance(whole, Refused):
                    return Region(value_end, error=whole.error(what, pos))
                if not isinstance(whole, dict):
                    return malformed(text, pos, final, K3_CALL_END, q, what)
                arguments.update(whole)
            q = value_end + len(close_tag)
        return call_region(q, refused_value(arguments) or ToolCall(name, arguments), what, pos, "")

    def declarations(self, tools: list[dict]) -> str:
        listed = [tool if "function" in tool else {"type": "function", "function": tool} for tool in tools]
        return json.dumps(listed, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        return f"# Tools\nThe tools you can use, described as JSON schemas:\n\n```json\n{declarations}\n```"

    def render_assistant(self, content: str | None, tool_calls: list[ToolCall] | None = None,
                         reasoning: str | None = None) -> Rendered:
        """The think channel, the response channel (both always written, as K3's encoder does), then the calls."""
        builder = TextBuilder().add(self.render_reasoning(reasoning or ""))
        builder.add(opening("response") + (content or "") + closing("response"))
        if tool_calls:
            builder.add_rendered(self.render_calls(tool_calls))
        return builder.build()

    def render_reasoning(self, reasoning: str) -> str:
        return opening("think") + reasoning + closing("think")

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder().add(opening("tools"))
        for index, call in enumerate(calls):
            builder.add(K3_CALL + ' tool="').add(call.name, "name", index).add(f'" index="{index + 1}"{SEP}')
            args_start = builder.length
            for key, value in call.arguments.items():
                builder.add(K3_ARG + ' key="').add(str(key), "arg_key", index).add(f'" type="{k3_type(value)}"{SEP}')
                builder.add(value if isinstance(value, str) else dumps(value), "arg_value", index).add(K3_ARG_END)
            if call.arguments:
                builder.spans.append(Span("arguments", args_start, builder.length, index))
            builder.add(K3_CALL_END)
        return builder.add(closing("tools")).build()

    def render_tool_result(self, result: dict) -> str:
        name = result.get("name") or ""
        return (f'{OPEN}message role="tool" name="{name}"{SEP}{result_text(result)}{closing("message")}'
                f"{END_OF_MSG}")


def k3_value_end(text: str, start: int, final: bool, close_tag: str) -> int | None:
    """The `close_tag` ending the value at `start`: the first followed by the next block or the call's close (so
    marker text inside a value does not end it); once the text is complete, else the first at all."""
    search = start
    nexts = (K3_ARG, K3_JSON, K3_CALL_END)
    while (close := text.find(close_tag, search)) >= 0:
        after = skip_ws(text, close + len(close_tag))
        if text.startswith(nexts, after):
            return close
        if grows_into(text, after, *nexts):
            return close if final else None
        search = close + 1
    if final:
        close = text.find(close_tag, start)
        return close if close >= 0 else None
    return None
