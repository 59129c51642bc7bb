"""Hermes / Qwen2.5 / Qwen3: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, results in
`<tool_response>` blocks, optional `<think>` reasoning. Also the built-in SmolLM2 model's format.

The call body is read with the C JSON decoder from the opening tag, so a `</tool_call>` inside a string argument never
ends the call; this is the evaluation hot path, so it does no more than that.
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
    call_from_obj,
    call_region,
    decode_json,
    dumps,
    function_of,
    grows_into,
    result_text,
    skip_ws,
    unclosed,
)
from qwen_tool.codec.types import ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def read_json_call(text: str, pos: int, final: bool, state: ScanState, open_tag: str, close_tag: str,
                   args_keys: tuple[str, ...] = ("arguments", "parameters")) -> Region | None:
    """Read `open_tag {json} close_tag` at `pos`; a missing close tag at the very end is forgiven once final, and
    one missing before other text is recovered with a warning when the JSON is a whole call object."""
    body = skip_ws(text, pos + len(open_tag))
    if unclosed(text, body, final, close_tag, state):
        return None
    decoded = decode_json(text, body) if body < len(text) else None
    if decoded is not None:
        obj, end = decoded
        after = skip_ws(text, end)
        not_a_call = f"{open_tag} at char {pos} holds no name/arguments object"
        if text.startswith(close_tag, after):
            return call_region(after + len(close_tag), call_from_obj(obj, args_keys), open_tag, pos, not_a_call)
        if grows_into(text, after, close_tag):  # only (part of) the close tag is missing
            if not final:
                return None
            return call_region(len(text), call_from_obj(obj, args_keys), open_tag, pos, not_a_call)
        call = call_from_obj(obj, args_keys)
        if isinstance(call, ToolCall):  # the model went on without closing a complete call
            return call_region(end, call, open_tag, pos, not_a_call, warnings=[
                f"{open_tag} at char {pos} had no {close_tag}; the call ends with its JSON object"])
    elif not final:
        return None  # the JSON may still be growing
    close = text.find(close_tag, body)
    if close < 0:
        if not final:
            return None
        return Region(len(text), error=f"truncated: {open_tag} at char {pos} was never closed; the call was dropped")
    return Region(close + len(close_tag), error=f"malformed call at char {pos}: the body is not one JSON object")


class HermesCodec(Codec):
    name = "hermes"
    call_markers = (OPEN,)

    def markers(self, mode: str) -> dict[str, Handler]:
        table = dict(super().markers(mode))
        if mode == CONTENT:
            table[OPEN] = self._call
            table[CLOSE] = lambda text, pos, final, state: Region(pos + len(CLOSE))  # a stray close tag never leaks
        return table

    @staticmethod
    def _call(text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        return read_json_call(text, pos, final, state, OPEN, CLOSE)

    def declarations(self, tools: list[dict]) -> str:
        return "\n".join(dumps({"type": "function", "function": function_of(tool)}) for tool in tools)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        written = ("is a JSON object" if self.tool_rendering == "json"
                   else "(`?` marks an optional argument, `=` its default) is")
        return (
            "# Tools\n\n"
            "You can call the functions described below to help with the user's request.\n\n"
            f"Each function's signature {written} inside the <tools></tools> tags:\n"
            f"<tools>\n{declarations}\n</tools>\n\n"
            "To call a function, write a JSON object with its name and arguments between <tool_call></tool_call> "
            "tags, one block per call:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        )

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder()
        for index, call in enumerate(calls):
            if index:
                builder.add("\n")
            builder.add(OPEN + '\n{"name": "').add(dumps(call.name)[1:-1], "name", index).add('", "arguments": ')
            add_json_object(builder, call.arguments, index)
            builder.add("}\n" + CLOSE)
        return builder.build()

    def render_tool_result(self, result: dict) -> str:
        return f"<tool_response>\n{result_text(result)}\n</tool_response>"
