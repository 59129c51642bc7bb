"""The sandboxed side of a tool call: confine this process, run the handler, write its outcome as JSON.

For a handler it can name by module and qualified name, `tools.sandbox` starts a fresh interpreter that runs `main`
(argument: RESULT_FD) with the request, as JSON, on stdin; it holds nothing of the caller's. A handler it cannot name
(a closure, a lambda, a bound method) runs in a forked copy of the caller that calls `run_confined`.
Either way the outcome leaves as one JSON document on RESULT_FD, and nothing is ever unpickled.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from qwen_tool.tools.confine import enter_sandbox
from qwen_tool.tools.feedback import FeedbackCategory
from qwen_tool.tools.running import RawOutcome, run_handler

SANDBOX_SETUP_FAILED = 70
"""Exit code of a child that could not confine itself or report (EX_SOFTWARE); the parent reports a crash."""


def main() -> NoReturn:
    result_fd = int(sys.argv[1])
    request = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    run_confined(lambda: _import_handler(request["handler"]), request["arguments"], request["workdir"],
                 request["limits"], result_fd)


def run_confined(load_handler: Callable[[], Any], arguments: dict[str, Any], workdir: str, limits: dict[str, int],
                 result_fd: int) -> NoReturn:
    """Enter the sandbox, load and call the handler, write the outcome to `result_fd`, and exit."""
    try:
        enforced = enter_sandbox(workdir, limits["memory_mb"], limits["cpu_s"], limits["file_mb"])
    except OSError as exc:
        raw = RawOutcome("error", error_type="SandboxUnavailable", error_message=f"cannot confine the tool: {exc}",
                         instability=True)
        _report(result_fd, raw, [])
    try:
        handler = load_handler()
    except Exception as exc:
        raw = RawOutcome("error", error_type="ToolUnavailable", instability=True,
                         error_message=f"cannot load the handler in the sandbox: {type(exc).__name__}: {exc}")
        _report(result_fd, raw, enforced)
    try:
        raw = run_handler(handler, arguments)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt: the tool tried to end the process
        raw = RawOutcome("error", error_type=type(exc).__name__, error_message=str(exc))
    if raw.error_type == "MemoryError":
        raw = RawOutcome("error", error_type="ResourceLimitExceeded", instability=True,
                         error_message=f"memory limit of {limits['memory_mb']} MiB exceeded")
    _report(result_fd, raw, enforced)


def _import_handler(reference: dict[str, Any]) -> Any:
    target: Any = importlib.import_module(reference["module"])
    for part in reference["qualname"].split("."):
        target = getattr(target, part)
    if reference["converts"]:  # rebuild the conversion of JSON arguments into dataclasses and enums
        from qwen_tool.tools.tool import Tool

        return Tool.from_callable(target).handler
    return target


def _report(result_fd: int, raw: RawOutcome, enforced: list[str]) -> NoReturn:
    """Write the outcome (a value JSON cannot hold becomes an error) and exit without running any cleanup."""
    document = {"status": raw.status, "error_type": raw.error_type, "error_message": raw.error_message,
                "instability": raw.instability, "content": raw.content, "enforced": enforced}
    try:
        payload = json.dumps({**document, "value": raw.value}, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        message = f"result is not JSON-serialisable ({exc})"
        payload = json.dumps({**document, "status": "error", "error_type": "UnserialisableResult",
                              "error_message": message, "category": FeedbackCategory.OTHER.value})
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the tool closed or broke its own stream; its output is lost, not the outcome
            pass
    try:
        with open(result_fd, "wb") as result:
            result.write(payload.encode())
    finally:
        os._exit(0)


def read_outcome(payload: bytes) -> tuple[RawOutcome, list[str]]:
    """The outcome a child wrote, and the facilities it had in force; malformed documents become errors."""
    try:
        document = json.loads(payload)
        status = document["status"]
        if status not in ("ok", "error") or not isinstance(document.get("enforced"), list):
            raise ValueError(f"unexpected status {status!r} or facilities")
        category = FeedbackCategory(document["category"]) if document.get("category") else None
        raw = RawOutcome(status, document.get("value"), _text(document.get("error_type")),
                         _text(document.get("error_message")), bool(document.get("instability")),
                         _text(document.get("content")), category)
        return raw, [str(name) for name in document["enforced"]]
    except (ValueError, KeyError, TypeError) as exc:
        message = f"the sandboxed tool's outcome is not a valid JSON document ({exc})"
        return RawOutcome("error", error_type="SandboxProtocolError", error_message=message), []


def _text(value: Any) -> str | None:
    return None if value is None else str(value)

