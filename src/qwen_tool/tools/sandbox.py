"""The tool sandbox: one call in a child process, confined by the OS, its outcome returned as JSON (Linux only).

Each call gets a fresh working folder (its cwd, HOME and TMPDIR, removed afterwards) and a scrubbed environment (PATH,
LANG, HOME, TMPDIR; no inherited variable, so no inherited secret). The child leads its own session; it enters new
user, mount, PID, network and IPC namespaces with a /proc of its own and a Landlock domain where the kernel allows,
drops every capability (`tools.confine` says what each gives), and runs under address-space, CPU-time and file-size
limits. Its stdout and stderr go to pipes the parent drains, keeping the first `output_bytes` of each and discarding
the rest, so a chatty tool neither blocks nor floods the caller. The outcome comes back as one JSON document on a pipe
of its own; the parent never unpickles anything. At the timeout the whole process group is killed, and after every
call the group is killed again, so what the tool forked does not outlive it; in a PID namespace the kernel also kills
those that left the group.

A handler that can be imported by module and qualified name (a module-level function) runs in a fresh interpreter
(`qwen_tool.tools.sandbox_child.main`) that holds nothing of the caller's. Any other handler (a closure, a lambda, a
bound method, a function of `__main__`) runs in a forked copy of the caller: it is confined the same way, but it holds
a copy of the caller's memory, so secrets the caller keeps in memory are readable there.

Not guaranteed: protection against kernel exploits; secrecy of files (the tool reads what the caller's user may read);
Unix sockets named by a path (reachable); a bound on the number of processes or on the disk the working folder takes
(both run until the timeout); any namespace or Landlock where the kernel or a container policy refuses it, in which
case the first call that misses one logs a warning naming it. docs/sandbox.md has the full list and the measurements.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from typing import Any

from qwen_tool.tools.confine import signal_of_exit_code
from qwen_tool.tools.running import RawOutcome
from qwen_tool.tools.sandbox_child import SANDBOX_SETUP_FAILED, read_outcome, run_confined
from qwen_tool.tools.tool import ConvertingHandler

logger = logging.getLogger(__name__)  # a child of the package logger, without importing its rich handler here

_CONSEQUENCE_OF_MISSING: dict[tuple[str, ...], str] = {  # any one of the facilities suffices
    ("pid_namespace",): "processes a tool forks and moves out of its process group may outlive the call",
    ("network_namespace", "landlock_tcp"): "the tool can reach the network",
    ("landlock_filesystem",): "the tool can write anywhere the caller can",
    ("private_proc",): "the tool sees the machine's processes and their command lines in /proc",
}
_warned: set[tuple[str, ...]] = set()
_RESULT_FD = 3
_DRAIN_READS_AFTER_EXIT = 16  # 16 reads of 64 KiB empty the largest default pipe, even if a stray writer goes on
_CHILD_MAIN = "from qwen_tool.tools.sandbox_child import main; main()"  # not -m: the package imports that module


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed call (the wall-clock timeout is the caller's, passed to `SandboxedCall.wait`).

    Args:
        memory_mb: address space the tool may map beyond what its process holds when confined.
        cpu_s: CPU seconds (SIGXCPU, then SIGKILL one second later).
        file_mb: largest file the tool may write (beyond it, writes fail with EFBIG).
        output_bytes: how much of stdout, and of stderr, is kept; the rest is read and discarded.
        result_bytes: the largest outcome document accepted.
    """

    memory_mb: int = 512
    cpu_s: int = 10
    file_mb: int = 64
    output_bytes: int = 64 * 1024
    result_bytes: int = 16 * 1024 * 1024


class SandboxedCall:
    """One running sandboxed call: started by the constructor, finished by `wait`, which returns its `RawOutcome`."""

    def __init__(self, name: str, handler: Any, arguments: dict[str, Any], limits: SandboxLimits) -> None:
        if not hasattr(os, "pidfd_open"):
            raise OSError(errno.ENOSYS, "the tool sandbox needs Linux >= 5.3; mark trusted tools isolate=False")
        self.name = name
        self.limits = limits
        self.workdir = tempfile.mkdtemp(prefix="qwen-tool-sandbox-")
        self.stdout = _Capture(limits.output_bytes)
        self.stderr = _Capture(limits.output_bytes)
        self.result = _Capture(limits.result_bytes)
        self._lock = threading.Lock()
        self._reaped = False
        self._killed_at_timeout = False
        self.exit_code: int | None = None
        (out_read, out_write), (err_read, err_write), (result_read, result_write) = os.pipe(), os.pipe(), os.pipe()
        readers = {out_read: self.stdout, err_read: self.stderr, result_read: self.result}
        writes = (out_write, err_write, result_write)
        try:
            reference = handler_reference(handler)
            if reference is not None:
                self._popen: subprocess.Popen[bytes] | None = self._spawn(reference, arguments, writes)
                self.pid = self._popen.pid
            else:
                self._popen = None
                self.pid = self._fork(handler, arguments, writes)
        except BaseException:
            for fd in readers:
                os.close(fd)
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        finally:
            for fd in writes:
                os.close(fd)
        self._pidfd = os.pidfd_open(self.pid)
        self._collector = threading.Thread(target=self._collect, args=(readers,), daemon=True,
                                           name=f"sandbox-{self.pid}")
        self._collector.start()

    # --- starting ------------------------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": self.workdir,
                "TMPDIR": self.workdir}

    def _spawn(self, reference: dict[str, Any], arguments: dict[str, Any], writes: tuple[int, int, int]) -> Any:
        """A fresh interpreter that imports the handler by name; the request travels as JSON on its stdin."""
        out_write, err_write, result_write = writes
        environment = {**self._environment(), "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
                       "PYTHONDONTWRITEBYTECODE": "1"}
        request = {"handler": reference, "arguments": arguments, "workdir": self.workdir,
                   "limits": asdict(self.limits)}
        process = subprocess.Popen(
            [sys.executable, "-P", "-c", _CHILD_MAIN, str(result_write)],
            stdin=subprocess.PIPE, stdout=out_write, stderr=err_write, pass_fds=(result_write,), cwd=self.workdir,
            env=environment, start_new_session=True,
        )
        try:
            process.stdin.write(json.dumps(request).encode())  # type: ignore[union-attr]
            process.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:  # the child died before reading; its exit code tells the rest
            pass
        return process

    def _fork(self, handler: Any, arguments: dict[str, Any], writes: tuple[int, int, int]) -> int:
        """A forked copy of the caller for a handler that cannot be imported by name."""
        pid = os.fork()
        if pid != 0:
            return pid
        try:  # the child: never return into the caller's code
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            for fd, target in zip((devnull, *writes), (0, 1, 2, _RESULT_FD), strict=True):
                os.dup2(fd, target)
            os.closerange(_RESULT_FD + 1, os.sysconf("SC_OPEN_MAX"))
            # Fresh stream objects: the caller's may hold unflushed text or locks taken by its other threads.
            sys.stdin = open(0, closefd=False)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.chdir(self.workdir)
            os.environ.clear()
            os.environ.update(self._environment())
            run_confined(lambda: handler, arguments, self.workdir, asdict(self.limits), _RESULT_FD)
        finally:
            os._exit(SANDBOX_SETUP_FAILED)

    # --- collecting ----------------------------------------------------------------------------------------------
    def _collect(self, readers: dict[int, _Capture]) -> None:
        """Drain the pipes until the child exits, kill what is left of its group, reap it, remove its folder."""
        with selectors.DefaultSelector() as selector:
            for fd in readers:
                selector.register(fd, selectors.EVENT_READ)
            selector.register(self._pidfd, selectors.EVENT_READ)
            exited = False
            while not exited:
                for key, _ in selector.select():
                    if key.fd == self._pidfd:
                        exited = True
                    elif not readers[key.fd].read_from(key.fd):
                        selector.unregister(key.fd)
                        os.close(key.fd)
                        del readers[key.fd]
        self._kill_group()
        for fd, capture in readers.items():  # what the child wrote before it exited; writers left behind are ignored
            os.set_blocking(fd, False)
            for _ in range(_DRAIN_READS_AFTER_EXIT):
                if not capture.read_from(fd):
                    break
            os.close(fd)
        with self._lock:
            if self._popen is not None:
                self.exit_code = self._popen.wait()
            else:
                self.exit_code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            self._reaped = True
        os.close(self._pidfd)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill_group(self) -> None:
        """SIGKILL the child and its process group, unless it is already reaped (its id could be reused)."""
        with self._lock:
            if self._reaped:
                return
            for kill in (os.kill, os.killpg):
                try:
                    kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # --- finishing -----------------------------------------------------------------------------------------------
    def wait(self, timeout_s: float) -> RawOutcome:
        """The call's outcome; at the timeout the whole group is killed and the outcome is a timeout."""
        self._collector.join(max(0.0, timeout_s))
        if self._collector.is_alive():
            self._killed_at_timeout = True
            self._kill_group()
            self._collector.join()
        self._log_output()
        if self._killed_at_timeout:
            return RawOutcome("timeout")
        return self._outcome()

    def _outcome(self) -> RawOutcome:
        if self.result.overflow:
            message = f"the outcome is larger than {self.limits.result_bytes} bytes"
            return RawOutcome("error", error_type="ResultTooLarge", error_message=message)
        if self.result.data:
            raw, enforced = read_outcome(bytes(self.result.data))
            _warn_about_missing(enforced)
            return raw
        assert self.exit_code is not None
        signal_number = signal_of_exit_code(self.exit_code)
        if signal_number == signal.SIGXCPU:
            return RawOutcome("error", error_type="ResourceLimitExceeded", instability=True,
                              error_message=f"CPU time limit of {self.limits.cpu_s} s exceeded")
        if signal_number == signal.SIGKILL:
            return RawOutcome("error", error_type="ResourceLimitExceeded", instability=True,
                              error_message=f"killed by the CPU time limit of {self.limits.cpu_s} s or for memory")
        how = f"signal {signal.Signals(signal_number).name}" if signal_number else f"exit code {self.exit_code}"
        stderr = self.stderr.data.decode(errors="replace").strip()
        detail = f"; stderr ends: {stderr[-500:]}" if stderr else ""
        return RawOutcome("error", error_type="SandboxCrash", instability=True,
                          error_message=f"the sandboxed tool ended with {how} and no outcome{detail}")

    def _log_output(self) -> None:
        for stream, capture in (("stdout", self.stdout), ("stderr", self.stderr)):
            if capture.total:
                logger.debug("sandboxed tool %r wrote %d bytes to %s (%d kept): %r", self.name, capture.total,
                             stream, len(capture.data), bytes(capture.data[:200]))


class _Capture:
    """The first `limit` bytes of a pipe; the rest is counted and discarded so the writer never blocks."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    @property
    def overflow(self) -> bool:
        return self.total > self.limit

    def read_from(self, fd: int) -> bool:
        """Read one chunk; False at end of file (or, on a non-blocking pipe, when nothing is left to read now)."""
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        self.total += len(chunk)
        self.data += chunk[: max(0, self.limit - len(self.data))]
        return bool(chunk)


def handler_reference(handler: Any) -> dict[str, Any] | None:
    """How a fresh interpreter finds the handler (module, qualified name), or None when it cannot.

    Only functions of a module that is already imported, and found again under their own name, qualify; handlers
    that convert JSON arguments into dataclasses or enums are named by the function they wrap.
    """
    converts = isinstance(handler, ConvertingHandler)
    target = handler.fn if converts else handler
    module_name, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str) or module_name == "__main__":
        return None
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not target:
        return None
    return {"module": module_name, "qualname": qualname, "converts": converts}


def _warn_about_missing(enforced: list[str]) -> None:
    """Once per process and consequence: say which confinement the OS refused, and what follows."""
    for facilities, consequence in _CONSEQUENCE_OF_MISSING.items():
        if not set(facilities) & set(enforced) and facilities not in _warned:
            _warned.add(facilities)
            missing = " or ".join(name.replace("_", " ") for name in facilities)
            logger.warning("tool sandbox: no %s on this machine, so %s (see docs/sandbox.md)", missing, consequence)
