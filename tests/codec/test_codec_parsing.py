"""Where parsing starts (the prompt's open think block or Harmony message), exact content, and the leniency policy
(docs/codec-parsing.md), on outputs written down from each model's documentation, chat template or a public issue.

Every case is also streamed under several chunkings and must equal the whole-text parse, warnings included.
"""

from __future__ import annotations

import json

import pytest
from codec_cases import CODECS, THINK_DELIMITED, chunkings
from test_codec_cli import one_line, run_main

from qwen_tool.codec import CodecError, ParsedOutput, ToolCall, get_codec
from qwen_tool.codec.base import REASONING, StartState

WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}}}}]




def parse(fmt: str, text: str, tools: list[dict] | None = None, start: StartState | None = None,
          variant: str | None = None) -> ParsedOutput:
    """The whole-text parse, after checking that every chunking of the stream gives the same, deltas included."""
    codec = get_codec(fmt, variant)
    whole = codec.parse(text, tools, start=start)
    for pieces in chunkings(text):
        stream = codec.stream(tools, start=start)
        deltas = [d for piece in pieces for d in stream.feed(piece)] + stream.finish()
        content = "".join(d.get("content", "") for d in deltas)
        reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
        calls = [json.loads(f["function"]["arguments"]) for d in deltas for f in d.get("tool_calls", [])
                 if "id" not in f]
        streamed = stream.result()
        assert (content, reasoning) == (whole.content, whole.reasoning or "")
        assert calls == [c.arguments for c in whole.tool_calls]
        assert (streamed.error, streamed.warnings) == (whole.error, whole.warnings)
    return whole


def calls_of(parsed: ParsedOutput) -> list[tuple[str, dict]]:
    return [(call.name, call.arguments) for call in parsed.tool_calls]


# ---- the start state the prompt leaves ----------------------------------------------------------------------------
# Qwen3-235B-A22B-Thinking-2507's model card: "the default chat template automatically includes <think>", so the
# generation prompt ends `<|im_start|>assistant\n<think>\n` and the output holds only the `</think>`.
QWEN3_THINKING_PROMPT = "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<think>\n"
QWEN3_THINKING_OUTPUT = ('The user asks for the weather in Paris, so I call get_weather.\n</think>\n\n'
                         '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n</tool_call>')


def test_qwen3_thinking_2507_output_starts_inside_the_reasoning_the_prompt_opened() -> None:
    codec = get_codec("hermes")
    start = codec.start_state(QWEN3_THINKING_PROMPT)
    parsed = parse("hermes", QWEN3_THINKING_OUTPUT, WEATHER, start)
    assert parsed.reasoning == "The user asks for the weather in Paris, so I call get_weather."
    assert parsed.content == "" and calls_of(parsed) == [("get_weather", {"location": "Paris"})]
    blind = codec.parse(QWEN3_THINKING_OUTPUT, WEATHER)  # without the start state the reasoning leaks into content
    assert blind.content.startswith("The user asks") and blind.reasoning is None
    assert parse("hermes", QWEN3_THINKING_OUTPUT, WEATHER, StartState(REASONING)).reasoning == parsed.reasoning


# GLM-4.7's chat template ends the generation prompt with `<|assistant|><think>` (thinking) or
# `<|assistant|></think>` (enable_thinking false); its turns write `…</think>` and calls with no newlines.
GLM47_OUTPUT = ("The user wants Beijing's weather.</think><tool_call>get_weather<arg_key>location</arg_key>"
                "<arg_value>Beijing</arg_value></tool_call>")


def test_glm47_thinking_prompt_starts_in_reasoning_and_its_non_thinking_prompt_in_content() -> None:
    codec = get_codec("glm", "4.7")
    thinking = codec.start_state("[gMASK]<sop><|user|>Weather in Beijing?<|assistant|><think>")
    parsed = parse("glm", GLM47_OUTPUT, WEATHER, thinking, "4.7")
    assert parsed.reasoning == "The user wants Beijing's weather." and parsed.content == ""
    assert calls_of(parsed) == [("get_weather", {"location": "Beijing"})]
    assert codec.start_state("[gMASK]<sop><|user|>Hi<|assistant|></think>") == StartState()
    assert codec.start_state("<|user|>What does <think> do?<|assistant|>") == StartState()


# OpenAI's Harmony format guide: the generation prompt ends `<|start|>assistant`; a call's recipient may sit in the
# role header (` to=functions.NAME<|channel|>commentary json<|message|>…<|call|>`) or after the channel.
HARMONY_PROMPT = ("<|start|>system<|message|>You are ChatGPT.<|end|><|start|>user<|message|>What is the weather in "
                  "Tokyo?<|end|><|start|>assistant")


@pytest.mark.parametrize("fmt", ["harmony", "auto"])
def test_harmony_output_continuing_the_prompts_assistant_header_is_a_call(fmt: str) -> None:
    start = get_codec(fmt).start_state(HARMONY_PROMPT)
    assert start.lead == "<|start|>assistant"
    recipient_in_header = ' to=functions.get_weather<|channel|>commentary json<|message|>{"location": "Tokyo"}<|call|>'
    parsed = parse(fmt, recipient_in_header, WEATHER, start)
    assert calls_of(parsed) == [("get_weather", {"location": "Tokyo"})] and parsed.content == ""
    assert get_codec(fmt).parse(recipient_in_header, WEATHER).tool_calls == []  # what the issue saw without it
    analysis_first = ('<|channel|>analysis<|message|>Need to call get_weather.<|end|><|start|>assistant<|channel|>'
                      'commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"Tokyo"}<|call|>')
    parsed = parse(fmt, analysis_first, WEATHER, start)
    assert parsed.reasoning == "Need to call get_weather." and len(parsed.tool_calls) == 1


def test_kimi_k3_prompt_opening_the_think_channel_starts_in_reasoning() -> None:
    """K3's encoder ends the generation prompt `<|open|>message role="assistant"<|sep|><|open|>think<|sep|>`
    (moonshotai's encoder, as docs/codec-sources.md records)."""
    codec = get_codec("kimi_k3")
    prompt = '<|open|>message role="user"<|sep|>Hi<|close|>message<|sep|><|open|>message role="assistant"<|sep|>'
    assert codec.start_state(prompt) == StartState()
    start = codec.start_state(prompt + "<|open|>think<|sep|>")
    parsed = parse("kimi_k3", "Greet back.<|close|>think<|sep|><|open|>response<|sep|>Hello!<|close|>response<|sep|>",
                   None, start)
    assert (parsed.reasoning, parsed.content) == ("Greet back.", "Hello!")


def test_a_finished_harmony_turn_leaves_no_lead() -> None:
    codec = get_codec("harmony")
    assert codec.start_state(HARMONY_PROMPT + "<|channel|>final<|message|>Hi<|return|>") == StartState()
    assert codec.start_state("<|im_start|>assistant\n") == StartState()


def test_start_state_settings_are_checked() -> None:
    with pytest.raises(CodecError, match="unknown start mode"):
        StartState("thinking")
    with pytest.raises(CodecError, match="contradicts"):
        get_codec("hermes").parse("x", in_reasoning=True, start=StartState())


def test_cli_parse_takes_the_prompt_or_the_state(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(QWEN3_THINKING_PROMPT, encoding="utf-8")
    code, stdout, _ = run_main(["parse", "--format", "hermes", "--prompt-file", str(prompt)], QWEN3_THINKING_OUTPUT,
                               monkeypatch, capsys)
    message = json.loads(stdout)
    assert code == 0 and message["reasoning_content"].startswith("The user asks") and message["content"] is None
    code, stdout, _ = run_main(["parse", "-f", "hermes", "--start", "reasoning"], QWEN3_THINKING_OUTPUT, monkeypatch,
                               capsys)
    assert code == 0 and json.loads(stdout)["reasoning_content"] == message["reasoning_content"]
    code, _, stderr = run_main(["parse", "--start", "reasoning", "--prompt-file", str(prompt)], "", monkeypatch, capsys)
    assert code == 1 and "pass one of them" in one_line(stderr)
    code, _, stderr = run_main(["parse", "--start", "thinking"], "", monkeypatch, capsys)
    assert code == 1 and "content, reasoning" in one_line(stderr)


# ---- Harmony: tag text inside a message ---------------------------------------------------------------------------
def test_harmony_channel_tag_written_inside_reasoning_loses_nothing() -> None:
    text = ("<|channel|>analysis<|message|>The reply goes in the <|channel|> named final, after\nthe header."
            "<|end|><|start|>assistant<|channel|>final<|message|>Done.<|return|>")
    parsed = parse("harmony", text)
    assert parsed.reasoning == "The reply goes in the <|channel|> named final, after\nthe header."
    assert parsed.content == "Done." and parsed.error is None


def test_harmony_header_cut_off_is_still_truncated() -> None:
    parsed = parse("harmony", "<|channel|>commentary to=functions.get_weather <|constrain|>json", WEATHER)
    assert parsed.tool_calls == [] and parsed.error and parsed.error.startswith("truncated")


# ---- leniency: recovered with a warning, never invented ------------------------------------------------------------
def test_qwen3_xml_missing_parameter_close_does_not_swallow_the_next_parameter() -> None:
    text = ("<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n<parameter=unit>\ncelsius\n"
            "</parameter>\n</function>\n</tool_call>")
    parsed = parse("qwen3_xml", text, WEATHER)
    assert calls_of(parsed) == [("get_weather", {"location": "Paris", "unit": "celsius"})]
    assert len(parsed.warnings) == 1 and "<parameter=location>" in parsed.warnings[0]


def test_qwen3_xml_missing_last_parameter_close_or_function_close() -> None:
    no_param_close = ("<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</function>\n"
                      "</tool_call>")
    no_function_close = "<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n</tool_call>"
    for text, warned in ((no_param_close, "</parameter>"), (no_function_close, "</function>")):
        parsed = parse("qwen3_xml", text, WEATHER)
        assert calls_of(parsed) == [("get_weather", {"location": "Paris"})] and parsed.error is None
        assert len(parsed.warnings) == 1 and warned in parsed.warnings[0]


@pytest.mark.parametrize(("fmt", "first", "second"), [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n',
     '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Oslo"}}\n</tool_call>'),
    ("qwen3_xml", "<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n</function>\n",
     "<tool_call>\n<function=get_weather>\n<parameter=location>\nOslo\n</parameter>\n</function>\n</tool_call>"),
    ("glm", "<tool_call>get_weather\n<arg_key>location</arg_key>\n<arg_value>Paris</arg_value>\n",
     "<tool_call>get_weather\n<arg_key>location</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>"),
])
def test_a_complete_call_missing_its_close_tag_is_kept(fmt: str, first: str, second: str) -> None:
    parsed = parse(fmt, first + second, WEATHER)
    assert [c.arguments["location"] for c in parsed.tool_calls] == ["Paris", "Oslo"] and parsed.error is None
    assert len(parsed.warnings) == 1 and "had no </tool_call>" in parsed.warnings[0]
    parsed = parse(fmt, first + "Checking now.", WEATHER)
    assert len(parsed.tool_calls) == 1 and parsed.content.strip() == "Checking now." and parsed.warnings


@pytest.mark.parametrize(("fmt", "text"), [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Par'),
    ("qwen3_xml", "<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n<parameter=un"),
    ("qwen3_xml", "<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n"),
    ("glm", "<tool_call>get_weather\n<arg_key>location</arg_key>\n<arg_value>Paris</arg_value>\n"),
])
def test_output_really_cut_off_is_still_truncated(fmt: str, text: str) -> None:
    parsed = parse(fmt, text, WEATHER)
    assert parsed.tool_calls == [] and parsed.warnings == []
    assert parsed.error is not None and parsed.error.startswith("truncated")


def test_a_value_that_closes_its_own_tag_text_is_not_recovered() -> None:
    value = "Use:\n<parameter=x>\n1\n</parameter>\nin the file"
    text = f"<tool_call>\n<function=write>\n<parameter=body>\n{value}\n</parameter>\n</function>\n</tool_call>"
    parsed = parse("qwen3_xml", text)
    assert calls_of(parsed) == [("write", {"body": value})] and parsed.warnings == []


# ollama issue 16686 (qwen3-coder:30b): the opener left out, the orphan close kept.
BARE_FUNCTION = ("I'll use the Glob tool to list all markdown files in the current directory.\n\n<function=Glob>\n"
                 "<parameter=pattern>\n*.md\n</parameter>\n</function>\n</tool_call>")
GLOB = [{"type": "function", "function": {"name": "Glob", "parameters": {
    "type": "object", "properties": {"pattern": {"type": "string"}}}}}]


def test_qwen3_coder_function_block_without_opener_is_a_call() -> None:
    parsed = parse("qwen3_xml", BARE_FUNCTION, GLOB)
    assert calls_of(parsed) == [("Glob", {"pattern": "*.md"})]
    assert parsed.content == "I'll use the Glob tool to list all markdown files in the current directory.\n"
    assert len(parsed.warnings) == 1 and "no <tool_call> opener" in parsed.warnings[0]


def test_auto_reads_a_function_block_without_opener_as_qwen3_xml() -> None:
    parsed = parse("auto", BARE_FUNCTION, GLOB)
    assert calls_of(parsed) == [("Glob", {"pattern": "*.md"})] and len(parsed.warnings) == 1
    assert parsed.content == "I'll use the Glob tool to list all markdown files in the current directory.\n"


def test_function_block_without_opener_stays_content_unless_whole_and_offered() -> None:
    for text, tools in ((BARE_FUNCTION, WEATHER), ("Write <function=Glob> to call it.", GLOB),
                        ("<function=Glob>\n<parameter=pattern>\n*.md", GLOB)):
        parsed = parse("qwen3_xml", text, tools)
        assert parsed.tool_calls == [] and parsed.error is None and "<function=Glob>" in parsed.content


def test_calls_ending_an_unclosed_reasoning_are_calls_and_drafts_are_not() -> None:
    start = get_codec("hermes").start_state(QWEN3_THINKING_PROMPT)
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n</tool_call>'
    never_closed = parse("hermes", "I need the weather.\n" + call, WEATHER, start)
    assert never_closed.reasoning == "I need the weather." and len(never_closed.tool_calls) == 1
    assert len(never_closed.warnings) == 1 and "inside the reasoning" in never_closed.warnings[0]
    closed_after = parse("hermes", "I need the weather.\n" + call + "\n</think>\n\n", WEATHER, start)
    assert calls_of(closed_after) == calls_of(never_closed)
    draft = parse("hermes", "Draft: " + call + "\n</think>\n\n" + call, WEATHER, start)
    assert len(draft.tool_calls) == 1 and call in draft.reasoning and draft.warnings == []
    musing = parse("hermes", "Maybe " + call + " but no.\n</think>\n\nNo call needed.", WEATHER, start)
    assert musing.tool_calls == [] and musing.content == "No call needed."


# ---- content byte for byte ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "variant", "text"), [
    ("hermes", None, 'I\'ll check. <tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n'
                     "</tool_call>"),
    ("qwen3_xml", None, "I'll check. <tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n"
                        "</function>\n</tool_call>"),
    ("glm", "4.7", "I'll check. <tool_call>get_weather<arg_key>location</arg_key><arg_value>Paris</arg_value>"
                   "</tool_call>"),
    ("mistral", "v11", 'I\'ll check. [TOOL_CALLS]get_weather[ARGS]{"location": "Paris"}'),
    ("kimi_k2", None, "I'll check. <|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
                      '<|tool_call_argument_begin|>{"location": "Paris"}<|tool_call_end|><|tool_calls_section_end|>'),
])
def test_whitespace_around_a_call_is_the_models(fmt: str, variant: str | None, text: str) -> None:
    parsed = parse(fmt, text, WEATHER, variant=variant)
    assert parsed.content == "I'll check. " and len(parsed.tool_calls) == 1


@pytest.mark.parametrize(("fmt", "variant"), CODECS)
def test_rendered_turn_parses_back_byte_for_byte(fmt: str, variant: str | None) -> None:
    codec = get_codec(fmt, variant)
    content = "  Let me check that.\n\n"
    reasoning = "\nFirst line.\n\n  Second, indented. " if fmt in THINK_DELIMITED else None
    calls = [ToolCall("get_weather", {"location": "Paris"})]
    text = codec.render_assistant(content, calls, reasoning).text
    parsed = parse(fmt, text, WEATHER, variant=variant)
    assert parsed.content == content and calls_of(parsed) == [("get_weather", {"location": "Paris"})]
    if reasoning:
        assert parsed.reasoning == reasoning
    answer = codec.render_assistant(" Paris. ", None, reasoning).text
    assert parse(fmt, answer, variant=variant).content == " Paris. "


def test_whitespace_only_content_is_empty() -> None:
    parsed = parse("hermes", '\n\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n')
    assert parsed.content == "" and len(parsed.tool_calls) == 1
