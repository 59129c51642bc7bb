"""Curriculum: which stage a training record belongs to, cumulative pools, promotion by success or schedule, and the
weighted draw of parallel tasks."""

from __future__ import annotations

import random

import pytest

from qwen_tool import QwenToolError
from qwen_tool.config import ConfigError, RLTrainingConfig, load_config
from qwen_tool.rl.task_pool import (
    MULTI_STEP,
    PARALLEL_OR_CHOICE,
    SINGLE_CALL,
    Curriculum,
    TaskPool,
    stage_of_trajectory,
)


def _record(calls_per_turn: list[int], tools: int) -> dict:
    messages = [{"role": "user", "content": "q"}]
    for n in calls_per_turn:
        calls = [{"type": "function", "function": {"name": "f", "arguments": "{}"}} for _ in range(n)]
        messages += [{"role": "assistant", "content": "", "tool_calls": calls},
                     *[{"role": "tool", "content": "{}"} for _ in range(n)]]
    messages.append({"role": "assistant", "content": "done"})
    return {"messages": messages, "tools": [{"type": "function", "function": {"name": f"t{i}"}} for i in range(tools)]}


def test_stages_of_records() -> None:
    assert stage_of_trajectory(_record([1], tools=1)) == SINGLE_CALL
    # No call due starts in stage 0 too, so the first steps also reward staying silent.
    assert stage_of_trajectory(_record([], tools=2)) == SINGLE_CALL
    assert stage_of_trajectory(_record([1], tools=3)) == PARALLEL_OR_CHOICE
    assert stage_of_trajectory(_record([2], tools=1)) == PARALLEL_OR_CHOICE
    assert stage_of_trajectory(_record([1, 1], tools=2)) == MULTI_STEP


def test_pools_are_cumulative_and_multi_turn_only_in_the_last_stage() -> None:
    curriculum = Curriculum(stages=[[0, 1], [2], []], multi_turn=[7], promotion="schedule", steps_per_stage=1)
    rng = random.Random(0)
    assert curriculum.single_pool() == [0, 1]
    assert {kind for kind, _ in curriculum.draw(8, 0.5, rng)} == {"single"}
    assert curriculum.update(0.0) and curriculum.single_pool() == [0, 1, 2]
    assert curriculum.update(0.0) and curriculum.stage == MULTI_STEP
    picks = curriculum.draw(8, 0.25, rng)
    assert sum(kind == "multi" for kind, _ in picks) == 2 and all(i == 7 for kind, i in picks if kind == "multi")


def test_promotion_by_success_needs_a_full_window_above_threshold() -> None:
    curriculum = Curriculum(stages=[[0], [1], []], multi_turn=[], threshold=0.5, window=2, steps_per_stage=10)
    assert not curriculum.update(0.9)  # window not full yet
    assert not curriculum.update(0.0)  # mean 0.45 < 0.5
    assert curriculum.update(1.0)  # mean of the last two 0.5
    assert curriculum.stage == PARALLEL_OR_CHOICE and curriculum.history == []


def test_parallel_share_sets_the_chance_a_single_turn_pick_is_a_parallel_task() -> None:
    curriculum = Curriculum(stages=[[0, 1], [2, 3, 4], []], multi_turn=[], promotion="schedule", steps_per_stage=1,
                            parallel=[3, 4])
    rng = random.Random(0)
    # stage 0 holds no parallel task, so the share has nothing to weigh
    assert {i for _, i in curriculum.draw(50, 0.0, rng, parallel_share=1.0)} == {0, 1}
    curriculum.update(0.0)
    assert {i for _, i in curriculum.draw(50, 0.0, rng, parallel_share=1.0)} == {3, 4}
    assert {i for _, i in curriculum.draw(50, 0.0, rng, parallel_share=0.0)} == {0, 1, 2}
    picks = [i for _, i in curriculum.draw(4000, 0.0, rng, parallel_share=0.25)]
    share = sum(i in (3, 4) for i in picks) / len(picks)
    assert abs(share - 0.25) < 0.03  # 4.4 standard errors
    unweighted = [i for _, i in curriculum.draw(4000, 0.0, random.Random(0))]
    assert abs(sum(i in (3, 4) for i in unweighted) / len(unweighted) - 0.4) < 0.03  # 2 of the 5 tasks


def test_without_parallel_share_the_draws_are_the_unweighted_ones() -> None:
    """Runs without the option (and their checkpoints' random state) draw exactly as before it existed."""
    curriculum = Curriculum(stages=[[0, 1], [2, 3, 4], []], multi_turn=[], enabled=False, parallel=[3, 4])
    expected_rng = random.Random(5)
    expected = [("single", expected_rng.choice([0, 1, 2, 3, 4])) for _ in range(20)]
    assert curriculum.draw(20, 0.0, random.Random(5)) == expected


def test_parallel_share_needs_parallel_tasks_and_a_share_in_0_1() -> None:
    records = [_record([1], tools=1), _record([], tools=2), _record([1], tools=3)]
    cfg = load_config(RLTrainingConfig, None, ["suites=[]", "parallel_share=0.5"])
    with pytest.raises(QwenToolError, match="parallel_share is set but no single-turn task"):
        TaskPool(cfg, records, [])
    pool = TaskPool(cfg, [*records, _record([2], tools=1)], [])
    assert pool.parallel == [3]
    with pytest.raises(ConfigError, match="parallel_share must be in"):
        load_config(RLTrainingConfig, None, ["suites=[]", "parallel_share=1.5"])
