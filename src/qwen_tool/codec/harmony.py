"""gpt-oss Harmony: messages `<|channel|>CHANNEL[ to=RECIPIENT][ <|constrain|>json]<|message|>BODY<|end|>`.

`analysis` is reasoning, `final` is the answer, `commentary` addressed `to=functions.NAME` is a call (body JSON, ended
by `<|call|>`, which engines often strip as a stop token, so a complete body at the very end is accepted). The
recipient may also sit in the `<|start|>assistant to=functions.NAME` header. Tools are declared as a TypeScript-like
`namespace functions`.
"""

from __future__ import annotations

import re
from typing import Any

from qwen_tool.codec.base import (
    CONTENT,
    REASONING,
    Codec,
    Handler,
    Region,
    Rendered,
    ScanState,
    StartState,
    TextBuilder,
    add_json_object,
    call_from_obj,
    call_region,
    decode_json,
    drop,
    function_of,
    grows_into,
    result_text,
    skip_ws,
    unclosed,
    waiting,
)
from qwen_tool.codec.types import ToolCall

START, CHANNEL, MESSAGE, END, CALL, RETURN = "<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|call|>", \
    "<|return|>"
RECIPIENT = re.compile(r"to=([^\s<]+)")
CONSTRAIN = "<|constrain|>"
CHANNELS = ("analysis", "commentary", "final")
LONGEST_HEADER = 256
"""Characters a real header never exceeds: a longer one is text that happens to hold a tag."""


def header_fits(header: str, complete: bool, first_words: tuple[str, ...] = CHANNELS,
                closers: tuple[str, ...] = (MESSAGE,)) -> bool:
    """Whether `header` (the text after `<|channel|>`, or after `<|start|>`) is, or while streaming may grow into, a
    real header: one line, short, no special token but `<|constrain|>`, starting with one of `first_words` (any word
    when empty), ended by one of `closers`. Growing text never fits again once it does not, so the stream decides as
    the whole text does."""
    if "\n" in header or len(header) > LONGEST_HEADER:
        return False
    rest = header.replace(CONSTRAIN, " ")
    tag = rest.rfind("<")
    if not complete and tag >= 0 and any(closer.startswith(rest[tag:]) for closer in (CONSTRAIN, *closers)):
        rest = rest[:tag]  # the start of the tag that ends the header, or of `<|constrain|>`
    if "<|" in rest:
        return False
    words = rest.split()
    if not first_words or not words:
        return bool(words) or not complete
    if complete or len(words) > 1 or rest[-1:].isspace():
        return words[0] in first_words
    return any(word.startswith(words[0]) for word in first_words)  # a word still being written


def ts_type(schema: Any) -> str:
    """A JSON schema as the TypeScript-like type Harmony's tool declarations use."""
    if not isinstance(schema, dict):
        return "any"
    if "enum" in schema:
        return " | ".join(f'"{v}"' if isinstance(v, str) else str(v).lower() for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(ts_type({**schema, "type": k}) for k in kind)
    if kind == "array":
        return f"{ts_type(schema.get('items'))}[]"
    if kind == "object":
        props = schema.get("properties") or {}
        if not props:
            return "object"
        required = set(schema.get("required") or [])
        fields = ", ".join(f"{k}{'' if k in required else '?'}: {ts_type(v)}" for k, v in props.items())
        return "{ " + fields + " }"
    return {"integer": "number", "number": "number", "string": "string", "boolean": "boolean",
            "null": "null"}.get(kind or "", "any")


class HarmonyCodec(Codec):
    name = "harmony"
    call_markers = (CHANNEL, START)
    think_tags = False
    markup_glue = ""
    """Message bodies are exact: the text before a tag is the body's own."""
    tool_result_role = "tool"
    tool_results_joiner = ""

    def markers(self, mode: str) -> dict[str, Handler]:
        table: dict[str, Handler] = {CHANNEL: self._message, START: self._start}
        if mode == REASONING:
            table[END] = lambda text, pos, final, state: Region(pos + len(END), mode=CONTENT)
        else:
            table.update({END: drop(END), CALL: drop(CALL), RETURN: drop(RETURN)})
        return table

    def start_state(self, prompt: str) -> StartState:
        """A prompt that ends in an open message (gpt-oss's generation prompt ends in `<|start|>assistant`, so the
        output begins ` to=functions.NAME<|channel|>…` or `<|channel|>…`) leaves that message as the lead."""
        at = prompt.rfind(START)
        tail = prompt[at:] if at >= 0 else ""
        if not tail or any(tag in tail for tag in (END, CALL, RETURN)):
            return StartState()
        return StartState(lead=tail)

    @staticmethod
    def _literal(marker: str, pos: int, state: ScanState) -> Region:
        """A tag that opens no real header is the text of the message it stands in (nothing is dropped)."""
        if state.mode == REASONING:
            return Region(pos + len(marker), reasoning=marker)
        return Region(pos + len(marker), content=marker)

    def _start(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        """`<|start|>assistant[ to=...]`: remember a recipient written here, consume up to the channel tag."""
        header_end = text.find(CHANNEL, pos)
        message_at = text.find(MESSAGE, pos)
        ends = [i for i in (header_end, message_at) if i >= 0]
        if not header_fits(text[pos + len(START):min(ends) if ends else len(text)], bool(ends), (), (CHANNEL, MESSAGE)):
            return self._literal(START, pos, state)
        if not ends:
            return Region(len(text), mode=CONTENT) if final else None
        header = text[pos + len(START):min(ends)]
        if match := RECIPIENT.search(header):
            state.memo["recipient"] = match.group(1)
        return Region(min(ends), mode=CONTENT)

    def _message(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        message_at = text.find(MESSAGE, pos)
        if not header_fits(text[pos + len(CHANNEL):message_at if message_at >= 0 else len(text)], message_at >= 0):
            return self._literal(CHANNEL, pos, state)
        if message_at < 0:
            return waiting(text, pos, final, "Harmony header")
        header = text[pos + len(CHANNEL):message_at]
        channel = header.strip().split(" ")[0] if header.strip() else ""
        match = RECIPIENT.search(header)
        recipient = match.group(1) if match else state.memo.get("recipient")
        body = message_at + len(MESSAGE)
        if not recipient:
            return Region(body, mode=REASONING if channel == "analysis" else CONTENT)
        if unclosed(text, body, final, (CALL, END), state):
            return None
        body = skip_ws(text, body)
        decoded = decode_json(text, body) if body < len(text) else None
        if decoded is None:
            return waiting(text, pos, final, f"call to {recipient}")
        arguments, end = decoded
        after = skip_ws(text, end)
        for closer in (CALL, END):
            if text.startswith(closer, after):
                end = after + len(closer)
                break
        else:
            if grows_into(text, after, CALL, END) and not final:
                return None
        state.memo.pop("recipient", None)
        return call_region(end, call_from_obj({"name": recipient.removeprefix("functions."), "arguments": arguments}),
                           f"call to {recipient}", pos,
                           f"call to {recipient} at char {pos}: arguments are not an object", mode=CONTENT)

    def declarations(self, tools: list[dict]) -> str:
        blocks = []
        for tool in tools:
            function = function_of(tool)
            comment = f"// {function['description']}\n" if function.get("description") else ""
            params = function.get("parameters") or {}
            args = f"(_: {ts_type(params)})" if params.get("properties") else "()"
            blocks.append(f"{comment}type {function['name']} = {args} => any;")
        return "\n\n".join(blocks)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        return f"# Tools\n\n## functions\n\nnamespace functions {{\n\n{declarations}\n\n}} // namespace functions"

    def render_assistant(self, content: str | None, tool_calls: list[ToolCall] | None = None,
                         reasoning: str | None = None) -> Rendered:
        builder = TextBuilder()
        parts: list[str] = []
        if reasoning:
            parts.append(f"{CHANNEL}analysis{MESSAGE}{reasoning}{END}")
        if content and tool_calls:
            parts.append(f"{CHANNEL}commentary{MESSAGE}{content}{END}")
        for index, part in enumerate(parts):
            builder.add((START + "assistant" if index else "") + part)
        if tool_calls:
            if parts:
                builder.add(START + "assistant")
            builder.add_rendered(self.render_calls(tool_calls))
        elif content:
            builder.add((START + "assistant" if parts else "") + f"{CHANNEL}final{MESSAGE}{content}{RETURN}")
        return builder.build()

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder()
        for index, call in enumerate(calls):
            if index:
                builder.add(START + "assistant")
            builder.add(f"{CHANNEL}commentary to=functions.").add(call.name, "name", index)
            builder.add(f" <|constrain|>json{MESSAGE}")
            add_json_object(builder, call.arguments, index)
            builder.add(CALL)
        return builder.build()

    def render_tool_result(self, result: dict) -> str:
        name = result.get("name") or "tool"
        return f"{START}functions.{name} to=assistant{CHANNEL}commentary{MESSAGE}{result_text(result)}{END}"
