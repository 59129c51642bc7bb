"""`qwen-tool eval join`: parts of one evaluation (BFCL categories apart, the internal suite apart) become one run that
`eval compare` pairs with a whole one; parts that cannot belong together are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen_tool import QwenToolError
from qwen_tool.cli import main
from qwen_tool.eval.compare import compare_runs
from qwen_tool.eval.join import join_runs
from qwen_tool.testing import cli_user_error

MODEL = "runs/rl/final"


def _row(item: str, valid: bool, calls: int = 1) -> dict:
    """One outcome line as `run_bfcl` writes it."""
    return {"id": item, "category": item.rsplit("_", 1)[0], "prompt_hash": "0", "raw_output": "",
            "parsed_calls": [{"f": {}}] * calls, "valid": valid,
            "error_category": "" if valid else "value_error", "error": "", "parse_error": None,
            "new_tokens": 10, "finish_reason": "stop", "extra": {}}


def _bfcl_part(root: Path, name: str, rows: list[dict], model: str = MODEL, seconds: float = 10.0) -> Path:
    """A part as `eval like` writes it: the BFCL metrics at the top and in bfcl/, the outcomes in bfcl/."""
    part = root / name
    (part / "bfcl").mkdir(parents=True)
    categories = dict.fromkeys(row["category"] for row in rows)
    metrics = {"categories": {c: {"accuracy": 0.0, "n": 1} for c in categories}, "summary": {"examples": len(rows)},
               "suite": "bfcl", "model": model, "tool_format": "hermes", "limit": {},
               "wall_seconds": seconds, "generation": {"new_tokens": 10 * len(rows), "seconds": seconds,
                                                       "model_id": f"{model}@abc", "guided": True}}
    for folder in (part, part / "bfcl"):
        (folder / "metrics.json").write_text(json.dumps(metrics))
    (part / "bfcl" / "outcomes.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return part


def _internal_part(root: Path, name: str, model: str = MODEL) -> Path:
    """A part as `qwen-tool eval --suite internal --out DIR` writes it: everything at its top."""
    part = root / name
    part.mkdir(parents=True)
    (part / "metrics.json").write_text(json.dumps({"suite": "internal", "model": model, "guided": True,
                                                   "summary": {"CF": 0.5}}))
    rows = [{"id": f"{i}#0", "category": "irrelevance", "parsed_calls": [], "gold_calls": [], "valid": i == 0,
             "TS": True, "PI": True} for i in range(2)]
    (part / "outcomes.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return part


def test_parts_join_into_one_run_with_bfcl_metrics_recomputed(tmp_path: Path) -> None:
    short = _bfcl_part(tmp_path, "short", [_row("simple_python_0", True), _row("simple_python_1", True),
                                           _row("simple_python_2", False), _row("irrelevance_0", True, calls=0)])
    parallel = _bfcl_part(tmp_path, "parallel", [_row("parallel_0", True, calls=2), _row("parallel_1", False)],
                          seconds=5.0)
    internal = _internal_part(tmp_path, "internal")
    sections = join_runs([short, parallel, internal], tmp_path / "joined")
    assert list(sections) == ["bfcl", "internal"]
    joined = json.loads((tmp_path / "joined" / "metrics.json").read_text())

    # simple_python 2/3, irrelevance 1/1, parallel 1/2: unweighted over categories (2/3 + 1 + 1/2) / 3 = 13/18;
    # AST (simple_python, parallel) (2/3 + 1/2) / 2 = 7/12; 4 of 6 items right.
    assert joined["categories"]["simple_python"]["accuracy"] == pytest.approx(2 / 3)
    assert joined["categories"]["parallel"] == {
        "accuracy": 0.5, "n": 2, "valid": 1, "error_categories": {"value_error": 1}, "parse_errors": 0,
        "truncated": 0, "average_calls": 1.5}
    assert joined["summary"]["overall_accuracy_unweighted"] == pytest.approx(13 / 18)
    assert joined["summary"]["ast_accuracy_unweighted"] == pytest.approx(7 / 12)
    assert (joined["summary"]["examples"], joined["summary"]["valid"]) == (6, 4)
    assert joined["wall_seconds"] == 15.0 and joined["generation"]["new_tokens"] == 60
    assert joined["generation"]["seconds"] == 15.0 and joined["generation"]["model_id"] == f"{MODEL}@abc"
    assert joined["internal"]["summary"] == {"CF": 0.5} and sections["bfcl"]["categories"] == joined["categories"]
    bfcl_ids = [json.loads(line)["id"] for line in (tmp_path / "joined" / "bfcl" / "outcomes.jsonl").open()]
    assert bfcl_ids == ["simple_python_0", "simple_python_1", "simple_python_2", "irrelevance_0", "parallel_0",
                        "parallel_1"]
    copied = (tmp_path / "joined" / "internal" / "outcomes.jsonl").read_text()
    assert copied == (internal / "outcomes.jsonl").read_text()
    assert json.loads((tmp_path / "joined" / "bfcl" / "metrics.json").read_text())["categories"] == joined["categories"]

    # The joined run pairs with a whole run of the same items, section by section.
    whole = _bfcl_part(tmp_path, "whole", [_row("simple_python_0", False), _row("simple_python_1", False),
                                           _row("simple_python_2", False), _row("irrelevance_0", True, calls=0),
                                           _row("parallel_0", True, calls=2), _row("parallel_1", False)])
    comparison = compare_runs([whole], [tmp_path / "joined"], tmp_path / "cmp", resamples=500)
    simple = next(m for m in comparison.metrics if m.name == "bfcl/simple_python accuracy")
    assert simple.items == 3 and simple.a_runs == [0.0] and simple.b_runs == [pytest.approx(2 / 3)]
    assert "internal/ (the whole section)" in comparison.one_sided["b"]


def test_free_multi_turn_tasks_join_guided_parts_but_a_free_bfcl_part_does_not(tmp_path: Path) -> None:
    guided = _bfcl_part(tmp_path, "guided", [_row("simple_python_0", True)])
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "metrics.json").write_text(json.dumps({"suite": "internal_tasks", "model": MODEL, "guided": False,
                                                    "summary": {"VA": 1.0}}))
    (tasks / "outcomes.jsonl").write_text(json.dumps({"id": "t0", "category": "internal_tasks", "valid": True,
                                                      "extra": {"termination": "final_answer"}}) + "\n")
    assert list(join_runs([guided, tasks], tmp_path / "joined")) == ["bfcl", "internal_tasks"]
    free = _bfcl_part(tmp_path, "free", [_row("multiple_0", True)])
    metrics = json.loads((free / "metrics.json").read_text())
    metrics["generation"]["guided"] = False
    for folder in (free, free / "bfcl"):
        (folder / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(QwenToolError, match="differ in guided"):
        join_runs([guided, free], tmp_path / "joined-free")


def test_a_row_that_is_not_an_outcome_line_is_named(tmp_path: Path) -> None:
    first = _bfcl_part(tmp_path, "first", [_row("simple_python_0", True)])
    broken = {key: value for key, value in _row("multiple_0", True).items() if key != "error_category"}
    other = _bfcl_part(tmp_path, "other", [broken])
    with pytest.raises(QwenToolError, match=f"BFCL item multiple_0 of {other} is not an outcome line .*fix: score"):
        join_runs([first, other], tmp_path / "joined")


def test_a_row_without_an_id_is_named_by_its_part_and_line(tmp_path: Path) -> None:
    first = _bfcl_part(tmp_path, "first", [_row("simple_python_0", True)])
    nameless = {key: value for key, value in _row("multiple_0", True).items() if key != "id"}
    other = _bfcl_part(tmp_path, "other", [_row("multiple_1", True), nameless])
    with pytest.raises(QwenToolError, match=f"{other}: BFCL outcome 2 has no string 'id'; fix: score"):
        join_runs([first, other], tmp_path / "joined")


def test_an_item_scored_in_two_parts_is_refused(tmp_path: Path) -> None:
    first = _bfcl_part(tmp_path, "first", [_row("simple_python_0", True)])
    again = _bfcl_part(tmp_path, "again", [_row("simple_python_0", False)])
    with pytest.raises(QwenToolError, match=f"simple_python_0 is scored in both {first} and {again}"):
        join_runs([first, again], tmp_path / "joined")
    assert not (tmp_path / "joined").exists()


@pytest.mark.parametrize(
    ("make_parts", "expected"),
    [
        (lambda root: [_bfcl_part(root, "a", [_row("simple_python_0", True)]),
                       _bfcl_part(root, "b", [_row("multiple_0", True)], model="runs/sft/final")],
         "differ in model ('runs/rl/final' against 'runs/sft/final'); fix: join the parts of one model's"),
        (lambda root: [_internal_part(root, "a"), _internal_part(root, "b")],
         "the internal suite is in both"),
        (lambda root: [_internal_part(root, "a")], "eval join got 1 part; fix: pass two or more"),
    ],
)
def test_parts_that_do_not_belong_together_are_one_line(tmp_path: Path, capsys, make_parts, expected) -> None:
    parts = [str(part) for part in make_parts(tmp_path)]
    line = cli_user_error(capsys, "eval", "join", *parts, "--out", str(tmp_path / "joined"))
    assert expected in line
    assert not (tmp_path / "joined").exists()


def test_the_cli_says_what_it_joined(tmp_path: Path, capsys) -> None:
    a = _bfcl_part(tmp_path, "a", [_row("simple_python_0", True)])
    b = _internal_part(tmp_path, "b")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "join", str(a), str(b), "--out", str(tmp_path / "joined")])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert f"joined 2 parts into {tmp_path / 'joined'}: bfcl, internal (BFCL simple_python)" in printed
    assert f"qwen-tool eval compare OTHER_RUN {tmp_path / 'joined'}" in printed.replace("\n", "")
    # A second join into the same folder would leave the first's sections beside its own: refused.
    line = cli_user_error(capsys, "eval", "join", str(a), str(b), "--out", str(tmp_path / "joined"))
    assert "already exists and is not an empty folder; fix: pass a new folder" in line
