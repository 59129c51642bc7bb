"""Single-turn RL tasks cut from trajectories: an erroneous turn (an error_recovery example's deliberate wrong call)
is never the gold; it stays in the prompt with its error, and the corrective turn is the target."""

from __future__ import annotations

import random

import pytest

from qwen_tool import QwenToolError
from qwen_tool.config import RLTrainingConfig, load_config
from qwen_tool.data.synth import synthesize
from qwen_tool.rewards import as_calls
from qwen_tool.rl.episodes import SingleTurnEpisode
from qwen_tool.rl.task_pool import TaskPool


def _gold_of(record: dict, erroneous: bool) -> list[dict]:
    """The calls of the first assistant turn with (or without) the `erroneous` mark."""
    turn = next(m for m in record["messages"] if m["role"] == "assistant" and bool(m.get("erroneous")) == erroneous)
    return [{"name": c.name, "arguments": c.arguments} for c in as_calls(turn["tool_calls"])]


def test_an_error_recovery_task_asks_for_the_corrected_call_with_the_slip_in_its_prompt():
    records = synthesize(8, seed=1, mix={"error_recovery": 1.0})
    assert {r["meta"]["source"] for r in records} == {"unseen", "suite"}  # both generators' marking
    for record in records:
        wrong, corrected = _gold_of(record, erroneous=True), _gold_of(record, erroneous=False)
        assert wrong != corrected
        episode = SingleTurnEpisode.from_trajectory(record, {"irm": 1.0})
        prompt, _ = episode.reset()
        assert episode.gold == corrected
        # the wrong call and the error it got are context: the prompt ends on the tool message after the slip
        slip = next(i for i, m in enumerate(record["messages"]) if m.get("erroneous"))
        assert prompt == record["messages"][:slip + 2] and prompt[-1]["role"] == "tool"


def test_the_pool_never_draws_an_erroneous_call_as_gold():
    records = synthesize(6, seed=2, mix={"error_recovery": 0.5, "single": 0.5})
    cfg = load_config(RLTrainingConfig, None, ["suites=[]", "prompts_per_step=60", "samples_per_prompt=1",
                                               "curriculum.enabled=false"])
    pool = TaskPool(cfg, records, [])
    assert pool.single_turn_count == 6
    wrong_calls = [_gold_of(r, erroneous=True) for r in records if r["meta"]["category"] == "error_recovery"]
    episodes = pool.episodes(random.Random(0))
    assert {e.task_id for e in episodes} == {r["meta"]["id"] for r in records}  # every task drawn
    assert len(wrong_calls) == 3 and all(e.gold and e.gold not in wrong_calls for e in episodes)


def test_a_trajectory_with_only_erroneous_turns_has_no_single_turn_task():
    record = synthesize(1, seed=0, mix={"error_recovery": 1.0})[0]
    slip = next(i for i, m in enumerate(record["messages"]) if m.get("erroneous"))
    cut = {**record, "messages": record["messages"][:slip + 2]}
    with pytest.raises(QwenToolError, match="no assistant turn that is not marked erroneous; fix: filter"):
        SingleTurnEpisode.from_trajectory(cut, {"irm": 1.0})
    cfg = load_config(RLTrainingConfig, None, ["suites=[]", "curriculum.enabled=false"])
    assert TaskPool(cfg, [cut, record], []).single_turn_count == 1
