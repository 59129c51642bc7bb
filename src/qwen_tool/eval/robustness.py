"""The robustness suite: the internal single-turn held-out suite under the five RoTBench noise levels
(docs/references.md, RoTBench).

For each level the held-out records are noised with `data.augment` (the one noise implementation: tools renamed and
perturbed, the gold calls in the conversation rewritten into the presented names, so the model is scored against what
it sees) and written to `<out>/<level>/records.jsonl`; `run_internal` scores that copy into `<out>/<level>/`. Record i
at a level always gets the rng `Random(f"{seed}:{i}:{level}")`, so a seed fixes the noise. Writes `metrics.json`,
`robustness.md` (rows levels; TS, PI, CF in %, n decisions) and `robustness.png` (the noise curves).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.data.augment import augment_all
from qwen_tool.env.noise import NOISE_LEVELS
from qwen_tool.eval.generation import Backend, load_backend
from qwen_tool.eval.report import robustness_chart, robustness_table
from qwen_tool.eval.runner import read_held_out, run_internal
from qwen_tool.files import write_json, write_lines, write_text
from qwen_tool.log import logger


def write_noised(records: list[dict[str, Any]], level: str, seed: int, path: Path) -> Path:
    """`records` at noise `level` (deterministic in `seed`) as JSON lines at `path`."""
    return write_lines(path, (json.dumps(record, ensure_ascii=False) for record in augment_all(records, [level], seed)))


def robustness_markdown(result: dict[str, Any]) -> str:
    header, rows = robustness_table({"run": result})
    lines = [f"# Robustness: {result.get('model', '')} under RoTBench noise (seed {result.get('seed')})", "",
             "![robustness.png](robustness.png)", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def run_robustness(model: str, records_path: str | Path, out_dir: str | Path, *, backend: Backend | None = None,
                   tokenizer: Any = None, tool_format: str | None = None, tool_rendering: str | None = None,
                   levels: Sequence[str] = NOISE_LEVELS,
                   seed: int = 0, batch_size: int = 8, max_new_tokens: int = 256, limit: int | None = None,
                   cache_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Score the held-out suite at each noise level into `<out_dir>/<level>/` and return
    `{"suite": "robustness", "levels": {level: {TS, PI, CF, ..., n}}, ...}` (n = scored decisions).

    The backend and tokenizer are loaded once and shared by every level; generations are cached in `cache_dir`
    (default `<out_dir>/../.generation-cache`, the one `--suite internal` uses, so the clean level replays its answers).
    """
    from qwen_tool.models import load_tokenizer, tool_format_for

    unknown = [level for level in levels if level not in NOISE_LEVELS]
    if unknown or not levels:
        raise QwenToolError(f"unknown noise levels {unknown or '(none given)'}; fix: choose from "
                            f"{', '.join(NOISE_LEVELS)}")
    if limit is not None and limit < 1:
        raise QwenToolError(f"--limit must be at least 1, got {limit}; fix: pass a positive number or no limit")
    records = read_held_out(records_path, limit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out.parent / ".generation-cache"
    tool_format = tool_format or tool_format_for(model)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
    backend = backend or load_backend(model)
    started = time.perf_counter()
    per_level: dict[str, dict[str, Any]] = {}
    for level in levels:
        noised = write_noised(records, level, seed, out / level / "records.jsonl")
        scored = run_internal(model, noised, out / level, backend=backend, tokenizer=tokenizer,
                              tool_format=tool_format, tool_rendering=tool_rendering, batch_size=batch_size,
                              max_new_tokens=max_new_tokens, cache_dir=cache, progress=progress)
        per_level[level] = {**scored["summary"], "n": scored["decisions"]}
        logger.info("robustness %s: TS %.1f%%, PI %.1f%%, CF %.1f%% of %d", level, 100 * per_level[level]["TS"],
                    100 * per_level[level]["PI"], 100 * per_level[level]["CF"], scored["decisions"])
    result = {
        "suite": "robustness", "model": model, "records": len(records), "seed": seed, "limit": limit,
        "levels": per_level, "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_json(out / "metrics.json", result)
    write_text(out / "robustness.md", robustness_markdown(result))
    robustness_chart({"run": result}, out / "robustness.png")
    return result
