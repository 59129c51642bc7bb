"""The step log of an RL run: a rich table line per logged step, `metrics.jsonl`, and TensorBoard when installed."""

from __future__ import annotations

import json
from pathlib import Path

from qwen_tool.files import atomic_write
from qwen_tool.log import console, logger


class StepLogger:
    """A rich table line per logged step, `metrics.jsonl`, and TensorBoard when it is installed."""

    COLUMNS = {"reward": "reward", "success_rate": "success", "call_rate": "call", "failure_rate": "fail",
               "kl": "kl", "entropy": "entropy", "clip_fraction": "clip", "response_length": "length",
               "calls_per_episode": "calls/ep", "sft_nll": "sft", "seconds": "s",
               "seconds/rollouts": "rollout s"}

    def __init__(self, output_dir: Path, enabled: bool, start_step: int = 0) -> None:
        """`start_step`: the step the run starts after (a resumed checkpoint's, else 0). Lines of later steps, left
        by the run that wrote the checkpoint and went on before it stopped, are dropped, so each step has one line."""
        self.enabled = enabled
        self.file = output_dir / "metrics.jsonl"
        self.writer = None
        if enabled and self.file.exists():
            kept = [line for line in self.file.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= start_step]
            with atomic_write(self.file) as fh:
                fh.write("".join(line + "\n" for line in kept))
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(output_dir / "tensorboard"))
            except ImportError:
                logger.debug("tensorboard is not installed; logging to metrics.jsonl only")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.file.open("a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("step", "stage", *self.COLUMNS.values()):
            table.add_column(column, justify="right")
        table.add_row(str(step), str(int(metrics.get("stage", 0))),
                      *(f"{metrics[c]:.3g}" if c in metrics else "-" for c in self.COLUMNS))
        console.print(table)
        errors = {k.removeprefix("category/"): v for k, v in metrics.items() if k.startswith("category/")}
        parts = {k.removeprefix("reward/"): v for k, v in metrics.items() if k.startswith("reward/")}
        console.print(f"  categories {json.dumps({k: round(v, 3) for k, v in errors.items()})}", highlight=False)
        console.print(f"  reward parts {json.dumps({k: round(v, 3) for k, v in parts.items()})}", highlight=False)


