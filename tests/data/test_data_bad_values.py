"""Lines holding what no output can hold (a lone surrogate, nesting 10,000 deep) are invalid lines: `data validate`
names them in one line, `--skip-invalid` skips only them, and `data convert` never crashes part-way through its output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen_tool.cli import main
from qwen_tool.data.formats import read_format

GOOD = {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}
DEEP = "[" * 10_000 + "]" * 10_000


def line_with(arguments: str | None = None, content: str | None = None, meta: str | None = None) -> str:
    """GOOD as one JSON line, with raw JSON text spliced in for the call's arguments, the user's content or meta."""
    line = json.dumps(GOOD)
    if arguments is not None:
        line = line.replace('"arguments": "{}"', f'"arguments": {json.dumps(arguments)}')
    if content is not None:
        line = line.replace('"content": "hi"', f'"content": {content}')
    if meta is not None:
        line = line[:-1] + f', "meta": {meta}}}'
    return line


BAD_LINES = {
    "surrogate_in_arguments": (line_with(arguments='{"q": "\\ud800"}'),
                               "field messages.1.tool_calls.0.function.arguments: the value holds a lone surrogate"),
    "surrogate_in_content": (line_with(content='"hi \\ud800"'),
                             "field messages.0.content: the value holds a lone surrogate \\ud800"),
    "deep_arguments": (line_with(arguments='{"q": ' + DEEP + "}"),
                       "field messages.1.tool_calls.0.function.arguments: the value nests arrays or objects more"),
    "deep_arguments_object": (line_with(arguments=None).replace('"arguments": "{}"', '"arguments": {"q": '
                                                                  + "[" * 150 + "]" * 150 + "}"),
                              "field messages.1.tool_calls.0.function.arguments.q.0.0.0"),
    "deep_line": (line_with(meta='{"x": ' + DEEP + "}"), "the line nests arrays or objects more than 100 levels deep"),
}


def write(path: Path, bad: str) -> Path:
    path.write_text("\n".join([json.dumps(GOOD), bad, json.dumps(GOOD)]) + "\n", encoding="utf-8")
    return path


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_validate_names_the_line_field_and_fix_in_one_line(case: str, tmp_path: Path, capsys) -> None:
    bad, needle = BAD_LINES[case]
    path = write(tmp_path / "train.jsonl", bad)
    code, _, stderr = run_main(["data", "validate", str(path)], capsys)
    assert code == 1 and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:2: ") and needle in lines[0], stderr
    assert "fix: " in lines[0]


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_skip_invalid_skips_only_that_line(case: str, tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "train.jsonl", BAD_LINES[case][0])
    code, stdout, stderr = run_main(["data", "validate", str(path), "--skip-invalid"], capsys)
    assert code == 1 and "Traceback" not in stderr
    assert stdout.startswith(f"{path}:2: ") and " ".join(stdout.split()).endswith(f"{path}: 2 valid, 1 invalid")


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_convert_stops_before_writing_or_skips_the_line(case: str, tmp_path: Path, capsys) -> None:
    path, out = write(tmp_path / "train.jsonl", BAD_LINES[case][0]), tmp_path / "out.jsonl"
    code, _, stderr = run_main(["data", "convert", str(path), str(out), "--to", "openai"], capsys)
    assert code == 1 and not out.exists() and len(stderr.strip().splitlines()) == 1 and f"{path}:2: " in stderr
    code, stdout, _ = run_main(["data", "convert", str(path), str(out), "--to", "openai", "--skip-invalid"], capsys)
    assert code == 0 and "(1 skipped)" in " ".join(stdout.split())
    written = out.read_bytes().decode("utf-8").splitlines()
    assert len(written) == 2 and all(json.loads(line)["messages"] for line in written)


def test_other_formats_skip_a_line_too_deep_to_decode(tmp_path: Path) -> None:
    path = tmp_path / "openai.jsonl"
    item = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    path.write_text(json.dumps(item) + "\n" + '{"messages": ' + DEEP + "}\n" + json.dumps(item) + "\n")
    records, errors = read_format(path, "openai", skip_invalid=True)
    assert len(records) == 2 and len(errors) == 1 and errors[0].startswith(f"{path}:2: the line nests")
