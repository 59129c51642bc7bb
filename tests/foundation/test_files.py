"""`qwen_tool.files`: outputs are replaced whole or not at all, and unreadable inputs fail on one line with the fix."""

from __future__ import annotations

import json
import os
import stat

import pytest

from qwen_tool.data.formats import write_format
from qwen_tool.data.schema import write_jsonl, write_parquet
from qwen_tool.files import FileProblem, atomic_write, read_json, read_text, write_json, write_text

RECORD = {"tools": [], "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
          "meta": {}}


def _crashing_records(count: int):
    """Yield `count` records, then fail as a serializer or a killed process would, part-way through the output."""
    for _ in range(count):
        yield RECORD
    raise RuntimeError("crash mid-write")


@pytest.mark.parametrize("writer, name", [
    (write_jsonl, "out.jsonl"),
    (lambda records, path: write_format(list(records), path, "openai"), "out.jsonl"),
], ids=["jsonl", "openai"])
def test_a_crash_while_overwriting_leaves_the_old_output_whole(tmp_path, writer, name):
    """The issue's case: a 75 KB output was left cut to 1.8 KB when a rewrite died part-way."""
    target = tmp_path / name
    old = os.urandom(75_000)
    target.write_bytes(old)
    with pytest.raises(RuntimeError, match="crash mid-write"):
        writer(_crashing_records(40), target)
    assert target.read_bytes() == old
    assert os.listdir(tmp_path) == [name], "the temporary file is removed"


def test_a_parquet_writer_dying_part_way_leaves_the_old_output_whole(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    def write_half_then_die(table, handle):
        handle.write(b"PAR1" + b"\0" * 1800)
        raise OSError("killed")

    target = tmp_path / "train.parquet"
    write_parquet([RECORD] * 3, target)
    old = target.read_bytes()
    monkeypatch.setattr(pq, "write_table", write_half_then_die)
    with pytest.raises(OSError, match="killed"):
        write_parquet([RECORD] * 300, target)
    assert target.read_bytes() == old
    assert os.listdir(tmp_path) == ["train.parquet"]


def test_atomic_write_creates_folders_and_keeps_the_usual_permissions(tmp_path):
    target = tmp_path / "new" / "deeper" / "metrics.json"
    write_json(target, {"accuracy": 0.5, "name": "café"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"accuracy": 0.5, "name": "café"}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_an_unwritable_output_is_one_line_naming_it(tmp_path):
    (tmp_path / "a_file").write_text("x")
    expected = r"cannot write .*a_file/out.txt: .*a_file is a file, not a folder; fix: choose a file path"
    with pytest.raises(FileProblem, match=expected) as info:
        write_text(tmp_path / "a_file" / "out.txt", "data")
    assert "\n" not in str(info.value)
    with pytest.raises(FileProblem, match="it is a folder"):
        with atomic_write(tmp_path) as handle:
            handle.write("data")


def test_reading_names_the_file_the_problem_and_the_fix(tmp_path):
    binary = tmp_path / "tools.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(FileProblem, match=r"^--tools .*tools.json: not UTF-8 text \(byte 0x89 at offset 0; a binary "
                                          r"file\?\); fix: pass JSON$"):
        read_json(binary, fix="pass JSON", label="--tools")
    with pytest.raises(FileProblem, match=r"missing.json: no such file; fix: pass JSON$"):
        read_json(tmp_path / "missing.json", fix="pass JSON")
    with pytest.raises(FileProblem, match=r"is a folder, not a file; fix: pass text$"):
        read_text(tmp_path, fix="pass text")
    malformed = tmp_path / "bad.json"
    malformed.write_text('{\n  "a": 1,\n}')
    with pytest.raises(FileProblem, match=r"bad.json:3:1: not valid JSON \(.*\); fix: pass JSON$"):
        read_json(malformed, fix="pass JSON")
