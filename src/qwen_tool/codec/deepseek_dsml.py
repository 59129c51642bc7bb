"""DeepSeek V3.2, V4 and V4.1: calls in DSML, DeepSeek's XML-like markup under the `｜DSML｜` token.

V3.2: `<｜DSML｜function_calls>` around `<｜DSML｜invoke name="NAME">` blocks, each holding
      `<｜DSML｜parameter name="K" string="true|false">V</｜DSML｜parameter>` lines
V4:   the same, in a `<｜DSML｜tool_calls>` block
V4.1: every tag spelled with a space after the token: `<｜DSML｜ calls>`, `<｜DSML｜ invoke ...>`,
      `<｜DSML｜ parameter ...>`

`string="true"` marks a raw-text value (no quotes, no escaping); `string="false"` a JSON value. Parsing reads every
dialect (a call is read from its invoke tag; the block tags around it are dropped); the variant picks the rendering.
A value ends at the first parameter close tag that is followed by the next parameter or the invoke's close, so marker
text inside a value does not end it early. Where the markup comes from: docs/codec-sources.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qwen_tool.codec.base import (
    CONTENT,
    Codec,
    Handler,
    Region,
    Rendered,
    ScanState,
    Span,
    TextBuilder,
    argument_schema,
    call_from_obj,
    call_region,
    decode_json,
    drop,
    dumps,
    function_of,
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

TOKEN = "｜DSML｜"
EOS = "<｜end▁of▁sentence｜>"
ATTRIBUTE = re.compile(r'([\w-]+)="([^"]*)"')


@dataclass(frozen=True)
class Dialect:
    """The tag spellings of one DSML generation (all written out once, as they are read at every call)."""

    block: str
    """Name of the block around the calls."""
    spaced: bool
    """Whether every tag has a space after the DSML token (V4.1)."""
    invoke_open: str = field(init=False)
    invoke_close: str = field(init=False)
    param_open: str = field(init=False)
    param_close: str = field(init=False)

    def __post_init__(self) -> None:
        for name, tag in (("invoke_open", self.tag("invoke")), ("invoke_close", self.tag("invoke", True) + ">"),
                          ("param_open", self.tag("parameter")), ("param_close", self.tag("parameter", True) + ">")):
            object.__setattr__(self, name, tag)

    def tag(self, name: str, closing: bool = False) -> str:
        """`<｜DSML｜name` (or `</｜DSML｜ name`): the start of a tag, without its `>`."""
        return f"<{'/' if closing else ''}{TOKEN}{' ' if self.spaced else ''}{name}"


DIALECTS = {"v3.2": Dialect("function_calls", False), "v4": Dialect("tool_calls", False),
            "v4.1": Dialect("calls", True)}
BY_INVOKE = {dialect.invoke_open: dialect for dialect in DIALECTS.values()}
"""Invoke opener → dialect (V3.2 and V4 share theirs; only their block tags differ)."""
OPEN_TAG, CLOSE_TAG = f"<{TOKEN}", f"</{TOKEN}"
INVOKE_OPENERS = tuple(BY_INVOKE)
INVOKE_CLOSERS = tuple({dialect.invoke_close for dialect in DIALECTS.values()})
BLOCK_OPENERS = tuple(dialect.tag(dialect.block) for dialect in DIALECTS.values())
BLOCK_CLOSERS = tuple(dialect.tag(dialect.block, closing=True) for dialect in DIALECTS.values())


def known_tag(text: str, pos: int, final: bool, token: str, tags: tuple[str, ...], others: tuple[str, ...] = ()
              ) -> Region | None:
    """A block tag at `pos` (dropped with its `>`, which models sometimes leave out); while streaming, wait for text
    that may still grow into one of `tags` or `others` (read elsewhere); any other text after the DSML token is
    content, as written."""
    for tag in tags:
        if text.startswith(tag, pos):
            end = pos + len(tag)
            if end >= len(text) and not final:
                return None
            return Region(end + 1 if text.startswith(">", end) else end)
    if not final and grows_into(text, pos, *tags, *others):
        return None
    return Region(pos + len(token), content=token)


def attributes(header: str) -> dict[str, str]:
    """`name="x" string="true"` → {"name": "x", "string": "true"}."""
    return dict(ATTRIBUTE.findall(header))


class DeepSeekDsmlCodec(Codec):
    name = "deepseek_dsml"
    call_markers = tuple(BY_INVOKE)
    variants = ("v3.2", "v4", "v4.1")
    default_variant = "v3.2"

    def __init__(self, variant: str | None = None, tool_rendering: str = "json") -> None:
        super().__init__(variant, tool_rendering)
        self.dialect = DIALECTS[self.variant]
        self.tool_result_role = "tool" if self.variant == "v3.2" else "user"
        """V3.2 appends results to the assistant turn; V4 and V4.1 put them in a user turn."""
        self.tool_results_joiner = "\n" if self.variant == "v3.2" else "\n\n"
        """V3.2's encoder writes one `<result>` a line (inside a `<function_results>` block, which our template, writing
        each result on its own, leaves out); V4's, one `<tool_result>` block a paragraph."""

    def markers(self, mode: str) -> dict[str, Handler]:
        """Two markers for every DSML tag (its opening or closing `<｜DSML｜`), each read by what follows: a stream
        scans its markers at every chunk, so fewer markers stream faster."""
        table = dict(super().markers(mode))
        if mode == CONTENT:
            table.update({OPEN_TAG: self._opening_tag, CLOSE_TAG: self._closing_tag, EOS: drop(EOS)})
        return table

    def glue_before(self, marker: str) -> str:
        """DeepSeek's encoder writes a blank line between the content and the calls block (one newline between the
        block's own tags)."""
        return "\n\n" if marker == OPEN_TAG else self.markup_glue

    def _opening_tag(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        if text.startswith(INVOKE_OPENERS, pos):
            if unclosed(text, pos, final, "invoke>", state):
                return None  # no invoke close tag yet (every dialect's ends so)
            return self._invoke(text, pos, final, state)
        return known_tag(text, pos, final, OPEN_TAG, BLOCK_OPENERS, INVOKE_OPENERS)

    @staticmethod
    def _closing_tag(text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        for close in INVOKE_CLOSERS:
            if text.startswith(close, pos):
                return Region(pos + len(close))
        return known_tag(text, pos, final, CLOSE_TAG, BLOCK_CLOSERS, INVOKE_CLOSERS)

    def _invoke(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        what = "DSML invoke"
        dialect = next(d for opener, d in BY_INVOKE.items() if text.startswith(opener, pos))
        if unclosed(text, pos, final, dialect.invoke_close, state):
            return None
        header_end = text.find(">", pos)
        if header_end < 0:
            return waiting(text, pos, final, what)
        name = attributes(text[pos + len(dialect.invoke_open):header_end]).get("name")
        if not name:
            return malformed(text, pos, final, dialect.invoke_close, header_end, what)
        q = skip_ws(text, header_end + 1)
        if text.startswith("{", q):  # the arguments as one JSON object instead of parameter tags
            decoded = decode_json(text, q)
            if decoded is None:
                return malformed(text, pos, final, dialect.invoke_close, q, what)
            arguments, after = decoded
            return self._closed(text, pos, final, dialect, skip_ws(text, after),
                                call_from_obj({"name": name, "arguments": arguments}), what)
        arguments: dict = {}
        while text.startswith(dialect.param_open, q):
            key_end = text.find(">", q)
            if key_end < 0:
                return waiting(text, pos, final, what)
            attrs = attributes(text[q + len(dialect.param_open):key_end])
            key = attrs.get("name")
            if key is None:
                return malformed(text, pos, final, dialect.invoke_close, q, what)
            value_end = self._value_end(text, key_end + 1, final, dialect)
            if value_end is None:
                return waiting(text, pos, final, what)
            raw = text[key_end + 1:value_end]
            arguments[key] = marked_value(raw, {"true": True, "false": False}.get(attrs.get("string", "")),
                                          argument_schema(state, name, key))
            q = skip_ws(text, value_end + len(dialect.param_close))
        call = refused_value(arguments) or ToolCall(name, arguments)
        return self._closed(text, pos, final, dialect, q, call, what)

    @staticmethod
    def _closed(text: str, pos: int, final: bool, dialect: Dialect, q: int, call: object, what: str
                ) -> Region | None:
        """The call's region once its invoke close tag is at `q` (forgiven at the very end of a complete text)."""
        not_a_call = f"{what} at char {pos}: arguments are not an object; the call was dropped"
        if text.startswith(dialect.invoke_close, q):
            return call_region(q + len(dialect.invoke_close), call, what, pos, not_a_call)  # type: ignore[arg-type]
        if grows_into(text, q, dialect.invoke_close, dialect.param_open):
            return call_region(len(text), call, what, pos, not_a_call) if final else None  # type: ignore[arg-type]
        return malformed(text, pos, final, dialect.invoke_close, q, what)

    @staticmethod
    def _value_end(text: str, start: int, final: bool, dialect: Dialect) -> int | None:
        """The parameter close tag ending the value at `start`: the first followed (after whitespace) by the next
        parameter or the invoke's close; once the text is complete, else the first close tag at all."""
        search = start
        while (close := text.find(dialect.param_close, search)) >= 0:
            after = skip_ws(text, close + len(dialect.param_close))
            if text.startswith(dialect.param_open, after) or text.startswith(dialect.invoke_close, after):
                return close
            if grows_into(text, after, dialect.param_open, dialect.invoke_close):
                return close if final else None
            search = close + 1
        if final:
            close = text.find(dialect.param_close, start)
            return close if close >= 0 else None
        return None

    # ---- rendering -----------------------------------------------------------------------------------------------
    def declarations(self, tools: list[dict]) -> str:
        return "\n".join(dumps(function_of(tool)) for tool in tools)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        d = self.dialect
        block_open, block_close = d.tag(d.block) + ">", d.tag(d.block, closing=True) + ">"
        layout = (f'{block_open}\n{d.invoke_open} name="$FUNCTION_NAME">\n'
                  f'{d.param_open} name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE{d.param_close}\n'
                  f'...\n{d.invoke_close}\n{d.invoke_open} name="$FUNCTION_NAME2">\n...\n{d.invoke_close}\n'
                  f"{block_close}")
        if self.variant == "v3.2":
            return (f"## Tools\nYou can use the tools below to answer the user. To call them, write a "
                    f'"{block_open}" block like this one in your reply:\n{layout}\n'
                    "Write strings and other scalars as they are, with no quotes or escaping; write lists and "
                    'objects as JSON. Set string="true" on string parameters and string="false" on every other type '
                    "(numbers, booleans, arrays, objects).\n"
                    "In thinking mode, think again after the function results come back, for example:\n"
                    f"{block_open}\n...\n{block_close}\n<function_results>\n...\n</function_results>\n"
                    "<think>...thinking about the results</think>\n"
                    f"These are the functions, as JSON schemas:\n<functions>\n{declarations}\n</functions>\n")
        return (f"## Tools\n\nYou can use the tools below to answer the user. To call them, write a "
                f'"{block_open}" block like this one:\n\n{layout}\n\n'
                'Write string parameters as they are and set string="true". Write every other type (numbers, '
                'booleans, arrays, objects) as JSON and set string="false".\n\n'
                "In thinking mode (opened by <think>), write all your reasoning inside <think>...</think> before any "
                "tool call or answer. Otherwise, write the tool calls or the answer right after </think>.\n\n"
                f"### Available Tool Schemas\n\n{declarations}\n\n"
                "Use exactly the tool names and parameter schemas defined above.\n")

    def before_calls(self, content: str | None) -> str:
        """DeepSeek's encoder opens the calls block after a blank line, content or not."""
        return "\n\n"

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        d = self.dialect
        builder = TextBuilder().add(d.tag(d.block) + ">\n")
        for index, call in enumerate(calls):
            if index:
                builder.add("\n")
            builder.add(f'{d.invoke_open} name="').add(call.name, "name", index).add('">\n')
            args_start = builder.length
            for position, (key, value) in enumerate(call.arguments.items()):
                if position:
                    builder.add("\n")
                is_string = isinstance(value, str)
                builder.add(f'{d.param_open} name="').add(str(key), "arg_key", index)
                builder.add(f'" string="{"true" if is_string else "false"}">')
                builder.add(value if is_string else dumps(value), "arg_value", index).add(d.param_close)
            if call.arguments:
                builder.spans.append(Span("arguments", args_start, builder.length, index))
            builder.add("\n" + d.invoke_close)
        return builder.add("\n" + d.tag(d.block, closing=True) + ">").build()

    def render_tool_result(self, result: dict) -> str:
        if self.variant == "v3.2":
            return f"<result>{result_text(result)}</result>"
        return f"<tool_result>{result_text(result)}</tool_result>"
