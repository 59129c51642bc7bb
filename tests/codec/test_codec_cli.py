"""`qwen-tool parse` and `qwen-tool convert` (text and trajectory JSONL)."""

from __future__ import annotations

import io
import json
import sys

import pytest
from typer.testing import CliRunner

from qwen_tool.cli import app, main

RUNNER = CliRunner()
HERMES = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_parse_prints_openai_message() -> None:
    result = RUNNER.invoke(app, ["parse", "--format", "auto"], input=HERMES)
    assert result.exit_code == 0, result.output
    message = json.loads(result.stdout)
    assert message["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_convert_text_between_formats() -> None:
    result = RUNNER.invoke(app, ["convert", "--from", "hermes", "--to", "pythonic"], input=HERMES)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "[get_weather(city='Paris')]"


def test_convert_trajectory_jsonl_round_trip(tmp_path) -> None:  # noqa: ANN001
    trajectory = {"tools": [], "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold"}]}
    source, text_file, back = tmp_path / "in.jsonl", tmp_path / "glm.jsonl", tmp_path / "back.jsonl"
    source.write_text(json.dumps(trajectory) + "\n")
    assert RUNNER.invoke(app, ["convert", "--from", "openai", "--to", "glm", "-i", str(source), "-o",
                               str(text_file)]).exit_code == 0
    as_text = json.loads(text_file.read_text())["messages"][1]
    assert "tool_calls" not in as_text and as_text["content"].startswith("<tool_call>get_weather")
    assert RUNNER.invoke(app, ["convert", "--from", "glm", "--to", "openai", "-i", str(text_file), "-o",
                               str(back)]).exit_code == 0
    restored = json.loads(back.read_text())["messages"]
    assert restored[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'
    assert restored[2] == trajectory["messages"][2]


def run_main(args: list[str], stdin: str, monkeypatch, capsys) -> tuple[int, str, str]:  # noqa: ANN001
    """The real entry point (user errors become one line and exit code 1): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr.strip()


DEEP = "[" * 10_000 + "]" * 10_000


@pytest.mark.parametrize(("fmt", "text"), [
    ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": DEEP}}\n</tool_call> after'),
    ("auto", '<tool_call>\n{"name": "f", "arguments": {"a": DEEP}}\n</tool_call> after'),
    ("mistral", '[TOOL_CALLS]f[ARGS]{"a": DEEP} after'),
    ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": "\\ud800"}}\n</tool_call> after'),
])
def test_parse_reports_a_deep_or_surrogate_call_as_a_parse_error(fmt: str, text: str, monkeypatch, capsys) -> None:
    code, stdout, stderr = run_main(["parse", "--format", fmt], text.replace("DEEP", DEEP), monkeypatch, capsys)
    assert code == 0 and "Traceback" not in stderr
    message = json.loads(stdout)
    assert "tool_calls" not in message and message["content"] == " after"  # byte-exact: the space is the model's
    assert message["parse_error"].startswith(("<tool_call> at char 0: the value ",
                                              "[TOOL_CALLS] at char 0: the value "))
    assert "levels deep" in message["parse_error"] or "lone surrogate \\ud800" in message["parse_error"]


def test_convert_keeps_a_malformed_call_as_text_with_a_warning(monkeypatch, capsys) -> None:
    text = 'Sure. <tool_call>\n{"name": "f", "arguments": {bad}}\n</tool_call> Then: ' + HERMES
    code, stdout, stderr = run_main(["convert", "--from", "hermes", "--to", "pythonic"], text, monkeypatch, capsys)
    assert code == 0
    assert stdout.startswith('Sure. <tool_call>\n{"name": "f", "arguments": {bad}}\n</tool_call> Then:')
    assert stdout.strip().endswith("[get_weather(city='Paris')]")
    warning = one_line(stderr)
    assert warning.startswith("warning: stdin: a call did not parse, so its text was kept as content")
    assert "at char 6" in warning


def test_convert_from_openai_reads_an_assistant_message(monkeypatch, capsys) -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    code, stdout, _ = run_main(["convert", "--from", "openai", "--to", "hermes"], json.dumps(message), monkeypatch,
                               capsys)
    assert code == 0 and stdout.strip() == HERMES
    response = {"choices": [{"index": 0, "message": message}]}
    code, stdout, _ = run_main(["convert", "--from", "openai", "--to", "mistral"], json.dumps(response), monkeypatch,
                               capsys)
    assert code == 0 and stdout.strip() == '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}'


@pytest.mark.parametrize(("stdin", "needle"), [
    ("not json", "stdin: --from openai reads JSON"),
    ('{"role": "user", "content": "hi"}', "stdin: --from openai needs an assistant message"),
    ('{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", '
     '"arguments": "{\\"a\\": \\"\\\\ud800\\"}"}}]}', "stdin: tool call 'f': the arguments' value holds a lone"),
])
def test_convert_from_openai_refuses_bad_input_in_one_line(stdin: str, needle: str, monkeypatch, capsys) -> None:
    code, stdout, stderr = run_main(["convert", "--from", "openai", "--to", "hermes"], stdin, monkeypatch, capsys)
    assert code == 1 and stdout == ""
    line = one_line(stderr)
    assert needle in line and "fix: " in line


@pytest.mark.parametrize("bad", ['"content": "hi \\ud800"', '"meta": {"x": ' + DEEP + "}"])
def test_convert_file_refuses_a_line_it_could_not_write(bad: str, tmp_path, monkeypatch, capsys) -> None:
    good = '{"tools": [], "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}'
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(good + "\n" + good[:-1] + ", " + bad + "}\n")
    code, _, stderr = run_main(["convert", "--from", "hermes", "--to", "glm", "-i", str(source), "-o", str(target)],
                               "", monkeypatch, capsys)
    assert code == 1 and not target.exists()
    line = one_line(stderr)
    assert f"{source}:2: the line " in line and "fix: " in line


NEW_FORMAT_OUTPUTS = [  # one model output per format added for issue 28 (sources: test_codec_formats.NEW_FORMATS)
    ('<｜DSML｜function_calls>\n<｜DSML｜invoke name="get_weather">\n'
     '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
     '</｜DSML｜function_calls>'),
    ('<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n'
     '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
     '</｜DSML｜tool_calls>'),
    ('<｜DSML｜ calls>\n<｜DSML｜ invoke name="get_weather">\n'
     '<｜DSML｜ parameter name="city" string="true">Paris</｜DSML｜ parameter>\n</｜DSML｜ invoke>\n</｜DSML｜ calls>'),
    ('<|open|>think<|sep|>Weather.<|close|>think<|sep|><|open|>response<|sep|><|close|>response<|sep|>'
     '<|open|>tools<|sep|><|open|>call tool="get_weather" index="1"<|sep|><|open|>argument key="city" '
     'type="string"<|sep|>Paris<|close|>argument<|sep|><|close|>call<|sep|><|close|>tools<|sep|>'),
    '<|channel>thought\nWeather.\n<channel|><|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>',
    "<start_function_call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>",
    '<think>\nWeather.\n</think>\n[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}',
]


@pytest.mark.parametrize("text", NEW_FORMAT_OUTPUTS)
def test_parse_auto_detects_each_new_format(text: str) -> None:
    result = RUNNER.invoke(app, ["parse", "--format", "auto"], input=text)
    assert result.exit_code == 0, result.output
    message = json.loads(result.stdout)
    assert message["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert not message.get("content")
