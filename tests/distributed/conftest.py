"""Launching two CPU processes with torchrun (gloo), so a hang fails a test instead of stalling the suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
HANG_TIMEOUT_S = 120
"""Seconds after which a two-process run counts as hung (runs here take 10-30 s on a busy 2-core machine)."""


def run_processes(
    args: Sequence[str],
    *,
    launcher: Sequence[str] | None = None,
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = HANG_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run `args` in 2 processes (default launcher: `torchrun --standalone --nproc_per_node 2`, CPU, gloo); fail the
    test, after killing every process of the launch, when it has not finished within `timeout_s`."""
    launcher = launcher or [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **(extra_env or {}),
    }
    with subprocess.Popen(
        [*launcher, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_tree(process.pid)
            output, _ = process.communicate()
            pytest.fail(
                f"the two-process run did not finish within {timeout_s:g} s (hung?): {' '.join(args)}\n{output[-4000:]}"
            )
    return subprocess.CompletedProcess(process.args, process.returncode, output, "")


def _kill_tree(pid: int) -> None:
    """SIGKILL the launcher and every process under it (torchrun starts each worker in a session of its own)."""
    import psutil

    launcher = psutil.Process(pid)
    for process in [*launcher.children(recursive=True), launcher]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


@pytest.fixture
def two_processes() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_processes


@pytest.fixture
def fresh_accelerator():
    """An `Accelerator` for one CPU process, whatever an earlier test left in accelerate's process-wide state (a
    Trainer's mixed precision, say); the state is cleared again afterwards."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield Accelerator(cpu=True)
    AcceleratorState._reset_state(reset_partial_state=True)
