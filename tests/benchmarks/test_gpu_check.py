"""benchmarks/gpu_check.sh starts on a machine without a GPU: its dry run parses the arguments, finds the carried
assets and the package, and lists the commands the GPU run would make; bad input is one line with the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def _run(tmp_path: Path, *args: str, assets: bool = True) -> subprocess.CompletedProcess[str]:
    carried = tmp_path / "carried"
    if assets:
        (carried / "model").mkdir(parents=True)
        (carried / "wheels").mkdir()
        for name in ("config.json", "tokenizer.json"):
            (carried / "model" / name).write_text("{}")
        (carried / "wheels" / "trl-1.16.0-py3-none-any.whl").write_bytes(b"")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_CHECK_ASSETS": str(carried),
        "OUT": str(tmp_path / "out"),
        "GPU_CHECK_WORK": str(tmp_path / "work"),
    }
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def test_the_dry_run_finds_the_assets_and_lists_every_step(tmp_path):
    result = _run(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"assets in {tmp_path / 'carried'} (1 wheels)" in result.stdout
    steps = {line.split(":")[0].strip() for line in result.stdout.splitlines() if line.startswith("  ")}
    assert steps == {"environment", "model", "data", "generate", "grpo_vllm", "sft_bf16"}
    assert "backend=vllm" in result.stdout and "precision=bf16" in result.stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()  # a dry run runs nothing


def test_missing_assets_say_how_to_prepare_them(tmp_path):
    result = _run(tmp_path, "--dry-run", assets=False)
    assert result.returncode == 1 and "fix: run benchmarks/gpu_check.sh --prepare" in result.stderr


def test_an_unknown_argument_is_refused_with_the_usage(tmp_path):
    result = _run(tmp_path, "--fast")
    assert result.returncode == 2 and "unknown argument '--fast'; fix: usage:" in result.stderr
