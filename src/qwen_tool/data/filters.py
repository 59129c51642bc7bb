"""Rule filters for trajectories: schema-valid, executable gold calls, no normalised duplicates, length limits.

`filter_records` keeps the records that pass every rule, in order, and returns a `FilterReport` saying how many were
dropped for which reason (the first failing rule counts), with a few examples. "Executable" is checked against the
offered schemas: every call of a non-erroneous assistant turn names an offered tool, its arguments validate, and its
tool message (when annotated) reports `ok`; erroneous turns are the deliberate ones and are left alone.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from qwen_tool.codec.types import ToolCall
from qwen_tool.data.schema import TrajectoryError, validate_trajectory
from qwen_tool.tools import Executor, Tool

REASONS = ("invalid", "not_executable", "duplicate", "too_long")


@dataclass
class FilterReport:
    """What the filters kept and dropped; `dropped` counts per reason, `examples` a few (record id, why) each."""

    total: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, reason: str, where: str, why: str, keep_examples: int = 3) -> None:
        self.dropped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < keep_examples:
            shown.append(f"{where}: {why}")

    def summary(self) -> str:
        if not self.dropped:
            return f"filters: kept all {self.kept} of {self.total}"
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.dropped.items()))
        return f"filters: kept {self.kept} of {self.total}; dropped {reasons}"


def normalise_text(text: str) -> str:
    """Lower case, runs of anything but letters and digits made one space (so punctuation and case never matter)."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def dedupe_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """Same offered tools + same normalised user text + same calls (names and canonical arguments) = duplicate."""
    tools = tuple(sorted(tool["function"]["name"] for tool in record.get("tools", [])))
    users = tuple(normalise_text(m.get("content") or "") for m in record["messages"] if m["role"] == "user")
    calls = []
    for message in record["messages"]:
        for call in message.get("tool_calls") or []:
            arguments = call["function"]["arguments"]
            decoded = json.loads(arguments) if isinstance(arguments, str) else arguments
            calls.append((call["function"]["name"], json.dumps(decoded, sort_keys=True, ensure_ascii=False)))
    return tools, users, tuple(calls)


def gold_call_problem(record: dict[str, Any], executor: Executor | None = None) -> str | None:
    """Why a gold (non-erroneous) call cannot execute on the offered tools, or None when all can."""
    executor = executor or Executor(concurrent=False)
    tools = {tool["function"]["name"]: Tool.from_schema(tool) for tool in record.get("tools", [])}
    feedback = {m.get("tool_call_id"): m.get("feedback_category") for m in record["messages"] if m["role"] == "tool"}
    for index, message in enumerate(record["messages"]):
        if message.get("erroneous"):
            continue
        for call in message.get("tool_calls") or []:
            arguments = call["function"]["arguments"]
            decoded = json.loads(arguments) if isinstance(arguments, str) else arguments
            rejection = executor.reject(ToolCall(call["function"]["name"], decoded), tools)
            if rejection is not None:
                return f"messages.{index}: {rejection.content}"
            if feedback.get(call["id"]) not in (None, "ok"):
                return (f"messages.{index}: its tool message reports {feedback[call['id']]} on a turn not marked "
                        "erroneous")
    return None


def record_length(record: dict[str, Any], tokenizer: Any = None) -> int:
    """Characters of the record's tools and messages as JSON, or tokens of that text when a tokenizer is given."""
    text = json.dumps({"tools": record.get("tools", []), "messages": record["messages"]}, ensure_ascii=False)
    if tokenizer is None:
        return len(text)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def filter_records(records: list[dict[str, Any]], max_length: int | None = None, tokenizer: Any = None,
                   dedupe: bool = True) -> tuple[list[dict[str, Any]], FilterReport]:
    """Records passing every rule (in their order) and the report. `max_length` is in characters, or in tokens of
    `tokenizer` when one is given; None means no length limit."""
    report = FilterReport(total=len(records))
    executor = Executor(concurrent=False)
    seen: set[Any] = set()
    kept = []
    for position, record in enumerate(records):
        where = str((record.get("meta") or {}).get("id") or f"#{position}") if isinstance(record, dict) else \
            f"#{position}"
        try:
            record = validate_trajectory(record, where)
        except TrajectoryError as exc:
            report.note("invalid", where, str(exc))
            continue
        problem = gold_call_problem(record, executor)
        if problem is not None:
            report.note("not_executable", where, problem)
            continue
        key = dedupe_key(record)
        if dedupe and key in seen:
            report.note("duplicate", where, "same tools, user text and calls as an earlier record")
            continue
        seen.add(key)
        if max_length is not None:
            length = record_length(record, tokenizer)
            if length > max_length:
                unit = "tokens" if tokenizer is not None else "characters"
                report.note("too_long", where, f"{length} {unit} > {max_length}")
                continue
        kept.append(record)
    report.kept = len(kept)
    return kept, report


__all__ = ["REASONS", "FilterReport", "dedupe_key", "filter_records", "gold_call_problem", "normalise_text",
           "record_length"]
