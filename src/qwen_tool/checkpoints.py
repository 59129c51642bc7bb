"""A run's saved `checkpoint-N` folders: which ones finished saving, for resuming and for pruning old ones."""

from __future__ import annotations

from pathlib import Path

from qwen_tool.log import logger

PREFIX = "checkpoint-"


def complete_checkpoints(output_dir: str | Path, state_file: str, warn_partial: bool = False) -> list[Path]:
    """The `checkpoint-N` folders of `output_dir` whose save finished, oldest (smallest N) first.

    A trainer writes `state_file` last, so a save cut short (a full disk, a kill) leaves a folder without it; resuming
    there would restart the step count on loaded weights. Such folders are passed over, each named in a warning when
    `warn_partial` (on `--resume`).
    """
    found = sorted((path for path in Path(output_dir).glob(f"{PREFIX}*")
                    if path.is_dir() and path.name.removeprefix(PREFIX).isdigit()),
                   key=lambda path: int(path.name.removeprefix(PREFIX)))
    complete = [path for path in found if (path / state_file).is_file()]
    if warn_partial:
        for partial in found:
            if partial not in complete:
                logger.warning("%s has no %s: its save was cut short, so --resume passes over it", partial,
                               state_file)
    return complete


__all__ = ["complete_checkpoints"]
