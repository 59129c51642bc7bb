"""`qwen-tool ablate`: TL-Training's ablation from one recipe, every cell against standard SFT with its interval.

The cells switch the paper's components on one at a time: standard SFT, +MAE, +PKT, +MAE+PKT, +IRM (RL with the
error-category reward on the standard SFT model) and full TL-Training (RL on the MAE+PKT model). They share the
recipe's synthesized data and evaluation; seeds change only training (`sft.seed`, `rl.seed`). Each cell at each seed
is a run directory `<out>/<cell>/seed-<k>/` whose stages resume and refuse stale results as the main job's do, so a
killed ablation continues where it stopped. Every cell is then compared with standard SFT item by item
(`eval.compare`: a paired bootstrap over items, hierarchical over seeds), and the table goes to `ablation.json` and
`ablation.md`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from qwen_tool import QwenToolError, did_you_mean
from qwen_tool.config import PipelineConfig, to_dict
from qwen_tool.cost import JobProjection, rl_seconds
from qwen_tool.files import write_json, write_text
from qwen_tool.log import logger
from qwen_tool.pipeline import Run, evaluate, project_job, stage_settings, synthesize_data, training_suites


@dataclass(frozen=True)
class Cell:
    """One row of the ablation: which of TL-Training's components it switches on."""

    name: str
    """Its name on the command line (`--cells`) and its folder."""
    label: str
    """Its row in the table."""
    mae: bool
    pkt: bool
    irm: bool
    """RL with the error-category reward (`rl.rewards.irm`), from the SFT model with the same MAE and PKT."""

    @property
    def sft_cell(self) -> str:
        """The SFT-only cell whose model this cell is (SFT cells) or starts RL from (RL cells)."""
        return next(c.name for c in CELLS.values() if not c.irm and (c.mae, c.pkt) == (self.mae, self.pkt))


CELLS = {
    cell.name: cell
    for cell in (
        Cell("sft", "standard SFT", mae=False, pkt=False, irm=False),
        Cell("mae", "+MAE", mae=True, pkt=False, irm=False),
        Cell("pkt", "+PKT", mae=False, pkt=True, irm=False),
        Cell("mae-pkt", "+MAE+PKT", mae=True, pkt=True, irm=False),
        Cell("irm", "+IRM", mae=False, pkt=False, irm=True),
        Cell("tl", "TL-Training", mae=True, pkt=True, irm=True),
    )
}
"""The rows of TL-Training's ablation, in the paper's order."""
REFERENCE = "sft"
"""The cell every other is compared with; always run."""

SET_BY_ABLATE = {
    "sft.mae": "choose the cells with --cells",
    "sft.pkt": "choose the cells with --cells",
    "sft.seed": "pass the seeds with --seeds",
    "rl.seed": "pass the seeds with --seeds",
    "rl_enabled": "the cells irm and tl run RL; choose them with --cells",
    "run_dir": "pass the ablation's folder with --out",
}
"""Recipe keys the ablation sets per cell (a recipe's own values for them are not used): an override of one would be
ignored, so it is rejected with the option that does the job."""


def check_overrides(overrides: Sequence[str]) -> None:
    """Reject `key=value` overrides of keys the ablation sets itself."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in SET_BY_ABLATE:
            raise QwenToolError(
                f"override {item!r}: ablate sets {key} for each cell itself; fix: drop it and {SET_BY_ABLATE[key]}"
            )


def parse_seeds(option: str | None, more: Sequence[str] = ()) -> list[int]:
    """Seeds from `--seeds 0,1,2` or `--seeds 0 1 2` (the option keeps the first value; the command line's bare
    integers after it arrive in `more`); default [0]."""
    if option is None:
        if more:
            raise QwenToolError(
                f"{' '.join(more)}: bare numbers are seeds only after --seeds; fix: write --seeds {' '.join(more)}"
            )
        return [0]
    texts = [t.strip() for t in option.split(",") if t.strip()] + [t.strip() for t in more]
    if not texts or not all(t.isdigit() for t in texts):
        raise QwenToolError(f"--seeds {option}: seeds are whole numbers of 0 or more; fix: e.g. --seeds 0 1 2")
    seeds = [int(t) for t in texts]
    if len(set(seeds)) != len(seeds):
        raise QwenToolError(f"--seeds {' '.join(texts)} names a seed twice; fix: give each seed once")
    return seeds


def parse_cells(option: str | None) -> list[str]:
    """Cell names from `--cells mae,irm` (default: all), the reference first, then the paper's order."""
    names = [n.strip() for n in option.split(",") if n.strip()] if option else list(CELLS)
    for name in names:
        if name not in CELLS:
            raise QwenToolError(
                f"--cells: unknown cell {name!r}; fix: {did_you_mean(name, CELLS)}choose from {', '.join(CELLS)}"
            )
    chosen = [name for name in CELLS if name in names or name == REFERENCE]
    if len(chosen) < 2:
        raise QwenToolError(
            f"--cells {option}: names only the reference ({REFERENCE}), which leaves nothing to "
            "compare; fix: add a cell, e.g. --cells sft,mae"
        )
    return chosen


@dataclass(frozen=True)
class CellRun:
    """One cell at one seed: its recipe and where it trains and evaluates."""

    cell: Cell
    seed: int
    config: PipelineConfig
    """The recipe with the cell's switches (sft.mae, sft.pkt) and the seed (sft.seed, rl.seed)."""
    root: Path
    """`<out>/<cell>/seed-<k>`: its stages, its RL model and its evaluation (`eval/`)."""
    sft_root: Path
    """Where its SFT model trains: its own root, or (RL cells) that of its SFT cell at the same seed, shared."""

    @property
    def name(self) -> str:
        return f"{self.cell.name}/seed-{self.seed}"

    def stages(self) -> list[tuple[Path, str, dict[str, Any]]]:
        """(run directory, stage, settings it depends on) of each stage this cell needs, in order."""
        made = stage_settings(self.config)
        stages = [(self.sft_root, "sft", made["sft"])]
        if self.cell.irm:
            stages.append((self.root, "rl", made["rl"]))
        stages.append((self.root, "eval", made["rl_eval" if self.cell.irm else "trained_eval"]))
        return stages


def plan_cells(cfg: PipelineConfig, cells: Sequence[str], seeds: Sequence[int], out: Path) -> list[CellRun]:
    """Every cell at every seed, seed by seed (the first seed's table is complete first), each with its recipe.
    Cells whose settings make no sense for `cfg` are rejected here, before anything runs."""
    chosen = [CELLS[name] for name in cells]
    if len(cfg.eval.decoding) > 1 or cfg.eval.name:
        raise QwenToolError(
            f"an ablation evaluates every cell once, under one decoding, and eval.decoding is {cfg.eval.decoding} "
            f"with eval.name {cfg.eval.name!r}; fix: set eval.decoding to one of them and leave eval.name out"
        )
    if any(c.pkt for c in chosen) and cfg.sft.w_max <= 1:
        raise QwenToolError(
            f"sft.w_max is {cfg.sft.w_max}, so PKT weighs every token 1 and the PKT cells would train "
            "standard SFT again; fix: set sft.w_max above 1 (the paper: 9), or leave the cells pkt, "
            "mae-pkt and tl out of --cells"
        )
    if any(c.irm for c in chosen):
        if cfg.rl.rewards.irm <= 0:
            raise QwenToolError(
                f"rl.rewards.irm is {cfg.rl.rewards.irm}, so the RL cells would train without the "
                "error-category reward they test; fix: set rl.rewards.irm=1, or leave the cells irm "
                "and tl out of --cells"
            )
        rl_suites(cfg)  # every suite held out for evaluation is an error, named before anything trains
    runs = []
    for seed in seeds:
        for cell in chosen:
            config = replace(
                cfg, sft=replace(cfg.sft, mae=cell.mae, pkt=cell.pkt, seed=seed), rl=replace(cfg.rl, seed=seed)
            )
            runs.append(
                CellRun(cell, seed, config, out / cell.name / f"seed-{seed}", out / cell.sft_cell / f"seed-{seed}")
            )
    return runs


def rl_suites(cfg: PipelineConfig) -> list[str]:
    """The RL cells' multi-turn suites: the recipe's, less those held out for evaluation (none when it names none)."""
    return training_suites(cfg) if cfg.rl.suites else []


def check_mae_data(runs: Sequence[CellRun], train: str) -> None:
    """MAE cells need erroneous assistant turns in the training data; without them they train what the cell without
    MAE trains."""
    if not any(run.cell.mae for run in runs):
        return
    from qwen_tool.data.schema import read_any

    trajectories, _ = read_any(train, skip_invalid=True)
    if not any(m.get("erroneous") for t in trajectories for m in t["messages"] if m.get("role") == "assistant"):
        raise QwenToolError(
            f"{train} holds no erroneous assistant turn, so MAE masks nothing and the MAE cells would "
            "repeat the cells without it; fix: give data.mix an error_recovery share (as "
            "configs/main-smollm2-cpu.yaml does), or leave the cells mae, mae-pkt and tl out of "
            "--cells"
        )


def rl_prompt_tokens(cfg: PipelineConfig, train: str, sample: int = 64) -> float:
    """Mean token length of an RL task's prompt (a training trajectory up to its first assistant turn, rendered as the
    SFT model is prompted), over `sample` trajectories spread over the file."""
    from qwen_tool.codec.chat import render_prompt
    from qwen_tool.data.schema import read_any
    from qwen_tool.models import load_tokenizer
    from qwen_tool.sft.trainer import sft_codec

    trajectories, _ = read_any(train, skip_invalid=True)
    tokenizer = load_tokenizer(cfg.model)
    codec = sft_codec(replace(cfg.sft, model=cfg.model))
    lengths = []
    for trajectory in trajectories[:: max(1, len(trajectories) // sample)]:
        messages = trajectory["messages"]
        first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
        prompt = render_prompt(tokenizer, messages[:first], trajectory.get("tools"), codec)
        lengths.append(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
    return sum(lengths) / max(1, len(lengths))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


HEADLINE = (("internal", "TS"), ("internal", "PI"), ("internal", "CF"), ("internal_tasks", "end state reached"))
"""The table's columns after the BFCL ones (each recipe category and their mean): the held-out internal suite and its
multi-turn tasks. Every other metric is in `ablation.json` and each cell's paired report."""


def stage_key(out: Path, root: Path, stage: str) -> str:
    """A stage's name in the ablation's projection: its run folder under `out`, then the stage (`mae/seed-0/sft`)."""
    return f"{root.relative_to(out).as_posix()}/{stage}"


@dataclass
class Ablation:
    """A planned ablation over its shared data, with the projected cost of every stage still to run."""

    cfg: PipelineConfig
    out: Path
    runs: list[CellRun]
    seeds: list[int]
    data: dict[str, Any]
    projection: JobProjection
    resamples: int = 10_000
    comparisons: dict[str, Any] = field(default_factory=dict)
    """cell name → its `eval.compare.Comparison` with the reference (filled by `run`)."""

    def key(self, root: Path, stage: str) -> str:
        return stage_key(self.out, root, stage)

    def pending(self, run: CellRun) -> list[str]:
        return [
            self.key(root, stage)
            for root, stage, _ in run.stages()
            if self.key(root, stage) not in self.projection.took
        ]

    def plan_table(self) -> Table:
        """The cells with their switches and what each still costs on this machine, and the total."""
        table = Table(
            title=f"Ablation in {self.out}: {len(self.runs)} cell runs, every cell against standard SFT",
            box=box.SIMPLE_HEAD,
            caption=self._caption(),
        )
        for number, column in enumerate(("cell", "seed", "MAE", "PKT", "RL (IRM)", "to run", "projected")):
            table.add_column(column, justify="right" if number == 6 else "left")
        counted: set[str] = set()
        for run in self.runs:
            todo = [k for k in self.pending(run) if k not in counted]
            counted.update(todo)
            seconds = sum(self.projection.projected.get(k, 0.0) for k in todo)
            table.add_row(
                run.cell.label,
                str(run.seed),
                *("yes" if on else "–" for on in (run.cell.mae, run.cell.pkt, run.cell.irm)),
                ", ".join(k.rsplit("/", 1)[1] for k in todo) or "done",
                _minutes(seconds) if todo else "–",
            )
        return table

    def _caption(self) -> str:
        left = self.projection.remaining_s()
        done = sum(s for k, s in self.projection.took.items())
        rates = self.projection.rates
        probe = (
            ""
            if rates is None
            else (
                f"; from a probe of this machine (training {rates.train_tokens_per_s:.0f} "
                f"tokens/s, a decode step of {rates.decode_batch} rows "
                f"{1000 * rates.decode_step_s:.0f} ms)"
            )
        )
        return (
            f"projected to go: {_minutes(left)}; done before: {_minutes(done)}{probe}; RL projected at most "
            "(every turn to its cap, every round played)"
        )

    def run(self) -> AblationTable:
        """Train and evaluate every cell still to run, with a progress line per cell, then compare and write the
        table."""
        for number, cell_run in enumerate(self.runs, 1):
            todo = self.pending(cell_run)
            if not todo:
                logger.info(
                    "Cell %d/%d %s, seed %d: complete", number, len(self.runs), cell_run.cell.label, cell_run.seed
                )
            else:
                parts = ", ".join(
                    f"{k.rsplit('/', 1)[1]} {_minutes(self.projection.projected.get(k, 0.0))}" for k in todo
                )
                logger.info(
                    "Cell %d/%d %s, seed %d: projected %s (%s); the ablation has %s to go",
                    number,
                    len(self.runs),
                    cell_run.cell.label,
                    cell_run.seed,
                    _minutes(sum(self.projection.projected.get(k, 0.0) for k in todo)),
                    parts,
                    _minutes(self.projection.remaining_s()),
                )
            self._run_cell(cell_run)
        return self.compare()

    def _stage(self, root: Path, name: str, settings: dict[str, Any], work: Any) -> dict[str, Any]:
        key = self.key(root, name)
        run = Run(root)
        if key not in self.projection.took:
            self.projection.log_start(key)
        result = run.stage(name, work, settings)
        if key not in self.projection.took:
            self.projection.finish(key, run.seconds()[name])
            write_json(self.out / "projection.json", self.projection.as_dict())
        return result

    def _run_cell(self, cell_run: CellRun) -> None:
        from qwen_tool.hardware import resolve_precision
        from qwen_tool.sft.trainer import train_sft

        cfg = cell_run.config
        (sft_root, _, sft_settings), *rest = cell_run.stages()
        sft_cfg = replace(cfg.sft, model=cfg.model, data=self.data["train"], output_dir=str(sft_root / "sft"))
        sft = self._stage(
            sft_root,
            "sft",
            sft_settings,
            lambda: {
                "model": str(train_sft(sft_cfg, resume=True)),
                "precision": resolve_precision(sft_cfg.precision, "SFT").describe(),
            },
        )
        model = sft["model"]
        for root, stage, settings in rest:
            if stage == "rl":
                model = self._stage(root, "rl", settings, lambda m=model: {"model": str(self._train_rl(cell_run, m))})[
                    "model"
                ]
            else:
                self._stage(
                    root,
                    "eval",
                    settings,
                    lambda m=model, r=root: evaluate(
                        m,
                        r / "eval",
                        cfg,
                        dict(cfg.eval.limits),
                        self.data["internal_eval"],
                        internal_tasks=self.data.get("internal_tasks"),
                        guided=cfg.eval.decoding == ["guided"],
                    ),
                )

    def _train_rl(self, cell_run: CellRun, sft_model: str) -> Path:
        from qwen_tool.data.schema import read_any
        from qwen_tool.rl.trainer import train_rl

        cfg = cell_run.config
        rl_cfg = replace(
            cfg.rl,
            model=sft_model,
            data=self.data["train"],
            output_dir=str(cell_run.root / "rl"),
            suites=rl_suites(cfg),
        )
        return train_rl(rl_cfg, read_any(rl_cfg.data)[0], resume=True)

    def compare(self) -> AblationTable:
        """Each cell against standard SFT over the same items (`eval.compare.compare_runs`, seeds of a side pooled by
        the hierarchical bootstrap), then `ablation.json` and `ablation.md`."""
        from qwen_tool.eval.compare import compare_runs

        def evals(cell: str) -> list[Path]:
            return [run.root / "eval" for run in self.runs if run.cell.name == cell]

        cells = list(dict.fromkeys(run.cell.name for run in self.runs))
        for cell in cells[1:]:
            self.comparisons[cell] = compare_runs(
                evals(REFERENCE), evals(cell), self.out / "compare" / cell, resamples=self.resamples, seed=0
            )
        table = AblationTable(self, cells)
        table.write()
        return table


def prepare_ablation(
    cfg: PipelineConfig, cells: Sequence[str], seeds: Sequence[int], out: str | Path, resamples: int = 10_000
) -> Ablation:
    """Plan the cells, synthesize the shared data (seconds), check every completed stage against its settings and
    project what is left on this machine: everything `--dry-run` shows, nothing trained."""
    if resamples < 100:
        raise QwenToolError(f"--resamples {resamples} is too few for a 95% interval; fix: pass 1000 or more")
    out = Path(out)
    runs = plan_cells(cfg, cells, seeds, out)
    root = Run(out)
    write_json(out / "recipe.json", to_dict(cfg))
    data = root.stage("data", lambda: synthesize_data(cfg, root), stage_settings(cfg)["held_out"])  # both sets
    check_mae_data(runs, data["train"])
    done: dict[str, float] = {}
    pending: dict[str, str] = {}
    for run in runs:
        for stage_root, stage, settings in run.stages():
            key = stage_key(out, stage_root, stage)
            marker = stage_root / "stages" / f"{stage}.json"  # looked up without creating a cell's folder
            if marker.is_file() and Run(stage_root).completed(stage, settings):  # a stale one stops here, up front
                done[key] = Run(stage_root).seconds()[stage]
            else:
                pending[key] = stage
    projection = JobProjection({}, done)
    if pending:
        job = project_job(cfg, root, data)
        per_stage = {"sft": job.projected["sft"], "eval": job.projected["trained_eval"]}
        if "rl" in pending.values() and job.rates is not None:
            rl = cfg.rl
            rounds = rl.max_turns if rl_suites(cfg) and rl.multi_turn_share > 0 else 1
            per_stage["rl"] = rl_seconds(
                rl.steps,
                rl.prompts_per_step * rl.samples_per_prompt,
                rl_prompt_tokens(cfg, data["train"]),
                rl.max_new_tokens,
                rounds,
                rl.epochs_per_step,
                rl.kl_coef > 0,
                job.rates,
            )
        projection = JobProjection({key: per_stage.get(stage, 0.0) for key, stage in pending.items()}, done, job.rates)
    write_json(out / "projection.json", projection.as_dict())
    return Ablation(cfg, out, runs, list(seeds), data, projection, resamples)


class AblationTable:
    """Every cell's headline metrics against standard SFT: the value (mean ± sd over seeds) and the paired difference
    with its 95% interval, n.s. where it is not significant."""

    def __init__(self, ablation: Ablation, cells: list[str]) -> None:
        self.ablation = ablation
        self.cells = cells
        self.json_path: Path | None = None
        self.markdown_path: Path | None = None
        first = next(iter(ablation.comparisons.values()))
        present = {(m.section, m.metric) for m in first.metrics}
        bfcl = [("bfcl", f"{c} accuracy") for c in ablation.cfg.eval.categories] + [("bfcl", "mean over categories")]
        self.columns = [key for key in (*bfcl, *HEADLINE) if key in present]

    @staticmethod
    def _title(section: str, metric: str) -> str:
        short = metric.removesuffix(" accuracy").replace("mean over categories", "mean")
        return {"bfcl": f"BFCL {short}", "internal": f"internal {short}", "internal_tasks": f"tasks {short}"}[section]

    def _metric(self, cell: str, key: tuple[str, str]) -> Any:
        """The comparison row of `key` for `cell` (the reference's values are side A of any comparison), or None."""
        comparisons = self.ablation.comparisons
        comparison = next(iter(comparisons.values())) if cell == REFERENCE else comparisons[cell]
        return next((m for m in comparison.metrics if (m.section, m.metric) == key), None)

    def entries(self) -> list[list[tuple[str, str, bool]]]:
        """Per cell, per column: (value, difference from the reference with its interval, significant); the
        reference's difference is empty, a metric the comparison lacks is ("–", "", True)."""
        import numpy as np

        from qwen_tool.eval.paired_stats import mean_and_spread

        def show(values: list[float]) -> str:
            mean, sd = mean_and_spread(np.array(values))
            return f"{100 * mean:.1f}" + ("" if sd is None else f" ± {100 * sd:.1f}")

        table = []
        for cell in self.cells:
            row = []
            for key in self.columns:
                m = self._metric(cell, key)
                if m is None:
                    row.append(("–", "", True))
                elif cell == REFERENCE:
                    row.append((show(m.a_runs), "", True))
                else:
                    i = m.interval
                    row.append(
                        (
                            show(m.b_runs),
                            f"{100 * i.estimate:+.1f} [{100 * i.low:+.1f}, {100 * i.high:+.1f}]",
                            m.significant,
                        )
                    )
            table.append(row)
        return table

    def rows(self) -> list[list[str]]:
        """One row per cell: its label, then per column `value` (reference) or `value (Δ [low, high])` (+ n.s.)."""
        return [
            [
                CELLS[cell].label,
                *(
                    f"{value} ({delta}{'' if significant else ' n.s.'})" if delta else value
                    for value, delta, significant in row
                ),
            ]
            for cell, row in zip(self.cells, self.entries(), strict=True)
        ]

    def header(self) -> list[str]:
        return ["cell", *(self._title(*key) for key in self.columns)]

    def caption(self) -> str:
        seeds = self.ablation.seeds
        over = f"mean ± sd over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"
        return (
            f"% ({over}); with each value, its paired difference from standard SFT [its 95% interval] "
            f"(bootstrap over items"
            f"{', hierarchical over seeds' if len(seeds) > 1 else ''}, {self.ablation.resamples:,} resamples); "
            "n.s.: the interval includes 0 (or McNemar p ≥ 0.05 with one seed)"
        )

    def terminal(self) -> Table:
        """Metrics down, cells across (a terminal is narrower than a page): each entry the value over the difference
        and its interval; differences that are not significant are dimmed and say n.s."""
        table = Table(
            title="TL-Training ablation: every cell against standard SFT", box=box.SIMPLE_HEAD, caption=self.caption()
        )
        table.add_column("metric", overflow="fold")
        for cell in self.cells:
            table.add_column(CELLS[cell].label, justify="right")
        entries = self.entries()
        for number, key in enumerate(self.columns):
            shown = []
            for row in entries:
                value, delta, significant = row[number]
                text = f"{value}\n{delta}" if delta else value
                shown.append(text if significant else f"[dim]{text} n.s.[/dim]")
            table.add_row(self._title(*key), *shown)
        return table

    def markdown(self) -> str:
        ablation = self.ablation
        lines = [
            "# TL-Training ablation",
            "",
            self.caption() + ".",
            "",
            "| " + " | ".join(self.header()) + " |",
            "|" + "---|" * len(self.header()),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        lines += [
            "",
            "Cells: "
            + "; ".join(
                f"{CELLS[c].label} (`{c}`: MAE {'on' if CELLS[c].mae else 'off'}, PKT "
                f"{'on' if CELLS[c].pkt else 'off'}, RL {'on' if CELLS[c].irm else 'off'})"
                for c in self.cells
            )
            + ".",
            f"RL reward weights: {to_dict(ablation.cfg.rl.rewards)}." if any(CELLS[c].irm for c in self.cells) else "",
            "",
            "Every metric both sides computed, with McNemar tests and what was not compared: "
            + ", ".join(f"`compare/{c}/report.md`" for c in self.cells[1:])
            + ".",
        ]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        ablation = self.ablation
        first = next(iter(ablation.comparisons.values()))
        cells = []
        for cell in self.cells:
            runs = [
                {
                    "seed": r.seed,
                    "eval": str(r.root / "eval"),
                    "settings": {
                        "sft.mae": r.cell.mae,
                        "sft.pkt": r.cell.pkt,
                        "rl": r.cell.irm,
                        "sft.seed": r.config.sft.seed,
                        "rl.seed": r.config.rl.seed,
                    },
                }
                for r in ablation.runs
                if r.cell.name == cell
            ]
            entry: dict[str, Any] = {"name": cell, "label": CELLS[cell].label, "runs": runs}
            if cell == REFERENCE:
                entry["metrics"] = [
                    {"section": m.section, "metric": m.metric, "kind": m.kind, "items": m.items, "runs": m.a_runs}
                    for m in first.metrics
                ]
            else:
                comparison = ablation.comparisons[cell]
                entry["paired"] = str(comparison.json_path)
                entry["metrics"] = [m.to_json() for m in comparison.metrics]
            cells.append(entry)
        return {
            "reference": REFERENCE,
            "seeds": ablation.seeds,
            "method": first.to_json()["method"],
            "headline": [list(key) for key in self.columns],
            "cells": cells,
            "recipe": to_dict(ablation.cfg),
        }

    def write(self) -> None:
        self.json_path = write_json(self.ablation.out / "ablation.json", self.to_json())
        self.markdown_path = write_text(self.ablation.out / "ablation.md", self.markdown())
