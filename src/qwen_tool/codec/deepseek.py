"""DeepSeek V3 and V3.1 (R1 too): calls between `<｜tool▁calls▁begin｜>` and `<｜tool▁calls▁end｜>`.

V3:   `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{json}\\n```<｜tool▁call▁end｜>`
V3.1: `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{json}<｜tool▁call▁end｜>`
Parsing accepts both; the variant picks the rendering.
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
    drop,
    dumps,
    function_of,
    grows_into,
    result_text,
    skip_ws,
    unclosed,
    waiting,
)
from qwen_tool.codec.types import ToolCall

CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
OUTPUT_BEGIN, OUTPUT_END = "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"
EOS = "<｜end▁of▁sentence｜>"


class DeepSeekCodec(Codec):
    name = "deepseek"
    call_markers = (CALL_BEGIN,)
    variants = ("v3.1", "v3")
    default_variant = "v3.1"
    tool_result_role = "tool"
    tool_results_joiner = ""

    def markers(self, mode: str) -> dict[str, Handler]:
        table = dict(super().markers(mode))
        if mode == CONTENT:
            table.update({CALLS_BEGIN: drop(CALLS_BEGIN), CALLS_END: drop(CALLS_END), EOS: drop(EOS),
                          CALL_BEGIN: self._call, CALL_END: drop(CALL_END)})
        return table

    def _call(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        what = "DeepSeek tool call"
        if unclosed(text, pos, final, CALL_END, state):
            return None
        start = pos + len(CALL_BEGIN)
        sep = text.find(SEP, start)
        if sep < 0:
            return waiting(text, pos, final, what)
        head = text[start:sep].strip()
        body = sep + len(SEP)
        fenced = head == "function"
        if fenced:
            line_end = text.find("\n", body)
            if line_end < 0:
                return waiting(text, pos, final, what)
            head = text[body:line_end].strip()
            body = skip_ws(text, line_end)
            if text.startswith("```json", body):
                body += len("```json")
            elif grows_into(text, body, "```json"):
                return waiting(text, pos, final, what)
        body = skip_ws(text, body)
        decoded = decode_json(text, body) if body < len(text) else None
        if decoded is None:
            close = text.find(CALL_END, body)
            if close < 0 or not final:
                return waiting(text, pos, final, what)
            return Region(close + len(CALL_END), error=f"{what} at char {pos}: arguments are not JSON; dropped")
        arguments, end = decoded
        end = skip_ws(text, end)
        if fenced and text.startswith("```", end):
            end = skip_ws(text, end + 3)
        call = call_from_obj({"name": head, "arguments": arguments})
        if text.startswith(CALL_END, end):
            end += len(CALL_END)
        elif grows_into(text, end, CALL_END, "```"):
            if not final:
                return None
            end = len(text)
        return call_region(end, call, what, pos, f"{what} at char {pos}: arguments are not an object; dropped")

    def declarations(self, tools: list[dict]) -> str:
        return "\n\n".join(
            f"### {function_of(tool)['name']}\nDescription: {function_of(tool).get('description', '')}\n\n"
            f"Parameters: {dumps(function_of(tool).get('parameters') or {})}" for tool in tools)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        example = (f"{CALLS_BEGIN}{CALL_BEGIN}function{SEP}NAME\n```json\n{{ARGUMENTS}}\n```{CALL_END}{CALLS_END}"
                   if self.variant == "v3" else f"{CALLS_BEGIN}{CALL_BEGIN}NAME{SEP}{{ARGUMENTS}}{CALL_END}{CALLS_END}")
        return (f"## Tools\nThese tools are available:\n\n{declarations}\n\n"
                f"Call tools with exactly this layout (arguments as a JSON object):\n{example}")

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder().add(CALLS_BEGIN)
        for index, call in enumerate(calls):
            if self.variant == "v3":
                if index:
                    builder.add("\n")
                builder.add(CALL_BEGIN + "function" + SEP).add(call.name, "name", index).add("\n```json\n")
                add_json_object(builder, call.arguments, index)
                builder.add("\n```" + CALL_END)
            else:
                builder.add(CALL_BEGIN).add(call.name, "name", index).add(SEP)
                add_json_object(builder, call.arguments, index)
                builder.add(CALL_END)
        return builder.add(CALLS_END).build()

    def render_tool_result(self, result: dict) -> str:
        return f"{OUTPUT_BEGIN}{result_text(result)}{OUTPUT_END}"
