"""The tool sandbox against misbehaving tools: each is stopped or denied with its error category, the caller goes
on, and no process is left behind.

Every behaviour runs twice: `named` tools are module-level functions a fresh interpreter imports; `forked` tools are
lambdas around them, which the sandbox can only run in a forked copy of the caller. Sandbox folders go under the
test's tmp_path, so any process a sandbox left behind is found by its working folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sandbox_tools

from qwen_tool.codec.types import ToolCall
from qwen_tool.env.suites import get_suite
from qwen_tool.tools import Executor, FeedbackCategory, Tool
from qwen_tool.tools.sandbox import SandboxedCall, SandboxLimits


@pytest.fixture
def sandbox_root(tmp_path, monkeypatch):
    """Where this test's sandbox folders are made."""
    root = tmp_path / "sandboxes"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture(params=["named", "forked"])
def make_tool(request):
    """Builds a sandboxed tool from a function of `sandbox_tools`, named or wrapped in a lambda."""

    def make(function):
        tool = Tool.from_callable(function)
        if request.param == "forked":
            tool = tool.with_handler(lambda **arguments: function(**arguments))
        return tool

    return make


def processes_working_in(root) -> list[int]:
    """Live processes whose working folder is under `root` (zombies have none and are not counted)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd.startswith(str(root)):
                found.append(int(entry))
    return found


def assert_no_process_left(root, grace_s: float = 2.0) -> None:
    """Killed processes may take a moment to be reaped by whoever inherits them; any still there after the grace
    period fail the test, and are killed so that they do not outlive it."""
    deadline = time.monotonic() + grace_s
    while processes_working_in(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = processes_working_in(root)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == []


def call(executor: Executor, tool: Tool, **arguments):
    return executor.execute([ToolCall(tool.name, arguments)], {tool.name: tool})[0]


def assert_caller_goes_on(executor: Executor) -> None:
    """The same executor still runs a well-behaved sandboxed tool."""
    outcome = call(executor, Tool.from_callable(sandbox_tools.read_environment), name="HOME")
    assert outcome.ok and outcome.result.startswith(tempfile.gettempdir())


def test_tool_that_sleeps_forever_is_killed_at_the_timeout(make_tool, sandbox_root):
    executor = Executor(timeout_s=1.0)
    start = time.monotonic()
    outcome = call(executor, make_tool(sandbox_tools.sleep_forever))
    assert time.monotonic() - start < 2.0
    assert outcome.category is FeedbackCategory.TOOL_INSTABILITY and outcome.error_type == "Timeout"
    assert_caller_goes_on(executor)
    assert_no_process_left(sandbox_root)


def test_tool_that_allocates_without_bound_is_stopped_by_the_memory_limit(make_tool, sandbox_root):
    executor = Executor(timeout_s=20, memory_limit_mb=64)
    outcome = call(executor, make_tool(sandbox_tools.allocate_without_bound))
    assert outcome.category is FeedbackCategory.TOOL_INSTABILITY
    assert outcome.error_type == "ResourceLimitExceeded" and "64 MiB" in outcome.error_message
    assert outcome.elapsed_s < 10
    assert_caller_goes_on(executor)
    assert_no_process_left(sandbox_root)


def test_tool_that_forks_children_and_hangs_leaves_no_process_behind(make_tool, sandbox_root):
    """The children (in the group, out of it, orphaned) are seen running before the timeout, and gone after it."""
    executor = Executor(timeout_s=3.0)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call, executor, make_tool(sandbox_tools.fork_children), hang=True)
        deadline = time.monotonic() + 3.0
        while len(glob.glob(f"{sandbox_root}/*/child-*")) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(glob.glob(f"{sandbox_root}/*/child-*")) == 3
        assert len(processes_working_in(sandbox_root)) >= 4  # the tool and its three children
        outcome = pending.result()
    assert outcome.category is FeedbackCategory.TOOL_INSTABILITY and outcome.error_type == "Timeout"
    assert_caller_goes_on(executor)
    assert_no_process_left(sandbox_root)


def test_children_of_a_tool_that_returns_do_not_outlive_the_call(make_tool, sandbox_root):
    outcome = call(Executor(timeout_s=10), make_tool(sandbox_tools.fork_children), hang=False)
    assert outcome.ok and outcome.result == "forked"
    assert_no_process_left(sandbox_root)


def test_tool_cannot_read_an_environment_secret(make_tool, sandbox_root, monkeypatch):
    monkeypatch.setenv("QWEN_TOOL_TEST_SECRET", "hunter2")
    executor = Executor(timeout_s=10)
    outcome = call(executor, make_tool(sandbox_tools.read_environment), name="QWEN_TOOL_TEST_SECRET")
    assert outcome.category is FeedbackCategory.CALL_FAILURE and outcome.error_type == "KeyError"
    # nor from /proc: a process started with the secret in its environment (as the caller may have been)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=dict(os.environ)) as holder:
        try:
            deadline = time.monotonic() + 5  # until the holder has exec'd, its environment reads empty
            while "hunter2" not in sandbox_tools.read_environment_of(holder.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert "hunter2" in sandbox_tools.read_environment_of(holder.pid)  # readable outside the sandbox
            outcome = call(executor, make_tool(sandbox_tools.read_environment_of), pid=holder.pid)
        finally:
            holder.kill()
    assert outcome.category is FeedbackCategory.CALL_FAILURE, outcome.content
    assert outcome.error_type in ("FileNotFoundError", "PermissionError")  # out of sight, or out of reach
    assert_caller_goes_on(executor)
    assert_no_process_left(sandbox_root)


def test_tool_cannot_write_outside_its_folder(make_tool, sandbox_root, tmp_path):
    executor = Executor(timeout_s=10)
    outside = tmp_path / "escaped.txt"
    outcome = call(executor, make_tool(sandbox_tools.write_file), path=str(outside))
    assert outcome.category is FeedbackCategory.CALL_FAILURE and outcome.error_type == "PermissionError"
    assert not outside.exists()
    inside = call(executor, make_tool(sandbox_tools.write_file), path="notes.txt")
    assert inside.ok
    workdir = inside.result["cwd"]
    assert workdir.startswith(str(sandbox_root)) and inside.result["files"] == ["notes.txt"]
    assert inside.result["home"] == inside.result["tmpdir"] == workdir
    assert not os.path.exists(workdir)  # removed after the call
    assert_no_process_left(sandbox_root)


def test_tool_printing_100_mb_neither_floods_nor_blocks_the_caller(make_tool, sandbox_root, capfd):
    limits = SandboxLimits()
    sandboxed = SandboxedCall("print_megabytes", make_tool(sandbox_tools.print_megabytes).handler,
                              {"megabytes": 100}, limits)
    raw = sandboxed.wait(30)
    assert raw.status == "ok" and raw.value == "printed"
    assert sandboxed.stdout.total == 100 * 1024 * 1024
    assert len(sandboxed.stdout.data) == limits.output_bytes
    assert capfd.readouterr().out == ""
    assert_caller_goes_on(Executor(timeout_s=10))
    assert_no_process_left(sandbox_root)


def test_tool_cannot_connect_to_a_server_on_127_0_0_1(make_tool, sandbox_root):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(0.2)
        tool = make_tool(sandbox_tools.connect)
        executor = Executor(timeout_s=10)
        outcome = call(executor, tool, port=port)
        assert outcome.category is FeedbackCategory.CALL_FAILURE
        assert outcome.error_type in ("PermissionError", "OSError"), outcome.content
        with pytest.raises(TimeoutError):
            server.accept()  # nothing reached the server
        trusted = call(Executor(timeout_s=10, isolate=False), tool, port=port)
        assert trusted.ok and trusted.result == "connected"  # the same tool outside the sandbox does connect
    assert_caller_goes_on(executor)
    assert_no_process_left(sandbox_root)


def test_results_come_back_as_json(make_tool, sandbox_root):
    """Nothing is unpickled: a tuple arrives as a JSON list, an object JSON cannot hold is an error."""
    executor = Executor(timeout_s=10)
    tool = make_tool(sandbox_tools.answer_with_tuple_and_object)
    assert call(executor, tool, as_object=False).result == [1, "two"]
    outcome = call(executor, tool, as_object=True)
    assert outcome.category is FeedbackCategory.OTHER and outcome.error_type == "UnserialisableResult"
    assert_no_process_left(sandbox_root)


@pytest.mark.parametrize(("how", "error_type", "category", "says"), [
    ("sys_exit", "SystemExit", FeedbackCategory.CALL_FAILURE, "3"),
    ("os_exit", "SandboxCrash", FeedbackCategory.TOOL_INSTABILITY, "exit code 3"),
    ("segfault", "SandboxCrash", FeedbackCategory.TOOL_INSTABILITY, "SIGSEGV"),
])
def test_tool_that_ends_its_process_is_a_failed_call(make_tool, sandbox_root, how, error_type, category, says):
    executor = Executor(timeout_s=10)
    outcome = call(executor, make_tool(sandbox_tools.end_the_process), how=how)
    assert outcome.category is category and outcome.error_type == error_type and says in outcome.error_message
    assert_caller_goes_on(executor)
    assert_no_process_left(sandbox_root)


def test_user_tools_are_sandboxed_by_default_and_builtin_suites_are_not():
    user_tool = Tool.from_callable(sandbox_tools.sleep_forever)
    suite_tool = get_suite("weather")(seed=0).tools()[0]
    assert Executor().sandboxes(user_tool) and not Executor().sandboxes(suite_tool)
    assert not Executor(isolate=False).sandboxes(user_tool)
    assert Executor(isolate=True).sandboxes(suite_tool)
    assert Executor(isolate=False).sandboxes(Tool.from_callable(sandbox_tools.sleep_forever, isolate=True))
