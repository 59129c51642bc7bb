"""Issue 26: every error a user can cause ends in one line on stderr, exit code 1, naming the place and the fix, with
no traceback (`cli_user_error` asserts that much); missing output folders are created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qwen_tool.cli import app
from qwen_tool.testing import cli_user_error

RECORD = {"tools": [], "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
          "meta": {"category": "chat"}}
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(RECORD) + "\n")
    return path


@pytest.fixture
def binary_file(tmp_path: Path) -> Path:
    path = tmp_path / "picture.png"
    path.write_bytes(BINARY)
    return path


def _metrics() -> dict:
    return {"model": "m", "categories": {"simple_python": {"accuracy": 0.5, "n": 2}},
            "summary": {"overall_accuracy_unweighted": 0.5, "examples": 2}}


OUTCOMES = [{"id": f"simple_python_{i}", "category": "simple_python", "valid": i == 0, "parsed_calls": []}
            for i in range(2)]


def _run_dir(root: Path, name: str, metrics: object) -> Path:
    """A run directory as `qwen-tool eval --out` leaves it: metrics.json (as given) and the outcomes matching
    `_metrics()`."""
    run = root / name
    run.mkdir()
    (run / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    (run / "outcomes.jsonl").write_text("".join(json.dumps(row) + "\n" for row in OUTCOMES))
    return run


# ---------------------------------------------------------------- outputs into folders that do not exist


def test_outputs_into_missing_folders_are_created(tmp_path: Path, data_file: Path) -> None:
    """data synth --out, data stats --png, env play --save and eval compare --out raised FileNotFoundError."""
    runner = CliRunner()
    new = tmp_path / "new" / "folder"
    commands = {
        new / "synth" / "train.jsonl": ["data", "synth", "--n", "3", "--out", str(new / "synth" / "train.jsonl")],
        new / "stats" / "mix.png": ["data", "stats", str(data_file), "--png", str(new / "stats" / "mix.png")],
        new / "play" / "episode.json": ["env", "play", "weather", "--save", str(new / "play" / "episode.json")],
    }
    run_a, run_b = _run_dir(tmp_path, "a", _metrics()), _run_dir(tmp_path, "b", _metrics())
    commands[new / "compare" / "report.md"] = ["eval", "compare", str(run_a), str(run_b), "--out",
                                               str(new / "compare")]
    for output, args in commands.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        assert output.is_file() and output.stat().st_size > 0, args


@pytest.mark.parametrize("args", [
    ["data", "synth", "--n", "3", "--out", "{blocker}/train.jsonl"],
    ["env", "play", "weather", "--save", "{blocker}/episode.json"],
    ["eval", "compare", "{run}", "{run}", "--out", "{blocker}/cmp"],
], ids=["synth", "play", "compare"])
def test_an_output_under_a_file_is_one_line(tmp_path: Path, capsys, args: list[str]) -> None:
    """When the folder cannot be made (a file stands in its way), the error says which path and what to do."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    run = _run_dir(tmp_path, "run", _metrics())
    line = cli_user_error(capsys, *[a.format(blocker=blocker, run=run) for a in args])
    assert f"cannot write {blocker}/" in line and f"{blocker} is a file, not a folder" in line
    assert "fix: choose a file path in a folder you can write to" in line


# ---------------------------------------------------------------- sizes, formats and missing inputs


@pytest.mark.parametrize(("args", "expected"), [
    (["data", "synth", "--n", "-3"], "--n -3: must be at least 1; fix: pass --n 1 or more"),
    (["data", "synth", "--n", "5", "--eval-n", "0"], "--eval-n 0: must be at least 1"),
    (["data", "synth", "--n", "5", "--eval-decisions", "0"], "--eval-decisions 0: must be at least 1"),
    (["data", "synth", "--n", "5", "--eval-decisions", "50"], "--eval-decisions grows the held-out eval split, and "
     "none is written; fix: add --held-out-tools (above 0) and --eval-out"),
    (["data", "synth", "--n", "5", "--eval-out", "data/eval.jsonl"], "--eval-out data/eval.jsonl: the held-out eval "
     "split is drawn from tools reserved by --held-out-tools, which is 0; fix: add --held-out-tools"),
    (["train", "rl", "--synth", "-3"], "--synth -3: must be at least 0"),
    (["eval", "--batch-size", "0"], "--batch-size 0: must be at least 1; fix: pass --batch-size 1 or more"),
    (["eval", "--limit", "0"], "--limit 0: must be at least 1"),
    (["env", "play", "weather", "--instability", "2"], "--instability 2.0: a probability must be between 0 and 1"),
], ids=["synth-n", "synth-eval-n", "synth-eval-decisions", "synth-eval-decisions-alone", "synth-eval-out-alone",
     "rl-synth",
     "eval-batch-size", "eval-limit", "play-instability"])
def test_sizes_out_of_range_are_one_line(tmp_path: Path, capsys, monkeypatch, args: list[str], expected: str) -> None:
    """`data synth --n -3` wrote 7 trajectories and exited 0; `--eval-out` without `--held-out-tools` wrote no eval
    split and said nothing."""
    monkeypatch.chdir(tmp_path)
    assert expected in cli_user_error(capsys, *args)
    assert not (tmp_path / "data").exists(), "nothing is written"


def test_unknown_data_format_is_one_line_with_did_you_mean(tmp_path: Path, capsys, data_file: Path) -> None:
    """`data convert --to nosuch` was a KeyError traceback, after reading the whole input."""
    line = cli_user_error(capsys, "data", "convert", str(data_file), str(tmp_path / "out.jsonl"), "--to", "nosuch")
    assert "--to 'nosuch' is not a data format; fix: use one of trajectory, openai, sharegpt" in line
    line = cli_user_error(capsys, "data", "convert", str(data_file), str(tmp_path / "out.jsonl"), "--from", "sharegp")
    assert "--from 'sharegp' is not a data format; fix: did you mean 'sharegpt'?" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_convert_input_missing_is_one_line(tmp_path: Path, capsys) -> None:
    line = cli_user_error(capsys, "convert", "--from", "hermes", "--to", "openai", "--input",
                          str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "out.jsonl"))
    assert f"--input {tmp_path / 'missing.jsonl'}: no such file; fix: pass an existing trajectory JSONL" in line


# ---------------------------------------------------------------- binary files


@pytest.mark.parametrize(("args", "place"), [
    (["data", "validate", "{binary}"], "{binary}:1: not UTF-8 text"),
    (["data", "validate", "{binary_parquet}"], "{binary_parquet}: not a Parquet file"),
    (["parse", "--tools", "{binary}"], "--tools {binary}: not UTF-8 text (byte 0x89 at offset 0; a binary file?)"),
    (["generate", "--config", "{binary}"], "{binary}: not UTF-8 text (byte 0x89 at offset 0; a binary file?)"),
    (["eval", "--suite", "internal", "--data", "{binary}"], "{binary}: not UTF-8 text"),
], ids=["data-validate", "data-validate-parquet", "parse-tools", "yaml-config", "eval-data"])
def test_a_binary_file_is_one_line(tmp_path: Path, capsys, binary_file: Path, args: list[str], place: str) -> None:
    """A binary file was a UnicodeDecodeError traceback."""
    binary_parquet = tmp_path / "picture.parquet"
    binary_parquet.write_bytes(BINARY)
    names = {"binary": binary_file, "binary_parquet": binary_parquet}
    line = cli_user_error(capsys, *[a.format(**names) for a in args])
    assert place.format(**names) in line


# ---------------------------------------------------------------- eval compare inputs


@pytest.mark.parametrize(("metrics", "expected"), [
    ('{"categories": {', "metrics.json:1:17: not valid JSON (Expecting property name enclosed in double quotes)"),
    ([1, 2], "metrics.json holds a JSON list, not a run's metrics object"),
    ({}, "metrics.json holds no metrics (no categories, summary or levels)"),
    ({"categories": {"simple_python": {"accuracy": "high"}}},
     "metrics.json: key 'categories.simple_python.accuracy' has value 'high'"),
    ({"categories": [1, 2]}, "metrics.json: key 'categories' has value [1, 2]"),
], ids=["malformed", "list", "empty", "wrong-type", "categories-list"])
def test_eval_compare_rejects_what_is_not_a_run(tmp_path: Path, capsys, metrics: object, expected: str) -> None:
    """Malformed JSON was a traceback, a list an AttributeError, and {} an empty report with exit code 0."""
    good = _run_dir(tmp_path, "good", _metrics())
    bad = _run_dir(tmp_path, "bad", metrics)
    line = cli_user_error(capsys, "eval", "compare", str(good), str(bad), "--out", str(tmp_path / "cmp"))
    assert expected in line and "fix: pass a directory written by `qwen-tool eval --out DIR`" in line
    assert not (tmp_path / "cmp").exists()


def test_eval_compare_rejects_malformed_outcomes(tmp_path: Path, capsys) -> None:
    runs = [_run_dir(tmp_path, name, _metrics()) for name in ("a", "b")]
    (runs[1] / "outcomes.jsonl").write_text('{"id": "x"}\n{"id": \n')
    line = cli_user_error(capsys, "eval", "compare", *map(str, runs), "--out", str(tmp_path / "cmp"))
    assert f"{runs[1] / 'outcomes.jsonl'}:2: not valid JSON" in line


# ---------------------------------------------------------------- recipe values, checked before any model loads


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "data.n_train=-5"], "key 'data': n_train must be at least 1, got -5; fix: set n_train: 1 or more"),
    (["run", "eval.categories=[simple_pythn]"],
     "key 'eval': unknown BFCL category 'simple_pythn'; fix: did you mean 'simple_python'?"),
    (["run", "eval.batch_size=0"], "key 'eval': batch_size must be at least 1, got 0"),
    (["eval", "--categories", "simple_pythn"],
     "--categories: unknown BFCL category 'simple_pythn'; fix: did you mean 'simple_python'?"),
    (["run", "sft.tool_rendering=compakt"],
     "key 'sft.tool_rendering' has value 'compakt'; fix: did you mean 'compact'? use 'json' or 'compact'"),
    (["eval", "--tool-rendering", "compakt"],
     "unknown tool rendering 'compakt'; fix: did you mean 'compact'? use one of json, compact"),
    (["serve", "--model", "smollm2-135m-instruct", "--tool-rendering", "jsn"],
     "unknown tool rendering 'jsn'; fix: did you mean 'json'? use one of json, compact"),
], ids=["n_train", "categories", "batch_size", "eval-categories", "tool_rendering", "eval-tool-rendering",
        "serve-tool-rendering"])
def test_recipe_values_fail_at_load(capsys, monkeypatch, args: list[str], expected: str) -> None:
    """These were accepted at load; `eval` checked categories only after loading the model."""
    import qwen_tool.models

    def no_loading(*_, **__):
        raise AssertionError("a model was loaded before the recipe was checked")

    monkeypatch.setattr(qwen_tool.models, "load_model", no_loading)
    monkeypatch.setattr(qwen_tool.models, "load_tokenizer", no_loading)
    assert expected in cli_user_error(capsys, *args)


# ---------------------------------------------------------------- the rest of the CLI's user errors


def test_data_stats_of_an_empty_file_is_one_line(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "holds no trajectory" in cli_user_error(capsys, "data", "stats", str(empty))


@pytest.mark.parametrize(("args", "said"), [
    (["env", "play", "wether"], "unknown suite 'wether'"),
    (["env", "play", "weather", "--task", "999"], "--task 999 is out of range"),
    (["env", "play", "weather", "--noise", "loud"], "unknown noise level 'loud'"),
    (["tools", "describe", "nosuch"], "unknown suite 'nosuch'"),
])
def test_env_and_tools_user_errors_are_one_line_with_the_fix(capsys, args: list[str], said: str) -> None:
    assert said in cli_user_error(capsys, *args)


@pytest.mark.parametrize(("args", "said"), [
    (["--precision", "bf32"], "--precision 'bf32' is not a precision"),
    (["--max-body-mb", "0"], "--max-body-mb 0.0"),
    (["--max-tokens-cap", "0"], "--max-tokens-cap 0"),
])
def test_serve_settings_are_checked_before_the_model_loads(capsys, args: list[str], said: str) -> None:
    assert said in cli_user_error(capsys, "serve", "--model", "smollm2-135m-instruct", *args)
