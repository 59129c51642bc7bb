"""The tasks an RL step draws: a pool of single-turn tasks (from trajectories) and multi-turn ToolEnv tasks, drawn
through a curriculum of stages.

Stages: single calls first, then parallel calls / choosing among tools / knowing when not to call, then multi-step
chains. Each stage's pool holds its own tasks and every earlier stage's, so skills are not forgotten. Promotion by
success rate (over a window of steps) or by schedule; a stage lasts at most `steps_per_stage` steps.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.config import RLTrainingConfig, to_dict
from qwen_tool.env import ToolEnv
from qwen_tool.env.task import Task
from qwen_tool.rl.episodes import Episode, SingleTurnEpisode, ToolEnvEpisode, gold_turn_index
from qwen_tool.rl.replay import ReplayEpisode, ReplayTask

SINGLE_CALL, PARALLEL_OR_CHOICE, MULTI_STEP = 0, 1, 2
STAGE_NAMES = ("single call", "parallel/choice", "multi-step")


def stage_of_trajectory(record: Mapping[str, Any]) -> int:
    """0: one call in one turn with one tool offered, or no call due; 2: calls in several assistant turns (a chain);
    1: the rest (parallel calls, a choice among tools). No-call prompts start in stage 0 so the first steps do not
    reward calling on every prompt."""
    turns = [m for m in record["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    if len(turns) > 1:
        return MULTI_STEP
    if not turns or (len(turns[0]["tool_calls"]) == 1 and len(record.get("tools") or []) == 1):
        return SINGLE_CALL
    return PARALLEL_OR_CHOICE


@dataclass
class Curriculum:
    """Which stage the run is in, and draws of task indices from its pool.

    `stages[k]` lists the single-turn task indices of stage k; `multi_turn` the multi-turn task indices (stage 2);
    `parallel` the single-turn task indices whose gold turn holds several calls.
    """

    stages: Sequence[Sequence[int]]
    multi_turn: Sequence[int]
    promotion: str = "success"
    threshold: float = 0.5
    window: int = 3
    steps_per_stage: int = 10
    enabled: bool = True
    stage: int = 0
    steps_in_stage: int = 0
    history: list[float] = field(default_factory=list)
    parallel: Sequence[int] = ()

    def __post_init__(self) -> None:
        if not self.enabled:
            self.stage = MULTI_STEP
        self._skip_empty()

    def _skip_empty(self) -> None:
        while self.stage < MULTI_STEP and not self.single_pool() and not (self.stage + 1 == MULTI_STEP
                                                                         and self.multi_turn):
            self.stage += 1

    def single_pool(self) -> list[int]:
        return [i for k in range(self.stage + 1) for i in self.stages[k]] if self.stages else []

    def draw(self, count: int, multi_turn_share: float, rng: random.Random, parallel_share: float | None = None
             ) -> list[tuple[str, int]]:
        """`count` (kind, index) pairs, kind "single" or "multi"; multi-turn only in the last stage. With
        `parallel_share`, each single-turn pick comes from the pool's `parallel` tasks with that chance (while the pool
        holds both kinds), else from the rest."""
        single = self.single_pool()
        multi = list(self.multi_turn) if self.stage == MULTI_STEP else []
        n_multi = round(count * multi_turn_share) if multi and single else (count if multi else 0)
        picks = [("multi", rng.choice(multi)) for _ in range(n_multi)]
        marked = set(self.parallel) if parallel_share is not None else set()
        parallel = [i for i in single if i in marked]
        others = [i for i in single if i not in marked]
        for _ in range(count - n_multi if single else 0):
            from_parallel = bool(parallel) and (not others or rng.random() < (parallel_share or 0.0))
            picks.append(("single", rng.choice(parallel if from_parallel else others)))
        return picks

    def update(self, success_rate: float) -> bool:
        """Record one step's success rate; returns True when the stage changed."""
        self.history.append(success_rate)
        self.steps_in_stage += 1
        if self.stage >= MULTI_STEP:
            return False
        recent = self.history[-self.window:]
        ready = len(recent) == self.window and sum(recent) / len(recent) >= self.threshold
        due = self.steps_in_stage >= self.steps_per_stage
        if due or (self.promotion == "success" and ready):
            self.stage += 1
            self.steps_in_stage = 0
            self.history.clear()
            self._skip_empty()
            return True
        return False

    def state(self) -> dict[str, Any]:
        return {"stage": self.stage, "steps_in_stage": self.steps_in_stage, "history": list(self.history)}

    def load(self, state: Mapping[str, Any]) -> None:
        self.stage, self.steps_in_stage = state["stage"], state["steps_in_stage"]
        self.history = list(state["history"])


def env_tasks(suites: Sequence[str]) -> list[Task]:
    """The built-in suites' multi-turn tasks."""
    from qwen_tool.env.suites import get_suite

    return [task for name in suites for task in get_suite(name).tasks()]


class TaskPool:
    """The episodes a step can draw: single-turn tasks (from trajectories) and multi-turn tasks: ToolEnv tasks and,
    with `multi_turn_trajectories`, replays of the trajectories' multi-step recordings (which then leave the
    single-turn pool: they are played whole)."""

    def __init__(self, cfg: RLTrainingConfig, trajectories: Sequence[dict[str, Any]], tasks: Sequence[Task]) -> None:
        self.cfg = cfg
        self.trajectories = [t for t in trajectories if gold_turn_index(t["messages"]) is not None]
        self.tasks = list(tasks)
        self.replays: list[ReplayTask] = []
        replayed: set[int] = set()
        if cfg.multi_turn_trajectories:
            for index, record in enumerate(self.trajectories):
                replay = ReplayTask.from_trajectory(record)
                if replay is not None:
                    self.replays.append(replay)
                    replayed.add(index)
            if not self.replays:
                raise QwenToolError("multi_turn_trajectories is on but no trajectory in data= has calls in several "
                                    "assistant turns; fix: give data with multi_step, conditional or error_recovery "
                                    "examples, or set multi_turn_trajectories: false")
        if not self.trajectories and not self.tasks:
            raise QwenToolError("no RL tasks: give data=PATH (trajectories) and/or suites=[...] (built-in suites)")
        stages: list[list[int]] = [[], [], []]
        for index, record in enumerate(self.trajectories):
            if index not in replayed:
                stages[stage_of_trajectory(record)].append(index)
        self.single_turn_count = sum(len(stage) for stage in stages)
        self.parallel = [i for stage in stages for i in stage if len(self._gold_calls(i)) > 1]
        if cfg.parallel_share is not None and not self.parallel:
            raise QwenToolError("parallel_share is set but no single-turn task in data= has several calls in its gold "
                                "turn; fix: give data with parallel examples, or remove parallel_share")
        settings = cfg.curriculum
        self.curriculum = Curriculum(stages, list(range(self.multi_turn_count)), settings.promotion,
                                     settings.success_threshold, settings.window, settings.steps_per_stage,
                                     settings.enabled, parallel=self.parallel)

    def _gold_calls(self, index: int) -> list[Any]:
        """The calls of a single-turn task's gold turn."""
        messages = self.trajectories[index]["messages"]
        return messages[gold_turn_index(messages)].get("tool_calls") or []

    @property
    def multi_turn_count(self) -> int:
        return len(self.tasks) + len(self.replays)

    def episodes(self, rng: random.Random) -> list[Episode]:
        """`prompts_per_step` tasks, each repeated `samples_per_prompt` times (consecutive: one GRPO group)."""
        weights = to_dict(self.cfg.rewards)
        out: list[Episode] = []
        for kind, index in self.curriculum.draw(self.cfg.prompts_per_step, self.cfg.multi_turn_share, rng,
                                                self.cfg.parallel_share):
            for _ in range(self.cfg.samples_per_prompt):
                out.append(self._episode(kind, index, weights))
        return out

    def _episode(self, kind: str, index: int, weights: dict[str, float]) -> Episode:
        if kind == "single":
            return SingleTurnEpisode.from_trajectory(self.trajectories[index], weights)
        if index >= len(self.tasks):
            return ReplayEpisode(self.replays[index - len(self.tasks)], weights, self.cfg.error_penalty,
                                 self.cfg.extra_call_penalty)
        env = ToolEnv(noise=self.cfg.env_noise, instability_rate=self.cfg.instability_rate,
                      max_turns=self.cfg.max_turns)
        return ToolEnvEpisode(self.tasks[index], weights, env, self.cfg.error_penalty, self.cfg.extra_call_penalty)
