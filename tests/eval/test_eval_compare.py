"""`qwen-tool eval compare` on run directories written by hand: items matched by id, every metric with its interval,
what could not be compared said, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen_tool import QwenToolError
from qwen_tool.cli import main
from qwen_tool.eval.compare import (
    ACCURACY,
    Comparison,
    MetricComparison,
    compare_runs,
    interval_decimals,
    run_labels,
    section_terms,
)
from qwen_tool.eval.paired_stats import Interval
from qwen_tool.testing import cli_user_error

METRICS = {"categories": {"simple_python": {"accuracy": 0.5, "n": 10}}, "summary": {"examples": 10}}


def _bfcl_row(item: str, valid: bool, category: str | None = None, calls: int = 1) -> dict:
    return {
        "id": item,
        "category": category or item.rsplit("_", 1)[0],
        "valid": valid,
        "parsed_calls": [{"f": {}}] * calls,
    }


def _run(root: Path, name: str, rows: list[dict], section: str = "") -> Path:
    run = root / name
    (run / section).mkdir(parents=True, exist_ok=True)
    (run / "metrics.json").write_text(json.dumps(METRICS))
    (run / section / "outcomes.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run


def _simple(verdicts: list[int]) -> list[dict]:
    return [_bfcl_row(f"simple_python_{i}", bool(v)) for i, v in enumerate(verdicts)]


def _metric(comparison, name: str):
    return next(m for m in comparison.metrics if m.name == name)


def test_accuracy_difference_mcnemar_and_the_significance_rule(tmp_path: Path) -> None:
    # B fixes items 4..8 and breaks none: +5 of 10 = +50 points; McNemar (0 / 5): p = 2/32 = 0.0625 > 0.05, so the
    # difference is n.s. although every bootstrap resample is positive.
    a = _run(tmp_path, "a", _simple([1, 1, 1, 1, 0, 0, 0, 0, 0, 0]))
    b = _run(tmp_path, "b", _simple([1, 1, 1, 1, 1, 1, 1, 1, 1, 0]))
    comparison = compare_runs([a], [b], tmp_path / "cmp", resamples=2000)
    simple = _metric(comparison, "simple_python accuracy")
    assert simple.items == 10 and simple.a_runs == [0.4] and simple.b_runs == [0.9]
    assert simple.interval.estimate == pytest.approx(0.5) and simple.interval.excludes_zero
    assert simple.mcnemar == {"only_a": 0, "only_b": 5, "p": pytest.approx(0.0625)}
    assert not simple.significant
    calls = _metric(comparison, "simple_python calls per item")
    assert calls.kind == "mean" and calls.mcnemar is None and calls.interval.estimate == 0.0
    saved = json.loads((tmp_path / "cmp" / "paired.json").read_text())
    assert saved["a"] == ["a"] and saved["b"] == ["b"] and saved["method"]["resamples"] == 2000
    first = next(m for m in saved["metrics"] if m["metric"] == "simple_python accuracy")
    assert first["difference"] == pytest.approx(0.5) and first["significant"] is False
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "| simple_python accuracy | 10 | 40.0 | 90.0 | +50.0 [" in report and "| 0.062 (0/5) | n.s. |" in report
    # The gathered outcomes carry the run they came from.
    gathered = [json.loads(line) for line in (tmp_path / "cmp" / "outcomes.jsonl").read_text().splitlines()]
    assert {row["run"] for row in gathered} == {"a", "b"} and len(gathered) == 20


def test_six_to_none_is_significant(tmp_path: Path) -> None:
    # McNemar (0 / 6): p = 2/64 = 0.031 < 0.05, and the interval excludes 0.
    a = _run(tmp_path, "a", _simple([0] * 6 + [1] * 4))
    b = _run(tmp_path, "b", _simple([1] * 10))
    simple = _metric(compare_runs([a], [b], tmp_path / "cmp", resamples=2000), "simple_python accuracy")
    assert simple.mcnemar["p"] == pytest.approx(2 / 64) and simple.significant



@pytest.mark.parametrize(
    ("low", "high", "decimals", "expected"),
    [
        (0.01, 0.08, 1, 2),  # [+0.0, +0.1] at one decimal; [+0.01, +0.08] at two
        (-0.08, -0.004, 1, 3),  # the bound nearest 0 needs three
        (0.0004, 0.08, 1, 3),  # ...and would need four: capped at `most`
        (0.3, 2.0, 1, 1),  # already clear of 0
        (-0.02, 0.05, 1, 1),  # includes 0: nothing to make clear
        (0.004, 0.02, 2, 3),  # a mean's two decimals
    ],
)
def test_an_interval_that_excludes_zero_is_printed_clear_of_it(low, high, decimals, expected) -> None:
    assert interval_decimals(low, high, decimals, most=3) == expected


def test_a_small_significant_difference_does_not_print_as_zero() -> None:
    """A real case (internal call-timing precision): +0.04 points, significant, once printed as "+0.0 [+0.0, +0.1]"."""
    metric = MetricComparison("internal", "call timing precision", ACCURACY, 537, [0.9700], [0.9704],
                              Interval(0.0004, 0.0001, 0.0008, 2000), None, True)
    comparison = Comparison(["a"], ["b"], [metric], {}, {}, resamples=2000, seed=0)
    _, rows, flags = comparison.rows()
    assert rows[0][4] == "+0.04 [+0.01, +0.08]" and flags == [True]

def test_items_and_metrics_one_side_lacks_are_reported(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", _simple([1, 0, 1]))
    b = _run(tmp_path, "b", _simple([1, 1, 1, 0]) + [_bfcl_row("irrelevance_0", True, calls=0)])
    comparison = compare_runs([a], [b], tmp_path / "cmp", resamples=500)
    assert comparison.left_out_items == {"": {"b": ["simple_python_3", "irrelevance_0"]}}
    assert "irrelevance accuracy" in comparison.one_sided["b"]
    assert _metric(comparison, "simple_python accuracy").items == 3
    notes = comparison.notes()
    assert "2 items of b not in every run, left out (e.g. simple_python_3, irrelevance_0)" in notes
    assert any(line.startswith("computed by only B's runs, not compared: irrelevance accuracy") for line in notes)


def test_sections_of_a_pipeline_eval_directory(tmp_path: Path) -> None:
    """The main job's eval/<stage>/ holds bfcl/ and internal/; a section only B has is named, not dropped."""
    decision = {
        "TS": True,
        "PI": True,
        "valid": False,
        "category": "single",
        "parsed_calls": [{"name": "f", "arguments": {"x": 1}}, {"name": "g", "arguments": {}}],
        "gold_calls": [{"name": "f", "arguments": {"x": 1}}],
    }
    a = _run(tmp_path, "a/eval/trained", _simple([1, 0]), "bfcl")
    b = _run(tmp_path, "b/eval/trained", _simple([1, 1]), "bfcl")
    _run(tmp_path, "b/eval/trained", [{**decision, "id": "0#0"}], "internal")
    comparison = compare_runs([a], [b], tmp_path / "cmp", resamples=500)
    assert run_labels([a, b]) == comparison.labels_a + comparison.labels_b == ["a/eval/trained", "b/eval/trained"]
    assert _metric(comparison, "bfcl/simple_python accuracy").interval.estimate == pytest.approx(0.5)
    assert comparison.one_sided["b"] == ["internal/ (the whole section)"]


def test_run_labels(tmp_path: Path) -> None:
    seeds = [tmp_path / f"s{seed}" / "eval" / "trained" for seed in (0, 1)]
    assert run_labels(seeds) == ["s0/eval/trained", "s1/eval/trained"]
    assert run_labels([tmp_path / "a", tmp_path / "b", tmp_path / "a"]) == ["a#1", "b", "a#2"]


def test_internal_and_task_terms() -> None:
    # The first call fills every gold value (CF) but a second, unwanted call spoils the exact match.
    decision = {
        "id": "0#0",
        "TS": True,
        "PI": True,
        "valid": False,
        "parsed_calls": [{"name": "f", "arguments": {"x": 1, "y": 2}}, {"name": "g", "arguments": {}}],
        "gold_calls": [{"name": "f", "arguments": {"x": 1, "y": 3}}],
    }
    terms = section_terms(
        [decision, {**decision, "id": "1#0", "parsed_calls": [], "TS": False, "PI": False}],
        Path("internal/outcomes.jsonl"),
    )
    assert terms["CF"].terms == {"0#0": (0.0, 1.0), "1#0": (0.0, 1.0)}  # y differs: no CF either
    assert terms["parameter accuracy"].terms["0#0"] == (1.0, 2.0)  # x right, y wrong
    assert terms["call timing precision"].terms == {"0#0": (1.0, 1.0), "1#0": (0.0, 0.0)}
    assert terms["calls per decision"].terms["0#0"] == (2.0, 1.0)
    task = {
        "id": "t1",
        "category": "internal_tasks",
        "valid": True,
        "parsed_calls": [],
        "extra": {
            "termination": "final_answer",
            "steps": 3,
            "call_categories": ["ok", "tool_hallucination", "call_failure"],
        },
    }
    terms = section_terms([task], Path("tasks/outcomes.jsonl"))
    # DE: 1 documentation error of 3 calls; CE: 1 other error (call_failure) of 3.
    assert terms["DE"].terms["t1"] == (1.0, 3.0) and terms["CE"].terms["t1"] == (1.0, 3.0)
    assert terms["VA"].terms["t1"] == (1.0, 1.0) and terms["steps per task"].terms["t1"] == (3.0, 1.0)


def test_mean_over_categories_is_stratified(tmp_path: Path) -> None:
    rows_a = _simple([1, 0]) + [_bfcl_row("irrelevance_0", False), _bfcl_row("irrelevance_1", False)]
    rows_b = _simple([1, 0]) + [_bfcl_row("irrelevance_0", True, calls=0), _bfcl_row("irrelevance_1", True, calls=0)]
    comparison = compare_runs(
        [_run(tmp_path, "a", rows_a)], [_run(tmp_path, "b", rows_b)], tmp_path / "cmp", resamples=500
    )
    mean = _metric(comparison, "mean over categories")
    # (1/2 + 0/2) / 2 = 0.25 against (1/2 + 2/2) / 2 = 0.75. Strata keep their two items, so every resample gives
    # (0 from simple_python, unchanged + 1 from irrelevance, all fixed) / 2: the interval is the point +0.5.
    assert (mean.a_runs, mean.b_runs, mean.mcnemar) == ([0.25], [0.75], None)
    assert (mean.interval.low, mean.interval.high) == pytest.approx((0.5, 0.5))
    pooled = _metric(comparison, "all items accuracy")
    assert pooled.a_runs == [0.25] and pooled.b_runs == [0.75]


def test_seeds_per_side_from_the_cli(tmp_path: Path, capsys) -> None:
    runs = [
        _run(tmp_path, f"{side}{seed}", _simple(verdicts))
        for side, seed, verdicts in (
            ("sft", 0, [1, 0, 0, 0]),
            ("sft", 1, [1, 1, 0, 0]),
            ("rl", 0, [1, 1, 1, 0]),
            ("rl", 1, [1, 1, 1, 1]),
        )
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "eval",
                "compare",
                str(runs[0]),
                str(runs[1]),
                "vs",
                str(runs[2]),
                str(runs[3]),
                "--out",
                str(tmp_path / "cmp"),
                "--resamples",
                "1000",
            ]
        )
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "A: 2 runs (sft0, sft1)   B: 2 runs (rl0, rl1)   Δ = B − A" in printed and "simple_python" in printed
    assert (
        "| metric | items | A mean ± sd | B mean ± sd | Δ [95% interval] | McNemar p (only A/B) | sig. |"
        in (tmp_path / "cmp" / "report.md").read_text()
    )
    saved = json.loads((tmp_path / "cmp" / "paired.json").read_text())
    simple = next(m for m in saved["metrics"] if m["metric"] == "simple_python accuracy")
    # A: 0.25 and 0.5 (mean 0.375, sd 0.1768); B: 0.75 and 1.0 (mean 0.875): Δ = +0.5; no McNemar across seeds.
    assert simple["a"]["runs"] == [0.25, 0.5] and simple["a"]["sd"] == pytest.approx(0.25 / 2**0.5)
    assert simple["difference"] == pytest.approx(0.5) and simple["mcnemar"] is None
    assert simple["low"] <= 0.5 <= simple["high"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{a}", "{a}", "{a}"], "eval compare got 3 runs and 0 `vs`; fix:"),
        (["{a}", "vs", "{a}", "vs", "{a}"], "eval compare got 5 runs and 2 `vs`; fix:"),
        (["{a}", "vs"], "needs at least one run per side; fix:"),
        (["{a}", "{a}", "--resamples", "10"], "--resamples 10 is too few"),
    ],
)
def test_cli_argument_errors_are_one_line(tmp_path: Path, capsys, args: list[str], expected: str) -> None:
    a = _run(tmp_path, "a", _simple([1]))
    assert expected in cli_user_error(capsys, "eval", "compare", *[arg.format(a=a) for arg in args])


def test_a_directory_without_outcomes_is_one_line(tmp_path: Path, capsys) -> None:
    good = _run(tmp_path, "good", _simple([1]))
    pipeline = tmp_path / "job"
    _run(tmp_path, "job/eval/trained", _simple([1]), "bfcl")
    (pipeline / "metrics.json").write_text(json.dumps(METRICS))
    line = cli_user_error(capsys, "eval", "compare", str(good), str(pipeline), "--out", str(tmp_path / "cmp"))
    assert f"{pipeline} holds no outcomes.jsonl, nor do its subfolders; fix:" in line
    assert f"e.g. {pipeline / 'eval' / 'trained'}" in line
    line = cli_user_error(capsys, "eval", "compare", str(good), str(pipeline / "eval"), "--out", str(tmp_path / "cmp"))
    assert f"{pipeline / 'eval' / 'metrics.json'}: no such file; fix:" in line
    assert line.endswith(f", e.g. {pipeline / 'eval' / 'trained'}")
    assert not (tmp_path / "cmp").exists()


def test_runs_without_common_items_are_refused(tmp_path: Path, capsys) -> None:
    a = _run(tmp_path, "a", _simple([1, 0]))
    b = _run(tmp_path, "b", [_bfcl_row("multiple_0", True)])
    line = cli_user_error(capsys, "eval", "compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert "the runs share no scored items" in line and "fix: compare runs of the same suite" in line


def test_a_missing_run_names_its_metrics_file(tmp_path: Path) -> None:
    with pytest.raises(QwenToolError, match="metrics.json"):
        compare_runs([tmp_path / "nothing"], [_run(tmp_path, "b", _simple([1]))], tmp_path / "cmp")


def test_a_duplicate_item_is_refused(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", _simple([1]) + _simple([0]))
    with pytest.raises(QwenToolError, match="item id 'simple_python_0' appears twice"):
        compare_runs([a], [a], tmp_path / "cmp")
