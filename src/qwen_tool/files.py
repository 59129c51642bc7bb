"""Reading a user's file and writing an output: one-line errors naming the file and the fix, and nothing half-written.

Every output goes to a temporary file in the target's folder, is flushed to disk, and is then renamed over the target
(`os.replace`, atomic), so a crash mid-write leaves the previous file whole. Missing parent folders are created, as
`--out some/new/folder/file` leads a user to expect.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from qwen_tool import QwenToolError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class FileProblem(QwenToolError):
    """A file that cannot be read or written; the message names it and says how to fix it."""


def _cannot_write(path: Path, err: OSError) -> FileProblem:
    if isinstance(err, FileExistsError | NotADirectoryError):  # from mkdir: a file stands where a folder must be
        reason = f"{next(p for p in path.parents if p.exists())} is a file, not a folder"
    else:
        reason = f"{err.strerror or err}" + (f" ({err.filename})" if err.filename and err.filename != str(path) else "")
    return FileProblem(f"cannot write {path}: {reason}; fix: choose a file path in a folder you can write to")


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to `path` ("w" text in UTF-8, or "wb"); on a clean exit it replaces `path`.

    An exception inside the block removes the temporary file and leaves `path` as it was.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder", str(path))
        # os.open with 0o666 lets the umask decide the permissions, as a plain open() would.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise _cannot_write(path, err) from None
    committed = False
    try:
        with os.fdopen(descriptor, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as err:
                raise _cannot_write(path, err) from None
        try:
            os.replace(temporary, path)
        except OSError as err:
            raise _cannot_write(path, err) from None
        committed = True
    finally:
        if not committed:
            temporary.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns `path`."""
    with atomic_write(path) as handle:
        handle.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """Write `data` as JSON (UTF-8 kept) to `path` atomically; returns `path`."""
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False))


def write_lines(path: str | Path, lines: Iterable[str]) -> Path:
    """Write each line followed by a newline to `path` atomically (JSON lines, say); returns `path`."""
    with atomic_write(path) as handle:
        for line in lines:
            handle.write(line + "\n")
    return Path(path)


def save_figure(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically, in the format its suffix names (PNG by default)."""
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    return path


def _label(path: Path, label: str) -> str:
    return f"{label} {path}" if label else str(path)


@contextmanager
def open_input(path: str | Path, fix: str, label: str = "") -> Iterator[IO[bytes]]:
    """Open a file for reading bytes; a missing file, a folder or an unreadable one becomes a `FileProblem` saying
    `fix`. `label` names where the path came from (e.g. "--tools") so the message points at the option to change."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        problem = "no such file"
    except IsADirectoryError:
        problem = "is a folder, not a file"
    except OSError as err:
        problem = f"cannot be read ({err.strerror or err})"
    else:
        with handle:
            yield handle
        return
    raise FileProblem(f"{_label(path, label)}: {problem}; fix: {fix}")


def decode_utf8(data: bytes, where: str, fix: str) -> str:
    """`data` as UTF-8 text; anything else (a binary file, another encoding) becomes a `FileProblem` at `where`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileProblem(f"{where}: not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}; a binary file?)"
                          f"; fix: {fix}") from None


def read_text(path: str | Path, fix: str, label: str = "") -> str:
    """The UTF-8 text of a file, with `open_input`'s one-line errors plus one for a file that is not UTF-8 text."""
    with open_input(path, fix, label) as handle:
        data = handle.read()
    return decode_utf8(data, _label(Path(path), label), fix)


def read_json(path: str | Path, fix: str, label: str = "") -> Any:
    """The JSON value in a file; malformed JSON becomes a `FileProblem` naming file:line:column."""
    text = read_text(path, fix, label)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FileProblem(f"{_label(Path(path), label)}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}); "
                          f"fix: {fix}") from None


def read_json_objects(path: str | Path, fix: str, label: str = "") -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (blank lines skipped); a line that is not JSON, or not an object, becomes
    a `FileProblem` naming file:line."""
    where = _label(Path(path), label)
    objects = []
    for number, line in enumerate(read_text(path, fix, label).splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise FileProblem(f"{where}:{number}: not valid JSON ({err.msg}); fix: {fix}") from None
        if not isinstance(item, dict):
            raise FileProblem(f"{where}:{number}: not a JSON object; fix: {fix}")
        objects.append(item)
    return objects


__all__ = ["FileProblem", "atomic_write", "decode_utf8", "open_input", "read_json", "read_json_objects", "read_text",
           "save_figure", "write_json", "write_lines", "write_text"]
