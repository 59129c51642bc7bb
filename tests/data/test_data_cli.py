"""`qwen-tool data ...`: synth writes valid data in the mix, validate flags bad lines, stats writes a chart."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from qwen_tool.cli import app
from qwen_tool.testing import cli_user_error


def test_data_cli_synth_validate_stats(tmp_path: Path) -> None:
    runner = CliRunner()
    train = tmp_path / "train.jsonl"
    result = runner.invoke(app, ["data", "synth", "--n", "60", "--seed", "2", "--mix", "single=0.5,irrelevance=0.5",
                                 "--out", str(train)])
    assert result.exit_code == 0, result.output
    lines = train.read_text().splitlines()
    assert sum(json.loads(line)["meta"]["category"] == "single" for line in lines) == 30
    assert runner.invoke(app, ["data", "validate", str(train)]).exit_code == 0
    train.write_text(train.read_text() + '{"tools": [], "messages": []}\n')
    result = runner.invoke(app, ["data", "validate", str(train), "--skip-invalid"])
    assert result.exit_code == 1 and "train.jsonl:61" in result.output.replace("\n", "")
    chart = tmp_path / "mix.png"
    train.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["data", "stats", str(train), "--png", str(chart)])
    assert result.exit_code == 0 and chart.read_bytes()[:4] == b"\x89PNG"


def test_data_cli_synth_grows_the_held_out_split_to_eval_decisions(tmp_path: Path) -> None:
    """`--eval-decisions N` grows the held-out split past --eval-n records until it holds N decisions (the main job's
    data.n_eval_decisions, through the same function)."""
    from qwen_tool.data.prepare import decision_count

    def held_out_decisions(*extra: str) -> tuple[int, int]:
        held = tmp_path / "eval.jsonl"
        result = CliRunner().invoke(app, ["data", "synth", "--n", "5", "--held-out-tools", "0.3", "--eval-n", "5",
                                          "--out", str(tmp_path / "train.jsonl"), "--eval-out", str(held), *extra])
        assert result.exit_code == 0, result.output
        records = [json.loads(line) for line in held.read_text().splitlines()]
        return len(records), sum(decision_count(record) for record in records)

    plain_records, plain_decisions = held_out_decisions()
    assert plain_records == 5 and plain_decisions < 20  # 5 records fall short of 20 decisions, so growth must act
    grown_records, grown_decisions = held_out_decisions("--eval-decisions", "20")
    assert grown_records > 5 and grown_decisions >= 20


def _hallucinated_call() -> dict:
    """A trajectory whose assistant calls `get_wether`, a tool it was not offered, and is not marked erroneous."""
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    call = {"id": "call_0", "type": "function", "function": {"name": "get_wether", "arguments": '{"city": "Oslo"}'}}
    return {"tools": [tool], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_0", "content": "Error: unknown tool 'get_wether'"},
        {"role": "assistant", "content": "Sorry, I could not check."}], "meta": {}}


def test_annotate_marks_a_call_to_an_unknown_tool_erroneous_as_validate_suggests(tmp_path: Path, capsys) -> None:
    """Issue 26: validate said to mark the turn erroneous, and annotate rejected the whole file instead of doing so."""
    src, dst = tmp_path / "raw.jsonl", tmp_path / "annotated.jsonl"
    src.write_text(json.dumps(_hallucinated_call()) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["data", "validate", str(src)])
    assert "fix: offer the tool, or mark the turn erroneous (`qwen-tool data annotate` does)" in str(result.exception)
    result = runner.invoke(app, ["data", "annotate", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    turn = json.loads(dst.read_text())["messages"][1]
    assert turn["erroneous"] is True and turn["feedback_category"] == "tool_hallucination"
    assert runner.invoke(app, ["data", "validate", str(dst)]).exit_code == 0

    src.write_text(src.read_text() + '{"tools": [], "messages": "not a list"}\n')
    line = cli_user_error(capsys, "data", "annotate", str(src), str(dst))
    assert "raw.jsonl:2: field messages" in line
    result = runner.invoke(app, ["data", "annotate", str(src), str(dst), "--skip-invalid"])
    printed = " ".join(result.output.split())  # rich wraps long lines at spaces
    assert result.exit_code == 0 and "1 trajectories, 1 erroneous turns" in printed
    assert "(1 invalid lines skipped)" in printed
