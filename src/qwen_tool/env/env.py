"""`ToolEnv`: the tool-use MDP. State = dialogue + offered tools; action = one assistant turn (calls or an answer).

`reset(task)` returns the observation (messages + tools); `step(output)` executes the turn's calls and returns the
tool messages, per-call feedback (`CallOutcome`, classified by the taxonomy), a reward, and whether the episode ended.
An episode ends on a final answer (an assistant turn without calls, once every follow-up user turn is used), after
`max_turns` assistant steps within one user turn, or on an unrecoverable error (unparsable output).

Reward: `reward_fn(RewardInput) -> float` when given; without one the reward is always 0.0 (the rewards room
provides the functions; the env only calls them). Each turn is scored against the gold step at `ToolEnv.gold_index`,
which is not the turn count: a turn the model got wrong, or whose call the tool failed (a simulated 503 or timeout),
is retried against the same gold step (`next_gold_index`).
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.codec.types import ParsedOutput, ToolCall
from qwen_tool.env.bfcl_multi_turn import BFCLSuite
from qwen_tool.env.noise import NoisyToolset, apply_noise
from qwen_tool.env.suite import Suite
from qwen_tool.env.suites import get_suite
from qwen_tool.env.task import Task
from qwen_tool.tools import CallOutcome, Executor, FeedbackCategory, Tool

_FAULTS = (("ServiceUnavailable", "503 Service Unavailable: the server is temporarily overloaded"),
           ("Timeout", "the tool did not answer within the time limit (timed out)"))


@dataclass
class Observation:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]


@dataclass
class RewardInput:
    """What a reward function sees after one step."""

    task: Task
    step_index: int
    """The turn's number in the episode (0, 1, ...): counts retries too."""
    gold_index: int
    """The gold step this turn is compared with (`task.gold_calls[gold_index]`); behind `step_index` once an earlier
    turn had to be retried."""
    output: ParsedOutput
    outcomes: list[CallOutcome]
    gold_calls: list[dict[str, Any]] | None
    """`task.gold_calls[gold_index]`; None past the last gold step."""
    tools: list[dict[str, Any]]
    done: bool
    info: dict[str, Any]


@dataclass
class StepResult:
    tool_messages: list[dict[str, Any]]
    feedback: list[CallOutcome]
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


def next_gold_index(gold_calls: Sequence[Sequence[Any]], index: int, *, called: bool, retry_due: bool) -> int:
    """The gold step the next turn is compared with, after a turn compared with gold step `index`.

        retry_due (a model error, a parse error included, or a call the tool failed)  → index   (retries the step)
        calls, none failed                                                             → min(index + 1, close(index))
        no calls (an answer, or a question to the user)                                → close(index) + 1

    close(i) = the first j ≥ i with gold_calls[j] == [] (the answer that closes the current user turn), else
    max(i, len(gold_calls)). Why the clamp and the jump: a user turn's calls can only be scored against that user
    turn's gold steps. Extra calls stay scored against its closing answer (an answer was due), and an answer, early or
    on time, ends the user turn, so the follow-up's first turn is scored against the follow-up's first gold step. On a
    gold replay without tool failures every step is on time, and the index is the turn count.
    """
    if retry_due:
        return index
    close = next((j for j in range(index, len(gold_calls)) if not gold_calls[j]), max(index, len(gold_calls)))
    return min(index + 1, close) if called else close + 1


def suite_for(task: Task) -> Suite:
    """A fresh suite instance for the task (its initial state comes from the task's seed or config)."""
    if task.suite == "bfcl":
        return BFCLSuite.from_task(task)
    return get_suite(task.suite)(seed=task.seed)


class ToolEnv:
    """One episode at a time; construct once and `reset` per task.

    Args:
        fmt: wire format of the policy; raw-text outputs are parsed with `codec.get_codec(fmt)`.
        max_turns: assistant steps allowed per user turn (9, as in ToolEyes).
        reward_fn: called after each step with a `RewardInput`, whose gold is the step at `gold_index`; None gives
            reward 0.0.
        noise: RoTBench level for the presented tools: clean, slight, medium, heavy, union.
        instability_rate: probability that a valid call fails with a simulated 503 or timeout (tool_instability).
        executor: how calls run (timeouts, isolation); the default has a 10 s timeout.
    """

    def __init__(
        self,
        fmt: str = "hermes",
        max_turns: int = 9,
        reward_fn: Callable[[RewardInput], float] | None = None,
        noise: str = "clean",
        instability_rate: float = 0.0,
        executor: Executor | None = None,
    ) -> None:
        self.fmt = fmt
        self.max_turns = max_turns
        self.reward_fn = reward_fn
        self.noise = noise
        self.instability_rate = instability_rate
        self.executor = executor or Executor()
        self.task: Task | None = None
        self.done = True

    # --- episode -------------------------------------------------------------------------------------------------
    def reset(self, task: Task, seed: int | None = None) -> Observation:
        self.task = task
        self.seed = task.seed if seed is None else seed
        self.rng = random.Random(self.seed)
        self.suite = suite_for(task)
        self._all_tools = {tool.name: tool for tool in self.suite.tools()}
        offered = self._offered(task.tools)
        self.toolset: NoisyToolset = apply_noise(offered, self.noise, random.Random(f"noise-{self.seed}"))
        self.tools: dict[str, Tool] = {tool.name: tool for tool in self.toolset.tools}
        self.messages: list[dict[str, Any]] = copy.deepcopy(task.messages)
        self.annotations: list[dict[str, Any]] = []
        self.rewards: list[float] = []
        self.step_index = 0
        self.gold_index = 0  # the gold step the next turn is compared with (`next_gold_index`)
        self.turn_steps = 0
        self.user_turn = 0
        self.done = False
        self.termination: str | None = None
        self.end_state: dict[str, Any] | None = None
        return self.observation()

    def observation(self) -> Observation:
        return Observation(messages=self.messages, tools=self.tool_schemas())

    def tool_schemas(self) -> list[dict[str, Any]]:
        return [tool.openai_schema() for tool in self.tools.values()]

    def step(self, output: ParsedOutput | str) -> StepResult:
        """Apply one assistant turn. Text is parsed from the start of content; a caller whose prompt leaves the
        output inside an open block (a think opener) passes the ParsedOutput it parsed with `Codec.start_state`."""
        if self.done or self.task is None:
            raise QwenToolError("ToolEnv.step called on a finished episode; call reset(task) first")
        parsed = self._parse(output) if isinstance(output, str) else output
        calls = [ToolCall(c.name, c.arguments, f"call_{self.step_index}_{k}") for k, c in enumerate(parsed.tool_calls)]
        assistant: dict[str, Any] = {"role": "assistant", "content": parsed.content or ""}
        if parsed.reasoning:
            assistant["reasoning_content"] = parsed.reasoning
        if calls:
            assistant["tool_calls"] = [call.to_openai() for call in calls]
        self.messages.append(assistant)
        message_index = len(self.messages) - 1
        info: dict[str, Any] = {"step": self.step_index, "user_turn": self.user_turn}
        outcomes: list[CallOutcome] = []
        tool_messages: list[dict[str, Any]] = []

        if parsed.error and not calls:
            outcomes = [CallOutcome(None, FeedbackCategory.OTHER, f"Error: malformed tool call: {parsed.error}",
                                    "ParseError", parsed.error)]
            self._finish("parse_error")
        elif calls:
            self.suite.record_calls(calls)
            outcomes = self._execute(calls)
            tool_messages = [{"role": "tool", "tool_call_id": o.call.id, "name": o.call.name, "content": o.content}
                             for o in outcomes if o.call is not None]
            self.messages.extend(tool_messages)
            self.turn_steps += 1
            if self.turn_steps >= self.max_turns:
                self._finish("max_turns")
        else:
            self.suite.end_user_turn(self.user_turn)
            if self.user_turn < len(self.task.follow_ups):
                follow_up = self.task.follow_ups[self.user_turn]
                self.user_turn += 1
                self.turn_steps = 0
                for name in follow_up.add_tools:
                    self._add_tool(name)
                self.messages.extend(copy.deepcopy(follow_up.messages))
                info["user_messages"] = follow_up.messages
                info["tools_added"] = follow_up.add_tools
            else:
                self._finish("final_answer")

        categories = [o.category.value for o in outcomes]
        erroneous = any(o.category.is_model_error for o in outcomes)
        self.annotations.append({"message_index": message_index, "step": self.step_index,
                                 "gold_index": self.gold_index, "categories": categories, "erroneous": erroneous})
        info["termination"] = self.termination
        if self.done:
            info["end_state"] = self.end_state
        gold_steps = self.task.gold_calls
        gold = gold_steps[self.gold_index] if self.gold_index < len(gold_steps) else None
        reward = 0.0
        if self.reward_fn is not None:
            reward = float(self.reward_fn(RewardInput(self.task, self.step_index, self.gold_index, parsed, outcomes,
                                                      gold, self.tool_schemas(), self.done, info)))
        self.rewards.append(reward)
        self.step_index += 1
        retry_due = erroneous or any(o.category is FeedbackCategory.TOOL_INSTABILITY for o in outcomes)
        self.gold_index = next_gold_index(gold_steps, self.gold_index, called=bool(calls), retry_due=retry_due)
        return StepResult(tool_messages, outcomes, reward, self.done, info)

    def trajectory(self) -> dict[str, Any]:
        """The episode so far in the canonical format, with per-turn annotations in `meta`."""
        assert self.task is not None
        return {
            "tools": self.tool_schemas(),
            "messages": copy.deepcopy(self.messages),
            "meta": {
                "task_id": self.task.id, "suite": self.task.suite, "domain": self.task.domain, "seed": self.seed,
                "noise": self.noise, "instability_rate": self.instability_rate, "termination": self.termination,
                "steps": self.step_index, "annotations": copy.deepcopy(self.annotations), "rewards": list(self.rewards),
                "end_state": self.end_state,
            },
        }

    def present_gold(self, gold_index: int) -> ParsedOutput:
        """The gold assistant turn of gold step `gold_index` written on the presented (possibly noisy) tools."""
        assert self.task is not None
        if gold_index >= len(self.task.gold_calls) or not self.task.gold_calls[gold_index]:
            return ParsedOutput(content=self.task.gold_answer or "Done.")
        calls = []
        for gold in self.task.gold_calls[gold_index]:
            name, arguments = self.toolset.present(gold["name"], gold.get("arguments", {}))
            calls.append(ToolCall(name, arguments))
        return ParsedOutput(tool_calls=calls)

    # --- internals -----------------------------------------------------------------------------------------------
    def _parse(self, text: str) -> ParsedOutput:
        from qwen_tool.codec import get_codec  # lazily: the env works on ParsedOutput without any codec

        return get_codec(self.fmt).parse(text, tools=self.tool_schemas())

    def _offered(self, wanted: Sequence[str | dict[str, Any]] | None) -> list[Tool]:
        if wanted is None:
            return list(self._all_tools.values())
        offered = []
        for entry in wanted:
            if isinstance(entry, str):
                if entry not in self._all_tools:
                    raise QwenToolError(f"task offers tool '{entry}' that suite '{self.task.suite}' lacks; "
                                        f"use one of {sorted(self._all_tools)}")
                offered.append(self._all_tools[entry])
            else:
                spec = Tool.from_schema(entry)
                real = self._all_tools.get(spec.name)
                if real and real.handler:  # the suite's own handler, trusted (in-process) as the suite's tools are
                    spec = dataclasses.replace(spec, handler=real.handler, isolate=real.isolate)
                offered.append(spec)
        return offered

    def _add_tool(self, name: str) -> None:
        tool = self._all_tools[name]
        self.toolset.tools.append(tool)
        self.tools[tool.name] = tool

    def _execute(self, calls: list[ToolCall]) -> list[CallOutcome]:
        """Run the calls; valid calls drawn by the fault injector fail with a simulated 503 or timeout instead."""
        faulted: dict[int, CallOutcome] = {}
        if self.instability_rate > 0:
            for index, call in enumerate(calls):
                if self.rng.random() < self.instability_rate and self.executor.reject(call, self.tools) is None:
                    error_type, message = self.rng.choice(_FAULTS)
                    faulted[index] = CallOutcome(call, FeedbackCategory.TOOL_INSTABILITY, f"Error: {message}",
                                                 error_type, message)
        runnable = [call for index, call in enumerate(calls) if index not in faulted]
        executed = iter(self.executor.execute(runnable, self.tools, concurrent=self.suite.concurrent_safe))
        return [faulted[index] if index in faulted else next(executed) for index in range(len(calls))]

    def _finish(self, reason: str) -> None:
        self.done = True
        self.termination = reason
        assert self.task is not None
        verdict = self.suite.check()
        state_match = None
        if self.task.gold_state is not None:
            state_match = self.suite.state() == self.task.gold_state
        if verdict is not None or state_match is not None:
            self.end_state = {"state_match": state_match, **(verdict or {})}


class ToolEnvBatch:
    """Many episodes stepped together (rollouts): `reset(tasks)`, then `step(outputs)` for the unfinished ones."""

    def __init__(self, size: int, **env_options: Any) -> None:
        self.envs = [ToolEnv(**env_options) for _ in range(size)]

    def reset(self, tasks: Sequence[Task], seeds: Sequence[int] | None = None) -> list[Observation]:
        if len(tasks) != len(self.envs):
            raise QwenToolError(f"ToolEnvBatch.reset got {len(tasks)} tasks for {len(self.envs)} envs; match them")
        return [env.reset(task, None if seeds is None else seeds[i]) for i, (env, task) in enumerate(
            zip(self.envs, tasks, strict=True))]

    @property
    def active(self) -> list[int]:
        """Indices of episodes still running."""
        return [i for i, env in enumerate(self.envs) if not env.done]

    def step(self, outputs: Sequence[ParsedOutput | str | None]) -> list[StepResult | None]:
        """One output per env (None for finished ones, which are skipped)."""
        return [None if output is None or env.done else env.step(output)
                for env, output in zip(self.envs, outputs, strict=True)]

    def trajectories(self) -> list[dict[str, Any]]:
        return [env.trajectory() for env in self.envs]


def run_gold_episode(env: ToolEnv, task: Task, seed: int | None = None) -> dict[str, Any]:
    """Play the task's gold calls (the scripted policy) and return the trajectory. Each gold step is played once, in
    order (`gold_index` equals `step_index`), except that the calls the tool failed (instability) are played again in
    the next turn, alone, as a policy would retry them: the calls that ran are not repeated."""
    env.reset(task, seed)
    failed: list[ToolCall] = []
    while not env.done:
        result = env.step(ParsedOutput(tool_calls=failed) if failed else env.present_gold(env.gold_index))
        failed = [outcome.call for outcome in result.feedback
                  if outcome.category is FeedbackCategory.TOOL_INSTABILITY and outcome.call is not None]
    return env.trajectory()


def replay_gold(tasks: list[Task], max_turns: int = 20) -> list[dict[str, Any]]:
    """Play each task's gold calls through ToolEnv and return its suite's end-state verdict per task (for BFCL tasks,
    BFCL's own check: the replay acceptance of `qwen-tool env bfcl-replay`)."""
    env = ToolEnv(max_turns=max_turns)
    verdicts = []
    for task in tasks:
        trajectory = run_gold_episode(env, task)
        verdicts.append({"id": task.id, **(trajectory["meta"]["end_state"] or {"valid": False})})
    return verdicts
