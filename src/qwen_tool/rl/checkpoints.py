"""RL checkpoints: accelerate's state of the models and optimisers, plus the loop's own state (step, value
pre-training done, curriculum, each process's task-draw RNG) in a JSON file written last, by the main process."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.checkpoints import complete_checkpoints
from qwen_tool.files import write_json
from qwen_tool.log import logger
from qwen_tool.rl.distributed import gather_objects
from qwen_tool.rl.task_pool import Curriculum

STATE_FILE = "rl_state.json"


@dataclass
class LoopState:
    """Where the loop stands: optimiser steps taken and value pre-training steps done."""

    step: int = 0
    value_pretrain_done: int = 0


def save_checkpoint(accelerator: Any, output_dir: Path, state: LoopState, curriculum: Curriculum,
                    rng: random.Random, keep: int) -> None:
    """Run by every process (the models' state and the RNG states are gathered from each)."""
    path = output_dir / f"checkpoint-{state.step}"
    accelerator.save_state(str(path))
    rng_by_process = gather_objects(rng.getstate())
    if accelerator.is_main_process:
        write_json(path / STATE_FILE, {"step": state.step, "value_pretrain_done": state.value_pretrain_done,
                                       "curriculum": curriculum.state(), "rng_by_process": rng_by_process}, indent=1)
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
    rng.setstate(_tuple_state(own_rng_state(saved, accelerator.process_index)))
    logger.info("Resumed from %s (step %d)", checkpoints[-1], saved["step"])
    return LoopState(saved["step"], saved["value_pretrain_done"])


def own_rng_state(saved: dict[str, Any], process_index: int) -> Any:
    """This process's task-draw RNG state from a checkpoint's state file (checkpoints written before multi-process
    runs hold one state, under "rng")."""
    states = saved.get("rng_by_process") or [saved["rng"]]
    if process_index >= len(states):
        raise QwenToolError(f"the checkpoint holds the RNG states of {len(states)} processes, and this is process "
                            f"{process_index}; fix: resume with the number of processes that wrote it")
    return states[process_index]


def _tuple_state(state: Any) -> Any:
    """JSON turned random.getstate()'s tuples into lists; turn them back."""
    return tuple(_tuple_state(s) for s in state) if isinstance(state, list) else state
