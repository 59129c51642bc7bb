"""The one way synthesised training data is made: synthesis, then the rule filters (schema validation, executable
gold calls, no duplicates, an optional length limit). `qwen-tool data synth`, `qwen-tool train rl --synth` and the main
job's data stage all call `synthesize_training_data`, so the same settings give the same records everywhere.
Data read from a file comes in through `qwen_tool.data.schema.read_any`, which validates every record."""

from __future__ import annotations

from typing import Any

from qwen_tool.data.filters import FilterReport, filter_records
from qwen_tool.data.synth import DEFAULT_SUITE_SHARE, synthesize


def synthesize_training_data(n: int, *, seed: int = 0, mix: str | dict[str, float] | None = None,
                             held_out: set[str] | None = None, split: str = "train",
                             suite_share: float = DEFAULT_SUITE_SHARE, max_length: int | None = None,
                             tokenizer: Any = None) -> tuple[list[dict[str, Any]], FilterReport]:
    """`synthesize(n, ...)` (see there for the arguments), kept only where every filter passes: the records (fewer
    than `n` when some are dropped) and the filter report. `max_length` is in characters, or in tokens of `tokenizer`;
    None for no limit."""
    records = synthesize(n, seed=seed, mix=mix, held_out=held_out, split=split, suite_share=suite_share)
    return filter_records(records, max_length=max_length, tokenizer=tokenizer)
