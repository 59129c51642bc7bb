"""RL checkpoints: accelerate's state of the models and optimisers, plus the loop's own state (step, value
pre-training done, curriculum, task-draw RNG) in a JSON file written last."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_tool.checkpoints import complete_checkpoints
from qwen_tool.files import write_json
from qwen_tool.log import logger
from qwen_tool.rl.task_pool import Curriculum

STATE_FILE = "rl_state.json"


@dataclass
class LoopState:
    """Where the loop stands: optimiser steps taken and value pre-training steps done."""

    step: int = 0
    value_pretrain_done: int = 0


def save_checkpoint(accelerator: Any, output_dir: Path, state: LoopState, curriculum: Curriculum,
                    rng: random.Random, keep: int) -> None:
    path = output_dir / f"checkpoint-{state.step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        write_json(path / STATE_FILE, {"step": state.step, "value_pretrain_done": state.value_pretrain_done,
                                       "curriculum": curriculum.state(), "rng": rng.getstate()}, indent=1)
        for old in complete_checkpoints(output_dir, STATE_FILE)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def resume_from_last(accelerator: Any, output_dir: Path, curriculum: Curriculum, rng: random.Random) -> LoopState:
    """Load the last complete checkpoint into the prepared models, `curriculum` and `rng`; its loop state (a fresh
    one, with a warning, when there is none)."""
    checkpoints = complete_checkpoints(output_dir, STATE_FILE, warn_partial=True)
    if not checkpoints:
        logger.warning("--resume given but %s has no checkpoint; starting from the beginning", output_dir)
        return LoopState()
    accelerator.load_state(str(checkpoints[-1]))
    saved = json.loads((checkpoints[-1] / STATE_FILE).read_text())
    curriculum.load(saved["curriculum"])
    rng.setstate(_tuple_state(saved["rng"]))
    logger.info("Resumed from %s (step %d)", checkpoints[-1], saved["step"])
    return LoopState(saved["step"], saved["value_pretrain_done"])


def _tuple_state(state: Any) -> Any:
    """JSON turned random.getstate()'s tuples into lists; turn them back."""
    return tuple(_tuple_state(s) for s in state) if isinstance(state, list) else state
