"""Multi-turn tasks from the SFT data's own multi-step trajectories, played against their recording.

A trajectory with calls in several assistant turns becomes a `ReplayTask`: its prompt is everything before the first
assistant turn that no erroneous turn follows (so an `error_recovery` trajectory starts with its deliberate wrong call
and the error it got already in the context: the episode starts where the recovery is due), and each later assistant
turn is one gold step. `ReplayEpisode` plays the steps in order. A turn that makes exactly the step's gold calls
(Tool-N1's match: the same multiset of names and arguments; an answer where the gold answers) is shown the recorded
tool results, in the order the policy made the calls, and the recorded messages up to the next assistant turn; the
episode then goes on to the next step. Any other turn ends the episode there with that turn's reward: the recording
has no result for a call it never made, so the episode cannot go on truthfully. Calls are validated against the tools'
schemas (their feedback categories), never executed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen_tool.codec.types import ParsedOutput, ToolCall
from qwen_tool.rewards import RewardResult, Turn, as_calls, episode_reward, tool_n1_reward, turn_reward
from qwen_tool.rewards.types import canonical
from qwen_tool.rl.episodes import FailedCalls, StepReport
from qwen_tool.tools import Executor, FeedbackCategory, Tool


@dataclass
class ReplayStep:
    """One gold assistant turn of a recording and what followed it."""

    gold_calls: list[dict[str, Any]]
    """The turn's calls as `{"name", "arguments"}` ([]: the turn answers)."""
    results: list[dict[str, Any]]
    """The recorded tool messages of those calls, parallel to `gold_calls`."""
    after: list[dict[str, Any]] = field(default_factory=list)
    """Recorded messages after the results and before the next assistant turn (follow-up user turns)."""


@dataclass
class ReplayTask:
    id: str
    tools: list[dict[str, Any]]
    prompt: list[dict[str, Any]]
    steps: list[ReplayStep]
    prompt_failures: list[Any]
    """Model-error calls of the prompt that no later prompt turn recovered (an error_recovery trajectory's slip)."""

    @classmethod
    def from_trajectory(cls, record: Mapping[str, Any]) -> ReplayTask | None:
        """The task of a trajectory with calls in at least two assistant turns (erroneous ones included); None for
        any other trajectory, and for one whose last assistant turn is erroneous (no gold step to play)."""
        messages = record["messages"]
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if sum(bool(messages[i].get("tool_calls")) for i in assistant) < 2:
            return None
        last_erroneous = max((i for i in assistant if messages[i].get("erroneous")), default=-1)
        gold_turns = [i for i in assistant if i > last_erroneous]
        if not gold_turns:
            return None
        failures = FailedCalls()
        for i in (i for i in assistant if i < gold_turns[0]):
            calls, results, _ = _turn(messages, i, assistant)
            erroneous = bool(messages[i].get("erroneous"))
            failures.update([c for c, r in zip(calls, results, strict=True) if _category(r, erroneous) == "ok"],
                            [c for c, r in zip(calls, results, strict=True) if _is_model_error(r, erroneous)])
        steps = []
        for i in gold_turns:
            calls, results, after = _turn(messages, i, assistant)
            steps.append(ReplayStep([{"name": c.name, "arguments": c.arguments} for c in calls], results, after))
        return cls(str(record.get("meta", {}).get("id", "")), list(record.get("tools") or []),
                   copy.deepcopy(messages[:gold_turns[0]]), steps, failures.pending)


def _turn(messages: Sequence[Mapping[str, Any]], index: int, assistant: Sequence[int]
          ) -> tuple[list[Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(calls, their recorded tool messages in call order, the other messages) of the assistant turn at `index`, up to
    the next assistant turn."""
    end = next((i for i in assistant if i > index), len(messages))
    following = [dict(m) for m in messages[index + 1:end]]
    raw = messages[index].get("tool_calls") or []
    calls = as_calls(raw)
    by_id = {m.get("tool_call_id"): m for m in following if m["role"] == "tool"}
    tool_messages = [m for m in following if m["role"] == "tool"]
    results = [by_id.get(entry.get("id")) or (tool_messages[k] if k < len(tool_messages) else
                                              {"role": "tool", "content": ""})
               for k, entry in enumerate(raw)]
    return calls, results, [m for m in following if m["role"] != "tool"]


def _category(result: Mapping[str, Any], erroneous: bool) -> str:
    """A recorded result's feedback category; unrecorded: a model error on an erroneous turn, else ok."""
    return str(result.get("feedback_category") or ("other" if erroneous else "ok"))


def _is_model_error(result: Mapping[str, Any], erroneous: bool) -> bool:
    return FeedbackCategory(_category(result, erroneous)).is_model_error


class ReplayEpisode:
    """A `ReplayTask` played step by step: per-turn rewards against that step's gold calls, episode-level terms at
    the end (end state: every step matched)."""

    def __init__(self, task: ReplayTask, weights: Mapping[str, float], error_penalty: float = 0.25,
                 extra_call_penalty: float = 0.1) -> None:
        self.task, self.weights, self.task_id = task, weights, task.id
        self.error_penalty, self.extra_call_penalty = error_penalty, extra_call_penalty
        self._tools = {t.name: t for t in (Tool.from_schema(s) for s in task.tools)}
        self.reset()

    def reset(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.step_index, self.calls, self.completed = 0, 0, False
        self.step_categories: list[list[str]] = []
        self.failures = FailedCalls(list(self.task.prompt_failures))
        return copy.deepcopy(self.task.prompt), self.task.tools

    def step(self, parsed: ParsedOutput, truncated: bool) -> StepReport:
        step = self.task.steps[self.step_index]
        matched = parsed.error is None and tool_n1_reward(parsed.tool_calls, step.gold_calls).total == 1.0
        executor = Executor()
        if matched:
            results = _results_in_call_order(parsed.tool_calls, step)
            categories = [_category(r, False) for r in results]
            succeeded = [c for c, category in zip(parsed.tool_calls, categories, strict=True) if category == "ok"]
            failed = [c for c, r in zip(parsed.tool_calls, results, strict=True) if _is_model_error(r, False)]
        else:  # nothing ran: only the calls the schemas reject have a category
            results, succeeded = [], []
            rejected = [(c, executor.reject(ToolCall(c.name, c.arguments), self._tools)) for c in parsed.tool_calls]
            categories = [outcome.category.value for _, outcome in rejected if outcome is not None]
            failed = [c for c, outcome in rejected if outcome is not None and outcome.category.is_model_error]
        self.step_categories.append(categories)
        self.calls += len(parsed.tool_calls)
        turn = Turn(parsed.tool_calls, step.gold_calls, self.task.tools, parse_error=parsed.error is not None,
                    truncated=truncated, categories=categories, failed_before=self.failures.pending,
                    succeeded=succeeded)
        self.failures.update(succeeded, failed)
        self.step_index += 1
        self.completed = matched and self.step_index == len(self.task.steps)
        done = not matched or self.completed
        shown = [] if done else results + copy.deepcopy(step.after)
        return StepReport(shown, turn_reward(turn, self.weights), done, categories, len(parsed.tool_calls),
                          self.step_index - 1)

    def succeeded(self) -> bool:
        return self.completed

    def finish(self) -> RewardResult:
        gold_count = sum(len(step.gold_calls) for step in self.task.steps)
        return episode_reward(end_state_reached=self.completed, step_categories=self.step_categories, calls=self.calls,
                              gold_calls=gold_count, weights=self.weights, error_penalty=self.error_penalty,
                              extra_call_penalty=self.extra_call_penalty)


def _results_in_call_order(calls: Sequence[ToolCall], step: ReplayStep) -> list[dict[str, Any]]:
    """The recorded result of each call (the calls match the gold as a multiset), addressed to the policy's call."""
    unused: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for gold, result in zip(as_calls(step.gold_calls), step.results, strict=True):
        unused.setdefault((gold.name, canonical(gold.arguments)), []).append(result)
    shown = []
    for call in calls:
        result = unused[(call.name, canonical(call.arguments))].pop(0)
        shown.append({**{k: v for k, v in result.items() if k in ("role", "name", "content")}, "role": "tool",
                      "tool_call_id": call.id})
    return shown
