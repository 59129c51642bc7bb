"""`qwen-tool eval join`: one model's evaluation scored in several parts, joined into one run folder.

A long evaluation is often scored in parts (BFCL categories one job each, the internal suite apart) so that each part
fits a time slot or a machine. `eval compare` pairs items section by section, so the parts must first become one run:
the layout the main job writes for `eval/<stage>/`, with one subfolder per section (`bfcl/`, `internal/`,
`internal_tasks/`) and the BFCL metrics at the top. BFCL parts are merged item by item and their metrics recomputed
from the merged outcomes; the other suites are scored whole, so each may come from one part only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.eval.compare import find_outcomes
from qwen_tool.eval.report import load_run
from qwen_tool.files import read_json, read_json_objects, write_json, write_lines

SECTIONS = ("bfcl", "internal", "internal_tasks")
"""The sections a joined run may hold, in the order the main job writes them; BFCL's metrics lead the run's."""

_PART_FIX = "pass folders written by `qwen-tool eval --out DIR` or `qwen-tool eval like ... --out DIR`"


@dataclass
class _Section:
    """One section of one part: where it came from, its outcome rows and its metrics."""

    part: Path
    rows: list[dict[str, Any]]
    metrics: dict[str, Any]


def _sections(part: Path) -> dict[str, _Section]:
    """section → its rows and metrics; a part that is a single suite's run is named by the suite it ran."""
    top = load_run(part)
    found = {}
    for name, outcomes in find_outcomes(part).items():
        metrics = top if not name else read_json(outcomes.parent / "metrics.json", fix=_PART_FIX)
        section = name or metrics.get("suite", "")
        if section not in SECTIONS:
            raise QwenToolError(f"{outcomes.parent} is a {section or 'suite-less'} section; eval join joins "
                                f"{', '.join(SECTIONS)}; fix: leave that folder out of the parts")
        found[section] = _Section(part, read_json_objects(outcomes, fix=_PART_FIX), metrics)
    return found


def _same_model(sections: Sequence[_Section]) -> None:
    """Parts of one evaluation score one model with one format and decoding; anything else would pair apples with
    pears in `eval compare`, so say which parts differ. Multi-turn tasks always decode freely (as in the main job), so
    their decoding is not held against guided single-turn parts."""
    def identity(section: _Section) -> dict[str, Any]:
        generation = section.metrics.get("generation", {})
        free_by_design = section.metrics.get("suite") == "internal_tasks"
        return {"model": section.metrics.get("model"), "model_id": generation.get("model_id"),
                "guided": None if free_by_design else section.metrics.get("guided", generation.get("guided")),
                "tool_format": section.metrics.get("tool_format"),
                "tool_rendering": section.metrics.get("tool_rendering")}

    first = identity(sections[0])
    for section in sections[1:]:
        other = identity(section)
        for key, value in other.items():
            if value is not None and first[key] is not None and value != first[key]:
                raise QwenToolError(f"parts {sections[0].part} and {section.part} differ in {key} ({first[key]!r} "
                                    f"against {value!r}); fix: join the parts of one model's evaluation")


def _merge_bfcl(parts: Sequence[_Section]) -> _Section:
    """BFCL parts' outcomes as one list (an item twice is an error) and metrics recomputed from it."""
    from qwen_tool.eval.runner import Outcome, summarise_bfcl

    seen: dict[str, Path] = {}
    rows: list[dict[str, Any]] = []
    for part in parts:
        for number, row in enumerate(part.rows, 1):
            item = row.get("id")
            if not isinstance(item, str) or not item:
                raise QwenToolError(f"{part.part}: BFCL outcome {number} has no string 'id'; fix: score that part "
                                    "again")
            if item in seen:
                raise QwenToolError(f"BFCL item {item} is scored in both {seen[item]} and {part.part}; "
                                    "fix: join parts that score different categories")
            seen[item] = part.part
            rows.append(row)
    outcomes = []
    for row in rows:
        try:
            outcomes.append(Outcome(**row))
        except TypeError as err:  # a row written by another version, or edited by hand
            raise QwenToolError(f"BFCL item {row['id']} of {seen[row['id']]} is not an outcome line ({err}); fix: "
                                "score that part again with this version") from None
    categories = list(dict.fromkeys(outcome.category for outcome in outcomes))
    metrics = {**parts[0].metrics, **summarise_bfcl(outcomes, categories)}
    limits: dict[str, Any] = {}
    for part in parts:
        limit = part.metrics.get("limit")
        limits.update(limit if isinstance(limit, dict) else dict.fromkeys(part.metrics.get("categories", {}), limit))
    metrics["limit"] = limits
    metrics["wall_seconds"] = round(sum(part.metrics.get("wall_seconds", 0.0) for part in parts), 2)
    if all("generation" in part.metrics for part in parts):
        metrics["generation"] = {**parts[0].metrics["generation"], **{
            key: round(sum(part.metrics["generation"][key] for part in parts), 2) for key in ("new_tokens", "seconds")}}
    return _Section(parts[0].part, rows, metrics)


def join_runs(parts: Sequence[str | Path], out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Join the parts into `out_dir` (one subfolder per section, metrics.json at the top) and return each section's
    metrics. Raises `QwenToolError` on parts of different models, an item scored twice, a non-BFCL section in two
    parts, or an `out_dir` that already holds files (a stale section would be compared as if joined)."""
    if len(parts) < 2:
        raise QwenToolError(f"eval join got {len(parts)} part; fix: pass two or more run folders")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QwenToolError(f"--out {out} already exists and is not an empty folder; fix: pass a new folder, or "
                            "remove that one first")
    by_section: dict[str, list[_Section]] = {}
    for part in parts:
        for name, section in _sections(Path(part)).items():
            by_section.setdefault(name, []).append(section)
    _same_model([section for name in by_section for section in by_section[name]])
    joined: dict[str, _Section] = {}
    for name in SECTIONS:
        found = by_section.get(name, [])
        if len(found) > 1 and name != "bfcl":
            raise QwenToolError(f"the {name} suite is in both {found[0].part} and {found[1].part}; it is scored "
                                "whole, not by parts; fix: pass one of them")
        if found:
            joined[name] = _merge_bfcl(found) if len(found) > 1 else found[0]
    for name, section in joined.items():
        write_lines(out / name / "outcomes.jsonl", (json.dumps(row, ensure_ascii=False) for row in section.rows))
        write_json(out / name / "metrics.json", section.metrics)
    lead = next(iter(joined))
    top = {**joined[lead].metrics, **{name: section.metrics for name, section in joined.items() if name != lead}}
    write_json(out / "metrics.json", top)
    return {name: section.metrics for name, section in joined.items()}
