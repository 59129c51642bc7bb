"""Kimi K2: `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{json}
<|tool_call_end|><|tool_calls_section_end|>`. The call id is the `functions.NAME:IDX` string itself."""

from __future__ import annotations

import re

from qwen_tool.codec.base import (
    CONTENT,
    Codec,
    Handler,
    Region,
    Rendered,
    ScanState,
    TextBuilder,
    add_json_object,
    call_from_obj,
    call_region,
    decode_json,
    drop,
    dumps,
    grows_into,
    result_text,
    skip_ws,
    waiting,
)
from qwen_tool.codec.types import ToolCall

SECTION_BEGIN, SECTION_END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
CALL_BEGIN, ARG_BEGIN, CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
KIMI_ID = re.compile(r"functions\.(.+):(\d+)$")


def kimi_id(call: ToolCall, index: int) -> str:
    return call.id if KIMI_ID.match(call.id) else f"functions.{call.name}:{index}"


class KimiK2Codec(Codec):
    name = "kimi_k2"
    call_markers = (CALL_BEGIN,)
    tool_result_role = "tool"

    def markers(self, mode: str) -> dict[str, Handler]:
        table = dict(super().markers(mode))
        if mode == CONTENT:
            table.update({SECTION_BEGIN: drop(SECTION_BEGIN), SECTION_END: drop(SECTION_END),
                          CALL_BEGIN: self._call, CALL_END: drop(CALL_END), "<|im_end|>": drop("<|im_end|>")})
        return table

    def _call(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        what = "Kimi tool call"
        start = pos + len(CALL_BEGIN)
        arg_at = text.find(ARG_BEGIN, start)
        if arg_at < 0:
            return waiting(text, pos, final, what)
        call_id = text[start:arg_at].strip()
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
