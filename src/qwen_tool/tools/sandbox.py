"""Isolation mode: run one handler in a forked child with CPU-time and address-space limits, killable at timeout."""

from __future__ import annotations

import multiprocessing
import resource
import signal
from typing import Any

from qwen_tool.tools.executor import _Raw, run_handler


def _current_address_space_bytes() -> int:
    """The process's virtual memory size (VmSize): the memory limit is set above what the fork inherited."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(conn: Any, handler: Any, arguments: dict[str, Any], memory_limit_mb: int, cpu_limit_s: int) -> None:
    limit = _current_address_space_bytes() + memory_limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit_s, cpu_limit_s + 1))
    raw = run_handler(handler, arguments)
    if raw.error_type == "MemoryError":
        raw.error_message = f"memory limit of {memory_limit_mb} MiB exceeded"
    try:
        conn.send(raw)
    except Exception as exc:  # the result could not be pickled back
        conn.send(_Raw("error", error_type="UnserialisableResult", error_message=str(exc)))
    conn.close()


class IsolatedCall:
    """A running sandboxed call; `wait` returns its `_Raw`, killing the child at the deadline."""

    def __init__(self, handler: Any, arguments: dict[str, Any], memory_limit_mb: int, cpu_limit_s: int) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child_conn = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(child_conn, handler, arguments, memory_limit_mb, cpu_limit_s), daemon=True
        )
        self._process.start()
        child_conn.close()
        self._memory_limit_mb = memory_limit_mb
        self._cpu_limit_s = cpu_limit_s

    def wait(self, timeout_s: float) -> _Raw:
        raw: _Raw | None = None
        if self._conn.poll(timeout_s):
            try:
                raw = self._conn.recv()
            except EOFError:
                raw = None  # the child died without answering; its exit code says why
        else:
            self._process.kill()
            self._process.join()
            return _Raw("timeout")
        self._process.join(1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        if raw is not None:
            return raw
        code = self._process.exitcode
        if code == -signal.SIGXCPU or code == -signal.SIGKILL:
            reason = (f"CPU time limit of {self._cpu_limit_s} s exceeded" if code == -signal.SIGXCPU
                      else f"killed (memory limit of {self._memory_limit_mb} MiB?)")
            return _Raw("error", error_type="ResourceLimitExceeded", error_message=reason, instability=True)
        return _Raw("error", error_type="SandboxCrash", error_message=f"sandboxed tool exited with code {code}",
                    instability=True)


def start_isolated(handler: Any, arguments: dict[str, Any], memory_limit_mb: int, cpu_limit_s: int) -> IsolatedCall:
    return IsolatedCall(handler, arguments, memory_limit_mb, cpu_limit_s)
