"""Qwen3-Coder XML: `<tool_call>\\n<function=NAME>\\n<parameter=K>\\nV\\n</parameter>\\n</function>\\n</tool_call>`.

Values are raw text, typed only from the tool's JSON schema (no guessing: "123_456" stays a string unless the schema
says integer). The template wraps a value in one newline each side; exactly those are removed, other whitespace kept.
A value ends at the first `</parameter>` followed by a newline and another parameter or `</function>` (the template's
own glue), so marker text inside a value does not end it early.
"""

from __future__ import annotations

import re
from bisect import bisect_left

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
    call_region,
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
from qwen_tool.codec.schema_typing import type_value
from qwen_tool.codec.types import ToolCall
from qwen_tool.codec.values import Refused

OPEN, CLOSE = "<tool_call>", "</tool_call>"
FUNC, FUNC_END, PARAM, PARAM_END = "<function=", "</function>", "<parameter=", "</parameter>"


TAG_AFTER = "(?:" + re.escape(PARAM) + "|" + re.escape(FUNC_END) + ")"
STRICT_CLOSE = re.compile(re.escape(PARAM_END) + "(?=\n" + TAG_AFTER + ")")
LOOSE_CLOSE = re.compile(re.escape(PARAM_END) + "(?=[ \t\r\n]*" + TAG_AFTER + ")")


def value_closes(text: str, state: ScanState) -> tuple[list[int], list[int]]:
    """Positions of every `</parameter>` followed by the template's glue, and by any whitespace and a tag.

    Found once per complete text (kept in `state.memo`), so each value's close is a bisection: searching the rest of
    the text for each value made outputs whose values lack the newline glue take time in N².
    """
    memo = state.memo.get("value_closes")
    if memo is None or memo[0] is not text:
        memo = state.memo["value_closes"] = (text, [m.start() for m in STRICT_CLOSE.finditer(text)],
                                             [m.start() for m in LOOSE_CLOSE.finditer(text)])
    return memo[1], memo[2]


EVIDENT_END = re.compile(
    "\n" + re.escape(PARAM) + r"(?P<key>[^>\n]+)>\n"  # a parameter opened
    + "|\n" + re.escape(FUNC_END) + r"(?=\s*(?:" + re.escape(CLOSE) + r"|\Z))"  # the function closed
    + "|(?P<closed>" + re.escape(PARAM_END) + r")(?=\s*" + re.escape(CLOSE) + ")")  # the call closed


def evident_value_end(raw: str, taken: set[str], schema: dict | None) -> tuple[int, int, bool] | None:
    """Where a value read up to a later `</parameter>` evidently ended: (its end in `raw`, where reading resumes, and
    whether its `</parameter>` was left out). Evident: a `</parameter>` right before `</tool_call>` (the function's
    close was left out); or, with no `</parameter>` after it in the value, a line opening a parameter not yet given
    (one the schema declares, when it lists any) or `</function>` before `</tool_call>`. A tag that the value itself
    closes later is the value's own text, so nothing is recovered then."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    for match in EVIDENT_END.finditer(raw):
        if match.group("closed"):
            return match.start(), match.end(), False
        if PARAM_END in raw[match.end():]:
            return None
        key = (match.group("key") or "").strip()
        if not key or (key not in taken and (not isinstance(properties, dict) or not properties or key in properties)):
            return match.start(), match.start() + 1, True
    return None


def strip_one_newline(raw: str) -> str:
    if raw.startswith("\n"):
        raw = raw[1:]
    if raw.endswith("\n"):
        raw = raw[:-1]
    return raw


def raw_text_value(value: object) -> str:
    """How XML-like templates write a value: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else dumps(value)


class Qwen3XmlCodec(Codec):
    name = "qwen3_xml"
    call_markers = (OPEN, FUNC)

    def markers(self, mode: str) -> dict[str, Handler]:
        table = dict(super().markers(mode))
        if mode == CONTENT:
            table[OPEN] = self._call
            table[FUNC] = self._bare_function
            table[CLOSE] = drop(CLOSE)
        return table

    def _call(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        what = "<tool_call>"
        if unclosed(text, pos + len(OPEN), final, CLOSE, state):
            return None
        q = skip_ws(text, pos + len(OPEN))
        if not text.startswith(FUNC, q):
            if grows_into(text, q, FUNC):
                return waiting(text, pos, final, what)
            return malformed(text, pos, final, CLOSE, q, what)
        read = self._function(text, q, pos, final, state)
        if not isinstance(read, tuple):
            return read
        call, q, warnings = read
        after = skip_ws(text, q)
        if text.startswith(CLOSE, after):
            return call_region(after + len(CLOSE), call, what, pos, "", warnings=warnings)
        if grows_into(text, after, CLOSE):
            return call_region(len(text), call, what, pos, "", warnings=warnings) if final else None
        return call_region(q, call, what, pos, "", warnings=[  # the model went on without closing a whole call
            *warnings, f"<tool_call> at char {pos} had no </tool_call>; the call ends at its </function>"])

    def _bare_function(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        """`<function=NAME>…</function>` written without the `<tool_call>` opener: a call when the whole block is
        well formed and names an offered tool (any name when none were given); a following `</tool_call>` is taken
        with it. Otherwise the text stays content."""
        if unclosed(text, pos, final, FUNC_END, state):
            return None
        read = self._function(text, pos, pos, final, state)
        if read is None:
            return None
        if (not isinstance(read, tuple) or read[2]
                or (state.tools and (not isinstance(read[0], ToolCall) or read[0].name not in state.tools))):
            return Region(pos + len(FUNC), content=FUNC)  # not a whole, clean block of a known tool: the model's text
        call, q, warnings = read
        after = skip_ws(text, q)
        if text.startswith(CLOSE, after):
            q = after + len(CLOSE)
        elif grows_into(text, after, CLOSE) and not final:
            return None
        return call_region(q, call, "<function=", pos, "", warnings=[
            f"<function= at char {pos} had no <tool_call> opener; the block was read as a call"])

    def _function(self, text: str, q: int, pos: int, final: bool, state: ScanState
                  ) -> tuple[ToolCall | Refused, int, list[str]] | Region | None:
        """Read `<function=NAME>` and its parameters at `q` up to `</function>` (or a `</tool_call>` standing where
        `</function>` belongs): the call (or the refusal of a value), where it ends, and the recoveries made; a
        Region when the text is malformed or truncated; None while streaming and not yet sure."""
        what = "<tool_call>"
        name_end = text.find(">", q + len(FUNC))
        if name_end < 0:
            return waiting(text, pos, final, what)
        name = text[q + len(FUNC):name_end].strip()
        q = name_end + 1
        arguments: dict = {}
        warnings: list[str] = []
        while True:
            q = skip_ws(text, q)
            if text.startswith(FUNC_END, q):
                q += len(FUNC_END)
                break
            if text.startswith(CLOSE, q) and arguments:
                warnings.append(f"<function={name}> at char {pos} had no </function>; it ends at </tool_call>")
                break
            if not text.startswith(PARAM, q):
                if grows_into(text, q, FUNC_END, PARAM):
                    return waiting(text, pos, final, what)
                return malformed(text, pos, final, CLOSE, q, what)
            key_end = text.find(">", q + len(PARAM))
            if key_end < 0:
                return waiting(text, pos, final, what)
            key = text[q + len(PARAM):key_end].strip()
            value_end = self._value_end(text, key_end + 1, final, state)
            if value_end is None and final:  # no `</parameter>` closes it before a tag: read up to the call's end
                value_end = text.find(CLOSE, key_end)
                value_end = len(text) if value_end < 0 else value_end + len(CLOSE)
            if value_end is None:
                return waiting(text, pos, final, what)
            raw = text[key_end + 1:value_end]
            evident = evident_value_end(raw, set(arguments) | {key}, state.tools.get(name))
            if evident is not None:
                cut, resume, left_out = evident
                if left_out:
                    warnings.append(f"<parameter={key}> at char {key_end + 1} had no </parameter>; its value ends "
                                    "where the next tag starts")
                raw, q = raw[:cut], key_end + 1 + resume
            elif text.startswith(PARAM_END, value_end):
                q = value_end + len(PARAM_END)
            else:
                return waiting(text, pos, final, what)
            arguments[key] = type_value(strip_one_newline(raw), argument_schema(state, name, key))
        return refused_value(arguments) or ToolCall(name, arguments), q, warnings

    @staticmethod
    def _value_end(text: str, start: int, final: bool, state: ScanState) -> int | None:
        """The `</parameter>` closing this value: the first one followed, as the template writes it, by a newline
        and another parameter or `</function>`; once the text is complete, by any whitespace and those tags."""
        if final:
            for closes in value_closes(text, state):
                at = bisect_left(closes, start)
                if at < len(closes):
                    return closes[at]
            return None
        search = start
        while (close := text.find(PARAM_END, search)) >= 0:
            after = close + len(PARAM_END)
            if text.startswith("\n", after):
                after += 1
                if text.startswith(PARAM, after) or text.startswith(FUNC_END, after):
                    return close
                if grows_into(text, after, PARAM, FUNC_END):
                    return None
            search = close + 1
        return None

    def declarations(self, tools: list[dict]) -> str:
        blocks = []
        for tool in tools:
            function = function_of(tool)
            params = (function.get("parameters") or {}).get("properties") or {}
            lines = [f"<function>\n<name>{function['name']}</name>"]
            if function.get("description"):
                lines.append(f"<description>{function['description']}</description>")
            lines.append("<parameters>")
            for key, schema in params.items():
                lines.append(f"<parameter>\n<name>{key}</name>")
                if isinstance(schema, dict):
                    for field, value in schema.items():
                        lines.append(f"<{field}>{raw_text_value(value)}</{field}>")
                lines.append("</parameter>")
            required = (function.get("parameters") or {}).get("required")
            if required:
                lines.append(f"<required>{dumps(required)}</required>")
            lines.append("</parameters>\n</function>")
            blocks.append("\n".join(lines))
        return "\n".join(blocks)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        return (
            "# Tools\n\nThese functions are available to you:\n\n"
            f"<tools>\n{declarations}\n</tools>\n\n"
            "To call a function, reply with exactly this layout and nothing after it:\n\n"
            "<tool_call>\n<function=function_name>\n<parameter=parameter_name>\nvalue\n</parameter>\n"
            "</function>\n</tool_call>\n\n"
            "Notes:\n- Give every required parameter.\n- A value may span several lines.\n"
            "- Several calls are several <tool_call> blocks, one after another."
        )

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder()
        for index, call in enumerate(calls):
            if index:
                builder.add("\n")
            builder.add(OPEN + "\n" + FUNC).add(call.name, "name", index).add(">\n")
            args_start = builder.length
            for key, value in call.arguments.items():
                builder.add(PARAM).add(str(key), "arg_key", index).add(">\n")
                builder.add(raw_text_value(value), "arg_value", index).add("\n" + PARAM_END + "\n")
            if call.arguments:
                builder.spans.append(Span("arguments", args_start, builder.length, index))
            builder.add(FUNC_END + "\n" + CLOSE)
        return builder.build()

    def render_tool_result(self, result: dict) -> str:
        return f"<tool_response>\n{result_text(result)}\n</tool_response>"

