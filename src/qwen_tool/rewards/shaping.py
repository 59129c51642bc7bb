"""Shaping rewards of the Qwen-Tool design (docs/references.md, Qwen-Tool design brief): format, call timing,
execution, error recovery, multi-step coherence, efficiency. Feedback categories are the tools room's taxonomy; a call
that failed through tool instability (the environment's fault) never lowers a reward.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from qwen_tool.rewards.types import RewardResult, as_calls, canonical
from qwen_tool.tools import FeedbackCategory


def is_model_error(category: str) -> bool:
    """True for feedback the model caused (anything but ok and tool_instability)."""
    return FeedbackCategory(category).is_model_error


def format_reward(*, parse_error: bool, truncated: bool = False) -> RewardResult:
    """R = 1 when the turn parsed cleanly and ended on its own (not cut at the token limit), else 0."""
    value = 0.0 if parse_error or truncated else 1.0
    return RewardResult(value, {"format": value})


def call_timing_reward(*, called: bool, call_due: bool) -> RewardResult:
    """R = 0 when the turn calls exactly when a call is due; −1 for a call where none was needed, or no call where
    one was."""
    unneeded = called and not call_due
    missed = call_due and not called
    value = -1.0 if unneeded or missed else 0.0
    return RewardResult(value, {"timing": value, "unneeded_call": float(unneeded), "missed_call": float(missed)})


def execution_reward(categories: Sequence[str]) -> RewardResult:
    """R = (#ok − #model errors) / (#ok + #model errors) over the executed calls; instability excluded; 0 for none."""
    ok = sum(c == FeedbackCategory.OK for c in categories)
    errors = sum(is_model_error(c) for c in categories)
    value = (ok - errors) / (ok + errors) if ok + errors else 0.0
    return RewardResult(value, {"execution": value})


def recovery_reward(*, failed_before: Iterable[Any], succeeded: Iterable[Any]) -> RewardResult:
    """R = 1 when an earlier call of the episode failed by the model's fault and is not yet recovered (`failed_before`,
    non-empty) and this turn holds a call that succeeded (`succeeded`: executed ok, or in a replay matched the gold
    call) and differs from every one of those failed calls (name and canonical arguments); else 0. A repeat of a
    failing call earns nothing, however it fares. The seed's "error recovery (self-correction and retry)"."""
    failed = {(c.name, canonical(c.arguments)) for c in as_calls(failed_before)}
    corrected = any((c.name, canonical(c.arguments)) not in failed for c in as_calls(succeeded))
    value = 1.0 if failed and corrected else 0.0
    return RewardResult(value, {"recovery": value})


def coherence_reward(*, end_state_reached: bool, step_categories: Iterable[Sequence[str]],
                     error_penalty: float = 0.25) -> RewardResult:
    """R = 1[end state reached] − error_penalty · #calls with a model error, summed over the episode's steps."""
    errors = sum(is_model_error(c) for step in step_categories for c in step)
    value = float(end_state_reached) - error_penalty * errors
    return RewardResult(value, {"coherence": value, "end_state": float(end_state_reached), "error_calls": errors})


def efficiency_reward(*, calls: int, gold_calls: int, penalty: float = 0.1) -> RewardResult:
    """R = −penalty · max(0, calls − gold_calls): only calls beyond what the gold needed cost anything."""
    extra = max(0, calls - gold_calls)
    value = -penalty * extra
    return RewardResult(value, {"efficiency": value, "extra_calls": float(extra)})
