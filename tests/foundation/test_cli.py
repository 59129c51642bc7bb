"""The CLI: help on every command, one-line errors with a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from qwen_tool.cli import app

runner = CliRunner()


def command_paths(group=None, prefix=()):
    """Every registered command path, e.g. ("models", "pull")."""
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from command_paths(command, (*prefix, name))


@pytest.mark.parametrize("path", sorted(command_paths()), ids=" ".join)
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_models_list_and_info():
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert "smollm2-135m-instruct" in result.output
    result = runner.invoke(app, ["models", "info", "smollm2-135m-instruct", "--json"])
    assert result.exit_code == 0
    assert '"tool_format": "hermes"' in result.output


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "qwen_tool.cli", *args], capture_output=True, text=True)


def test_user_error_is_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("promptt: hi\n")
    result = run_cli("generate", "--config", str(bad))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(bad) in lines[0] and "'promptt'" in lines[0] and "did you mean 'prompt'" in lines[0]

    result = run_cli("models", "pull", "no-such-model")
    assert result.returncode == 1
    assert "not a built-in model" in result.stderr


def test_usage_error_exit_code():
    assert run_cli("no-such-command").returncode == 2
