"""Llama 3.1 / 3.2 JSON calls: `{"name": ..., "parameters": {...}}`, optionally after `<|python_tag|>`; several calls
are separated by `;`. A JSON object that is not call-shaped stays content.
"""

from __future__ import annotations

from qwen_tool.codec.base import (
    CONTENT,
    Codec,
    Handler,
    Region,
    Rendered,
    ScanState,
    TextBuilder,
    add_json_object,
    awaiting_anew,
    call_from_obj,
    decode_json,
    drop,
    dumps,
    result_text,
    skip_ws,
    waiting,
)
from qwen_tool.codec.types import ToolCall
from qwen_tool.codec.values import Refused

PYTHON_TAG = "<|python_tag|>"
OBJECT_STARTS = ('{"name"', '{"type"')


class Llama3JsonCodec(Codec):
    name = "llama3_json"
    call_markers = ("{",)
    think_tags = False
    tool_result_role = "ipython"

    def markers(self, mode: str) -> dict[str, Handler]:
        table: dict[str, Handler] = {start: self._calls for start in OBJECT_STARTS}
        table[PYTHON_TAG] = self._calls
        table["<|eom_id|>"] = drop("<|eom_id|>")
        table["<|eot_id|>"] = drop("<|eot_id|>")
        return table if mode == CONTENT else {}

    def _calls(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        tagged = text.startswith(PYTHON_TAG, pos)
        q = pos + len(PYTHON_TAG) if tagged else pos
        calls: list[ToolCall] = []
        while True:
            q = skip_ws(text, q)
            decoded = decode_json(text, q) if q < len(text) else None
            if decoded is None:
                if not final:
                    return awaiting_anew(state, "}") if text.startswith("{", q) else None
                if calls:
                    return Region(len(text), calls=calls, error=f"truncated: JSON call at char {q} is incomplete",
                                  unread_from=q)
                return waiting(text, pos, final, "JSON call")
            obj, end = decoded
            call = call_from_obj(obj, ("parameters", "arguments"))
            if isinstance(call, Refused):
                return Region(end, calls=calls, error=call.error("JSON call", q), unread_from=q)
            if call is None:
                if calls or tagged:
                    return Region(end, calls=calls, error=f"JSON at char {q} is not a call object; it was dropped",
                                  unread_from=q if calls else None)
                return Region(end, content=text[pos:end])
            calls.append(call)
            after = skip_ws(text, end)
            if after == len(text) and not final:
                return None  # a `;` and another call may follow
            if text.startswith(";", after):
                q = after + 1
                continue
            return Region(end, calls=calls)

    def declarations(self, tools: list[dict]) -> str:
        return "\n\n".join(dumps(tool if "function" in tool else {"type": "function", "function": tool})
                           for tool in tools)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        return (
            "You can call the functions below. To call one, reply with only a JSON object of the form "
            '{"name": function name, "parameters": object of argument names and values}; '
            "use literal values, never variables. Separate several calls with ';'.\n\n" + declarations
        )

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder()
        for index, call in enumerate(calls):
            if index:
                builder.add("; ")
            builder.add('{"name": "').add(dumps(call.name)[1:-1], "name", index).add('", "parameters": ')
            add_json_object(builder, call.arguments, index)
            builder.add("}")
        return builder.build()

    def render_reasoning(self, reasoning: str) -> str:
        return reasoning + "\n\n"

    def render_tool_result(self, result: dict) -> str:
        return result_text(result)
