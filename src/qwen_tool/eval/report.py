"""The evaluation report: `report.md` and `report.html` with tables and PNG charts, one or several runs side by side
(baseline vs trained), plus `metrics.json` and `outcomes.jsonl` gathering every number and every example."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from qwen_tool import QwenToolError
from qwen_tool.files import read_json, read_json_objects, save_figure, write_json, write_lines, write_text

SUMMARY_ROWS = [
    ("overall_accuracy_unweighted", "Overall accuracy (mean over categories)"),
    ("ast_accuracy_unweighted", "AST accuracy (mean over AST categories)"),
    ("irrelevance_accuracy_unweighted", "Irrelevance accuracy (mean)"),
    ("call_timing_precision", "Call timing precision"),
    ("call_timing_recall", "Call timing recall"),
    ("call_timing_abstain_recall", "Abstained when no call was due"),
]


INTERNAL_ROWS = [
    ("internal", "TS", "TS: tool selection"), ("internal", "PI", "PI: parameter identification"),
    ("internal", "CF", "CF: content filling"), ("internal", "parameter_accuracy", "Parameter accuracy"),
    ("internal", "exact_match", "Exact match (all calls)"),
    ("internal", "call_timing_precision", "Call timing precision"),
    ("internal", "call_timing_recall", "Call timing recall"),
    ("internal", "call_timing_abstain_recall", "Abstained when no call was due"),
    ("internal_tasks", "VA", "Multi-turn VA: ended in a final answer"),
    ("internal_tasks", "end_state_accuracy", "Multi-turn end state reached"),
    ("internal_tasks", "DE", "Multi-turn DE (lower is better)"),
    ("internal_tasks", "CE", "Multi-turn CE (lower is better)"),
]
"""(metrics key, summary key, row title): single-turn decisions (`internal`) and multi-turn tasks
(`internal_tasks`)."""


ROBUSTNESS_METRICS = ("TS", "PI", "CF")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def robustness_levels(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-noise-level metrics a result carries: a robustness run's own `levels`, or a `robustness` entry."""
    if metrics.get("suite") == "robustness":
        return metrics.get("levels", {})
    return metrics.get("robustness", {}).get("levels", {})


def robustness_table(results: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per noise level, TS/PI/CF in % per run (run-prefixed when several), and n."""
    labels = [label for label, m in results.items() if robustness_levels(m)]
    prefix = len(labels) > 1
    header = ["level", *[f"{label} {k}" if prefix else k for label in labels for k in ROBUSTNESS_METRICS], "n"]
    levels: list[str] = []
    for label in labels:
        levels.extend(level for level in robustness_levels(results[label]) if level not in levels)
    rows = []
    for level in levels:
        cells = [robustness_levels(results[label]).get(level, {}) for label in labels]
        counts = [str(cell.get("n", "–")) for cell in cells]
        rows.append([level, *[_pct(cell.get(k)) for cell in cells for k in ROBUSTNESS_METRICS],
                     counts[0] if len(set(counts)) == 1 else " / ".join(counts)])
    return header, rows


def robustness_chart(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Noise curves: x = noise level, one line per metric (TS, PI, CF) and run, y in %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, m in results.items() if robustness_levels(m)]
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for label, style in zip(labels, ("-", "--", ":", "-."), strict=False):
        levels = robustness_levels(results[label])
        for key, marker in zip(ROBUSTNESS_METRICS, "osd", strict=True):
            values = [100 * levels[level][key] if levels[level].get(key) is not None else float("nan")
                      for level in levels]
            ax.plot(list(levels), values, style, marker=marker, label=f"{label} {key}" if len(labels) > 1 else key)
    ax.set_xlabel("noise level (RoTBench)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title("Robustness to tool-name noise")
    ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def _limit(limit: Any) -> str:
    """A run's cap on examples as the Runs table shows it: "none" (full sets), one number, or `category: n` for each
    capped category (the others are full)."""
    if isinstance(limit, dict):
        capped = {category: n for category, n in limit.items() if n is not None}
        return ", ".join(f"{category}: {n}" for category, n in capped.items()) if capped else "none"
    return "none" if limit is None else str(limit)


def _categories(results: dict[str, dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for metrics in results.values():
        seen.extend(c for c in metrics.get("categories", {}) if c not in seen)
    return seen


def _tables(results: dict[str, dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, shared by the Markdown and HTML renderings."""
    labels = list(results)
    delta = len(labels) == 2
    header = ["category", "n", *labels] + ([f"Δ ({labels[1]} − {labels[0]})"] if delta else [])
    rows = []
    for category in _categories(results):
        values = [results[label].get("categories", {}).get(category, {}).get("accuracy") for label in labels]
        # Runs may score different subsets (a capped baseline, say): show each run's n, once if they agree.
        counts = [str(results[label].get("categories", {}).get(category, {}).get("n", "–")) for label in labels]
        n = counts[0] if len(set(counts)) == 1 else " / ".join(counts)
        row = [category, n, *[_pct(v) for v in values]]
        if delta:
            row.append("–" if None in values else f"{100 * (values[1] - values[0]):+.1f}")
        rows.append(row)
    summary_header = ["metric", *labels] + (["Δ"] if delta else [])
    summary = []
    for key, title in SUMMARY_ROWS:
        values = [results[label].get("summary", {}).get(key) for label in labels]
        row = [title, *[_pct(v) for v in values]]
        if delta:
            row.append("–" if None in values else f"{100 * (values[1] - values[0]):+.1f}")
        summary.append(row)
    internal = []
    for source, key, title in INTERNAL_ROWS:
        if any(source in m for m in results.values()):
            values = [results[label].get(source, {}).get("summary", {}).get(key) for label in labels]
            row = [title, *[_pct(v) for v in values]]
            if delta:
                row.append("–" if None in values else f"{100 * (values[1] - values[0]):+.1f}")
            internal.append(row)
    robustness_header, robustness = robustness_table(results)
    errors_header = ["run", "category", "most frequent error categories"]
    errors = []
    for label in labels:
        counted = [(category, stats.get("error_categories", {}))
                   for category, stats in results[label].get("categories", {}).items()]
        counted.append(("internal suite", results[label].get("internal", {}).get("error_categories", {})))
        for category, counts in counted:
            if counts:  # already most frequent first
                top = list(counts.items())[:3]
                errors.append([label, category, ", ".join(f"{name} ({count})" for name, count in top)])
    runs_header = ["run", "model", "examples", "limit", "decoding", "wall time (s)", "new tokens"]
    runs = [[label, str(m.get("model", "")), str(m.get("summary", {}).get("examples", "")), _limit(m.get("limit")),
             "greedy, tool calls guided by schema" if m.get("generation", {}).get("guided") else "greedy",
             str(m.get("wall_seconds", "")), str(m.get("generation", {}).get("new_tokens", ""))]
            for label, m in results.items()]
    return [
        ("Runs", runs_header, runs),
        ("BFCL accuracy per category (%)", header, rows),
        ("Summary (%)", summary_header, summary),
        ("Internal held-out suite (%)", summary_header, internal),
        ("Robustness: internal suite under RoTBench noise (%)", robustness_header, robustness),
        ("Errors", errors_header, errors),
    ]


def _category_chart(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = _categories(results)
    labels = list(results)
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(categories)), 4.0))
    for i, label in enumerate(labels):
        values = [100 * results[label].get("categories", {}).get(c, {}).get("accuracy", 0.0) for c in categories]
        positions = [x + (i - (len(labels) - 1) / 2) * width for x in range(len(categories))]
        ax.bar(positions, values, width, label=label)
    ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("BFCL accuracy per category")
    ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def _markdown(title: str, tables: list[tuple[str, list[str], list[list[str]]]], charts: list[str]) -> str:
    lines = [f"# {title}", ""]
    for chart in charts:
        lines += [f"![{chart}]({chart})", ""]
    for name, header, rows in tables:
        if not rows:
            continue
        lines += [f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def _html(title: str, tables: list[tuple[str, list[str], list[list[str]]]], charts: list[str]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<img src='{html.escape(chart)}' alt='{html.escape(chart)}'>" for chart in charts]
    for name, header, rows in tables:
        if not rows:
            continue
        parts.append(f"<h2>{html.escape(name)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, results: dict[str, dict[str, Any]], *, title: str = "Evaluation report",
                 outcomes: dict[str, str | Path] | None = None,
                 stage_seconds: dict[str, float] | None = None, stage_projection: dict[str, float] | None = None,
                 machine: dict[str, str] | None = None,
                 lead_tables: list[tuple[str, list[str], list[list[str]]]] | None = None) -> Path:
    """Write report.md, report.html and bfcl_categories.png (robustness.png when a result carries noise levels)
    into `run_dir`; return the path of report.md.

    `results` maps a run label (e.g. "baseline", "trained") to the metrics `run_bfcl` returned. `metrics.json`
    gets `{"runs": results}`, except for a single run reported in its own directory, whose metrics.json is kept.
    `outcomes` (label → outcomes.jsonl path) are gathered into one outcomes.jsonl with a `run` field per line.
    `stage_seconds` (stage → wall seconds, from the pipeline) becomes a table of its own, beside what the job
    projected for each stage at its start (`stage_projection`); `machine` (what → value: the CPU capability, the
    precision each stage chose and why) another. `lead_tables` ((title, header, rows), e.g. `eval compare`'s paired
    differences) come before all the others.
    """
    if not results:
        raise QwenToolError("write_report got no results; fix: pass at least one run's metrics")
    out = Path(run_dir)
    metrics_path = out / "metrics.json"
    if not (len(results) == 1 and metrics_path.is_file()):
        write_json(metrics_path, {"runs": results})
    if outcomes:
        gathered = out / "outcomes.jsonl"
        sources = {label: Path(path) for label, path in outcomes.items()}
        if not (len(sources) == 1 and next(iter(sources.values())).resolve() == gathered.resolve()):
            write_lines(gathered, [row for label, path in sources.items() for row in _outcome_rows(label, path)])
    charts = []
    if _categories(results):
        _category_chart(results, out / "bfcl_categories.png")
        charts.append("bfcl_categories.png")
    if any(robustness_levels(m) for m in results.values()):
        robustness_chart(results, out / "robustness.png")
        charts.append("robustness.png")
    tables = [*(lead_tables or []), *_tables(results)]
    if stage_seconds:
        projected = stage_projection or {}
        tables.append(("Stage wall times", ["stage", "seconds", "projected at the job's start"],
                       [[stage, f"{seconds:.1f}", f"{projected[stage]:.1f}" if stage in projected else "-"]
                        for stage, seconds in stage_seconds.items()]))
    if machine:
        tables.append(("Machine and precision", ["what", "value"], [[k, str(v)] for k, v in machine.items()]))
    write_text(out / "report.html", _html(title, tables, charts))
    return write_text(out / "report.md", _markdown(title, tables, charts))


class _CategoryStats(BaseModel):
    model_config = ConfigDict(extra="allow")
    accuracy: float | None = None
    n: int | None = None
    error_categories: dict[str, int] = {}


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")
    summary: dict[str, float | None] = {}
    error_categories: dict[str, int] = {}


class _RunMetrics(BaseModel):
    """The parts of a run's metrics.json that a report reads, with the types it needs (other keys pass)."""

    model_config = ConfigDict(extra="allow")
    categories: dict[str, _CategoryStats] = {}
    summary: dict[str, float | None] = {}
    internal: _Section = _Section()
    internal_tasks: _Section = _Section()
    levels: dict[str, dict[str, float | None]] = {}
    generation: dict[str, Any] = {}


_RUN_FIX = "pass a directory written by `qwen-tool eval --out DIR`"


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """The metrics.json of one run directory, checked to hold metrics a report can show."""
    path = Path(run_dir) / "metrics.json"
    data = read_json(path, fix=_RUN_FIX)
    if not isinstance(data, dict):
        raise QwenToolError(f"{path} holds a JSON {type(data).__name__}, not a run's metrics object; fix: {_RUN_FIX}")
    if "runs" in data:
        raise QwenToolError(f"{path} is a comparison report, not a single run; fix: pass the run directories")
    if not any(data.get(key) for key in ("categories", "summary", "levels")):
        raise QwenToolError(f"{path} holds no metrics (no categories, summary or levels); fix: {_RUN_FIX}")
    try:
        _RunMetrics.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise QwenToolError(f"{path}: key {key!r} has value {error.get('input')!r}: {error['msg']}; fix: "
                            f"{_RUN_FIX}, or restore the file from it") from None
    return data


def _outcome_rows(label: str, path: Path) -> list[str]:
    """The outcome lines of one run, each tagged with the run's label."""
    return [json.dumps({"run": label, **outcome}, ensure_ascii=False)
            for outcome in read_json_objects(path, fix=_RUN_FIX)]
