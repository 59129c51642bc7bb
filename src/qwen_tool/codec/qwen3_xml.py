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
            table[CLOSE] = drop(CLOSE)
        return table

    def _call(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        what = "<tool_call>"
        if unclosed(text, pos + len(OPEN), final, CLOSE):
            return None
        q = skip_ws(text, pos + len(OPEN))
        if not text.startswith(FUNC, q):
            if grows_into(text, q, FUNC):
                return waiting(text, pos, final, what)
            return malformed(text, pos, final, CLOSE, q, what)
        name_end = text.find(">", q + len(FUNC))
        if name_end < 0:
            return waiting(text, pos, final, what)
        name = text[q + len(FUNC):name_end].strip()
        q = name_end + 1
        arguments: dict = {}
        while True:
            q = skip_ws(text, q)
            if text.startswith(FUNC_END, q):
                q += len(FUNC_END)
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
            if value_end is None:
                return waiting(text, pos, final, what)
            raw = strip_one_newline(text[key_end + 1:value_end])
            arguments[key] = type_value(raw, argument_schema(state, name, key))
            q = value_end + len(PARAM_END)
        after = skip_ws(text, q)
        call = refused_value(arguments) or ToolCall(name, arguments)
        if text.startswith(CLOSE, after):
            return call_region(after + len(CLOSE), call, what, pos, "")
        if grows_into(text, after, CLOSE):
            return call_region(len(text), call, what, pos, "") if final else None
        return malformed(text, pos, final, CLOSE, after, what)

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

