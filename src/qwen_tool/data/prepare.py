"""The one way synthesised training data is made: synthesis, then the rule filters (schema validation, executable
gold calls, no duplicates, an optional length limit). `qwen-tool data synth`, `qwen-tool train rl --synth` and the main
job's data stage all call `synthesize_training_data`, so the same settings give the same records everywhere.
Data read from a file comes in through `qwen_tool.data.schema.read_any`, which validates every record."""

from __future__ import annotations

import math
from typing import Any

from qwen_tool.data.filters import FilterReport, filter_records
from qwen_tool.data.synth import DEFAULT_SUITE_SHARE, SynthError, synthesize


def synthesize_training_data(n: int, *, seed: int = 0, mix: str | dict[str, float] | None = None,
                             held_out: set[str] | None = None, split: str = "train",
                             suite_share: float = DEFAULT_SUITE_SHARE, max_length: int | None = None,
                             tokenizer: Any = None) -> tuple[list[dict[str, Any]], FilterReport]:
    """`synthesize(n, ...)` (see there for the arguments), kept only where every filter passes: the records (fewer
    than `n` when some are dropped) and the filter report. `max_length` is in characters, or in tokens of `tokenizer`;
    None for no limit."""
    records = synthesize(n, seed=seed, mix=mix, held_out=held_out, split=split, suite_share=suite_share)
    return filter_records(records, max_length=max_length, tokenizer=tokenizer)


def decision_count(record: dict[str, Any]) -> int:
    """Decisions an evaluation scores in a trajectory: its assistant turns not marked `erroneous` (the same rule as
    `eval.runner.decision_points`)."""
    return sum(m.get("role") == "assistant" and not m.get("erroneous") for m in record.get("messages") or [])


HELD_OUT_GROWTH_ROUNDS = 20
"""Re-syntheses `synthesize_held_out_data` tries before giving up (one or two suffice at ~1.2 decisions a record)."""


def synthesize_held_out_data(n: int, *, min_decisions: int | None = None, seed: int = 0,
                             mix: str | dict[str, float] | None = None, held_out: set[str] | None = None,
                             suite_share: float = DEFAULT_SUITE_SHARE, max_length: int | None = None,
                             tokenizer: Any = None) -> tuple[list[dict[str, Any]], FilterReport]:
    """The held-out single-turn set (split "eval": only `held_out` tools and suites), filtered like training data
    (`max_length` and `tokenizer` as in `synthesize_training_data`): `n` records, or, when those hold fewer than
    `min_decisions` decisions, a set synthesized again with more records (n grown by the shortfall's share,
    n' = ceil(n · min_decisions / decisions)) until it holds enough. Each size is a fresh seeded set, so the same
    arguments give the same records. The main job (`data.n_eval_decisions`) and `qwen-tool data synth
    --eval-decisions` both grow their held-out set here."""
    size = n
    for _ in range(HELD_OUT_GROWTH_ROUNDS):
        records, report = synthesize_training_data(size, seed=seed, mix=mix, held_out=held_out, split="eval",
                                                   suite_share=suite_share, max_length=max_length,
                                                   tokenizer=tokenizer)
        made = sum(decision_count(record) for record in records)
        if min_decisions is None or made >= min_decisions:
            return records, report
        size = max(size + 1, math.ceil(size * min_decisions / max(1, made)))
    raise SynthError(f"{size} held-out records still hold fewer than {min_decisions} decisions; fix: ask for fewer "
                     "decisions (data.n_eval_decisions, --eval-decisions) or more records (data.n_eval, --eval-n)")
