"""Guided tool-call decoding: the structural tag accepts exactly what our codec renders for the offered tools."""

from __future__ import annotations

from functools import cache

import pytest
import xgrammar

from qwen_tool.codec import CodecError, ToolCall, get_codec
from qwen_tool.codec.guided import structural_tag
from qwen_tool.testing import tiny_tokenizer

TOOLS = [{"type": "function", "function": {
    "name": "geo.distance", "description": "Distance between two cities.",
    "parameters": {"type": "object", "properties": {
        "origin": {"type": "string"}, "destination": {"type": "string"},
        "unit": {"type": "string", "enum": ["km", "miles"]}, "round_trip": {"type": "boolean"},
        "stops": {"type": "array", "items": {"type": "string"}}},
        "required": ["origin", "destination"]}}}]


@cache
def _grammar() -> xgrammar.CompiledGrammar:
    tokenizer = tiny_tokenizer()
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    return xgrammar.GrammarCompiler(info).compile_structural_tag(structural_tag("hermes", TOOLS))


def _accepts(text: str) -> bool:
    return xgrammar.GrammarMatcher(_grammar()).accept_string(text)


def test_calls_rendered_by_the_hermes_codec_are_accepted_with_text_around_them() -> None:
    codec = get_codec("hermes")
    calls = [ToolCall("geo.distance", {"destination": "Porto", "unit": "km", "origin": "Lisbon"}),  # any order
             ToolCall("geo.distance", {"origin": "Porto", "destination": "Braga", "round_trip": True,
                                       "stops": ["Aveiro"]})]
    assert _accepts(codec.render_calls(calls).text)
    assert _accepts("Sure, let me check.\n" + codec.render_calls(calls[:1]).text)
    assert _accepts("I can't do that with these tools.")  # the model may still decline: text stays free


@pytest.mark.parametrize("arguments", [
    '{"origin": "Lisbon"}',  # a required parameter missing
    '{"origin": "Lisbon", "destination": "Porto", "speed": 3}',  # a parameter the tool does not have
    '{"origin": "Lisbon", "destination": "Porto", "unit": "inch"}',  # outside the enum
    '{"origin": "Lisbon", "destination": "Porto", "round_trip": "yes"}',  # wrong JSON type
    '{"origin": "Lisbon", "destination": 5km}',  # not JSON
])
def test_calls_that_break_the_schema_are_rejected(arguments: str) -> None:
    assert not _accepts('<tool_call>\n{"name": "geo.distance", "arguments": ' + arguments + "}\n</tool_call>")


def test_unknown_tool_names_are_rejected_and_formats_without_a_template_fail_clearly() -> None:
    assert not _accepts('<tool_call>\n{"name": "geo.area", "arguments": {}}\n</tool_call>')
    assert structural_tag("hermes", []) is None
    with pytest.raises(CodecError, match="no template for format 'pythonic'"):
        structural_tag("pythonic", TOOLS)
