"""Episodes: what the policy plays. Each resets to a prompt and its tools, scores every assistant turn it is shown
(`step`), and scores the whole episode at its end (`finish`).

Two kinds here: `SingleTurnEpisode` (a prompt and the gold calls of its first assistant turn not marked erroneous,
from a synthesised trajectory; nothing is executed, calls are only validated against the schemas) and
`ToolEnvEpisode` (a multi-turn `ToolEnv` task whose calls run). A third, `ReplayEpisode` (`qwen_tool.rl.replay`),
plays a multi-step trajectory against its recording.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from qwen_tool import QwenToolError
from qwen_tool.codec.types import ParsedOutput, ToolCall
from qwen_tool.env import ToolEnv
from qwen_tool.env.task import Task
from qwen_tool.rewards import (
    RewardResult,
    Turn,
    as_calls,
    episode_reward,
    recovery_reward,
    tool_n1_reward,
    turn_reward,
)
from qwen_tool.tools import Executor, FeedbackCategory, Tool


@dataclass
class StepReport:
    """What one assistant turn did in its episode."""

    new_messages: list[dict[str, Any]]
    reward: RewardResult
    done: bool
    categories: list[str] = field(default_factory=list)
    calls: int = 0
    gold_index: int = 0
    """The gold step the turn was scored against (a multi-turn task's step; 0 in a single-turn task)."""


class Episode(Protocol):
    task_id: str

    def reset(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    def step(self, parsed: ParsedOutput, truncated: bool) -> StepReport: ...

    def finish(self) -> RewardResult: ...

    def succeeded(self) -> bool:
        """Whether the episode did what the gold asks (for the curriculum's success rate)."""
        ...


@dataclass
class FailedCalls:
    """The model-error calls of an episode that no later call has recovered (what the recovery reward pays for
    correcting): a turn with a call that succeeded and repeats none of them clears them; its own failing calls are
    added after."""

    pending: list[Any] = field(default_factory=list)

    def update(self, succeeded: list[Any], failed: list[Any]) -> None:
        if recovery_reward(failed_before=self.pending, succeeded=succeeded).total:
            self.pending = []
        self.pending = self.pending + failed


def gold_turn_index(messages: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the first assistant turn not marked `erroneous` (the turn a single-turn task asks for); None when
    there is none."""
    return next((i for i, m in enumerate(messages) if m["role"] == "assistant" and not m.get("erroneous")), None)


class SingleTurnEpisode:
    """One assistant turn against the gold calls of a trajectory's first assistant turn not marked erroneous; calls
    are validated against the tools' schemas (structural feedback categories) but never executed."""

    def __init__(self, prompt: list[dict[str, Any]], tools: list[dict[str, Any]], gold: list[dict[str, Any]],
                 weights: Mapping[str, float], task_id: str = "") -> None:
        self.prompt, self.tools, self.gold, self.weights, self.task_id = prompt, tools, gold, weights, task_id
        self._tools = {t.name: t for t in (Tool.from_schema(s) for s in tools)}
        self.exact = False

    @classmethod
    def from_trajectory(cls, record: Mapping[str, Any], weights: Mapping[str, float]) -> SingleTurnEpisode:
        """Prompt = the messages before the first assistant turn not marked `erroneous`; gold = that turn's calls
        (none: an answer).

        An erroneous turn (an error_recovery trajectory's deliberate wrong call) is never a gold target: it stays in
        the prompt with the error it got, and the corrective turn after it is the target. That keeps the recovery the
        trajectory was written to teach, and asks for the turn SFT trains in the same context (MAE gives the wrong call
        no loss; `gold_rollout` starts at this turn too); skipping such trajectories would drop that skill from RL.
        """
        messages = record["messages"]
        target = gold_turn_index(messages)
        if target is None:
            raise QwenToolError(f"trajectory {record.get('meta', {}).get('id', '?')} has no assistant turn that is "
                                "not marked erroneous; fix: filter such records out of the RL data")
        gold = [{"name": c.name, "arguments": c.arguments} for c in as_calls(messages[target].get("tool_calls"))]
        return cls(copy.deepcopy(messages[:target]), record.get("tools") or [], gold, weights,
                   str(record.get("meta", {}).get("id", "")))

    def reset(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.prompt, self.tools

    def step(self, parsed: ParsedOutput, truncated: bool) -> StepReport:
        executor = Executor()
        categories = []
        for call in parsed.tool_calls:
            rejected = executor.reject(ToolCall(call.name, call.arguments), self._tools)
            categories.append("ok" if rejected is None else rejected.category.value)
        turn = Turn(parsed.tool_calls, self.gold, self.tools, parse_error=parsed.error is not None,
                    truncated=truncated, categories=categories)
        self.exact = parsed.error is None and tool_n1_reward(parsed.tool_calls, self.gold).total == 1.0
        return StepReport([], turn_reward(turn, self.weights), True, categories, len(parsed.tool_calls))

    def finish(self) -> RewardResult:
        return RewardResult(0.0, {})

    def succeeded(self) -> bool:
        return self.exact


class ToolEnvEpisode:
    """A multi-turn `ToolEnv` task: per-turn rewards against the gold calls of the step the env compares the turn
    with (`ToolEnv.gold_index`: a turn after a model error or a tool failure retries the same step), episode-level
    terms at the end (end state reached; calls beyond the gold count)."""

    def __init__(self, task: Task, weights: Mapping[str, float], env: ToolEnv | None = None,
                 error_penalty: float = 0.25, extra_call_penalty: float = 0.1) -> None:
        self.task, self.weights, self.task_id = task, weights, task.id
        self.env = env or ToolEnv()
        self.error_penalty, self.extra_call_penalty = error_penalty, extra_call_penalty
        self.step_categories: list[list[str]] = []
        self.ok_calls: Counter[tuple[str, str]] = Counter()
        self.failures = FailedCalls()

    def reset(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        observation = self.env.reset(self.task)
        self.step_categories, self.ok_calls, self.failures = [], Counter(), FailedCalls()
        return copy.deepcopy(observation.messages), observation.tools

    def step(self, parsed: ParsedOutput, truncated: bool) -> StepReport:
        gold_index = self.env.gold_index
        gold = self.env.present_gold(gold_index).tool_calls
        before = len(self.env.messages)
        result = self.env.step(parsed)
        executed = [o for o in result.feedback if o.call is not None]
        categories = [o.category.value for o in executed]
        self.step_categories.append(categories)
        succeeded = [o.call for o in executed if o.category == FeedbackCategory.OK]
        for call in succeeded:
            self.ok_calls[_key(call)] += 1
        turn = Turn(parsed.tool_calls, gold, self.env.tool_schemas(), parse_error=parsed.error is not None,
                    truncated=truncated, categories=categories, failed_before=self.failures.pending,
                    succeeded=succeeded)
        self.failures.update(succeeded, [o.call for o in executed if o.category.is_model_error])
        new = copy.deepcopy(self.env.messages[before + 1:])  # after the assistant message the env appended
        return StepReport(new, turn_reward(turn, self.weights), result.done, categories, len(parsed.tool_calls),
                          gold_index)

    def end_state_reached(self) -> bool:
        """The suite's gold state when the task has one; else: ended on an answer with every gold call made
        successfully (as presented, multiset)."""
        end = self.env.end_state or {}
        if end.get("state_match") is not None:
            return bool(end["state_match"])
        if self.env.termination != "final_answer":
            return False
        gold = Counter(_key(c) for step in range(len(self.task.gold_calls))
                       for c in self.env.present_gold(step).tool_calls)
        return not gold - self.ok_calls

    def succeeded(self) -> bool:
        return self.end_state_reached()

    def finish(self) -> RewardResult:
        gold_count = sum(len(step) for step in self.task.gold_calls)
        calls = sum(len(step) for step in self.step_categories)
        return episode_reward(end_state_reached=self.end_state_reached(), step_categories=self.step_categories,
                              calls=calls, gold_calls=gold_count, weights=self.weights,
                              error_penalty=self.error_penalty, extra_call_penalty=self.extra_call_penalty)


def _key(call: Any) -> tuple[str, str]:
    return call.name, json.dumps(call.arguments, sort_keys=True, default=str)
