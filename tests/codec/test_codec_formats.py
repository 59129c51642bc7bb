"""Recorded-style outputs written as each model family documents them, `auto` detection, and property tests."""

from __future__ import annotations

import pytest
from codec_cases import CODECS
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qwen_tool.codec import available_formats, get_codec

WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]

RECORDED = [
    ("hermes", "<think>\nUser wants weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
               "{\"city\": \"Paris\", \"days\": 2}}\n</tool_call>"),
    ("qwen3_xml", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n"
                  "</parameter>\n</function>\n</tool_call>"),
    ("llama3_json", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "days": 2}}<|eom_id|>'),
    ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Paris", "days": 2}}'),
    ("pythonic", "[get_weather(city='Paris', days=2)]"),
    ("pythonic", "<|python_start|>[get_weather(city=\"Paris\", days=2)]<|python_end|>"),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}, "id": "a1b2c3d4e"}]'),
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "days": 2}</s>'),
    ("mistral", '[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Paris", "days": 2}'),
    ("react", 'Thought: I need the weather.\nAction: get_weather\nAction Input: {"city": "Paris", "days": 2}\n'
              "Observation: sunny"),
    ("react", '✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris", "days": 2}\n✿RESULT✿'),
    ("glm", "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n"
            "<arg_value>2</arg_value>\n</tool_call>"),
    ("glm", "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>days</arg_key>"
            "<arg_value>2</arg_value></tool_call>"),
    ("deepseek", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                 "{\"city\": \"Paris\", \"days\": 2}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"),
    ("deepseek", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
                 "{\"city\": \"Paris\", \"days\": 2}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
    ("kimi_k2", "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
                "{\"city\": \"Paris\", \"days\": 2}<|tool_call_end|><|tool_calls_section_end|>"),
    ("harmony", "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
                "to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\", \"days\": 2}<|call|>"),
    ("harmony", "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>"
                "{\"city\": \"Paris\", \"days\": 2}"),
]


@pytest.mark.parametrize(("fmt", "text"), RECORDED)
def test_recorded_outputs_parse_to_the_same_call(fmt: str, text: str) -> None:
    for name in (fmt, "auto"):
        parsed = get_codec(name).parse(text, WEATHER)
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("get_weather", {"city": "Paris", "days": 2})]
        assert parsed.error is None
        for marker in ("<|", "<tool", "[TOOL", "✿", "Action"):
            assert marker not in parsed.content


def test_auto_detects_each_format() -> None:
    from qwen_tool.codec.auto import detect

    expected = {"hermes", "qwen3_xml", "llama3_json", "pythonic", "mistral", "react", "glm", "deepseek", "kimi_k2",
                "harmony"}
    assert {detect(text) for _, text in RECORDED} == expected
    for fmt, text in RECORDED:
        assert detect(text) == fmt
    assert detect("just words") == "hermes"
    assert detect("<think>[f(x=1)] hmm</think>\n<tool_call>\n{") == "hermes"  # markers inside think do not count


def test_ids_kept_from_text() -> None:
    assert get_codec("kimi_k2").parse(RECORDED[15][1]).tool_calls[0].id == "functions.get_weather:0"
    assert get_codec("mistral").parse(RECORDED[8][1]).tool_calls[0].id == "a1b2c3d4e"


def test_pythonic_never_evaluates() -> None:
    parsed = get_codec("pythonic").parse("[f(x=__import__('os').system('echo hi'))]")
    assert parsed.tool_calls == [] and "__import__" in parsed.content


def test_hermes_malformed_call_sets_error_and_keeps_the_rest() -> None:
    text = ('<tool_call>\n{"name": "a", "arguments": {oops}}\n</tool_call>\n'
            '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>')
    parsed = get_codec("hermes").parse(text)
    assert [c.name for c in parsed.tool_calls] == ["b"] and "malformed" in parsed.error and parsed.content == ""


def test_unknown_format_names_the_fix() -> None:
    from qwen_tool.codec import CodecError

    with pytest.raises(CodecError, match="fix: use one of"):
        get_codec("nope")
    assert "auto" in available_formats() and len(available_formats()) == 11


FORMATS = sorted({fmt for fmt, _ in CODECS} | {"auto"})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(fmt=st.sampled_from(FORMATS), text=st.text(max_size=80), cut=st.integers(0, 80))
def test_arbitrary_text_never_raises(fmt: str, text: str, cut: int) -> None:
    codec = get_codec(fmt)
    parsed = codec.parse(text)
    stream = codec.stream()
    stream.feed(text[:cut])
    stream.feed(text[cut:])
    stream.finish()
    assert isinstance(parsed.content, str)


MARKER_ALPHABET = st.text(alphabet=st.sampled_from(list("abc XYZ:{}[]()<>|=/\"'\n,._✿▁｜0123456789")), max_size=60)


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(FORMATS), text=MARKER_ALPHABET)
def test_text_without_markers_yields_no_call(fmt: str, text: str) -> None:
    codec = get_codec(fmt)
    assume(not any(marker in text for marker in codec.call_markers))
    assert codec.parse(text).tool_calls == []
