"""Gemma 4 and FunctionGemma: `call:NAME{key:value,...}` in Gemma's own value syntax, not JSON.

Gemma 4:       `<|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:2}<tool_call|>`, reasoning in
               `<|channel>thought\\n...<channel|>`
FunctionGemma: `<start_function_call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>`

A string is literal text between two string delimiters (`<|"|>`, or `<escape>`), with no escaping, so marker text
inside it never ends it; keys are bare; numbers, `true`, `false` and `null` are written as they are; objects are
`{key:value,...}` and arrays `[value,...]`. Both codecs read both spellings; each renders its own. Where the markup
comes from: docs/codec-sources.md.
"""

from __future__ import annotations

import json
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
    Span,
    TextBuilder,
    call_region,
    drop,
    function_of,
    grows_into,
    result_text,
    skip_ws,
    unclosed,
    waiting,
)
from qwen_tool.codec.types import ToolCall
from qwen_tool.codec.values import MAX_DEPTH, TOO_DEEP, Refused, loads, surrogate_problem

GEMMA4_QUOTE, FUNCTIONGEMMA_QUOTE = '<|"|>', "<escape>"
QUOTES = (GEMMA4_QUOTE, FUNCTIONGEMMA_QUOTE)
QUOTE_LENGTH = max(map(len, QUOTES))
CALL_TAGS = {"<|tool_call>": "<tool_call|>", "<start_function_call>": "<end_function_call>"}
"""Call opener → its closer (Gemma 4, FunctionGemma)."""
CLOSERS = {"<|tool_call>": ("<tool_call|>", "<turn|>"),
           "<start_function_call>": ("<end_function_call>", "<end_of_turn>")}
"""Call opener → the tags that close its call: its own, or the end of the turn (Gemma 4 sometimes ends a call so)."""
CHANNEL_OPEN, CHANNEL_CLOSE = "<|channel>", "<channel|>"
END_MARKERS = ("<turn|>", "<end_of_turn>", "<|tool_response>", "<start_function_response>", "<eos>")
"""Ends of the model's turn, and the tool-response openers the engine stops at: dropped, never content."""
SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d*)?(?:[eE][+-]?\d+)?|true|false|null|None|True|False")
NUMBER_CHARS = "0123456789.eE+-"
NUMBER_PREFIX = re.compile(r"-?[\d.]*(?:[eE][+-]?\d*)?")
"""What a number still being written may look like (a stream waits while it reaches the end of the text)."""
LITERALS = {"true": True, "false": False, "null": None, "None": None, "True": True, "False": False}
BARE_KEY = re.compile(r"[^\s:{}\[\],<>]+")


class Incomplete(Exception):
    """The text ends inside the value (a stream waits for more)."""


class NotGemma(Exception):
    """The text is not a value in Gemma's syntax; the message says where."""


def read_string(text: str, pos: int) -> tuple[str, int]:
    """The literal string opened by a delimiter at `pos`, and its end (after the closing delimiter)."""
    quote = next((q for q in QUOTES if text.startswith(q, pos)), None)
    if quote is None:
        if grows_into(text, pos, *QUOTES):
            raise Incomplete
        raise NotGemma(f"expected a string at char {pos}")
    close = text.find(quote, pos + len(quote))
    if close < 0:
        raise Incomplete
    return text[pos + len(quote):close], close + len(quote)


def read_scalar(text: str, pos: int) -> tuple[Any, int]:
    """A number or literal at `pos` (a JSON-quoted string is read too: models sometimes fall back to it)."""
    if text.startswith('"', pos):
        end = text.find('"', pos + 1)
        while end > 0 and text[end - 1] == "\\":
            end = text.find('"', end + 1)
        if end < 0:
            raise Incomplete
        try:
            return json.loads(text[pos:end + 1]), end + 1
        except ValueError as err:
            raise NotGemma(f"bad quoted string at char {pos}") from err
    match = SCALAR.match(text, pos)
    settled = match is not None and match.end() < len(text) and text[match.end()] not in NUMBER_CHARS
    if not settled and (NUMBER_PREFIX.match(text, pos).end() == len(text) or grows_into(text, pos, *LITERALS)):
        raise Incomplete  # a number or literal may go on in the next chunk
    if match is None:
        raise NotGemma(f"unexpected {text[pos:pos + 1]!r} at char {pos}")
    token = match.group()
    if token in LITERALS:
        return LITERALS[token], match.end()
    return (float(token) if any(c in token for c in ".eE") else int(token)), match.end()


def read_object(text: str, pos: int) -> tuple[dict | Refused, int]:
    """The `{key:value,...}` at `pos` and its end, iteratively (no recursion, whatever the depth).

    A value nested deeper than MAX_DEPTH comes back as `Refused` with the end of the text read so far; a lone
    surrogate in a string, as `Refused` with the object's end. Raises Incomplete or NotGemma.
    """
    if not text.startswith("{", pos):
        raise NotGemma(f"expected '{{' at char {pos}")
    root: dict = {}
    stack: list[tuple[dict | list, str | None]] = [(root, None)]
    """Open containers, each with the key its next value goes to (None in arrays)."""
    problem: str | None = None
    i, expecting_key = pos + 1, True
    while True:
        i = skip_ws(text, i)
        if i >= len(text):
            raise Incomplete
        container = stack[-1][0]
        if text[i] == ("}" if isinstance(container, dict) else "]"):
            stack.pop()
            if not stack:
                return (Refused(problem) if problem else root), i + 1
            i = after_value(text, i + 1)
            expecting_key = isinstance(stack[-1][0], dict)
            continue
        if isinstance(container, dict) and expecting_key:
            if text.startswith(QUOTES, i) or (len(text) - i < QUOTE_LENGTH and grows_into(text, i, *QUOTES)):
                key, i = read_string(text, i)
            else:
                match = BARE_KEY.match(text, i)
                if match is None:
                    raise NotGemma(f"expected a key at char {i}")
                key, i = match.group(), match.end()
            problem = problem or surrogate_problem(key)
            i = skip_ws(text, i)
            if i >= len(text):
                raise Incomplete
            if text[i] != ":":
                raise NotGemma(f"expected ':' at char {i}")
            stack[-1] = (container, key)
            i, expecting_key = skip_ws(text, i + 1), False
            if i >= len(text):
                raise Incomplete
        if text[i] in "{[":
            if len(stack) >= MAX_DEPTH:
                return Refused(TOO_DEEP), i
            child: dict | list = {} if text[i] == "{" else []
            attach(stack, child)
            stack.append((child, None))
            i, expecting_key = i + 1, isinstance(child, dict)
            continue
        if text.startswith(QUOTES, i) or (len(text) - i < QUOTE_LENGTH and grows_into(text, i, *QUOTES)):
            value, i = read_string(text, i)
            problem = problem or surrogate_problem(value)
        else:
            value, i = read_scalar(text, i)
        attach(stack, value)
        i = after_value(text, i)
        expecting_key = isinstance(stack[-1][0], dict)


def attach(stack: list[tuple[dict | list, str | None]], value: Any) -> None:
    """Put `value` into the innermost open container (under its pending key, if an object)."""
    container, key = stack[-1]
    if isinstance(container, dict):
        container[key] = value  # type: ignore[index]
    else:
        container.append(value)


def after_value(text: str, i: int) -> int:
    """Past the comma after a value; at a closing bracket, that bracket (left for the caller)."""
    i = skip_ws(text, i)
    if i >= len(text):
        raise Incomplete
    if text[i] == ",":
        return i + 1
    if text[i] not in "}]":
        raise NotGemma(f"expected ',' or a closing bracket at char {i}")
    return i


def format_value(value: Any, quote: str, quote_keys: bool = False) -> str:
    """A value as Gemma's templates write it (`format_argument`): keys sorted, strings between `quote`s."""
    if isinstance(value, str):
        return quote + value + quote
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        items = (f"{quote + str(k) + quote if quote_keys else k}:{format_value(v, quote, quote_keys)}"
                 for k, v in sorted(value.items()))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(item, quote, quote_keys) for item in value) + "]"
    return str(value)


PROPERTY_KEYS = ("description", "type", "properties", "required", "nullable")
"""Property names the templates skip when listing properties (they read them as schema keywords)."""


class GemmaCodec(Codec):
    """What Gemma 4 and FunctionGemma share: reading both spellings, and the declaration syntax."""

    call_markers = tuple(CALL_TAGS)
    think_tags = False
    tool_result_role = "tool"
    tool_results_joiner = ""
    quote = GEMMA4_QUOTE
    call_open, call_close = "<|tool_call>", "<tool_call|>"
    declaration_open, declaration_close = "<|tool>", "<tool|>"
    response_open, response_close = "<|tool_response>", "<tool_response|>"

    def markers(self, mode: str) -> dict[str, Handler]:
        if mode == REASONING:
            return {CHANNEL_CLOSE: self._channel_close}
        table: dict[str, Handler] = {opener: self._call for opener in CALL_TAGS}
        table.update({closer: drop(closer) for closer in CALL_TAGS.values()})
        table.update({marker: drop(marker) for marker in END_MARKERS})
        table[CHANNEL_OPEN] = self._channel
        table[CHANNEL_CLOSE] = drop(CHANNEL_CLOSE)
        return table

    @staticmethod
    def _channel(text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        """`<|channel>thought\\n`: the channel name runs to the end of its line; what follows is reasoning."""
        line_end = text.find("\n", pos)
        close = text.find(CHANNEL_CLOSE, pos)
        if line_end < 0 or 0 <= close < line_end:  # no name line (yet): reasoning starts right after the tag
            if line_end < 0 and close < 0 and not final:
                return None
            return Region(pos + len(CHANNEL_OPEN), mode=REASONING)
        return Region(line_end + 1, mode=REASONING)

    def _channel_close(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        """The end of the reasoning; a `call:NAME{...}` right after it is a call whose opening tag the model left
        out (Gemma 4 does), read as one when its arguments parse, else left as content."""
        end = pos + len(CHANNEL_CLOSE)
        q = skip_ws(text, end)
        after_reasoning = Region(end, mode=CONTENT)
        if text.startswith("call:", q):
            region = self._read(text, q, q, final, CLOSERS["<|tool_call>"], "call after <channel|>", after_reasoning)
            if region is not None:
                region.mode = CONTENT
            return region
        if not final and grows_into(text, q, "call:"):
            return None
        return after_reasoning

    def _call(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        opener = "<|tool_call>" if text.startswith("<|tool_call>", pos) else "<start_function_call>"
        closers = CLOSERS[opener]
        if unclosed(text, pos, final, closers, state):
            return None  # still streaming: every call read ends at or after its close tag
        q = skip_ws(text, pos + len(opener))
        if text.startswith(":call:", q):  # a stray colon after the tag (seen from Gemma 4)
            q += 1
        if not text.startswith("call:", q):
            if grows_into(text, q, "call:", ":call:"):
                return waiting(text, pos, final, opener)
            return self._skip(text, pos, final, closers[0], q, f"{opener} at char {pos} has no 'call:NAME'")
        return self._read(text, pos, q, final, closers, opener)

    def _read(self, text: str, pos: int, q: int, final: bool, closers: tuple[str, ...], what: str,
              not_a_call: Region | None = None) -> Region | None:
        """The `call:NAME{...}` at `q` (its region starts at `pos`) and its close tag. With `not_a_call`, the close tag
        is optional and text that does not parse is that region instead of a dropped call."""
        closer = closers[0]
        brace = text.find("{", q)
        name = text[q + len("call:"):brace if brace >= 0 else len(text)].strip()
        if any(c in name for c in "<>\n") or (brace >= 0 and not name):
            return not_a_call or self._skip(text, pos, final, closer, q, f"{what} at char {pos} has no function name "
                                                                         "before '{'")
        if brace < 0:
            return waiting(text, pos, final, what) if not (final and not_a_call) else not_a_call
        try:
            arguments, end = read_object(text, brace)
        except Incomplete:
            return waiting(text, pos, final, what) if not (final and not_a_call) else not_a_call
        except NotGemma as err:
            return not_a_call or self._skip(text, pos, final, closer, brace, f"{what} at char {pos}: {err}")
        if isinstance(arguments, Refused) and arguments.reason == TOO_DEEP:
            close = text.find(closer, end)
            if close < 0:
                return waiting(text, pos, final, what)
            return Region(close + len(closer), error=arguments.error(what, pos))
        after = skip_ws(text, end)
        call = arguments if isinstance(arguments, Refused) else ToolCall(name, arguments)
        for candidate in closers:
            if text.startswith(candidate, after):
                return call_region(after + len(candidate), call, what, pos, "")
        if grows_into(text, after, *closers):
            return call_region(len(text), call, what, pos, "") if final else None
        if not_a_call is not None:
            return call_region(end, call, what, pos, "")
        return self._skip(text, pos, final, closer, after, f"{what} at char {pos}: text after the arguments")

    @staticmethod
    def _skip(text: str, pos: int, final: bool, closer: str, from_pos: int, error: str) -> Region | None:
        """A call that cannot be read: dropped up to its closer (or the end, once final), with `error`."""
        close = text.find(closer, from_pos)
        if close < 0:
            return waiting(text, pos, final, "Gemma tool call")
        return Region(close + len(closer), error=error if "dropped" in error else f"{error}; the call was dropped")

    # ---- rendering -----------------------------------------------------------------------------------------------
    def _property(self, key: str, schema: Any) -> str:
        """One property as the templates' `format_parameters` lists it."""
        q = self.quote
        schema = schema if isinstance(schema, dict) else {}
        kind = str(schema.get("type", "")).upper()
        parts = []
        if schema.get("description"):
            parts.append(f"description:{q}{schema['description']}{q}")
        if kind == "STRING" and schema.get("enum"):
            parts.append(f"enum:{format_value(schema['enum'], q, quote_keys=True)}")
        elif kind == "ARRAY" and isinstance(schema.get("items"), dict) and schema["items"]:
            parts.append("items:{" + self._items(schema["items"]) + "}")
        if schema.get("nullable"):
            parts.append("nullable:true")
        if kind == "OBJECT":
            properties = schema.get("properties")
            parts.append("properties:{" + self._properties(properties if isinstance(properties, dict) else schema)
                         + "}")
            if schema.get("required"):
                parts.append("required:[" + ",".join(f"{q}{r}{q}" for r in schema["required"]) + "]")
        parts.append(f"type:{q}{kind}{q}")
        return f"{key}:{{" + ",".join(parts) + "}"

    def _items(self, items: dict) -> str:
        q, parts = self.quote, []
        for key, value in sorted(items.items()):
            if value is None:
                continue
            if key == "properties":
                parts.append("properties:{" + (self._properties(value) if isinstance(value, dict) else "") + "}")
            elif key == "required":
                parts.append("required:[" + ",".join(f"{q}{r}{q}" for r in value) + "]")
            elif key == "type":
                upper = value.upper() if isinstance(value, str) else [str(v).upper() for v in value]
                parts.append(f"type:{format_value(upper, q, quote_keys=True)}")
            else:
                parts.append(f"{key}:{format_value(value, q, quote_keys=True)}")
        return ",".join(parts)

    def _properties(self, properties: dict) -> str:
        return ",".join(self._property(key, value) for key, value in sorted(properties.items())
                        if key not in PROPERTY_KEYS)

    def _declaration(self, tool: dict) -> str:
        """One tool as the templates' `format_function_declaration` writes it."""
        q, function = self.quote, function_of(tool)
        text = f"declaration:{function['name']}{{description:{q}{function.get('description', '')}{q}"
        params = function.get("parameters") or {}
        if params:
            text += ",parameters:{"
            if params.get("properties"):
                text += "properties:{" + self._properties(params["properties"]) + "},"
            if params.get("required"):
                text += "required:[" + ",".join(f"{q}{r}{q}" for r in params["required"]) + "],"
            if params.get("type"):
                text += f"type:{q}{str(params['type']).upper()}{q}}}"
        return text + "}"

    def declarations(self, tools: list[dict]) -> str:
        return "".join(f"{self.declaration_open}{self._declaration(tool)}{self.declaration_close}" for tool in tools)

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder()
        for index, call in enumerate(calls):
            builder.add(self.call_open + "call:").add(call.name, "name", index).add("{")
            args_start = builder.length
            for position, (key, value) in enumerate(sorted(call.arguments.items())):
                if position:
                    builder.add(",")
                builder.add(str(key), "arg_key", index).add(":")
                builder.add(format_value(value, self.quote), "arg_value", index)
            if call.arguments:
                builder.spans.append(Span("arguments", args_start, builder.length, index))
            builder.add("}" + self.call_close)
        return builder.build()

    def render_reasoning(self, reasoning: str) -> str:
        return f"{CHANNEL_OPEN}thought\n{reasoning}\n{CHANNEL_CLOSE}"

    def render_tool_result(self, result: dict) -> str:
        """`response:NAME{key:value,...}` for a JSON object result, else `response:NAME{value:...}`."""
        text, name = result_text(result), result.get("name") or "unknown"
        try:
            value = loads(text)
        except ValueError:
            value = None
        body = format_value(value, self.quote) if isinstance(value, dict) else \
            "{value:" + format_value(text, self.quote) + "}"
        return f"{self.response_open}response:{name}{body}{self.response_close}"


class Gemma4Codec(GemmaCodec):
    name = "gemma4"

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        return declarations  # Gemma 4's template lists the declarations in the system turn and says nothing more


class FunctionGemmaCodec(GemmaCodec):
    name = "functiongemma"
    quote = FUNCTIONGEMMA_QUOTE
    call_open, call_close = "<start_function_call>", "<end_function_call>"
    declaration_open, declaration_close = "<start_function_declaration>", "<end_function_declaration>"
    response_open, response_close = "<start_function_response>", "<end_function_response>"

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        # The sentence FunctionGemma's card says switches the model to function calling, then the declarations.
        return f"You are a model that can do function calling with the following functions{declarations}"
