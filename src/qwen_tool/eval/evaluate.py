"""`qwen-tool eval`: check what was asked before any model loads, run the chosen suite, print its summary.

The suites: `bfcl` (single-turn categories, and multi_turn_base through ToolEnv), `internal` (held-out trajectories),
`tasks` (held-out multi-turn tasks through ToolEnv) and `robustness` (the internal suite under RoTBench noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qwen_tool import QwenToolError
from qwen_tool.codec.base import check_tool_rendering
from qwen_tool.eval.bfcl_single_turn import check_categories
from qwen_tool.eval.generation import Backend, load_backend
from qwen_tool.eval.report import write_report
from qwen_tool.eval.robustness import run_robustness
from qwen_tool.eval.runner import read_held_out, read_tasks, run_bfcl, run_internal, run_internal_tasks
from qwen_tool.models import DEFAULT_MODEL, check_model_name

SUITES = ("bfcl", "internal", "tasks", "robustness")


@dataclass(frozen=True)
class EvalRequest:
    """One `qwen-tool eval` run, as its options gave it."""

    model: str = DEFAULT_MODEL
    suite: str = "bfcl"
    data: Path | None = None
    """Held-out JSONL for the internal, tasks and robustness suites."""
    seed: int = 0
    """Noise seed of the robustness suite."""
    categories: list[str] | None = None
    """BFCL categories (None: every single-turn category)."""
    limit: int | None = None
    """First N entries (id order) per category."""
    out_dir: Path | None = None
    """Run directory (None: results/<model>-<suite>)."""
    batch_size: int = 8
    max_new_tokens: int | None = None
    """Cap per answer (None: 160, 384 for parallel BFCL categories, 256 for the other suites)."""
    backend: str = "auto"
    prefill_dtype: str = "auto"
    threads: int = 0
    """torch CPU threads (0: torch's default)."""
    guided: bool = False
    tool_rendering: str | None = None

    @property
    def label(self) -> str:
        return Path(self.model).name or self.model

    @property
    def run_dir(self) -> Path:
        return self.out_dir or Path("results") / f"{self.label}-{self.suite}"

    def check(self) -> None:
        """Everything a user typed, checked before the model loads (seconds), not after it (a minute or more)."""
        if self.suite not in SUITES:
            raise QwenToolError(f"unknown suite {self.suite!r}; fix: use --suite bfcl, internal, tasks or robustness")
        if self.guided and self.suite in ("tasks", "robustness"):
            raise QwenToolError(f"--guided covers --suite bfcl and internal, not {self.suite}; fix: drop --guided")
        if self.suite != "bfcl" and self.data is None:
            raise QwenToolError(f"--suite {self.suite} needs --data PATH; fix: pass the held-out JSONL from "
                                "`qwen-tool data synth --eval-out` (tasks: the main job's data/internal_tasks.jsonl)")
        if self.suite == "bfcl" and self.categories:
            check_categories(self.categories)
        if self.data is not None:
            (read_tasks if self.suite == "tasks" else read_held_out)(self.data)
        check_model_name(self.model)
        if self.tool_rendering is not None:
            check_tool_rendering(self.tool_rendering)


def evaluate(request: EvalRequest, out: Console) -> None:
    """Check `request`, run its suite (writing outcomes, metrics and the report into its run directory) and print
    the summary table to `out`."""
    request.check()
    if request.threads:
        import torch

        torch.set_num_threads(request.threads)
    generator = load_backend(request.model, request.backend, prefill_dtype=request.prefill_dtype)
    if request.suite == "robustness":
        _robustness(request, generator, out)
    elif request.suite in ("internal", "tasks"):
        _internal(request, generator, out)
    else:
        _bfcl(request, generator, out)


def _robustness(request: EvalRequest, generator: Backend, out: Console) -> None:
    assert request.data is not None
    run_dir = request.run_dir
    result = run_robustness(request.model, request.data, run_dir, backend=generator, batch_size=request.batch_size,
                            limit=request.limit, max_new_tokens=request.max_new_tokens or 256, seed=request.seed,
                            tool_rendering=request.tool_rendering)
    table = Table(title=f"{request.label}: internal suite under RoTBench noise (seed {request.seed})")
    for column in ("level", "TS %", "PI %", "CF %", "n"):
        table.add_column(column)
    for level, scores in result["levels"].items():
        table.add_row(level, *[f"{100 * scores[k]:.1f}" for k in ("TS", "PI", "CF")], str(scores["n"]))
    out.print(table)
    out.print(f"table: {run_dir / 'robustness.md'}; chart: {run_dir / 'robustness.png'}")


def _internal(request: EvalRequest, generator: Backend, out: Console) -> None:
    assert request.data is not None
    run_dir, internal = request.run_dir, request.suite == "internal"
    runner = run_internal if internal else run_internal_tasks
    guidance = {"guided": request.guided} if internal else {}  # multi-turn tasks decode freely
    result = runner(request.model, request.data, run_dir, backend=generator, batch_size=request.batch_size,
                    limit=request.limit, max_new_tokens=request.max_new_tokens or 256,
                    tool_rendering=request.tool_rendering, **guidance)
    table = Table(title=f"{request.label}: internal held-out {'suite' if internal else 'multi-turn tasks'}")
    for column in ("metric", "%"):
        table.add_column(column)
    for key, value in result["summary"].items():
        average = key in ("average_calls", "average_steps")
        table.add_row(key, f"{value:.2f}" if average else f"{100 * value:.1f}")
    out.print(table)
    if result.get("error_categories"):
        out.print("misses by kind: " + ", ".join(f"{k} {n}" for k, n in result["error_categories"].items()))
    out.print(f"outcomes: {run_dir / 'outcomes.jsonl'}")


def _bfcl(request: EvalRequest, generator: Backend, out: Console) -> None:
    run_dir, label = request.run_dir, request.label
    metrics = run_bfcl(request.model, request.categories, request.limit, run_dir, backend=generator,
                       batch_size=request.batch_size, max_new_tokens=request.max_new_tokens, guided=request.guided,
                       tool_rendering=request.tool_rendering)
    report = write_report(run_dir, {label: metrics}, title=f"{label} on BFCL",
                          outcomes={label: run_dir / "outcomes.jsonl"})
    table = Table(title=f"{label}: BFCL accuracy")
    for column in ("category", "n", "accuracy %"):
        table.add_column(column)
    for category, stats in metrics["categories"].items():
        table.add_row(category, str(stats["n"]), f"{100 * stats['accuracy']:.1f}")
    table.add_row("mean", str(metrics["summary"]["examples"]),
                  f"{100 * metrics['summary']['overall_accuracy_unweighted']:.1f}")
    out.print(table)
    out.print(f"report: {report}")


__all__ = ["SUITES", "EvalRequest", "evaluate"]
