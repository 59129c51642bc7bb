"""Values a call cannot hold (deep nesting, lone surrogates) drop that call with a parse error naming it, in every
format, whole and streamed; the text around it still parses. And a parse that keeps malformed calls keeps their text."""

from __future__ import annotations

import pytest
from codec_cases import CODECS, RAW_STRINGS

from qwen_tool.codec import CodecError, ToolCall, get_codec
from qwen_tool.codec.base import normalise_calls
from qwen_tool.codec.values import (
    MAX_DEPTH,
    Refused,
    join_surrogate_pairs,
    json_depth,
    json_end,
    loads,
    value_problem,
)

ARRAY_TOOL = [{"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"a": {"type": "array"}, "s": {"type": "string"}}}}}]
FORMATS = [*CODECS, ("auto", None)]


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def rendered(fmt: str, variant: str | None, arguments: dict) -> str:
    """A call `f(**arguments)` between two texts and before a second call `g()`, as the format writes them."""
    codec = get_codec("hermes" if fmt == "auto" else fmt, variant)
    return codec.render_assistant("Before.", [ToolCall("f", arguments), ToolCall("g", {"ok": 1})]).text


def with_deep_value(fmt: str, variant: str | None, depth: int) -> str:
    """`rendered` with `{"a": <arrays nested depth levels>}`, written into the text (too deep to render)."""
    text = rendered(fmt, variant, {"a": ["PLACEHOLDER"]})
    deep = "[" * depth + "]" * depth
    for quotes in ('""', "''", ('<|"|>',) * 2, ("<escape>",) * 2):  # JSON, Python, Gemma 4, FunctionGemma strings
        text = text.replace(f"[{quotes[0]}PLACEHOLDER{quotes[1]}]", deep)
    return text


def parse_both(fmt: str, variant: str | None, text: str) -> tuple:
    """Whole and streamed (7-character chunks) parse; they must agree."""
    codec = get_codec(fmt, variant)
    whole = codec.parse(text, ARRAY_TOOL)
    stream = codec.stream(ARRAY_TOOL)
    for start in range(0, len(text), 7):
        stream.feed(text[start:start + 7])
    stream.finish()
    streamed = stream.result()
    assert [(c.name, c.arguments) for c in streamed.tool_calls] == [(c.name, c.arguments) for c in whole.tool_calls]
    assert (streamed.content, streamed.error) == (whole.content, whole.error)
    return whole


LITERAL_ONLY = {"gemma4", "functiongemma"}
"""Formats whose values hold no escapes anywhere (Gemma strings are literal text even inside arrays)."""
ONE_LIST = {("pythonic", None), ("mistral", "v3")}
"""Formats that write all calls as one list: a refused value drops the whole list."""


@pytest.mark.parametrize(("fmt", "variant"), FORMATS)
@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 10_000])
def test_deep_arguments_drop_the_call_with_an_error(fmt: str, variant: str | None, depth: int) -> None:
    whole = parse_both(fmt, variant, with_deep_value(fmt, variant, depth))
    assert whole.error is not None and f"more than {MAX_DEPTH} levels deep" in whole.error, whole.error
    assert "at char" in whole.error
    assert [call.name for call in whole.tool_calls] == ([] if (fmt, variant) in ONE_LIST else ["g"])
    assert "Before." in whole.content


@pytest.mark.parametrize(("fmt", "variant"), FORMATS)
def test_arguments_nested_to_the_limit_parse(fmt: str, variant: str | None) -> None:
    # The limit counts the arguments object and, in formats that wrap it, the call object around it.
    depth = MAX_DEPTH - 3
    whole = parse_both(fmt, variant, rendered(fmt, variant, {"a": nested(depth)}))
    assert whole.error is None and whole.tool_calls[0].arguments == {"a": nested(depth)}


@pytest.mark.parametrize(("fmt", "variant"), FORMATS)
def test_a_lone_surrogate_drops_the_call_with_an_error(fmt: str, variant: str | None) -> None:
    text = rendered(fmt, variant, {"s": "PLACEHOLDER"})
    escape = "\\ud800"  # six characters of text: the JSON (or Python) escape of half a UTF-16 pair
    if fmt in RAW_STRINGS:  # raw-text strings: the escape only decodes in a JSON-typed (array) value
        text = rendered(fmt, variant, {"a": ["PLACEHOLDER"]})
    if fmt in LITERAL_ONLY:  # no escapes at all: the half pair itself is in the text
        escape = "\ud800"
    whole = parse_both(fmt, variant, text.replace("PLACEHOLDER", escape))
    assert whole.error is not None and "lone surrogate \\ud800" in whole.error, whole.error
    assert [call.name for call in whole.tool_calls] == ([] if (fmt, variant) in ONE_LIST else ["g"])


@pytest.mark.parametrize(("fmt", "variant"), FORMATS)
def test_a_surrogate_pair_is_one_character_and_parses(fmt: str, variant: str | None) -> None:
    text = rendered(fmt, variant, {"s": "PLACEHOLDER"}).replace("PLACEHOLDER", "\\ud83d\\ude00")
    whole = parse_both(fmt, variant, text)
    if fmt in RAW_STRINGS:  # a raw-text string value keeps the escape as written
        assert whole.tool_calls[0].arguments == {"s": "\\ud83d\\ude00"}
    else:
        assert whole.error is None and whole.tool_calls[0].arguments == {"s": "😀"}


@pytest.mark.parametrize(("fmt", "variant"), FORMATS)
def test_keep_malformed_keeps_the_text_of_a_call_that_does_not_parse(fmt: str, variant: str | None) -> None:
    text = with_deep_value(fmt, variant, MAX_DEPTH + 5) + "\nAfter."
    codec = get_codec(fmt, variant)
    kept = codec.parse(text, ARRAY_TOOL, keep_malformed=True)
    dropped = codec.parse(text, ARRAY_TOOL)
    assert kept.error == dropped.error and kept.error is not None
    assert [c.name for c in kept.tool_calls] == [c.name for c in dropped.tool_calls]
    assert "[" * 50 not in dropped.content and "[" * 50 in kept.content
    assert kept.content.startswith("Before.") and kept.content.endswith("After.")


def test_keep_malformed_keeps_a_truncated_call_and_what_follows() -> None:
    text = 'Hi <tool_call>\n{"name": "f", "arguments": {"a": tru\nthe rest'
    kept = get_codec("hermes").parse(text, keep_malformed=True)
    assert kept.content == text and kept.error and kept.error.startswith("truncated")
    assert get_codec("hermes").parse(text).content == "Hi "  # byte-exact: the space before the call is the model's


def test_values_helpers_measure_without_recursion() -> None:
    deep = "[" * 5000 + "]" * 5000
    assert json_depth(deep) == 5000 and json_depth('{"a": "[[[["}') == 1
    assert json_end(deep + " tail", 0) == 10_000 and json_end("[[", 0) is None
    assert json_end('[[1, "a]b"], {"k": true}] x', 0) == 25
    assert json_end("[[[ </tool_call> ]]]", 0) is None  # stops at what JSON cannot hold, not at the text's end
    assert value_problem(nested(MAX_DEPTH)) is None and "deep" in value_problem(nested(MAX_DEPTH + 1))
    assert "surrogate" in value_problem({"k": ["ok", "\ud800"]}) and "surrogate" in value_problem({"\udfff": 1})
    assert isinstance(loads(deep), Refused) and isinstance(loads('"\\udc00"'), Refused)
    assert loads('{"a": "\\ud83d\\ude00"}') == {"a": "😀"}
    assert join_surrogate_pairs("\ud83d\ude00") == "😀"
    assert "\\ud800" in join_surrogate_pairs("\ud83d\ude00 \ud800").reason
    with pytest.raises(ValueError):
        loads("{not json")


@pytest.mark.parametrize("arguments", ['{"a": "\\ud800"}', '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
                                       {"a": nested(MAX_DEPTH + 1)}])
def test_openai_calls_with_unusable_arguments_are_a_codec_error(arguments: object) -> None:
    with pytest.raises(CodecError, match="tool call 'f': the arguments' value .*; fix: "):
        normalise_calls([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}])
