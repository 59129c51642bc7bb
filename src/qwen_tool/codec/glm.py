"""GLM-4.5 / 4.6 / 4.7: `<tool_call>NAME<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>`.

GLM-4.5 puts a newline after the name and after each tag pair; 4.7 writes none. Values are raw text (strings as they
are, anything else as JSON) and are typed only from the tool schema.
"""

from __future__ import annotations

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
from qwen_tool.codec.qwen3_xml import raw_text_value
from qwen_tool.codec.schema_typing import type_value
from qwen_tool.codec.types import ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
KEY, KEY_END, VALUE, VALUE_END = "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"


class GlmCodec(Codec):
    name = "glm"
    call_markers = (OPEN,)
    variants = ("4.5", "4.7")
    default_variant = "4.5"
    tool_result_role = "observation"

    def markers(self, mode: str) -> dict[str, Handler]:
        table = dict(super().markers(mode))
        if mode == CONTENT:
            table[OPEN] = self._call
            table[CLOSE] = drop(CLOSE)
        return table

    def _call(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        what = "<tool_call>"
        start = pos + len(OPEN)
        if unclosed(text, start, final, CLOSE, state):
            return None
        name_end = text.find("<", start)
        if name_end < 0:
            return waiting(text, pos, final, what)
        name = text[start:name_end].strip()
        if not name or "\n" in name:
            return malformed(text, pos, final, CLOSE, start, what)
        q = name_end
        arguments: dict = {}
        while True:
            last_end, q = q, skip_ws(text, q)
            if text.startswith(CLOSE, q):
                return call_region(q + len(CLOSE), refused_value(arguments) or ToolCall(name, arguments), what, pos,
                                   "")
            if not text.startswith(KEY, q):
                if grows_into(text, q, KEY, CLOSE):
                    return waiting(text, pos, final, what)
                if text.startswith(OPEN, q) or not text.startswith("<", q):  # went on without closing the call
                    return call_region(last_end, refused_value(arguments) or ToolCall(name, arguments), what, pos, "",
                                       warnings=[f"<tool_call> at char {pos} had no </tool_call>; the call ends "
                                                 "after its last argument"])
                return malformed(text, pos, final, CLOSE, q, what)
            key_end = text.find(KEY_END, q)
            if key_end < 0:
                return waiting(text, pos, final, what)
            key = text[q + len(KEY):key_end].strip()
            v = skip_ws(text, key_end + len(KEY_END))
            if not text.startswith(VALUE, v):
                if grows_into(text, v, VALUE):
                    return waiting(text, pos, final, what)
                return malformed(text, pos, final, CLOSE, v, what)
            value_end = text.find(VALUE_END, v)
            if value_end < 0:
                return waiting(text, pos, final, what)
            arguments[key] = type_value(text[v + len(VALUE):value_end], argument_schema(state, name, key))
            q = value_end + len(VALUE_END)

    def declarations(self, tools: list[dict]) -> str:
        return "\n".join(dumps(function_of(tool)) for tool in tools)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        written = (", one JSON object per line," if self.tool_rendering == "json"
                   else " (`?` marks an optional argument, `=` its default),")
        return (
            "# Tools\n\nYou can call the functions below to help with the user's request.\n\n"
            f"Their signatures{written} inside <tools></tools> tags:\n<tools>\n{declarations}\n</tools>\n\n"
            "To call a function, write its name and each argument in this XML layout:\n"
            "<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n"
            "<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>"
        )

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        sep = "\n" if self.variant == "4.5" else ""
        builder = TextBuilder()
        for index, call in enumerate(calls):
            if index:
                builder.add("\n")
            builder.add(OPEN).add(call.name, "name", index).add(sep)
            args_start = builder.length
            for key, value in call.arguments.items():
                builder.add(KEY).add(str(key), "arg_key", index).add(KEY_END + sep + VALUE)
                builder.add(raw_text_value(value), "arg_value", index).add(VALUE_END + sep)
            if call.arguments:
                builder.spans.append(Span("arguments", args_start, builder.length, index))
            builder.add(CLOSE)
        return builder.build()

    def render_tool_result(self, result: dict) -> str:
        return f"<tool_response>\n{result_text(result)}\n</tool_response>"
