from __future__ import annotations

import json

from typer.testing import CliRunner

from qwen_tool.cli import app

RUNNER = CliRunner()


def test_tools_list_and_describe():
    listed = RUNNER.invoke(app, ["tools", "list"])
    assert listed.exit_code == 0 and "shopping" in listed.stdout
    described = RUNNER.invoke(app, ["tools", "describe", "finance", "--json"])
    assert described.exit_code == 0
    names = {tool["function"]["name"] for tool in json.loads(described.stdout)}
    assert {"fetch_stock_quote", "fetch_stock_quotes"} <= names


def test_env_play_prints_the_episode_and_saves_it(tmp_path):
    target = tmp_path / "episode.json"
    result = RUNNER.invoke(app, ["env", "play", "finance", "--task", "1", "--save", str(target)])
    assert result.exit_code == 0, result.output
    assert "move_funds" in result.stdout and "termination: final_answer" in result.stdout
    assert json.loads(target.read_text())["meta"]["task_id"] == "finance-1"


def test_env_play_rejects_out_of_range_task():
    result = RUNNER.invoke(app, ["env", "play", "weather", "--task", "99"])
    assert result.exit_code != 0
