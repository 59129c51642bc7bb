"""`qwen-tool eval compare`: two evaluations (or two groups of seeds) item by item, each difference with its interval.

A run is a directory `qwen-tool eval --out DIR` wrote: its `outcomes.jsonl` holds one verdict per item, or, for the main
job's `eval/<stage>/` and a robustness run, its subfolders do (`bfcl/`, `internal/`, one per noise level), each a
*section*. Items are matched by section and id; every metric both sides computed is recomputed from the items all runs
share, and `paired_stats` gives the difference with its interval. Items or metrics only some runs have are listed in
the report, never dropped unsaid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.table import Table

from qwen_tool import QwenToolError
from qwen_tool.codec import ToolCall
from qwen_tool.eval import bfcl_single_turn as bfcl
from qwen_tool.eval import metrics
from qwen_tool.eval.paired_stats import (
    CONFIDENCE,
    Interval,
    discordant_counts,
    mcnemar_exact_p,
    mean_and_spread,
    metric_value,
    paired_bootstrap,
    strata_codes,
)
from qwen_tool.eval.report import load_run, write_report
from qwen_tool.files import read_json_objects, write_json

_RUN_FIX = "pass a directory written by `qwen-tool eval --out DIR` (the main job's: RUN/eval/trained)"

ACCURACY, RATE, MEAN = "accuracy", "rate", "mean"
"""Metric kinds: an accuracy is a share of items right (0/1 each; McNemar applies), a rate a ratio of sums over items
(parameter accuracy, DE), both shown in %; a mean is a per-item average in its own unit (calls per item)."""


@dataclass
class ItemTerms:
    """One metric of one run, item by item: value = mean over strata of Σ numerator / Σ denominator."""

    kind: str
    terms: dict[str, tuple[float, float]] = field(default_factory=dict)
    """item id → (numerator, denominator)"""
    strata: dict[str, str] = field(default_factory=dict)
    """item id → stratum (BFCL category) for a mean over categories; empty for one stratum."""

    def add(self, item: str, numerator: float, denominator: float = 1.0, stratum: str | None = None) -> None:
        self.terms[item] = (float(numerator), float(denominator))
        if stratum is not None:
            self.strata[item] = stratum


def _field(row: dict[str, Any], key: str, where: Path) -> Any:
    if key not in row:
        raise QwenToolError(
            f"{where}: item {row.get('id', '?')!r} has no {key!r}; fix: {_RUN_FIX}, or rerun that "
            "evaluation with this version"
        )
    return row[key]


def _timing(out: dict[str, ItemTerms], item: str, called: bool, due: bool) -> None:
    """Call timing as ratios of sums: precision = Σ called∧due / Σ called, recall = Σ called∧due / Σ due,
    abstained = Σ ¬called∧¬due / Σ ¬due (as `metrics.call_timing`)."""
    for name, numerator, denominator in (
        ("call timing precision", called and due, called),
        ("call timing recall", called and due, due),
        ("call timing abstain recall", not called and not due, not due),
    ):
        out.setdefault(name, ItemTerms(RATE)).add(item, numerator, denominator)


def bfcl_terms(rows: Sequence[dict[str, Any]], where: Path) -> dict[str, ItemTerms]:
    """BFCL: accuracy per category, over all items and as the unweighted mean over categories (AST and irrelevance
    groups too, when they hold two or more), multi-turn VA/DE/CE, calls per item, call timing."""
    out: dict[str, ItemTerms] = {}
    categories: list[str] = []
    for row in rows:
        item, category, valid = row["id"], _field(row, "category", where), bool(_field(row, "valid", where))
        calls = _field(row, "parsed_calls", where)
        if category not in categories:
            categories.append(category)
        out.setdefault(f"{category} accuracy", ItemTerms(ACCURACY)).add(item, valid)
        if category in bfcl.MULTI_TURN_CATEGORIES:
            extra = _field(row, "extra", where)
            kinds = extra.get("call_categories", [])
            out.setdefault(f"{category} VA", ItemTerms(ACCURACY)).add(item, extra.get("termination") == "final_answer")
            out.setdefault(f"{category} DE", ItemTerms(RATE)).add(
                item, sum(k in metrics.DOCUMENTATION_ERRORS for k in kinds), len(kinds)
            )
            out.setdefault(f"{category} CE", ItemTerms(RATE)).add(
                item,
                sum(k not in metrics.DOCUMENTATION_ERRORS and k not in metrics.NOT_THE_MODELS_FAULT for k in kinds),
                len(kinds),
            )
        out.setdefault(f"{category} calls per item", ItemTerms(MEAN)).add(item, len(calls))
    groups = (
        ("all items accuracy", categories, False),
        ("mean over categories", categories, True),
        ("AST mean over categories", [c for c in categories if c in bfcl.AST_CATEGORIES], True),
        ("irrelevance mean over categories", [c for c in categories if c in bfcl.IRRELEVANCE_CATEGORIES], True),
    )
    for name, members, stratified in groups:
        if len(members) < 2:
            continue
        terms = out[name] = ItemTerms(ACCURACY)
        for row in rows:
            if row["category"] in members:
                terms.add(row["id"], bool(row["valid"]), stratum=row["category"] if stratified else None)
    for row in rows:
        if row["category"] in bfcl.SINGLE_TURN_CATEGORIES:
            _timing(out, row["id"], bool(row["parsed_calls"]), row["category"] not in bfcl.IRRELEVANCE_CATEGORIES)
    return out


def _calls(calls: list[dict[str, Any]]) -> list[ToolCall]:
    """Calls as an internal outcome stores them (`{"name", "arguments"}`), back as `ToolCall`s for `metrics`."""
    return [ToolCall(call["name"], call["arguments"]) for call in calls]


def internal_terms(rows: Sequence[dict[str, Any]], where: Path) -> dict[str, ItemTerms]:
    """The internal single-turn suite, per decision: TS, PI, CF (first call), exact match, parameter accuracy,
    call timing, calls per decision — the numbers `run_internal` reports."""
    out: dict[str, ItemTerms] = {name: ItemTerms(ACCURACY) for name in ("TS", "PI", "CF", "exact match")}
    out["parameter accuracy"] = ItemTerms(RATE)
    for row in rows:
        item = row["id"]
        predicted, gold = _field(row, "parsed_calls", where), _field(row, "gold_calls", where)
        out["TS"].add(item, bool(_field(row, "TS", where)))
        out["PI"].add(item, bool(_field(row, "PI", where)))
        first_predicted, first_gold = (_calls(predicted) or [None])[0], (_calls(gold) or [None])[0]
        out["CF"].add(item, metrics.content_filling(first_predicted, first_gold))
        out["exact match"].add(item, bool(_field(row, "valid", where)))
        out["parameter accuracy"].add(item, *metrics.matched_arguments(_calls(predicted), _calls(gold)))
        _timing(out, item, bool(predicted), bool(gold))
        out.setdefault("calls per decision", ItemTerms(MEAN)).add(item, len(predicted))
    return out


def task_terms(rows: Sequence[dict[str, Any]], where: Path) -> dict[str, ItemTerms]:
    """Held-out multi-turn tasks, per episode: end state reached, VA, DE and CE over the episode's calls, steps."""
    out = {
        "end state reached": ItemTerms(ACCURACY),
        "VA": ItemTerms(ACCURACY),
        "DE": ItemTerms(RATE),
        "CE": ItemTerms(RATE),
        "steps per task": ItemTerms(MEAN),
    }
    for row in rows:
        item, extra = row["id"], _field(row, "extra", where)
        kinds = extra.get("call_categories", [])
        out["end state reached"].add(item, bool(_field(row, "valid", where)))
        out["VA"].add(item, extra.get("termination") == "final_answer")
        out["DE"].add(item, sum(k in metrics.DOCUMENTATION_ERRORS for k in kinds), len(kinds))
        out["CE"].add(
            item,
            sum(k not in metrics.DOCUMENTATION_ERRORS and k not in metrics.NOT_THE_MODELS_FAULT for k in kinds),
            len(kinds),
        )
        out["steps per task"].add(item, extra.get("steps", 0))
    return out


def section_terms(rows: Sequence[dict[str, Any]], where: Path) -> dict[str, ItemTerms]:
    """Per-item terms of every metric the outcome rows of one file support (which suite wrote them is read off the
    rows: internal decisions carry TS, multi-turn tasks the category `internal_tasks`, BFCL the rest)."""
    seen: set[str] = set()
    for number, row in enumerate(rows, 1):
        item = row.get("id")
        if not isinstance(item, str) or not item:
            raise QwenToolError(f"{where}: outcome {number} has no string 'id'; fix: {_RUN_FIX}")
        if item in seen:
            raise QwenToolError(f"{where}: item id {item!r} appears twice; fix: {_RUN_FIX} (one outcome per item)")
        seen.add(item)
    terms: Callable[[Sequence[dict[str, Any]], Path], dict[str, ItemTerms]]
    if any("TS" in row for row in rows):
        terms = internal_terms
    elif rows and all(row.get("category") == "internal_tasks" for row in rows):
        terms = task_terms
    else:
        terms = bfcl_terms
    return terms(rows, where)


def find_outcomes(run: Path) -> dict[str, Path]:
    """section → outcomes.jsonl of a run: the run's own file (section ""), else one per subfolder that has one."""
    if (run / "outcomes.jsonl").is_file():
        return {"": run / "outcomes.jsonl"}
    found = {
        sub.name: sub / "outcomes.jsonl"
        for sub in sorted(run.iterdir())
        if sub.is_dir() and not sub.name.startswith(".") and (sub / "outcomes.jsonl").is_file()
    }
    if not found:
        raise QwenToolError(f"{run} holds no outcomes.jsonl, nor do its subfolders; fix: {_RUN_FIX}{_hint(run)}")
    return found


def _hint(folder: Path) -> str:
    """The text ", e.g. RUN" naming the widest run below `folder` (a folder with metrics.json whose outcomes.jsonl
    lies in it or one level down), or "" when there is none: for a user who passed the main job's directory, say."""
    candidates = set()
    for outcomes in folder.rglob("outcomes.jsonl") if folder.is_dir() else []:
        if not any(part.startswith(".") for part in outcomes.relative_to(folder).parts):
            candidates |= {
                run for run in outcomes.parents[:2] if folder in run.parents and (run / "metrics.json").is_file()
            }
    return f", e.g. {min(candidates, key=lambda run: (len(run.parts), str(run)))}" if candidates else ""


def _load_run(run: Path) -> dict[str, Any]:
    """`report.load_run`, whose error also names a run below `run` when there is one."""
    try:
        return load_run(run)
    except QwenToolError as err:
        hint = _hint(run)
        if not hint:
            raise
        raise QwenToolError(f"{err}{hint}") from None


def run_labels(runs: Sequence[Path]) -> list[str]:
    """Short names that tell the runs apart: each folder's name, with as many parent folders as it takes; a folder
    given more than once gets #1, #2, ..."""
    resolved = [run.resolve() for run in runs]
    names = {path: path.name for path in resolved}
    for depth in range(2, max(len(path.parts) for path in resolved)):
        taken = list(names.values())
        if len(set(taken)) == len(taken):
            break
        names = {path: "/".join(path.parts[-depth:]) if taken.count(name) > 1 else name for path, name in names.items()}
    labels = [names[path] for path in resolved]
    return [
        f"{label}#{labels[:i].count(label) + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels)
    ]


def interval_decimals(low: float, high: float, decimals: int, most: int) -> int:
    """Decimals to print an interval [low, high] with, so that one excluding 0 never reads as touching it.

    At one decimal, a difference of +0.04 points with interval [+0.01, +0.08] prints "+0.0 [+0.0, +0.1]" beside "yes";
    this adds one decimal at a time, up to `most`, until the bound nearest 0 rounds to something other than 0.
    """
    if low <= 0 <= high:
        return decimals
    nearest = min(abs(low), abs(high))
    while decimals < most and round(nearest, decimals) == 0:
        decimals += 1
    return decimals


@dataclass
class MetricComparison:
    """One metric over the items every run has: each side's per-run values, the difference and the tests."""

    section: str
    metric: str
    kind: str
    items: int
    a_runs: list[float]
    b_runs: list[float]
    interval: Interval
    mcnemar: dict[str, float] | None
    significant: bool

    @property
    def name(self) -> str:
        return f"{self.section}/{self.metric}" if self.section else self.metric

    def to_json(self) -> dict[str, Any]:
        sides = {}
        for side, values in (("a", self.a_runs), ("b", self.b_runs)):
            mean, sd = mean_and_spread(np.array(values))
            sides[side] = {"mean": mean, "sd": sd, "runs": values}
        return {
            "section": self.section,
            "metric": self.metric,
            "kind": self.kind,
            "items": self.items,
            **sides,
            "difference": self.interval.estimate,
            "low": self.interval.low,
            "high": self.interval.high,
            "mcnemar": self.mcnemar,
            "significant": self.significant,
        }


def compare_metric(
    section: str,
    metric: str,
    a: Sequence[ItemTerms],
    b: Sequence[ItemTerms],
    items: list[str],
    resamples: int,
    seed: int,
) -> MetricComparison:
    """B − A on `items` with its interval; single runs of an accuracy also get McNemar's exact test. Significant when
    the interval excludes 0 and, where McNemar applies, its p < 1 − CONFIDENCE as well."""
    kind = a[0].kind

    def arrays(side: Sequence[ItemTerms]) -> tuple[np.ndarray, np.ndarray]:
        terms = np.array([[run.terms[item] for item in items] for run in side])  # (runs, items, 2)
        return terms[:, :, 0], terms[:, :, 1]

    (num_a, den_a), (num_b, den_b) = arrays(a), arrays(b)
    strata = np.array([a[0].strata[item] for item in items]) if a[0].strata else None
    interval = paired_bootstrap(num_a, den_a, num_b, den_b, strata, resamples=resamples, seed=seed)
    codes = strata_codes(strata, len(items))
    mcnemar = None
    significant = interval.excludes_zero
    if kind == ACCURACY and strata is None and len(a) == len(b) == 1:
        only_a, only_b = discordant_counts(num_a[0], num_b[0])
        p = mcnemar_exact_p(only_a, only_b)
        mcnemar = {"only_a": only_a, "only_b": only_b, "p": p}
        significant = significant and p < 1 - CONFIDENCE
    return MetricComparison(
        section,
        metric,
        kind,
        len(items),
        metric_value(num_a, den_a, codes).tolist(),
        metric_value(num_b, den_b, codes).tolist(),
        interval,
        mcnemar,
        significant,
    )


@dataclass
class Comparison:
    """Everything `eval compare` found: the metric comparisons, and what could not be compared."""

    labels_a: list[str]
    labels_b: list[str]
    metrics: list[MetricComparison]
    left_out_items: dict[str, dict[str, list[str]]]
    """section → run label → ids that run has but not every run does (so they were not compared)."""
    one_sided: dict[str, list[str]]
    """"a"/"b" → sections or metrics only that side's runs (all of them) have; "partial": those only some runs have;
    "empty": metrics no run has evidence for (every denominator 0, e.g. abstention without irrelevance items)."""
    resamples: int
    seed: int
    report: Path | None = None
    json_path: Path | None = None

    def side_name(self, side: str) -> str:
        labels = self.labels_a if side == "a" else self.labels_b
        return labels[0] if len(labels) == 1 else f"{len(labels)} runs ({', '.join(labels)})"

    def rows(self) -> tuple[list[str], list[list[str]], list[bool]]:
        """(header, rows, significant per row) of the comparison table, values in % points (means in their unit)."""
        several = len(self.labels_a) > 1 or len(self.labels_b) > 1
        spread = " mean ± sd" if several else ""
        header = [
            "metric",
            "items",
            f"A{spread}",
            f"B{spread}",
            f"Δ [{round(100 * CONFIDENCE)}% interval]",
            "McNemar p (only A/B)",
            "sig.",
        ]
        rows, flags = [], []
        for m in self.metrics:
            scale, digits = (1, 2) if m.kind == MEAN else (100, 1)

            def show(values: list[float], scale: float = scale, digits: int = digits) -> str:
                mean, sd = mean_and_spread(np.array(values))
                return f"{scale * mean:.{digits}f}" + ("" if sd is None else f" ± {scale * sd:.{digits}f}")

            interval = m.interval
            shown = interval_decimals(scale * interval.low, scale * interval.high, digits, most=digits + 2)
            test = "–"
            if m.mcnemar is not None:
                p = m.mcnemar["p"]
                test = f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
                test += f" ({m.mcnemar['only_a']}/{m.mcnemar['only_b']})"
            rows.append(
                [
                    m.name,
                    str(m.items),
                    show(m.a_runs),
                    show(m.b_runs),
                    f"{scale * interval.estimate:+.{shown}f} [{scale * interval.low:+.{shown}f}, "
                    f"{scale * interval.high:+.{shown}f}]",
                    test,
                    "yes" if m.significant else "n.s.",
                ]
            )
            flags.append(m.significant)
        return header, rows, flags

    def title(self) -> str:
        return f"A: {self.side_name('a')}   B: {self.side_name('b')}   Δ = B − A"

    def table(self) -> Table:
        """The comparison for the terminal; rows that are not significant are dimmed and say n.s."""
        header, rows, flags = self.rows()
        table = Table(
            title=self.title(),
            box=box.SIMPLE_HEAD,
            caption=(
                "paired over the same items; % points (means in their unit); sig.: yes when the interval excludes 0 "
                f"(and McNemar p < 0.05 where shown), else n.s.; {self.resamples:,} bootstrap resamples, "
                f"seed {self.seed}"
            ),
        )
        for number, column in enumerate(header):  # a narrow terminal wraps names, intervals and tests, not values
            table.add_column(
                column,
                justify="right" if number else "left",
                overflow="fold",
                min_width=None if number else 14,
                no_wrap=number in (1, 2, 3, 6),
            )
        for row, significant in zip(rows, flags, strict=True):
            table.add_row(*row, style=None if significant else "dim")
        return table

    def notes(self) -> list[str]:
        """What was not compared, one line each."""
        lines = []
        for section, by_run in self.left_out_items.items():
            for label, ids in by_run.items():
                where = f"{section}: " if section else ""
                lines.append(
                    f"{where}{len(ids)} items of {label} not in every run, left out (e.g. {', '.join(ids[:3])})"
                )
        for side, names in self.one_sided.items():
            if names:
                why = {
                    "a": "computed by only A's runs",
                    "b": "computed by only B's runs",
                    "partial": "computed by only some runs",
                    "empty": "no evidence in any run (every denominator 0)",
                }
                lines.append(f"{why[side]}, not compared: {', '.join(names)}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.labels_a,
            "b": self.labels_b,
            "method": {
                "difference": "B − A; with several runs per side, the mean over B's runs − the mean over A's",
                "interval": "percentile bootstrap over items, paired (the same items drawn for both sides), "
                "stratified by category for means over categories; with several runs per side, each "
                "resample also draws each side's runs with replacement (hierarchical bootstrap)",
                "mcnemar": "exact two-sided binomial test on the discordant items; one run per side, accuracies only",
                "significant": "the interval excludes 0 and, where McNemar applies, p < 0.05",
                "confidence": CONFIDENCE,
                "resamples": self.resamples,
                "seed": self.seed,
            },
            "metrics": [m.to_json() for m in self.metrics],
            "left_out_items": self.left_out_items,
            "one_sided": self.one_sided,
        }


def compare_runs(
    runs_a: Sequence[str | Path],
    runs_b: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Compare side A (the reference: one run, or several seeds) with side B item by item and write, into `out_dir`
    (default: next to B's first run), `paired.json` and the side-by-side `report.md`/`.html` with the paired table
    first. Returns the comparison (its `table()` is what the CLI prints)."""
    if not runs_a or not runs_b:
        raise QwenToolError("eval compare needs at least one run per side; fix: qwen-tool eval compare A B")
    if resamples < 100:
        raise QwenToolError(f"--resamples {resamples} is too few for a 95% interval; fix: pass 1000 or more")
    paths_a, paths_b = [Path(r) for r in runs_a], [Path(r) for r in runs_b]
    everything = paths_a + paths_b
    results = {}
    labels = run_labels(everything)
    for label, run in zip(labels, everything, strict=True):
        results[label] = _load_run(run)  # checks each is a run before any statistics
    labels_a, labels_b = labels[: len(paths_a)], labels[len(paths_a) :]
    files = {label: find_outcomes(run) for label, run in zip(labels, everything, strict=True)}
    rows = {
        label: {section: read_json_objects(path, fix=_RUN_FIX) for section, path in sections.items()}
        for label, sections in files.items()
    }
    terms = {
        label: {
            section: section_terms(section_rows, files[label][section]) for section, section_rows in by_section.items()
        }
        for label, by_section in rows.items()
    }
    ids = {
        label: {section: [row["id"] for row in section_rows] for section, section_rows in by_section.items()}
        for label, by_section in rows.items()
    }

    compared: list[MetricComparison] = []
    left_out: dict[str, dict[str, list[str]]] = {}
    one_sided: dict[str, list[str]] = {"a": [], "b": [], "partial": [], "empty": []}

    def set_aside(name: str, having: list[str]) -> None:
        side = "a" if having == labels_a else "b" if having == labels_b else "partial"
        one_sided[side].append(name)

    for section in dict.fromkeys(s for label in labels for s in terms[label]):
        having = [label for label in labels if section in terms[label]]
        if len(having) < len(labels):
            set_aside(f"{section}/ (the whole section)", having)
            continue
        common = set.intersection(*(set(ids[label][section]) for label in labels))
        for label in labels:
            extra = [item for item in ids[label][section] if item not in common]
            if extra:
                left_out.setdefault(section, {})[label] = extra
        for metric in dict.fromkeys(m for label in labels for m in terms[label][section]):
            having = [label for label in labels if metric in terms[label][section]]
            if len(having) < len(labels):
                set_aside(f"{section}/{metric}" if section else metric, having)
                continue
            per_run = [terms[label][section][metric] for label in labels]
            items = [item for item in per_run[0].terms if item in common]
            if not any(run.terms[item][1] for run in per_run for item in items):
                one_sided["empty"].append(f"{section}/{metric}" if section else metric)
            elif items:
                compared.append(
                    compare_metric(
                        section, metric, per_run[: len(labels_a)], per_run[len(labels_a) :], items, resamples, seed
                    )
                )
    if not compared:
        raise QwenToolError(
            f"the runs share no scored items ({', '.join(map(str, everything))}); fix: compare runs "
            "of the same suite and categories (items are matched by id)"
        )
    comparison = Comparison(labels_a, labels_b, compared, left_out, one_sided, resamples, seed)
    target = (
        Path(out_dir)
        if out_dir is not None
        else (paths_b[0].parent / f"compare-{_side_slug(paths_a)}-vs-{_side_slug(paths_b)}")
    )
    comparison.json_path = write_json(target / "paired.json", comparison.to_json())
    header, table_rows, _ = comparison.rows()
    outcomes = {
        (f"{label}/{section}" if section else label): path
        for label, sections in files.items()
        for section, path in sections.items()
    }
    lead = [
        ("Paired differences over the same items (% points; means in their unit)", header, table_rows),
        ("Not compared", ["what"], [[line] for line in comparison.notes()]),
    ]
    comparison.report = write_report(
        target, results, outcomes=outcomes, lead_tables=lead, title=f"eval compare: {comparison.title()}"
    )
    return comparison


def _side_slug(paths: Sequence[Path]) -> str:
    return paths[0].name if len(paths) == 1 else f"{paths[0].name}+{len(paths) - 1}"
