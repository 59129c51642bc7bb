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


DSML_V41_CALLS = (  # vllm-project/vllm tests/parser/engine/test_deepseek_v41.py (CALLS)
    '\n\n<｜DSML｜ calls>\n<｜DSML｜ invoke name="get_weather">\n'
    '<｜DSML｜ parameter name="city" string="true">杭州</｜DSML｜ parameter>\n'
    '<｜DSML｜ parameter name="count" string="false">42</｜DSML｜ parameter>\n'
    '</｜DSML｜ invoke>\n<｜DSML｜ invoke name="add">\n'
    '<｜DSML｜ parameter name="x" string="false">1.5</｜DSML｜ parameter>\n'
    '<｜DSML｜ parameter name="y" string="false">2.25</｜DSML｜ parameter>\n'
    "</｜DSML｜ invoke>\n</｜DSML｜ calls>")
K3_CALL = (  # llamadart's Kimi K3 test (test/.../kimi_k3 group, `call`): an XML entity in the tool name
    '<|open|>response<|sep|>On it.<|close|>response<|sep|><|open|>tools<|sep|>'
    '<|open|>call tool="weather&amp;alerts" index="1"<|sep|>'
    '<|open|>argument key="city" type="string"<|sep|> New York <|close|>argument<|sep|>'
    '<|open|>argument key="days" type="number"<|sep|>2<|close|>argument<|sep|>'
    '<|close|>call<|sep|><|close|>tools<|sep|><|close|>message<|sep|>')
QUESTIONS = ('[{"question": "xxx：", "options": {"label": "xxx", "description": "xxx"}, {"label": "xxx", '
             '"description": "xxx"}, "header": "xxx"}]')

NEW_FORMATS = [
    # (format, model output, output starts inside the reasoning, calls, content, reasoning); where each comes from
    # is written above it. Markup and sources of each format: docs/codec-sources.md.
    # DeepSeek V3.2: smg-project/smg pull request 895 (the DSML format its description shows).
    ("deepseek_dsml", '<｜DSML｜function_calls>\n<｜DSML｜invoke name="get_weather">\n'
                      '<｜DSML｜parameter name="location" string="true">Tokyo</｜DSML｜parameter>\n'
                      '<｜DSML｜parameter name="count" string="false">5</｜DSML｜parameter>\n'
                      '</｜DSML｜invoke>\n</｜DSML｜function_calls>', False,
     [("get_weather", {"location": "Tokyo", "count": 5})], "", None),
    # DeepSeek-V4-Flash, recorded in anomalyco/opencode issue 24566 (comment of 2026-07-24).
    ("deepseek_dsml", '<｜DSML｜tool_calls>\n<｜DSML｜invoke name="read">\n'
                      '<｜DSML｜parameter name="filePath" string="true">I:\\hrc\\usermode\\src\\hypercall\\'
                      'hypercall.cpp</｜DSML｜parameter>\n'
                      '<｜DSML｜parameter name="limit" string="false">15</｜DSML｜parameter>\n'
                      '<｜DSML｜parameter name="offset" string="false">357</｜DSML｜parameter>\n'
                      '</｜DSML｜invoke>\n</｜DSML｜tool_calls>', False,
     [("read", {"filePath": "I:\\hrc\\usermode\\src\\hypercall\\hypercall.cpp", "limit": 15, "offset": 357})],
     "", None),
    # DeepSeek-V4-Flash, the same issue's description: the block tag lost its `>`, and the value marked JSON is not
    # JSON (kept as the text it is, never repaired into something the model did not write).
    ("deepseek_dsml", '<｜DSML｜tool_calls\n<｜DSML｜invoke name="question">\n'
                      f'<｜DSML｜parameter name="questions" string="false">{QUESTIONS}</｜DSML｜parameter>\n'
                      '</｜DSML｜invoke>\n</｜DSML｜tool_calls>', False,
     [("question", {"questions": QUESTIONS})], "", None),
    # DeepSeek V4.1 (thinking; the prompt opened <think>): vLLM's V4.1 parser test, reasoning + content + two calls.
    ("deepseek_dsml", "Plan.</think>Checking." + DSML_V41_CALLS, True,
     [("get_weather", {"city": "杭州", "count": 42}), ("add", {"x": 1.5, "y": 2.25})], "Checking.", "Plan."),
    # Kimi K3: dlengine's K3 parser test (think, response, tools sections).
    ("kimi_k3", '<|open|>think<|sep|>reason<|close|>think<|sep|><|open|>response<|sep|>answer<|close|>response<|sep|>'
                '<|open|>tools<|sep|><|open|>call tool="weather" index="1"<|sep|>'
                '<|open|>argument key="city" type="string"<|sep|>北京<|close|>argument<|sep|>'
                '<|open|>argument key="days" type="integer"<|sep|>2<|close|>argument<|sep|>'
                '<|close|>call<|sep|><|close|>tools<|sep|>', False,
     [("weather", {"city": "北京", "days": 2})], "answer", "reason"),
    # Kimi K3 with the think channel opened by the prompt (its generation prompt ends in `<|open|>think<|sep|>`).
    ("kimi_k3", "check first<|close|>think<|sep|>" + K3_CALL, True,
     [("weather&alerts", {"city": " New York ", "days": 2})], "On it.", "check first"),
    # Kimi K3 output leaked as text by a serving stack (a runtime's XTML-recovery test): the response channel is
    # never closed and text follows the tools section.
    ("kimi_k3", 'Checking the weather.<|close|>think<|sep|><|open|>response<|sep|>Sure, one moment.'
                '<|open|>tools<|sep|><|open|>call tool="Echo" index="1"<|sep|>'
                '<|open|>argument key="value" type="string"<|sep|>hello<|close|>argument<|sep|>'
                '<|close|>call<|sep|><|close|>tools<|sep|>Done.', True,
     [("Echo", {"value": "hello"})], "Sure, one moment.Done.", "Checking the weather."),
    # Kimi K3: vLLM tests/tool_parsers/test_kimi_k3_tool_parser.py, a turn ending in its message close.
    ("kimi_k3", "Hello<|close|>message<|sep|>", False, [], "Hello", None),
    # Gemma 4: vLLM tests/tool_parsers/test_gemma4_tool_parser.py (text before the call; nested values).
    ("gemma4", 'Let me check the weather for you. <|tool_call>call:get_weather{location:<|"|>Paris<|"|>}<tool_call|>',
     False, [("get_weather", {"location": "Paris"})], "Let me check the weather for you. ", None),  # byte-exact
    ("gemma4", '<|tool_call>call:complex_function{nested:{inner:<|"|>value<|"|>},list:[<|"|>a<|"|>,<|"|>b<|"|>]}'
               '<tool_call|><|tool_call>call:set_status{is_active:true,count:42,score:3.14}<tool_call|>', False,
     [("complex_function", {"nested": {"inner": "value"}, "list": ["a", "b"]}),
      ("set_status", {"is_active": True, "count": 42, "score": 3.14})], "", None),
    # Gemma 4 thinking: its template writes reasoning as `<|channel>thought\n...<channel|>`; the engine stops at
    # `<|tool_response>`, which the template puts after a turn's calls.
    ("gemma4", '<|channel>thought\nThe user wants the weather.\n<channel|><|tool_call>call:get_weather{'
               'location:<|"|>London<|"|>}<tool_call|><|tool_response>', False,
     [("get_weather", {"location": "London"})], "", "The user wants the weather."),
    # FunctionGemma: ai.google.dev/gemma/docs/functiongemma/formatting-and-best-practices (turn 3, and the
    # "semantic connection" example).
    ("functiongemma", "<start_function_call>call:get_current_weather{location:<escape>Tokyo, Japan<escape>}"
                      "<end_function_call>", False, [("get_current_weather", {"location": "Tokyo, Japan"})], "", None),
    ("functiongemma", "<start_function_call>call:get_current_temperature{location:<escape>Paris<escape>,"
                      "unit:<escape>celsius<escape>}<end_function_call>", False,
     [("get_current_temperature", {"location": "Paris", "unit": "celsius"})], "", None),
    # Magistral Small 2506: the layout of its model card's template (`<think>\nreasoning\n</think>\nanswer`), with
    # the opening of the card's example output; the call in the v11 syntax of its tokenizer.
    ("mistral", "<think>\nAlright, I need to write 4 sentences where each one has at least 8 words.\n</think>\n"
                'I will check the count first.[TOOL_CALLS]count_words[ARGS]{"text": "The quick brown fox"}', False,
     [("count_words", {"text": "The quick brown fox"})], "I will check the count first.",
     "Alright, I need to write 4 sentences where each one has at least 8 words."),
]


@pytest.mark.parametrize(("fmt", "text", "in_reasoning", "calls", "content", "reasoning"), NEW_FORMATS)
def test_new_format_outputs_parse_whole_streamed_and_by_auto(fmt: str, text: str, in_reasoning: bool, calls: list,
                                                              content: str, reasoning: str | None) -> None:
    from qwen_tool.codec.auto import detect

    assert detect(text) == fmt
    for name in (fmt, "auto"):
        codec = get_codec(name)
        parsed = codec.parse(text, in_reasoning=in_reasoning)
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == calls
        assert (parsed.content, parsed.reasoning or None, parsed.error) == (content, reasoning, None)
        stream = codec.stream(in_reasoning=in_reasoning)
        for char in text:
            stream.feed(char)
        stream.finish()
        streamed = stream.result()
        assert [(c.name, c.arguments) for c in streamed.tool_calls] == calls
        assert (streamed.content, streamed.reasoning or None, streamed.error) == (content, reasoning, None)


def test_kimi_section_recovers_a_call_missing_its_opener_and_flags_stray_text() -> None:
    section = ('<|tool_calls_section_begin|>\n<|tool_call_begin|>functions.a:0<|tool_call_argument_begin|>{"x": 1}'
               '<|tool_call_end|>\nfunctions.b:1<|tool_call_argument_begin|>{"y": 2}<|tool_call_end|>\n'
               "<|tool_calls_section_end|>")
    parsed = get_codec("kimi_k2").parse("Hi " + section)
    assert [(c.id, c.arguments) for c in parsed.tool_calls] == [("functions.a:0", {"x": 1}),
                                                                ("functions.b:1", {"y": 2})]
    assert parsed.content == "Hi " and parsed.error is None  # byte-exact: the space is the model's
    stray = section.replace("\nfunctions.b:1", "\nI will also call b. functions.b:1")
    parsed = get_codec("kimi_k2").parse(stray)
    assert [c.name for c in parsed.tool_calls] == ["a", "b"]
    assert parsed.content == "I will also call b. " and "stray text" in parsed.error
    k3 = ('<|open|>tools<|sep|><|open|>call tool="f" index="1"<|sep|><|close|>call<|sep|>oops'
          '<|close|>tools<|sep|>')
    parsed = get_codec("kimi_k3").parse(k3)
    assert [c.name for c in parsed.tool_calls] == ["f"] and parsed.content == "oops" and "stray text" in parsed.error


def test_dsml_values_are_typed_by_their_string_attribute_then_the_schema() -> None:
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}]
    text = ('<｜DSML｜tool_calls>\n<｜DSML｜invoke name="f">\n<｜DSML｜parameter name="s" string="true">42'
            '</｜DSML｜parameter>\n<｜DSML｜parameter name="n">7</｜DSML｜parameter>\n'
            '<｜DSML｜parameter name="bad" string="false">[broken</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
            "</｜DSML｜tool_calls>")
    assert get_codec("deepseek_dsml").parse(text, tools).tool_calls[0].arguments == {"s": "42", "n": 7,
                                                                                   "bad": "[broken"}


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
    assert "auto" in available_formats() and len(available_formats()) == 15


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


def test_kimi_k3_reads_a_json_block_and_types_unmarked_values_from_the_schema() -> None:
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}]
    text = ('<|open|>tools<|sep|><|open|>call tool="f" index="1"<|sep|><|open|>json type="object"<|sep|>'
            '{"a": [1, {"b": null}]}<|close|>json<|sep|><|close|>call<|sep|>'
            '<|open|>call tool="f" index="2"<|sep|><|open|>argument key="n"<|sep|>7<|close|>argument<|sep|>'
            '<|open|>argument key="s" type="number"<|sep|>not a number<|close|>argument<|sep|><|close|>call<|sep|>'
            "<|close|>tools<|sep|>")
    parsed = get_codec("kimi_k3").parse(text, tools)
    assert [c.arguments for c in parsed.tool_calls] == [{"a": [1, {"b": None}]}, {"n": 7, "s": "not a number"}]
    assert parsed.error is None and parsed.content == ""


def test_gemma_values_read_as_its_template_writes_them_and_nothing_is_guessed() -> None:
    text = ('<|tool_call>call:move{left:108.,right:22.8,none:null,legacy:None,quoted:"a \\"b\\"",'
            'map:{<|"|>3<|"|>:<|"|>x, y<|"|>}}<tool_call|>'
            "<start_function_call>call:g{city:Paris}<end_function_call>")
    parsed = get_codec("gemma4").parse(text)
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [
        ("move", {"left": 108.0, "right": 22.8, "none": None, "legacy": None, "quoted": 'a "b"', "map": {"3": "x, y"}})]
    assert parsed.error and "unexpected 'P'" in parsed.error  # a bare word is not a value: the call is dropped


GEMMA4_VARIATIONS = [  # vllm-project/vllm tests/tool_parsers/test_gemma4_regex_and_bare_calls.py: Gemma 4 output
    ('<|tool_call>call:gdb{args:<|"|>-batch -ex run /tmp/poc<|"|>}<turn|>',
     [("gdb", {"args": "-batch -ex run /tmp/poc"})], ""),  # the turn's end closes the call
    ('<|tool_call>:call:bash{command:<|"|>pytest<|"|>}', [("bash", {"command": "pytest"})], ""),  # a stray colon
    ('<|channel>thought\nI need to read the entry source file to inspect the crash point.\n<channel|>'
     'call:bash{command:<|"|>cat /work/src/entry.c<|"|>}', [("bash", {"command": "cat /work/src/entry.c"})], ""),
    ("<|channel>thought\nPlan.\n<channel|>call: me later", [], "call: me later"),  # not a call: content as written
]


@pytest.mark.parametrize(("text", "calls", "content"), GEMMA4_VARIATIONS)
def test_gemma4_variations_in_the_wild_are_read_whole_and_streamed(text: str, calls: list, content: str) -> None:
    codec = get_codec("gemma4")
    stream = codec.stream()
    for char in text:
        stream.feed(char)
    stream.finish()
    for parsed in (codec.parse(text), stream.result()):
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == calls
        assert parsed.content == content and parsed.error is None
