"""Misbehaving tools for tests/tools/test_sandbox.py, at module level so a fresh interpreter can import them by name."""

from __future__ import annotations

import ctypes
import glob
import os
import socket
import sys
import time


def sleep_forever() -> str:
    """Never answers."""
    while True:
        time.sleep(60)


def allocate_without_bound() -> int:
    """Allocates 16 MiB after 16 MiB."""
    chunks = []
    while True:
        chunks.append(bytearray(16 * 1024 * 1024))


def fork_children(hang: bool) -> str:
    """Starts three sleeping children: one stays in the process group, one leaves it (setsid), one is orphaned.

    Each child writes `child-N` in the working folder once it is in place; the tool waits for all three, then hangs
    or returns.
    """
    for n, how in enumerate(("in_group", "new_session", "orphan")):
        if os.fork() == 0:
            if how == "new_session":
                os.setsid()
            if how == "orphan" and os.fork() != 0:
                os._exit(0)  # the grandchild sleeps on without a parent
            with open(f"child-{n}", "w") as marker:
                marker.write(how)
            time.sleep(300)  # far beyond any test's timeout, yet bounded should a sandbox ever fail to kill it
            os._exit(0)
    while len(glob.glob("child-*")) < 3:
        time.sleep(0.01)
    while hang:
        time.sleep(60)
    return "forked"


def read_environment(name: str) -> str:
    """Reads a variable of its environment."""
    return os.environ[name]


def read_environment_of(pid: int) -> str:
    """Reads another process's environment through /proc."""
    with open(f"/proc/{pid}/environ", "rb") as environ:
        return environ.read().decode(errors="replace")


def write_file(path: str) -> dict:
    """Writes a file and says where it works from."""
    with open(path, "w") as file:
        file.write("written by a sandboxed tool")
    return {"cwd": os.getcwd(), "home": os.environ.get("HOME"), "tmpdir": os.environ.get("TMPDIR"),
            "files": sorted(os.listdir("."))}


def print_megabytes(megabytes: int) -> str:
    """Prints `megabytes` MiB to stdout."""
    line = "x" * 1023 + "\n"
    for _ in range(megabytes * 1024):
        sys.stdout.write(line)
    return "printed"


def connect(port: int) -> str:
    """Opens a TCP connection to 127.0.0.1:`port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return "connected"


def end_the_process(how: str) -> str:
    """Ends its own process: `sys.exit`, `os._exit`, or a segmentation fault."""
    if how == "sys_exit":
        sys.exit(3)
    if how == "os_exit":
        os._exit(3)
    ctypes.string_at(0)
    return "unreachable"


def answer_with_tuple_and_object(as_object: bool) -> object:
    """Returns a tuple (JSON turns it into a list) or an object JSON cannot hold."""
    return object() if as_object else (1, "two")
