"""Chat rendering: exact trainable ranges and call spans, prefix stability, the model-template path."""

from __future__ import annotations

import json

import pytest

from qwen_tool.codec.chat import render_conversation, render_prompt

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather now.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}]

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris and Köln?"},
    {"role": "assistant", "content": None, "reasoning_content": "Two cities.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                      "arguments": json.dumps({"city": "Paris", "days": 2})}},
        {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Köln"}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    {"role": "assistant", "content": "Paris is sunny, Köln rainy."},
]


def test_hermes_chatml_layout_and_trainable_ranges() -> None:
    chat = render_conversation(None, MESSAGES, TOOLS, "hermes")
    text = chat.text
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert '"name": "get_weather"' in text.split("<|im_end|>")[0]
    # Tool results grouped into one user turn of <tool_response> blocks, as Qwen2.5 does.
    assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\nrain\n</tool_response>" \
           "<|im_end|>\n" in text
    trainable = [text[s:e] for s, e in chat.trainable_ranges()]
    assert len(trainable) == 2
    assert trainable[0].startswith("<think>\nTwo cities.\n</think>\n\n<tool_call>\n")
    assert trainable[0].endswith("</tool_call><|im_end|>")
    assert trainable[1] == "Paris is sunny, Köln rainy.<|im_end|>"
    for segment in chat.segments:
        if segment.trainable:
            assert not text[segment.start:segment.end].startswith("<|im_start|>")
            assert text[segment.start - len("<|im_start|>assistant\n"):segment.start] == "<|im_start|>assistant\n"
    # Segments tile the text with no gap or overlap.
    ordered = sorted(chat.segments, key=lambda s: s.start)
    assert ordered[0].start == 0 and ordered[-1].end == len(text)
    assert all(a.end == b.start for a, b in zip(ordered, ordered[1:], strict=False))
    assert {s.role for s in chat.segments if not s.trainable} >= {"system", "user", "tool", "assistant"}


def test_spans_point_at_exact_names_keys_and_values() -> None:
    chat = render_conversation(None, MESSAGES, TOOLS, "hermes")
    spans = chat.spans()
    got = [(s.kind, s.call_index, chat.text[s.start:s.end]) for s in spans]
    assert ("name", 0, "get_weather") in got and ("name", 1, "get_weather") in got
    assert ("arg_key", 0, "city") in got and ("arg_value", 0, '"Paris"') in got
    assert ("arg_key", 0, "days") in got and ("arg_value", 0, "2") in got
    assert ("arg_value", 1, '"Köln"') in got
    assert ("arguments", 1, '{"city": "Köln"}') in got
    for span in spans:  # every span lies inside a trainable segment
        assert any(s.trainable and s.start <= span.start and span.end <= s.end for s in chat.segments)


def test_prefix_with_generation_prompt_is_a_character_prefix() -> None:
    full = render_conversation(None, MESSAGES, TOOLS, "hermes").text
    for index, message in enumerate(MESSAGES):
        if message["role"] == "assistant":
            prompt = render_prompt(None, MESSAGES[:index], TOOLS, "hermes")
            assert full.startswith(prompt), index
            assert prompt.endswith("<|im_start|>assistant\n")


def test_smollm2_tokenizer_uses_our_template_and_tokens_align() -> None:
    from qwen_tool.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    chat = render_conversation(tokenizer, MESSAGES, TOOLS, "hermes")
    assert chat.template == "ours:hermes"
    encoded = tokenizer(chat.text, return_offsets_mapping=True, add_special_tokens=False)
    ids = encoded["input_ids"]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    start, end = chat.trainable_ranges()[1]
    inside = [i for i, (s, e) in zip(ids, encoded["offset_mapping"], strict=True) if s >= start and e <= end]
    assert inside[-1] == im_end  # the end-of-turn marker is a trainable token


class _FakeToolTokenizer:
    """A tokenizer whose own template takes tools (ChatML with a tools line), to exercise the model-template path."""

    eos_token = "<|im_end|>"
    chat_template = "{{ tools }}"

    def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=False):
        text = f"<|im_start|>system\nTOOLS {json.dumps(tools)}<|im_end|>\n"
        for message in messages:
            body = message.get("content") or ""
            for call in message.get("tool_calls") or []:
                body += "<tool_call>\n" + json.dumps({"name": call["function"]["name"],
                                                      "arguments": json.loads(call["function"]["arguments"])})
                body += "\n</tool_call>"
            text += f"<|im_start|>{message['role']}\n{body}<|im_end|>\n"
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def test_model_template_path_offsets() -> None:
    messages = [MESSAGES[1], {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}]
    chat = render_conversation(_FakeToolTokenizer(), messages, TOOLS, "hermes")
    assert chat.template == "model"
    (start, end), = chat.trainable_ranges()
    assert chat.text[start:end].endswith("</tool_call><|im_end|>")
    assert chat.text[start - len("<|im_start|>assistant\n"):start] == "<|im_start|>assistant\n"
    got = {(s.kind, chat.text[s.start:s.end]) for s in chat.spans()}
    assert {("name", "get_weather"), ("arg_key", "city"), ("arg_value", '"Paris"')} <= got


def test_bad_message_names_the_fix() -> None:
    from qwen_tool.codec import CodecError

    with pytest.raises(CodecError, match="fix"):
        render_conversation(None, [{"role": "robot", "content": "x"}], None, "hermes")
