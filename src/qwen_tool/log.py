"""One rich console and one logger for the whole package, so every command logs the same way."""

from __future__ import annotations

import logging as _logging  # the standard library's

from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True)
"""Console for progress and log lines (stderr, so stdout stays clean for machine-readable output)."""

logger = _logging.getLogger("qwen_tool")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Route the package logger through rich; `--verbose` shows debug lines, `--quiet` only warnings."""
    level = _logging.DEBUG if verbose else _logging.WARNING if quiet else _logging.INFO
    logger.handlers.clear()
    logger.addHandler(RichHandler(console=console, show_path=False, show_time=False, markup=False))
    logger.setLevel(level)
    logger.propagate = False
    # transformers and friends are chatty at INFO; keep them at warnings unless debugging.
    for name in ("transformers", "datasets", "accelerate", "trl", "peft"):
        _logging.getLogger(name).setLevel(_logging.DEBUG if verbose else _logging.WARNING)
