"""The OpenAI bridge: calls from `tool_calls`, from content, or both; streamed fragments merged by index."""

from __future__ import annotations

import json

from qwen_tool.codec.openai import (
    StreamAssembler,
    ToolCallAccumulator,
    message_to_text,
    normalise_response,
    text_to_message,
)


def _names_args(message: dict) -> list[tuple[str, dict]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message.get("tool_calls", [])]


def test_calls_in_field_and_in_content_are_merged_without_duplicates() -> None:
    response = {"choices": [{"message": {
        "role": "assistant",
        "content": 'Sure.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
                   '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>',
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}}]}}]}
    message = normalise_response(response)
    assert message["content"] == "Sure."
    assert _names_args(message) == [("a", {"x": 1}), ("b", {})]
    assert message["tool_calls"][0]["id"] == "c1"


def test_accumulator_merges_by_index_even_when_interleaved() -> None:
    acc = ToolCallAccumulator()
    acc.add({"index": 0, "id": "c0", "function": {"name": "f", "arguments": '{"a": '}})
    acc.add({"index": 1, "id": "c1", "function": {"name": "g", "arguments": '{"b"'}})
    acc.add({"index": 0, "function": {"arguments": "1}"}})
    acc.add({"index": 1, "function": {"arguments": ": 2}"}})
    assert [(c.id, c.name, c.arguments) for c in acc.calls()] == [("c0", "f", {"a": 1}), ("c1", "g", {"b": 2})]


def test_stream_assembler_finds_calls_in_streamed_content_and_field() -> None:
    assembler = StreamAssembler("hermes")
    text = 'Hi <tool_call>\n{"name": "t", "arguments": {"q": "</tool_call>"}}\n</tool_call>'
    for i in range(0, len(text), 3):
        assembler.add_chunk({"choices": [{"delta": {"content": text[i:i + 3]}}]})
    assembler.add_chunk({"choices": [{"delta": {"tool_calls": [
        {"index": 0, "id": "z", "function": {"name": "u", "arguments": "{}"}}]}}]})
    message = assembler.message()
    assert message["content"] == "Hi "  # byte-exact: the space before the call is the model's
    assert _names_args(message) == [("u", {}), ("t", {"q": "</tool_call>"})]


def test_reverse_direction_round_trips_across_formats() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"k": "v w"}'}}]}
    for fmt in ("hermes", "mistral", "pythonic", "glm", "harmony", "kimi_k2"):
        assert _names_args(text_to_message(message_to_text(message, fmt), fmt)) == [("f", {"k": "v w"})]
        assert _names_args(text_to_message(message_to_text(message, fmt), "auto")) == [("f", {"k": "v w"})]


def test_truncated_text_reports_parse_error() -> None:
    message = text_to_message('<tool_call>\n{"name": "f", "argu', "hermes")
    assert "tool_calls" not in message and "truncated" in message["parse_error"]
