"""Mistral: `[TOOL_CALLS][{"name": .., "arguments": ..}]` (v3, up to Mistral-Large-2407) or
`[TOOL_CALLS]name[ARGS]{json}` per call (v11+, with an optional `[CALL_ID]id` before `[ARGS]`). Parsing accepts both;
the variant picks what we render. Magistral reasoning sits in `[THINK]...[/THINK]` (2507 on, special tokens) or in
plain `<think>...</think>` tags (Magistral Small/Medium 2506, asked for by its system prompt); both are read in every
variant, and the `magistral_2506` variant renders the plain tags (calls as v11). Sources: docs/codec-sources.md.
"""

from __future__ import annotations

import hashlib

from qwen_tool.codec.base import (
    CONTENT,
    REASONING,
    Codec,
    Handler,
    Region,
    Rendered,
    ScanState,
    TextBuilder,
    add_json_object,
    awaiting_anew,
    call_from_obj,
    call_region,
    decode_json,
    drop,
    dumps,
    glued,
    grows_into,
    result_text,
    skip_ws,
    waiting,
)
from qwen_tool.codec.types import ToolCall
from qwen_tool.codec.values import Refused

TOOL_CALLS, ARGS, CALL_ID = "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"
PLAIN_THINK_OPEN, PLAIN_THINK_CLOSE = "<think>", "</think>"


def mistral_call_id(call: ToolCall) -> str:
    """Mistral v3 wants 9 alphanumeric characters; derive them stably from our id."""
    if len(call.id) == 9 and call.id.isalnum():
        return call.id
    return hashlib.sha1(call.id.encode()).hexdigest()[:9]


class MistralCodec(Codec):
    name = "mistral"
    call_markers = (TOOL_CALLS,)
    variants = ("v11", "v3", "magistral_2506")
    default_variant = "v11"
    think_open, think_close = "[THINK]", "[/THINK]"
    tool_result_role = "tool"
    tool_results_joiner = ""

    def markers(self, mode: str) -> dict[str, Handler]:
        table = dict(super().markers(mode))
        if mode == CONTENT:
            table[TOOL_CALLS] = self._calls
            table["</s>"] = drop("</s>")
            table[PLAIN_THINK_OPEN] = lambda text, pos, final, state: glued(text, pos + len(PLAIN_THINK_OPEN), final,
                                                                            1, REASONING)
            table[PLAIN_THINK_CLOSE] = drop(PLAIN_THINK_CLOSE)
        else:
            table[PLAIN_THINK_CLOSE] = lambda text, pos, final, state: glued(text, pos + len(PLAIN_THINK_CLOSE),
                                                                             final, 1, CONTENT)
        return table

    def render_reasoning(self, reasoning: str) -> str:
        if self.variant == "magistral_2506":  # the layout its system prompt asks for
            return f"{PLAIN_THINK_OPEN}\n{reasoning}\n{PLAIN_THINK_CLOSE}\n"
        return super().render_reasoning(reasoning)

    def _calls(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        q = skip_ws(text, pos + len(TOOL_CALLS))
        if q >= len(text):
            return waiting(text, pos, final, TOOL_CALLS)
        if text[q] == "[" and not text.startswith(CALL_ID, q) and not grows_into(text, q, CALL_ID, ARGS):
            decoded = decode_json(text, q)
            if decoded is None:
                return waiting(text, pos, final, TOOL_CALLS) if final else awaiting_anew(state, "]")
            items, end = decoded
            calls = [call_from_obj(item) for item in items] if isinstance(items, list) else [call_from_obj(items)]
            refused = next((call for call in calls if isinstance(call, Refused)), None)
            if refused is not None:
                return Region(end, error=refused.error(TOOL_CALLS, pos))
            if not calls or any(call is None for call in calls):
                return Region(end, error=f"{TOOL_CALLS} at char {pos} holds no list of calls; it was dropped")
            return Region(end, calls=calls)  # type: ignore[arg-type]
        bracket = text.find("[", q)
        if bracket < 0:
            return waiting(text, pos, final, TOOL_CALLS)
        name = text[q:bracket].strip()
        call_id = None
        if text.startswith(CALL_ID, bracket):
            bracket_args = text.find(ARGS, bracket)
            if bracket_args < 0:
                return waiting(text, pos, final, TOOL_CALLS)
            call_id = text[bracket + len(CALL_ID):bracket_args].strip()
            bracket = bracket_args
        if not text.startswith(ARGS, bracket):
            if grows_into(text, bracket, ARGS, CALL_ID):
                return waiting(text, pos, final, TOOL_CALLS)
            return Region(bracket, error=f"{TOOL_CALLS} at char {pos} has no {ARGS}; the call was dropped")
        body = skip_ws(text, bracket + len(ARGS))
        decoded = decode_json(text, body) if body < len(text) else None
        if decoded is None:
            if not final and text.startswith("{", body):
                return awaiting_anew(state, "}")
            return waiting(text, pos, final, TOOL_CALLS)
        arguments, end = decoded
        call = call_from_obj({"name": name, "arguments": arguments})
        if call_id and isinstance(call, ToolCall):
            call.id = call_id
        return call_region(end, call, TOOL_CALLS, pos,
                           f"{TOOL_CALLS} at char {pos}: arguments are not an object; the call was dropped")

    def declarations(self, tools: list[dict]) -> str:
        return dumps([tool if "function" in tool else {"type": "function", "function": tool} for tool in tools])

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        return f"[AVAILABLE_TOOLS]{declarations}[/AVAILABLE_TOOLS]"

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder().add(TOOL_CALLS)
        if self.variant == "v3":
            builder.add("[")
            for index, call in enumerate(calls):
                if index:
                    builder.add(", ")
                builder.add('{"name": "').add(dumps(call.name)[1:-1], "name", index).add('", "arguments": ')
                add_json_object(builder, call.arguments, index)
                builder.add(f', "id": "{mistral_call_id(call)}"}}')
            return builder.add("]").build()
        for index, call in enumerate(calls):
            if index:
                builder.add(TOOL_CALLS)
            builder.add(call.name, "name", index).add(ARGS)
            add_json_object(builder, call.arguments, index)
        return builder.build()

    def render_tool_result(self, result: dict) -> str:
        if self.variant == "v3":
            payload = {"content": result_text(result), "call_id": result.get("tool_call_id", "")}
            return f"[TOOL_RESULTS]{dumps(payload)}[/TOOL_RESULTS]"
        return f"[TOOL_RESULTS]{result_text(result)}[/TOOL_RESULTS]"
