"""A weighted sum of the rewards, from config: per assistant turn, and once per episode for the episode-level terms.

R_turn = Σ_{n ∈ TURN_REWARDS} w_n · R_n(turn);  R_episode = Σ_{n ∈ EPISODE_REWARDS} w_n · R_n(episode).
A weight of 0 leaves a term out (it is not even computed). Components keep every term's own breakdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen_tool.rewards.comparison import tool_n1_reward, toolrl_reward
from qwen_tool.rewards.irm import irm_reward
from qwen_tool.rewards.shaping import (
    call_timing_reward,
    coherence_reward,
    efficiency_reward,
    execution_reward,
    format_reward,
    recovery_reward,
)
from qwen_tool.rewards.types import RewardError, RewardResult

TURN_REWARDS = ("irm", "toolrl", "tool_n1", "format", "timing", "execution", "recovery")
EPISODE_REWARDS = ("coherence", "efficiency")


@dataclass
class Turn:
    """One assistant turn as rewards see it. `gold` None or [] means no call was due."""

    predicted: Sequence[Any]
    gold: Sequence[Any] | None
    tools: Sequence[Mapping[str, Any]]
    parse_error: bool = False
    truncated: bool = False
    categories: Sequence[str] = field(default_factory=list)
    """Feedback categories of the executed calls (empty when nothing was executed)."""
    failed_before: Sequence[Any] = ()
    """Calls earlier in the episode (its prompt included) that failed by the model's fault and no later call has
    recovered (the recovery reward's trigger)."""
    succeeded: Sequence[Any] = ()
    """This turn's calls that succeeded: executed ok, or, in a replay, matched the gold call."""


def _check(weights: Mapping[str, float]) -> None:
    unknown = set(weights) - set(TURN_REWARDS) - set(EPISODE_REWARDS)
    if unknown:
        names = ", ".join(TURN_REWARDS + EPISODE_REWARDS)
        raise RewardError(f"unknown reward names {sorted(unknown)}; fix: use {names}")


def turn_reward(turn: Turn, weights: Mapping[str, float]) -> RewardResult:
    """Σ w_n · R_n over the turn-level rewards with a non-zero weight."""
    _check(weights)
    format_ok = not turn.parse_error and not turn.truncated
    unparsable = turn.parse_error and not turn.predicted
    terms = {
        "irm": lambda: irm_reward(turn.predicted, turn.gold, turn.tools, unparsable=unparsable),
        "toolrl": lambda: toolrl_reward(turn.predicted, turn.gold, format_ok=format_ok, unparsable=unparsable),
        "tool_n1": lambda: tool_n1_reward(turn.predicted, turn.gold, format_ok=format_ok),
        "format": lambda: format_reward(parse_error=turn.parse_error, truncated=turn.truncated),
        "timing": lambda: call_timing_reward(called=bool(turn.predicted), call_due=bool(turn.gold)),
        "execution": lambda: execution_reward(turn.categories),
        "recovery": lambda: recovery_reward(failed_before=turn.failed_before, succeeded=turn.succeeded),
    }
    return _weighted({name: terms[name] for name in TURN_REWARDS}, weights)


def episode_reward(*, end_state_reached: bool, step_categories: Sequence[Sequence[str]], calls: int, gold_calls: int,
                   weights: Mapping[str, float], error_penalty: float = 0.25, extra_call_penalty: float = 0.1
                   ) -> RewardResult:
    """Σ w_n · R_n over the episode-level rewards (multi-step coherence, efficiency) with a non-zero weight."""
    _check(weights)
    terms = {
        "coherence": lambda: coherence_reward(end_state_reached=end_state_reached, step_categories=step_categories,
                                              error_penalty=error_penalty),
        "efficiency": lambda: efficiency_reward(calls=calls, gold_calls=gold_calls, penalty=extra_call_penalty),
    }
    return _weighted(terms, weights)


def _weighted(terms: Mapping[str, Any], weights: Mapping[str, float]) -> RewardResult:
    total, components = 0.0, {}
    for name, compute in terms.items():
        weight = float(weights.get(name, 0.0))
        if weight == 0.0:
            continue
        result = compute()
        total += weight * result.total
        components.update(result.components)
    return RewardResult(total, components)
