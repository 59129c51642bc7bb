"""Suite-based synthesis: records replay exactly in ToolEnv, chains use real outputs, eval tasks reach gold state."""

from __future__ import annotations

import json
import string
from collections import Counter

import pytest

from qwen_tool.codec.types import ParsedOutput, ToolCall
from qwen_tool.data.schema import validate_trajectory
from qwen_tool.data.suite_phrases import TASKS
from qwen_tool.data.suite_synth import (
    EVAL_CATEGORIES,
    SUITE_CATEGORIES,
    SuiteSynthError,
    build_suite_record,
    new_env,
    suites_for,
    synthesize_eval_tasks,
)
from qwen_tool.env import Task, ToolEnv, UserTurn, run_gold_episode
from qwen_tool.env.suites import SUITES


@pytest.fixture(scope="module")
def suite_records() -> dict[str, list[dict]]:
    env, suites = new_env(), suites_for(None, "train")
    return {category: [validate_trajectory(build_suite_record(category, index, 0, "train", suites, env, set()))
                       for index in range(25)] for category in SUITE_CATEGORIES}


def test_every_suite_tool_has_task_phrases_that_state_its_required_values() -> None:
    for suite in SUITES.values():
        for tool in suite.tool_specs():
            assert tool.name in TASKS, tool.name
            for template in TASKS[tool.name]:
                slots = {name for _, name, _, _ in string.Formatter().parse(template) if name}
                assert slots == set(tool.parameters.get("required", [])), (tool.name, template)


def _replay(record: dict) -> list[tuple[dict, list]]:
    """Play the record's assistant turns in a fresh ToolEnv (same suite, seed and offered tools): (turn, outcomes)."""
    meta, messages = record["meta"], record["messages"]
    first_reply = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    follow_ups = [UserTurn([m]) for m in messages[first_reply:] if m["role"] == "user"]
    task = Task(id="replay", suite=meta["suite"], messages=messages[:first_reply], seed=meta["seed"],
                tools=[t["function"]["name"] for t in record["tools"]], follow_ups=follow_ups)
    env = ToolEnv()
    env.reset(task)
    played = []
    for message in messages[first_reply:]:
        if message["role"] != "assistant":
            continue
        calls = [ToolCall(c["function"]["name"], json.loads(c["function"]["arguments"]))
                 for c in message.get("tool_calls") or []]
        result = env.step(ParsedOutput(content=message.get("content"), tool_calls=calls))
        played.append((message, result.feedback))
    assert env.done
    return played


def test_suite_records_replay_exactly_in_toolenv(suite_records: dict[str, list[dict]]) -> None:
    """Tool messages are the env's real outputs; gold calls succeed; each wrong turn carries the env's category."""
    errors = Counter()
    for category, records in suite_records.items():
        for record in records:
            tool_messages = [m for m in record["messages"] if m["role"] == "tool"]
            outcomes = [o for _, feedback in _replay(record) for o in feedback]
            assert [o.content for o in outcomes] == [m["content"] for m in tool_messages]
            assert [o.category.value for o in outcomes] == [m["feedback_category"] for m in tool_messages]
            for message, feedback in _replay(record):
                if message.get("erroneous"):
                    assert category == "error_recovery"
                    assert message["feedback_category"] == feedback[0].category.value != "ok"
                    errors[message["feedback_category"]] += 1
                else:
                    assert all(o.ok for o in feedback), (category, [o.content for o in feedback])
    assert sum(errors.values()) == 25
    assert len(errors) >= 3 and "call_failure" in errors


def test_multi_step_feeds_a_real_output_into_the_next_call(suite_records: dict[str, list[dict]]) -> None:
    for record in suite_records["multi_step"]:
        turns = [m for m in record["messages"] if m.get("tool_calls")]
        results = [m["content"] for m in record["messages"] if m["role"] == "tool"]
        assert len(turns) >= 2
        assert len(record["meta"]["fed"]) == len(turns) - 1
        for step, parameter in enumerate(record["meta"]["fed"], start=1):
            value = json.loads(turns[step]["tool_calls"][0]["function"]["arguments"])[parameter]
            assert json.dumps(value) in results[step - 1]  # the fed value is in the previous call's real result


def test_conditional_takes_the_branch_the_first_result_decides(suite_records: dict[str, list[dict]]) -> None:
    for record in suite_records["conditional"]:
        answer = record["messages"][-1]["content"]
        above = "which is above" in answer
        assert record["meta"]["branch"] == ("yes" if above else "no")
        assert len([m for m in record["messages"] if m.get("tool_calls")]) == 2


def test_choice_offers_near_names_and_parallel_calls_share_a_turn(suite_records: dict[str, list[dict]]) -> None:
    pairs = 0
    for record in suite_records["choice"]:
        offered = {t["function"]["name"] for t in record["tools"]}
        pairs += any(name + "s" in offered for name in offered)
    assert pairs >= 3  # e.g. fetch_stock_quote beside fetch_stock_quotes
    assert all(len(next(m for m in r["messages"] if m.get("tool_calls"))["tool_calls"]) >= 2
               for r in suite_records["parallel"])
    nested = [json.loads(c["function"]["arguments"]) for r in suite_records["nested"] for m in r["messages"]
              for c in m.get("tool_calls") or []]
    assert all(any(isinstance(v, (dict, list)) for v in arguments.values()) for arguments in nested)


def test_missing_info_asks_then_calls_with_the_users_value(suite_records: dict[str, list[dict]]) -> None:
    for record in suite_records["missing_info"]:
        roles = [m["role"] for m in record["messages"] if m["role"] != "system"]
        assert roles[:4] == ["user", "assistant", "user", "assistant"]
        reply = [m for m in record["messages"] if m["role"] == "user"][1]["content"]
        arguments = json.loads(next(m for m in record["messages"] if m.get("tool_calls"))["tool_calls"][0]
                               ["function"]["arguments"])
        assert arguments[record["meta"]["missing"]] in reply


def test_eval_tasks_replay_to_their_gold_state_on_held_out_suites() -> None:
    held = {"travel", "calendar"}
    tasks = synthesize_eval_tasks(24, seed=3, held_out=held)
    assert tasks == synthesize_eval_tasks(24, seed=3, held_out=held)
    assert len(tasks) == 24 and {t["suite"] for t in tasks} <= held
    assert {t["meta"]["category"] for t in tasks} <= set(EVAL_CATEGORIES)
    assert any(len([step for step in t["gold_calls"] if step]) >= 2 for t in tasks)
    env = ToolEnv()
    for data in tasks:
        task = Task.from_dict(json.loads(json.dumps(data)))
        trajectory = run_gold_episode(env, task)
        assert trajectory["meta"]["termination"] == "final_answer"
        assert trajectory["meta"]["end_state"]["state_match"] is True
    lazy_misses = 0  # a policy that never calls a tool misses the end state of every task that changes something
    for data in tasks:
        env.reset(Task.from_dict(data))
        while not env.done:
            env.step(ParsedOutput(content="Done."))
        lazy_misses += env.end_state["state_match"] is False
    assert lazy_misses >= 3
    with pytest.raises(SuiteSynthError, match="error_recovery"):
        synthesize_eval_tasks(2, held_out=held, mix={"error_recovery": 1.0})


def test_a_repeated_eval_task_is_redrawn(monkeypatch) -> None:
    """Every other draw of a single-call task is forced to one fixed plan: without the redraw the first draw of every
    task would be that plan, so all six tasks would be one episode."""
    import random

    from qwen_tool.data import suite_synth

    real, draws = suite_synth.BUILDERS["single"], iter(range(10_000))

    def every_other_draw_the_same(planner):
        if next(draws) % 2 == 0:  # the planner drawn again from one fixed seed
            planner.__init__(random.Random("one plan"), ["weather"], planner.executor)
        return real(planner)

    monkeypatch.setitem(suite_synth.BUILDERS, "single", every_other_draw_the_same)
    tasks = synthesize_eval_tasks(6, seed=0, held_out={"weather"}, mix={"single": 1.0})
    episodes = {json.dumps([t["messages"], t["tools"], t["gold_calls"]], sort_keys=True) for t in tasks}
    assert len(tasks) == 6 and len(episodes) == 6
