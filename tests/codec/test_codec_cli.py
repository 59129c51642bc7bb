"""`qwen-tool parse` and `qwen-tool convert` (text and trajectory JSONL)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from qwen_tool.cli import app

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
