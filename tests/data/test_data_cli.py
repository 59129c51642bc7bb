"""`qwen-tool data ...`: synth writes valid data in the mix, validate flags bad lines, stats writes a chart."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from qwen_tool.cli import app


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
