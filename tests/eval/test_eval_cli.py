"""`qwen-tool eval` end to end on a tiny random model saved as a local directory, and the oracle on its recordings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from qwen_tool.cli import main
from qwen_tool.eval import bfcl_single_turn
from qwen_tool.testing import save_tiny_model

sys.path.insert(0, str(Path(__file__).parent))
from bfcl_oracle import load_oracle, oracle_verdict  # noqa: E402


def _cli(args: list[str]) -> None:
    """Run the CLI as the console script does; typer ends a successful command with SystemExit(0)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    model_dir = save_tiny_model(root / "tiny")
    runs = []
    for name, categories in (("a", ",".join(bfcl_single_turn.AST_CATEGORIES) + ",irrelevance"), ("b", "simple_python")):
        run = root / name
        _cli(["eval", "--model", str(model_dir), "--categories", categories, "--limit", "1", "--max-new-tokens",
              "8", "--backend", "transformers", "--threads", "1", "--out", str(run)])
        runs.append(run)
    return runs[0], runs[1]


def test_eval_writes_run_directory(tiny_runs) -> None:
    run, _ = tiny_runs
    assert {"outcomes.jsonl", "metrics.json", "report.md", "report.html", "bfcl_categories.png"} <= {
        p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["categories"]) == {*bfcl_single_turn.AST_CATEGORIES, "irrelevance"}
    assert metrics["summary"]["examples"] == (len(bfcl_single_turn.AST_CATEGORIES) + 1)
    assert metrics["generation"]["new_tokens"] > 0


def test_recorded_tiny_model_verdicts_agree_with_bfcl(tiny_runs) -> None:
    checker, language = load_oracle()
    run, _ = tiny_runs
    examples = {e.id: e for c in bfcl_single_turn.AST_CATEGORIES for e in bfcl_single_turn.load_category(c, 1)}
    compared = 0
    for line in (run / "outcomes.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["category"] not in bfcl_single_turn.AST_CATEGORIES:
            continue
        example = examples[row["id"]]
        assert row["valid"] == oracle_verdict(checker, language, row["category"], example.functions,
                                              row["parsed_calls"], example.gold)
        compared += 1
    assert compared == len(bfcl_single_turn.AST_CATEGORIES)


def test_eval_compare(tiny_runs, capsys) -> None:
    run_a, run_b = tiny_runs
    _cli(["eval", "compare", str(run_a), str(run_b), "--out", str(run_b.parent / "cmp")])
    printed = capsys.readouterr().out
    assert "A: a   B: b   Δ = B − A" in printed and "simple_pyt" in printed  # (a narrow terminal may wrap the name)
    assert (run_b.parent / "cmp" / "report.html").is_file() and (run_b.parent / "cmp" / "paired.json").is_file()


def test_unknown_suite_is_a_user_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--suite", "nonsense", "--limit", "1"])
    assert exit_info.value.code == 1


def test_internal_suite_from_the_cli(tiny_runs, tmp_path) -> None:
    run, _ = tiny_runs
    model_dir = run.parent / "tiny"
    record = {"tools": [{"type": "function", "function": {"name": "ping", "parameters": {
        "type": "object", "properties": {}}}}], "messages": [
        {"role": "user", "content": "ping please"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "ping", "arguments": "{}"}}]}]}
    data = tmp_path / "held.jsonl"
    data.write_text(json.dumps(record) + "\n")
    _cli(["eval", "--model", str(model_dir), "--suite", "internal", "--data", str(data), "--max-new-tokens", "4",
          "--backend", "transformers", "--out", str(tmp_path / "internal")])
    metrics = json.loads((tmp_path / "internal" / "metrics.json").read_text())
    assert metrics["decisions"] == 1 and metrics["summary"]["call_timing_recall"] == 0.0  # random model: no call
    assert metrics["guided"] is False


def test_tasks_suite_from_the_cli(tiny_runs, tmp_path) -> None:
    from qwen_tool.data.suite_synth import synthesize_eval_tasks

    run, _ = tiny_runs
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps(task) + "\n" for task in synthesize_eval_tasks(2, seed=1)))
    _cli(["eval", "--model", str(run.parent / "tiny"), "--suite", "tasks", "--data", str(data),
          "--max-new-tokens", "4", "--backend", "transformers", "--out", str(tmp_path / "tasks")])
    metrics = json.loads((tmp_path / "tasks" / "metrics.json").read_text())
    # a random 4-token model never writes a call: each episode ends at once on its text, a final answer
    assert metrics["episodes"] == 2 and metrics["summary"]["VA"] == 1.0 and metrics["summary"]["average_steps"] == 1


def test_guided_bfcl_from_the_cli_and_guided_tasks_is_a_user_error(tiny_runs, tmp_path, capsys) -> None:
    run, _ = tiny_runs
    model_dir = str(run.parent / "tiny")
    _cli(["eval", "--model", model_dir, "--categories", "simple_python", "--limit", "1", "--max-new-tokens", "8",
          "--backend", "transformers", "--threads", "1", "--guided", "--out", str(tmp_path / "guided")])
    assert json.loads((tmp_path / "guided" / "metrics.json").read_text())["generation"]["guided"] is True
    assert "tool calls guided by schema" in (tmp_path / "guided" / "report.md").read_text()
    for suite in ("tasks", "robustness"):
        with pytest.raises(SystemExit) as exit_info:
            main(["eval", "--model", model_dir, "--suite", suite, "--data", str(tmp_path / "t.jsonl"), "--guided"])
        assert exit_info.value.code == 1
        assert f"--guided covers --suite bfcl and internal, not {suite}" in capsys.readouterr().err
