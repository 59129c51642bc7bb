"""The machinery every wire format shares: a resumable scanner, the streaming parser, rendered text with spans.

A format is a set of *markers* per mode ("content" or "reasoning"). Text between markers goes to the mode's channel;
at a marker the format's handler reads a region (a call, a think tag, a channel header) and returns a `Region`.
The same scan runs whole (`final=True`) and incrementally (`final=False`): a handler that cannot yet be sure of its
region returns None, and the stream waits for more text. That single code path is why streaming equals non-streaming
for every chunking.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qwen_tool import QwenToolError, did_you_mean
from qwen_tool.codec.schema_typing import Allowed, argument_allowed
from qwen_tool.codec.types import ParsedOutput, ToolCall
from qwen_tool.codec.values import (
    TOO_DEEP,
    Refused,
    fix_for,
    json_end,
    loads,
    text_problem,
    value_problem,
)

JSON = json.JSONDecoder()
CONTENT, REASONING = "content", "reasoning"
START_MODES = (CONTENT, REASONING)
TOOL_RENDERINGS = ("json", "compact")
"""How a prompt lists the tool declarations: as the format's own template does (JSON schemas, or its own markup), or
as typed signatures (`tool_signatures`, fewer tokens)."""


class CodecError(QwenToolError):
    """Bad input to a codec (unknown format, malformed tool schema or message)."""


@dataclass(frozen=True)
class Span:
    """Characters `[start, end)` of one key part of a rendered call: kind is name, arg_key, arg_value or arguments."""

    kind: str
    start: int
    end: int
    call_index: int

    def shifted(self, offset: int) -> Span:
        return Span(self.kind, self.start + offset, self.end + offset, self.call_index)


@dataclass
class Rendered:
    """Text of one assistant turn's body, with the spans of tool names and arguments (offsets into `text`)."""

    text: str
    spans: list[Span] = field(default_factory=list)


class TextBuilder:
    """Append strings while recording the spans of chosen pieces."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[Span] = []

    def add(self, text: str, kind: str | None = None, call_index: int = -1) -> TextBuilder:
        if kind is not None:
            self.spans.append(Span(kind, self.length, self.length + len(text), call_index))
        self.parts.append(text)
        self.length += len(text)
        return self

    def add_rendered(self, rendered: Rendered) -> TextBuilder:
        self.spans.extend(span.shifted(self.length) for span in rendered.spans)
        return self.add(rendered.text)

    def build(self) -> Rendered:
        return Rendered("".join(self.parts), self.spans)


def dumps(value: Any) -> str:
    """JSON as chat templates write it (`tojson`): unicode kept, default separators."""
    return json.dumps(value, ensure_ascii=False)


def add_json_object(builder: TextBuilder, arguments: dict[str, Any], call_index: int) -> None:
    """Write `arguments` exactly as `dumps` would, recording the whole object and each key and value."""
    start = builder.length
    builder.add("{")
    for position, (key, value) in enumerate(arguments.items()):
        if position:
            builder.add(", ")
        builder.add('"').add(dumps(str(key))[1:-1], "arg_key", call_index).add('": ')
        builder.add(dumps(value), "arg_value", call_index)
    builder.add("}")
    builder.spans.append(Span("arguments", start, builder.length, call_index))


@dataclass
class Region:
    """What a handler read at a marker: where it ends, what it yields, and the mode after it."""

    end: int
    calls: list[ToolCall] = field(default_factory=list)
    content: str = ""
    reasoning: str = ""
    error: str | None = None
    mode: str | None = None
    unread_from: int | None = None
    """With an error: where the text the region could not read starts (default: the region's start). A parse that
    keeps malformed calls (`keep_malformed`) puts that text back as content."""
    warnings: list[str] = field(default_factory=list)
    """Malformed pieces this region recovered (see `ParsedOutput.warnings`)."""


@dataclass(frozen=True)
class StartState:
    """Where the prompt left the parser, so output that continues an open block parses as it would in one text.

    `lead` is the prompt's unfinished tail that the output continues (a think opener, Harmony's `<|start|>assistant`):
    the parser reads it first and yields nothing for it, so char offsets in errors count it. `mode` is the mode the
    scan starts in (`START_MODES`), for callers that know it without a prompt.
    """

    mode: str = CONTENT
    lead: str = ""

    def __post_init__(self) -> None:
        if self.mode not in START_MODES:
            raise CodecError(f"unknown start mode {self.mode!r}; fix: use one of {', '.join(START_MODES)}")


def resolve_start(in_reasoning: bool, start: StartState | None) -> StartState:
    """The start state of a parse: `start` when given, else reasoning or content as `in_reasoning` says."""
    if start is not None:
        if in_reasoning and start.mode != REASONING:
            raise CodecError("in_reasoning=True contradicts the given start state; fix: pass one of them")
        return start
    return StartState(REASONING if in_reasoning else CONTENT)


Handler = Callable[[str, int, bool, "ScanState"], Region | None]


class MarkerFinder:
    """Where each marker next occurs, remembered between searches, so a scan never searches the same text twice.

    Searching afresh at every region would re-read the rest of the text for each marker that does not occur there
    (e.g. `<think>` in an output of many calls), so parsing N calls took time in N² (100,000 Hermes calls: minutes).
    The text may grow at its end (a stream appends chunks) and lose its start (`shift`), never change in between.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int, int]] = {}
        """marker → (first index at or after `origin`, or -1 for none below `upto`; origin; upto = length searched)"""

    def find(self, text: str, marker: str, pos: int) -> int:
        """`text.find(marker, pos)`, reading only text that no earlier search for `marker` has covered."""
        start = pos
        seen = self._seen.get(marker)
        if seen is not None:
            found, origin, upto = seen
            if origin <= pos and upto <= len(text):
                if found >= pos:
                    return found
                if found < 0:
                    if upto == len(text):
                        return -1
                    start = max(pos, upto - len(marker) + 1)  # an occurrence may straddle the old end
        found = text.find(marker, start)
        self._seen[marker] = (found, pos, len(text))
        return found

    def shift(self, offset: int) -> None:
        """The text lost its first `offset` characters (a stream dropped what it has consumed)."""
        kept: dict[str, tuple[int, int, int]] = {}
        for marker, (found, origin, upto) in self._seen.items():
            if 0 <= found < offset:
                continue  # that occurrence is gone; the next one is unknown
            kept[marker] = (found - offset if found >= 0 else -1, max(origin - offset, 0), upto - offset)
        self._seen = kept


@dataclass
class ScanState:
    mode: str = CONTENT
    tools: dict[str, dict] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    """Free slot for format-specific state carried across regions (e.g. Harmony's pending recipient)."""
    finder: MarkerFinder = field(default_factory=MarkerFinder)
    keep_malformed: bool = False
    """Put the text of a region that could not be read back into the output, instead of only reporting it."""
    resume: tuple[int, str] | None = None
    """Position and marker of the region the last scan could not yet settle: the next scan starts there directly."""
    awaiting: tuple[str, ...] | None = None
    """The close tags that region waits for, when no text without one of them can settle the region (set by
    `unclosed`): a stream need not scan again before one has arrived."""

    def shift(self, offset: int) -> None:
        """The scanned text lost its first `offset` characters (a stream dropped what it has consumed)."""
        self.finder.shift(offset)
        if self.resume is not None:
            self.resume = (self.resume[0] - offset, self.resume[1])


def check_tool_rendering(rendering: str) -> None:
    """Raise CodecError unless `rendering` is one of TOOL_RENDERINGS, suggesting the closest."""
    if rendering not in TOOL_RENDERINGS:
        raise CodecError(f"unknown tool rendering {rendering!r}; fix: {did_you_mean(str(rendering), TOOL_RENDERINGS)}"
                         f"use one of {', '.join(TOOL_RENDERINGS)}")


def tool_index(tools: list[dict] | None) -> dict[str, dict]:
    """Map tool name → JSON schema of its parameters, from an OpenAI `tools` list (or bare function dicts)."""
    index: dict[str, dict] = {}
    for tool in tools or []:
        if not isinstance(tool, dict):
            raise CodecError(f"a tool must be a JSON object, got {type(tool).__name__}; fix: pass OpenAI `tools`")
        function = tool.get("function", tool)
        name = function.get("name")
        if not isinstance(name, str):
            raise CodecError(f"tool {tool!r} has no string `name`; fix: use {{'type': 'function', 'function': ...}}")
        index[name] = function.get("parameters") or {}
    return index


def function_of(tool: dict) -> dict:
    """The function dict of an OpenAI tool (accepts a bare function dict too)."""
    return tool.get("function", tool) if isinstance(tool, dict) else {}


def refused_value(arguments: dict[str, Any]) -> Refused | None:
    """The first argument `schema_typing.type_value` refused, if any (its call is then dropped with that reason)."""
    return next((value for value in arguments.values() if isinstance(value, Refused)), None)


def argument_schema(state: ScanState, name: str, key: str) -> Allowed:
    """What tool `name`'s schema lets argument `key` be, for `type_value`; worked out once per parse or stream."""
    known = state.memo.setdefault("argument_schemas", {})
    found = known.get((name, key))
    if found is None:
        found = known[name, key] = argument_allowed(state.tools.get(name), key)
    return found


def skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


JSON_WINDOW = 1024
"""Characters of text the JSON decoder is first given (the window grows until the value settles)."""


def decode_json(text: str, pos: int) -> tuple[Any, int] | None:
    """Decode one JSON value at `pos` (C-speed, strings may contain any marker text); None when it does not decode.

    A value nested deeper than MAX_DEPTH or holding a lone surrogate comes back as `Refused`, with its end, so its call
    is dropped with that reason and the text after it still parses.

    The decoder reads a window of the text from `pos` that grows (x4) until the value settles: a failed decode in the
    whole text costs O(pos), as json's error counts lines from the start of its input, so outputs of many malformed
    calls took time in N². Inside the window the decoder sees exactly what it would see in the whole text.
    """
    window = JSON_WINDOW
    while True:
        piece = text[pos:pos + window]
        complete = pos + window >= len(text)
        try:
            value, end = JSON.raw_decode(piece)
        except RecursionError:
            end = json_end(text, pos)
            return None if end is None else (Refused(TOO_DEEP), end)
        except json.JSONDecodeError as err:
            # Cut by the window, not broken: an open string, or an error within a literal's length of the cut.
            cut = err.msg.startswith("Unterminated string") or err.pos > len(piece) - 16
            if complete or not cut:
                return None
            window *= 4
            continue
        if end == len(piece) and not complete:
            window *= 4  # a number may go on past the window
            continue
        problem = text_problem(piece, 0, end, value)
        return (Refused(problem) if problem else value), pos + end


def call_from_obj(obj: Any, args_keys: tuple[str, ...] = ("arguments", "parameters")) -> ToolCall | Refused | None:
    """A ToolCall from `{"name": ..., "arguments": {...}}` (arguments may be a JSON string); None if not that shape;
    `Refused` (with the reason) when the object or its arguments were refused by `decode_json` / `values.loads`."""
    if isinstance(obj, Refused):
        return obj
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    arguments: Any = {}
    for key in args_keys:
        if key in obj:
            arguments = obj[key]
            break
    if isinstance(arguments, str):
        try:
            arguments = loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if isinstance(arguments, Refused):
        return arguments
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return None
    call = ToolCall(obj["name"], arguments)
    if isinstance(obj.get("id"), str) and obj["id"]:
        call.id = obj["id"]
    return call


def call_region(end: int, call: ToolCall | Refused | None, what: str, pos: int, not_a_call: str,
                mode: str | None = None, warnings: list[str] | None = None) -> Region:
    """The region of one call read at `pos` and ending at `end`: the call, or the error saying why it was dropped
    (`not_a_call` when the text was not call-shaped, the refusal's reason when its value was refused). `warnings`
    (recoveries made while reading it) stay with the call only."""
    if isinstance(call, ToolCall):
        return Region(end, calls=[call], mode=mode, warnings=list(warnings or []))
    return Region(end, error=call.error(what, pos) if isinstance(call, Refused) else not_a_call, mode=mode)


class Codec:
    """One wire-format family. Subclasses fill `markers` and the render methods."""

    name = "base"
    call_markers: tuple[str, ...] = ()
    """Strings without which text can hold no call (the property tests rely on this)."""
    think_tags = True
    """Whether `<think>...</think>` carries reasoning in this format."""
    markup_glue = "\n"
    """Separator the format's template writes before its markup (a call block, a think tag): text before a marker
    loses exactly this, so content is the model's text byte for byte and a rendered turn parses back to its parts."""
    calls_in_reasoning = True
    """Whether complete calls written inside reasoning, with nothing after them but the think close, are read as calls
    (a model that began calling without closing its reasoning); see `_calls_in_reasoning`."""

    def __init__(self, variant: str | None = None, tool_rendering: str = "json") -> None:
        self.variant = variant or self.default_variant
        if self.variant not in self.variants:
            raise CodecError(f"format {self.name!r} has no variant {variant!r}; fix: use one of {self.variants}")
        check_tool_rendering(tool_rendering)
        self.tool_rendering = tool_rendering
        """One of TOOL_RENDERINGS: how `render_tools` lists the declarations (a model reads them as it was taught)."""
        self._tables: dict[str, dict[str, Handler]] = {}
        self._glues: dict[str, str] = {}
        """Per mode, the longest glue before any of its markers (what a stream holds back at its end)."""

    default_variant = "default"
    variants: tuple[str, ...] = ("default",)

    # ---- markers -------------------------------------------------------------------------------------------------
    think_open, think_close = "<think>", "</think>"

    def markers(self, mode: str) -> dict[str, Handler]:
        """Marker → handler for a mode. Default: think tags only (a stray close tag is dropped, never leaked).

        No marker may be a prefix of another of the same mode: a scan resumes a pending region at the marker it
        found, without searching again for a longer one that has since arrived.
        """
        if not self.think_tags:
            return {}
        close = self.think_close
        if mode == REASONING:
            return {close: lambda text, pos, final, state: glued(text, pos + len(close), final, 2, CONTENT)}
        return {
            self.think_open: lambda text, pos, final, state: glued(text, pos + len(self.think_open), final, 1,
                                                                   REASONING),
            close: lambda text, pos, final, state: Region(pos + len(close)),
        }

    def marker_table(self, mode: str) -> dict[str, Handler]:
        """`markers(mode)`, built once per codec: the scan asks for it at every region. In reasoning, the content
        mode's call openers are added (see `calls_in_reasoning`)."""
        table = self._tables.get(mode)
        if table is None:
            table = self.markers(mode)
            if mode == REASONING and self.think_tags and self.calls_in_reasoning:
                content = self.marker_table(CONTENT)
                openers = [marker for marker in self.call_markers if marker in content and marker not in table]
                table = {**table, **{marker: self._calls_in_reasoning(marker, content) for marker in openers}}
            self._tables[mode] = table
        return table

    def _calls_in_reasoning(self, marker: str, content: dict[str, Handler]) -> Handler:
        """Read calls written inside reasoning: they count only when the output ends with them (nothing follows but
        whitespace, more calls and the think close), as when a model starts calling without closing its reasoning.
        Otherwise the model was drafting a call (often followed by the real one after the close), and the marker
        stays reasoning text (nothing is lost)."""
        openers = [m for m in self.call_markers if m in content]
        close = self.think_close

        def handler(text: str, pos: int, final: bool, state: ScanState) -> Region | None:
            calls: list[ToolCall] = []
            warnings: list[str] = []
            at, opener = pos, marker
            while True:
                region = content[opener](text, at, final, state)
                if region is None:
                    return None
                if region.error or not region.calls or region.content or region.reasoning:
                    return Region(pos + len(marker), reasoning=marker)
                calls += region.calls
                warnings += region.warnings
                q = skip_ws(text, region.end)
                opener = next((m for m in openers if text.startswith(m, q)), "")
                if opener:
                    at = q
                    continue
                if text.startswith(close, q):
                    q = skip_ws(text, q + len(close))
                if q < len(text):
                    if grows_into(text, q, close, *openers) and not final:
                        return None
                    return Region(pos + len(marker), reasoning=marker)
                if not final:
                    return None
                note = (f"{len(calls)} call(s) at char {pos} were written inside the reasoning and end the output; "
                        "they were read as calls")
                return Region(len(text), calls=calls, mode=CONTENT, warnings=[*warnings, note])

        return handler

    def find_marker(self, text: str, pos: int, state: ScanState) -> tuple[int, str] | None:
        """Earliest marker of the current mode at or after `pos` (ties: the longest)."""
        best: tuple[int, str] | None = None
        for marker in self.marker_table(state.mode):
            idx = state.finder.find(text, marker, pos)
            if idx >= 0 and (best is None or idx < best[0] or (idx == best[0] and len(marker) > len(best[1]))):
                best = (idx, marker)
        return best

    def holdback(self, text: str, pos: int, mode: str) -> int:
        """Start of a tail that could still grow into a marker (text before it is safe to emit while streaming)."""
        cut = len(text)
        for marker in self.marker_table(mode):
            i = text.find(marker[0], max(pos, len(text) - len(marker) + 1))
            while 0 <= i < cut:  # the first start whose tail is a proper prefix of the marker holds back the most
                if marker.startswith(text[i:]):
                    cut = i
                    break
                i = text.find(marker[0], i + 1)
        return cut

    # ---- scanning ------------------------------------------------------------------------------------------------
    def scan(self, text: str, pos: int, final: bool, state: ScanState, out: _Sink) -> int:
        """Consume `text[pos:]` as far as is certain; return the new position.

        Work is linear in the text: markers are found through `state.finder`, and the holdback (which looks at the
        end of the text) is computed once per mode, as it stays the same while `pos` has not passed it.
        """
        held: dict[str, int] = {}
        resume, state.resume = state.resume, None
        while True:
            mode = state.mode
            glue = self.glue_start(text, pos, *resume) if resume is not None else -1
            if glue == pos:
                found, resume = resume, None  # still the earliest marker: nothing but its glue lies between
            else:
                found = self.find_marker(text, pos, state)
                glue = self.glue_start(text, pos, *found) if found is not None else -1
            if not final and (found is None or glue > pos):
                cut = held.get(mode, -1)
                if cut < pos:
                    cut = held[mode] = self.holdback(text, pos, mode)
                if found is not None and cut < found[0]:
                    found = None  # a longer marker may still be growing in front of the one found
            if found is None:
                end = len(text) if final else self.held_glue_start(text, pos, cut, mode)  # a marker may follow
                out.text(mode, text[pos:end])
                return end
            idx, marker = found
            out.text(mode, text[pos:glue])
            state.awaiting = None
            region = self.marker_table(mode)[marker](text, idx, final, state)
            if region is None:
                state.resume = found
                return glue
            if region.content or region.reasoning:
                out.text(mode, text[glue:idx])  # the marker was not markup: its glue is the model's text
            elif region.error and state.keep_malformed:
                out.text(mode, text[glue if region.unread_from is None else region.unread_from:region.end])
            out.region(region)
            if region.mode is not None:
                state.mode = region.mode
            pos = region.end

    def glue_before(self, marker: str) -> str:
        """The longest separator the template writes before `marker`: `markup_glue` unless a format says otherwise
        (where it is not found, `markup_glue` still is)."""
        return self.markup_glue

    def glue_start(self, text: str, pos: int, at: int, marker: str) -> int:
        """Where the glue before the `marker` at `at` starts (`at` when there is none after `pos`)."""
        for glue in (self.glue_before(marker), self.markup_glue):
            start = at - len(glue)
            if glue and start >= pos and text.startswith(glue, start):
                return start
        return at

    def held_glue_start(self, text: str, pos: int, cut: int, mode: str) -> int:
        """While streaming, where the tail of `text[pos:cut]` that may still become the glue before a marker starts:
        it waits for the next text (its longest suffix that begins the longest glue of the mode's markers)."""
        glue = self._glues.get(mode)
        if glue is None:
            glue = self._glues[mode] = max((self.glue_before(m) for m in self.marker_table(mode)), key=len,
                                           default="")
        for size in range(min(len(glue), cut - pos), 0, -1):
            if text.startswith(glue[:size], cut - size):
                return cut - size
        return cut

    def start_state(self, prompt: str) -> StartState:
        """The state the rendered generation prompt leaves the parser in: inside the reasoning when the prompt ends
        with this format's think opener (as Qwen3 Thinking-2507, GLM-4.7 and DeepSeek-V3.1 thinking templates do),
        else in content. The opener and what follows it become the lead, so its glue is read as the template wrote
        it."""
        if self.think_tags:
            at = prompt.rfind(self.think_open)
            if at >= 0 and not prompt[at + len(self.think_open):].strip():
                return StartState(lead=prompt[at:])
        return StartState()

    def parse(self, text: str, tools: list[dict] | None = None, *, in_reasoning: bool = False,
              keep_malformed: bool = False, start: StartState | None = None) -> ParsedOutput:
        """Whole model output → content, reasoning, calls (typed by `tools`), error, warnings.

        A malformed or truncated call is dropped and reported in `error`; with `keep_malformed` its text also stays in
        the content (where it was), so converting the output to another format loses nothing. `start` (from
        `start_state(prompt)`) or `in_reasoning` say where the prompt left off.
        """
        begin = resolve_start(in_reasoning, start)
        state = ScanState(mode=begin.mode, tools=tool_index(tools), keep_malformed=keep_malformed)
        sink = _Sink()
        self.scan(begin.lead + text, 0, True, state, sink)
        return sink.result()

    def stream(self, tools: list[dict] | None = None, *, in_reasoning: bool = False,
               start: StartState | None = None) -> StreamParser:
        """A streaming parser: `feed(delta) -> deltas`, then `finish() -> deltas`."""
        return StreamParser(self, tools, in_reasoning=in_reasoning, start=start)

    # ---- rendering -----------------------------------------------------------------------------------------------
    def render_tools(self, tools: list[dict]) -> str:
        """System-prompt text that declares `tools` and says how to call them: the format's own instructions around
        a listing of the declarations, as the format's template lists them (`tool_rendering` json) or as typed
        signatures (compact: the same facts in fewer tokens)."""
        if self.tool_rendering == "compact":
            from qwen_tool.codec.tool_signatures import render_signatures

            return self.tools_prompt(tools, render_signatures(tools))
        return self.tools_prompt(tools, self.declarations(tools))

    def declarations(self, tools: list[dict]) -> str:
        """The declarations of `tools` as this format's own template lists them."""
        raise NotImplementedError

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        """The format's instructions and call syntax around `declarations`, the listing of `tools` (this format's
        own, or the compact signatures, as `tool_rendering` says)."""
        raise NotImplementedError

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        raise NotImplementedError

    def render_reasoning(self, reasoning: str) -> str:
        return f"{self.think_open}\n{reasoning}\n{self.think_close}\n\n"

    def render_assistant(self, content: str | None, tool_calls: list[ToolCall] | None = None,
                         reasoning: str | None = None) -> Rendered:
        """Training-target text of one assistant turn (without the role header or end-of-turn marker)."""
        builder = TextBuilder()
        if reasoning:
            builder.add(self.render_reasoning(reasoning))
        if content:
            builder.add(content)
        if tool_calls:
            builder.add(self.before_calls(content)).add_rendered(self.render_calls(tool_calls))
        return builder.build()

    def before_calls(self, content: str | None) -> str:
        """What the template writes between a turn's content and its calls: a newline after content, else nothing."""
        return "\n" if content else ""

    def render_tool_result(self, result: dict) -> str:
        """One tool message (`{"content", "name", "tool_call_id"}`) as the text the model reads back."""
        raise NotImplementedError

    tool_results_joiner = "\n"
    """Text between consecutive tool results rendered into one `tool_result_role` turn."""

    tool_result_role = "user"
    """Role of the turn that carries tool results in our templates."""


def result_text(result: dict) -> str:
    """A tool message's content as text (OpenAI allows a list of text parts)."""
    content = result.get("content", "")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else dumps(content)


def normalise_calls(calls: list[ToolCall] | list[dict] | None) -> list[ToolCall]:
    """Accept ToolCall objects or OpenAI `tool_calls` dicts."""
    result: list[ToolCall] = []
    for call in calls or []:
        if isinstance(call, ToolCall):
            result.append(call)
            continue
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = loads(arguments) if arguments.strip() else {}
            except ValueError as err:
                raise CodecError(f"tool call {function.get('name')!r} has arguments that are not JSON ({err}); "
                                 "fix: `arguments` must be a JSON object or its JSON string") from err
        elif problem := value_problem(arguments):
            arguments = Refused(problem)
        if isinstance(arguments, Refused):
            raise CodecError(f"tool call {function.get('name')!r}: the arguments' value {arguments.reason}; "
                             f"fix: {fix_for(arguments.reason)}")
        if not isinstance(arguments, dict):
            raise CodecError(f"tool call {function.get('name')!r}: arguments must be an object, got {arguments!r}")
        kwargs = {"id": call["id"]} if call.get("id") else {}
        result.append(ToolCall(function.get("name", ""), arguments, **kwargs))
    return result


def glued(text: str, end: int, final: bool, most: int, mode: str, glue: str = "\n") -> Region | None:
    """A tag ending at `end` that switches to `mode`, taking up to `most` copies of `glue` after it (the separator its
    template writes there); while streaming, waits to see whether they follow."""
    taken = 0
    while taken < most and text.startswith(glue, end):
        end, taken = end + len(glue), taken + 1
    if end == len(text) and taken < most and not final:
        return None
    return Region(end, mode=mode)


def drop(marker: str) -> Handler:
    """Handler that consumes a bare marker (end-of-turn tokens, section tags) so it never leaks into content."""
    return lambda text, pos, final, state: Region(pos + len(marker))


def waiting(text: str, pos: int, final: bool, what: str) -> Region | None:
    """Not enough text yet: wait while streaming; once final, the region is truncated and dropped."""
    if not final:
        return None
    return Region(len(text), error=f"truncated: {what} at char {pos} is incomplete; the call was dropped")


def unclosed(text: str, pos: int, final: bool, close_tags: str | tuple[str, ...], state: ScanState) -> bool:
    """While streaming, whether the region at `pos` must wait because none of its close tags has arrived yet; if so,
    the tags are noted in `state.awaiting`, so the stream does not scan again before one arrives.

    Only for regions that nothing before such a tag settles, in well-formed output (the handler returns None at once
    when this is true): there the answer is the same as reading the region, and much cheaper than re-reading it at
    every chunk. Malformed output may then settle a little later, never differently.
    """
    tags = (close_tags,) if isinstance(close_tags, str) else close_tags
    if final or any(text.find(tag, pos) >= 0 for tag in tags):
        return False
    state.awaiting = tags
    return True


def awaiting_anew(state: ScanState, *tags: str) -> None:
    """Note that the pending region cannot settle before one of `tags` arrives anew, as a JSON object or a call list
    still open cannot end before its next `}` or `]`: the stream scans again only then. None, the handler's answer
    while streaming."""
    state.awaiting = tags


def malformed(text: str, pos: int, final: bool, close_tag: str, from_pos: int, what: str) -> Region | None:
    """A region that cannot be a call: skip to its close tag (or to the end, once final), with an error."""
    close = text.find(close_tag, from_pos)
    if close < 0:
        return waiting(text, pos, final, what)
    return Region(close + len(close_tag), error=f"malformed {what} at char {pos}; the call was dropped")


def grows_into(text: str, pos: int, *tags: str) -> bool:
    """Whether `text[pos:]` is a (possibly empty) proper prefix of one of `tags`: more text may complete it."""
    return any(len(text) - pos < len(tag) and tag.startswith(text[pos:]) for tag in tags)


class _Sink:
    """Collects scan output: content and reasoning text, calls, the first error."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[ToolCall] = []
        self.error: str | None = None
        self.warnings: list[str] = []
        self.saw_reasoning = False

    def text(self, mode: str, text: str) -> None:
        if text:
            (self.reasoning if mode == REASONING else self.content).append(text)
        if mode == REASONING:
            self.saw_reasoning = True

    def region(self, region: Region) -> None:
        if region.content:
            self.content.append(region.content)
        if region.reasoning:
            self.reasoning.append(region.reasoning)
        if region.mode == REASONING:
            self.saw_reasoning = True
        self.calls.extend(region.calls)
        self.warnings.extend(region.warnings)
        if region.error and self.error is None:
            self.error = region.error

    def result(self) -> ParsedOutput:
        """Content and reasoning byte for byte as written (less the markup and its glue), except that a channel of
        whitespace only is empty: it holds nothing to show."""
        content, reasoning = visible("".join(self.content)), visible("".join(self.reasoning))
        return ParsedOutput(
            content=content,
            reasoning=reasoning if (reasoning or self.saw_reasoning) else None,
            tool_calls=self.calls,
            error=self.error,
            warnings=self.warnings,
        )


def visible(text: str) -> str:
    """`text`, or "" when it is whitespace only."""
    return text if text.strip() else ""


class _Channel:
    """Streams one text channel as `_Sink.result` reads it: whitespace is held back until the channel shows another
    character (a channel of whitespace only is empty), then everything passes through as written."""

    def __init__(self) -> None:
        self.started = False
        self.pending: list[str] = []
        """Leading whitespace held back (a list: many whitespace-only pieces in a row must not cost O(n²))."""

    def push(self, text: str) -> str:
        if self.started:
            return text
        if not text.strip():
            self.pending.append(text)
            return ""
        self.started = True
        out = "".join(self.pending) + text
        self.pending = []
        return out


class _StreamSink(_Sink):
    def __init__(self) -> None:
        super().__init__()
        self.channels = {CONTENT: _Channel(), REASONING: _Channel()}
        self.deltas: list[dict] = []
        self.emitted_calls = 0

    def _emit_text(self, mode: str, text: str) -> None:
        piece = self.channels[mode].push(text)
        if piece:
            self.deltas.append({"reasoning_content" if mode == REASONING else "content": piece})

    def text(self, mode: str, text: str) -> None:
        super().text(mode, text)
        if text:
            self._emit_text(mode, text)

    def region(self, region: Region) -> None:
        super().region(region)
        if region.content:
            self._emit_text(CONTENT, region.content)
        if region.reasoning:
            self._emit_text(REASONING, region.reasoning)
        for call in region.calls:
            index = self.emitted_calls
            self.emitted_calls += 1
            self.deltas.append({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                                "function": {"name": call.name, "arguments": ""}}]})
            self.deltas.append({"tool_calls": [{"index": index, "function": {"arguments": dumps(call.arguments)}}]})

    def take(self) -> list[dict]:
        deltas, self.deltas = self.deltas, []
        return deltas


RESCAN_FLOOR = 256
"""Unsettled text shorter than this is re-read at every chunk, so a call of ordinary size is emitted the moment it is
complete."""


def worth_rescanning(unsettled: int, arrived: int) -> bool:
    """Whether a stream should scan again: `unsettled` characters were left unread last time, `arrived` came since.

    Short unsettled text: always. Long (one huge call, or text `auto` cannot classify yet): only once the text has
    grown by an eighth, so the re-reading costs O(its length) in total rather than O(length²) over small chunks. A
    later scan finds the same regions, so this changes when a piece is emitted, never what is emitted.
    """
    return arrived > 0 and (unsettled + arrived < RESCAN_FLOOR or arrived * 8 >= unsettled)


class StreamParser:
    """Incremental parser: emits OpenAI-style deltas as soon as each piece is certain.

    A call is emitted once complete (its closing marker seen), as a delta with `index`, `id`, `type` and the name,
    then one with the arguments; so output truncated mid-call never yields a partial call. A call longer than
    RESCAN_FLOOR may come a few chunks after its end (see `worth_rescanning`): the price of linear total work.
    """

    def __init__(self, codec: Codec, tools: list[dict] | None = None, *, in_reasoning: bool = False,
                 start: StartState | None = None) -> None:
        self.codec = codec
        begin = resolve_start(in_reasoning, start)
        self.state = ScanState(mode=begin.mode, tools=tool_index(tools))
        self.buffer = begin.lead
        self.pos = 0
        self.sink = _StreamSink()
        self.finished = False
        self.unsettled = 0
        """Characters of the buffer the last scan left unread (a pending call, a possible marker's start)."""
        self.arrived: list[str] = []
        """Chunks not yet appended to the buffer (appended only when a scan is due: see `worth_rescanning`)."""
        self.arrived_size = 0
        self.awaited: tuple[str, ...] | None = None
        """The close tags the pending region awaits (None: scan as usual), until one has arrived."""
        self.kept = 0
        """The length of `tail`: the longest awaited tag less one character (a tag may span two chunks)."""
        self.tail = ""
        """The end of the text seen, where an awaited tag may have begun."""

    def take_arrived(self) -> None:
        """Append the waiting chunks to the buffer (one join, not one copy of the buffer per chunk)."""
        if self.arrived:
            self.buffer += "".join(self.arrived)
            self.arrived, self.arrived_size = [], 0

    def feed(self, delta_text: str) -> list[dict]:
        if self.finished:
            raise CodecError("feed() after finish(); fix: start a new stream for a new output")
        self.arrived.append(delta_text)
        self.arrived_size += len(delta_text)
        if self.awaited is not None:
            seen = self.tail + delta_text
            for tag in self.awaited:
                if tag in seen:
                    self.awaited = None  # arrived: scan as usual until the next scan says otherwise
                    break
            else:
                self.tail = seen[-self.kept:] if self.kept else ""
                return []  # the pending region cannot settle before a close tag
        if not worth_rescanning(self.unsettled, self.arrived_size):
            return []
        self.take_arrived()
        self.pos = self.codec.scan(self.buffer, self.pos, False, self.state, self.sink)
        self._await_tags(self.state.awaiting if self.state.resume is not None else None)
        self.unsettled = len(self.buffer) - self.pos
        if self.pos > 4096:  # keep the buffer short on long outputs
            self.buffer = self.buffer[self.pos:]
            self.state.shift(self.pos)
            self.pos = 0
        return self.sink.take()

    def _await_tags(self, tags: tuple[str, ...] | None) -> None:
        """Hold scans back until one of `tags` arrives (None: do not)."""
        self.awaited = tags
        self.kept = max(map(len, tags)) - 1 if tags else 0
        self.tail = self.buffer[-self.kept:] if self.kept else ""

    def finish(self) -> list[dict]:
        """Flush what is left; a truncated call sets `result().error` and is dropped."""
        if not self.finished:
            self.take_arrived()
            self.pos = self.codec.scan(self.buffer, self.pos, True, self.state, self.sink)
            self.finished = True
        return self.sink.take()

    def result(self) -> ParsedOutput:
        """Everything streamed so far, as one ParsedOutput."""
        return self.sink.result()
