from __future__ import annotations

import dataclasses

import pytest

from qwen_tool import QwenToolError
from qwen_tool.codec.types import ParsedOutput, ToolCall
from qwen_tool.env import NOISE_LEVELS, Task, ToolEnv, ToolEnvBatch, UserTurn, run_gold_episode
from qwen_tool.env.env import next_gold_index
from qwen_tool.env.suites import SUITES, get_suite
from qwen_tool.rewards import Turn, turn_reward

WEATHER = get_suite("weather").tasks()[0]
FINANCE_TRANSFER = get_suite("finance").tasks()[1]


def answer(text="done"):
    return ParsedOutput(content=text)


def calls(*pairs):
    return ParsedOutput(tool_calls=[ToolCall(name, args) for name, args in pairs])


def test_reset_gives_messages_and_openai_tools():
    env = ToolEnv()
    obs = env.reset(WEATHER)
    assert obs.messages[-1] == {"role": "user", "content": WEATHER.messages[-1]["content"]}
    assert {t["function"]["name"] for t in obs.tools} == {t.name for t in get_suite("weather").tool_specs()}
    assert all(t["type"] == "function" for t in obs.tools)


def test_step_records_openai_messages_and_per_turn_annotations():
    env = ToolEnv()
    env.reset(WEATHER)
    result = env.step(calls(("fetch_current_conditions", {"city": "Oslo"}), ("fetch_weather", {"city": "Oslo"}),
                            ("fetch_current_conditions", {"town": "Oslo"})))
    assert [o.category.value for o in result.feedback] == ["ok", "tool_hallucination", "parameter_hallucination"]
    assert not result.done and result.reward == 0.0
    assistant = env.messages[-4]
    assert assistant["role"] == "assistant" and len(assistant["tool_calls"]) == 3
    assert [m["tool_call_id"] for m in result.tool_messages] == [c["id"] for c in assistant["tool_calls"]]
    assert result.tool_messages[0]["name"] == "fetch_current_conditions"
    result = env.step(answer())
    assert result.done and result.info["termination"] == "final_answer"
    trajectory = env.trajectory()
    assert trajectory["meta"]["annotations"][0]["erroneous"] is True
    assert trajectory["meta"]["annotations"][0]["categories"][1] == "tool_hallucination"
    # Turn 0 erred, so turn 1 (the answer) is still compared with gold step 0.
    assert trajectory["meta"]["annotations"][1] == {"message_index": 6, "step": 1, "gold_index": 0, "categories": [],
                                                    "erroneous": False}
    with pytest.raises(QwenToolError, match="finished episode"):
        env.step(answer())


def test_max_turns_ends_the_episode():
    env = ToolEnv(max_turns=3)
    env.reset(WEATHER)
    results = [env.step(calls(("lookup_uv_index", {"city": "Lima"}))) for _ in range(3)]
    assert [r.done for r in results] == [False, False, True]
    assert results[-1].info["termination"] == "max_turns"


def test_malformed_output_is_unrecoverable_and_classified_other():
    env = ToolEnv()
    env.reset(WEATHER)
    result = env.step(ParsedOutput(content="<tool_call>{", error="unterminated tool call"))
    assert result.done and result.info["termination"] == "parse_error"
    assert result.feedback[0].category.value == "other"


def test_raw_text_is_parsed_with_the_policy_codec():
    env = ToolEnv(fmt="hermes")
    env.reset(WEATHER)
    text = '<tool_call>\n{"name": "lookup_uv_index", "arguments": {"city": "Lima"}}\n</tool_call>'
    result = env.step(text)
    assert result.feedback[0].ok and '"uv_index"' in result.tool_messages[0]["content"]


def test_same_seed_same_trajectory_and_different_seed_differs():
    def play(seed):
        env = ToolEnv(instability_rate=0.3)
        return run_gold_episode(env, WEATHER, seed=seed)

    assert play(5) == play(5)
    contents = {str([m.get("content") for m in play(s)["messages"] if m["role"] == "tool"]) for s in range(5)}
    assert len(contents) > 1


def test_instability_injection_is_classified_and_not_a_model_error():
    env = ToolEnv(instability_rate=1.0)
    env.reset(FINANCE_TRANSFER)
    before = env.suite.state()
    result = env.step(env.present_gold(0))
    assert [o.category.value for o in result.feedback] == ["tool_instability"]
    assert env.suite.state() == before  # the faulted call never ran
    assert env.trajectory()["meta"]["annotations"][0]["erroneous"] is False
    # invalid calls keep their own category even when the dice say fault
    assert env.step(calls(("move_funds", {"amount": 1.0}))).feedback[0].category.value == "parameter_missing"


@pytest.mark.parametrize("level", NOISE_LEVELS)
def test_noise_levels_rename_but_handlers_keep_working(level):
    task = get_suite("travel").tasks()[0]
    clean_env, noisy_env = ToolEnv(), ToolEnv(noise=level)
    run_gold_episode(clean_env, task)
    trajectory = run_gold_episode(noisy_env, task)
    assert {c for a in trajectory["meta"]["annotations"] for c in a["categories"]} == {"ok"}
    assert noisy_env.suite.state() == clean_env.suite.state()
    clean_names = {t["function"]["name"] for t in clean_env.tool_schemas()}
    noisy_names = {t["function"]["name"] for t in trajectory["tools"]}
    if level == "clean":
        assert noisy_names == clean_names
    elif level == "heavy":
        assert noisy_names == clean_names  # shuffled among tools...
        assert any(noisy_env.toolset.name_of[n] != n for n in clean_names)  # ...so most point elsewhere
        assert all(len(t["function"]["parameters"]["required"]) >= 1 for t in trajectory["tools"])
    else:
        assert len(noisy_names & clean_names) < len(clean_names) // 2


def test_follow_up_turns_and_added_tools():
    task = Task(id="t", suite="math_units", messages=[{"role": "user", "content": "store 1"}],
                tools=["memory_store"],
                follow_ups=[UserTurn([{"role": "user", "content": "now recall it"}], add_tools=["memory_recall"])])
    env = ToolEnv()
    obs = env.reset(task)
    assert [t["function"]["name"] for t in obs.tools] == ["memory_store"]
    env.step(calls(("memory_store", {"key": "x", "value": 1.0})))
    result = env.step(answer("stored"))
    assert not result.done and result.info["tools_added"] == ["memory_recall"]
    assert env.messages[-1]["content"] == "now recall it"
    assert env.step(calls(("memory_recall", {"key": "x"}))).tool_messages[0]["content"] == "1.0"
    assert env.step(answer("1")).done


def test_reward_fn_receives_step_and_gold():
    seen = []

    def reward(inp):
        seen.append((inp.step_index, inp.gold_calls, [o.category.value for o in inp.outcomes], inp.done))
        return 1.0 if inp.outcomes and all(o.ok for o in inp.outcomes) else -1.0

    env = ToolEnv(reward_fn=reward)
    trajectory = run_gold_episode(env, WEATHER)
    assert trajectory["meta"]["rewards"] == [1.0, -1.0]
    assert seen[0][1] == WEATHER.gold_calls[0] and seen[1][3] is True


def test_a_turn_after_a_model_error_is_compared_with_the_same_gold_step():
    """Finance task 1 (gold steps: 0 move_funds ACC-1001 → ACC-1002 50.0 memo rent; 1 check_account_balance ACC-1002;
    2 the answer). Turn 0 writes `note` for `memo` (parameter_hallucination), turn 1 the gold step 0 call, turn 2 the
    gold step 1 call, turn 3 the answer. IRM (the recipe's turn reward, weight 1):
    turn 0 vs step 0: `note` hallucinated and `memo` missing → −1.3; turns 1, 2, 3 vs steps 0, 1, 2: exact → +1 each.
    (Compared with steps 1, 2, 3 as before, turns 1 and 2 would be wrong tools, −1.5 each.)"""
    seen = []

    def reward(inp):
        seen.append((inp.step_index, inp.gold_index, inp.gold_calls))
        categories = [o.category.value for o in inp.outcomes]
        turn = Turn(inp.output.tool_calls, inp.gold_calls, inp.tools, categories=categories)
        return turn_reward(turn, {"irm": 1.0}).total

    env = ToolEnv(reward_fn=reward)
    env.reset(FINANCE_TRANSFER)
    transfer = {"from_account": "ACC-1001", "to_account": "ACC-1002", "amount": 50.0}
    results = [env.step(output) for output in [
        calls(("move_funds", {**transfer, "note": "rent"})), calls(("move_funds", {**transfer, "memo": "rent"})),
        calls(("check_account_balance", {"account_id": "ACC-1002"})), answer()]]
    assert [o.category.value for r in results for o in r.feedback] == ["parameter_hallucination", "ok", "ok"]
    assert [(step, index) for step, index, _ in seen] == [(0, 0), (1, 0), (2, 1), (3, 2)]
    assert [gold for _, _, gold in seen] == [FINANCE_TRANSFER.gold_calls[i] for i in (0, 0, 1, 2)]
    assert env.rewards == pytest.approx([-1.3, 1.0, 1.0, 1.0]) and results[-1].done
    assert [a["gold_index"] for a in env.trajectory()["meta"]["annotations"]] == [0, 0, 1, 2]


def test_a_gold_replay_compares_turn_k_with_gold_step_k():
    seen = []

    def reward(inp):
        seen.append((inp.step_index, inp.gold_index))
        return 0.0

    env = ToolEnv(reward_fn=reward)
    for task in [t for cls in SUITES.values() for t in cls.tasks()]:
        seen.clear()
        trajectory = run_gold_episode(env, task)
        turns = len(task.gold_calls)  # every task ends on its answer step
        assert seen == [(k, k) for k in range(turns)], task.id
        assert [a["gold_index"] for a in trajectory["meta"]["annotations"]] == list(range(turns))
        assert trajectory["meta"]["termination"] == "final_answer"


def test_the_gold_index_stays_within_the_user_turn():
    """Gold steps [[a], [b], [], [c], []]: two user turns, each closed by an answer step (indices 2 and 4)."""
    gold = [["a"], ["b"], [], ["c"], []]
    assert next_gold_index(gold, 0, called=True, retry_due=True) == 0  # a retry is due
    assert next_gold_index(gold, 0, called=False, retry_due=True) == 0  # unparsable output: the same
    assert next_gold_index(gold, 0, called=True, retry_due=False) == 1
    assert next_gold_index(gold, 2, called=True, retry_due=False) == 2  # an extra call: the answer is still due
    assert next_gold_index(gold, 2, called=False, retry_due=False) == 3  # the answer on time: the next user turn
    assert next_gold_index(gold, 0, called=False, retry_due=False) == 3  # an early answer ends the user turn too
    assert next_gold_index(gold, 4, called=False, retry_due=False) == 5
    assert next_gold_index(gold, 5, called=True, retry_due=False) == 5  # past the gold: no step to move to
    assert next_gold_index(gold, 5, called=False, retry_due=False) == 6  # ... but an answer still counts a turn
    assert next_gold_index([["a"]], 0, called=True, retry_due=False) == 1  # no answer step: the end closes


def test_a_call_the_tool_failed_is_retried_against_the_same_gold_step():
    """A simulated 503 or timeout is the environment's fault: the model's retry faces the step it was on, not the
    next one (which would score a correct retry as a wrong call)."""
    env = ToolEnv(instability_rate=1.0)
    env.reset(FINANCE_TRANSFER)
    assert env.step(env.present_gold(0)).feedback[0].category.value == "tool_instability"
    assert env.gold_index == 0
    env.instability_rate = 0.0
    assert env.step(env.present_gold(0)).feedback[0].ok
    assert env.gold_index == 1


def test_the_gold_replay_retries_only_the_calls_the_tool_failed():
    """Every suite task, replayed with faults, reaches the end state of its clean replay: each failed call is run
    again in the next turn, alone, and no call that ran is repeated."""
    faulted = partly = 0
    for task in [t for cls in SUITES.values() for t in cls.tasks()]:
        clean = ToolEnv()
        run_gold_episode(clean, task)
        for seed in range(4):
            env = ToolEnv(instability_rate=0.3)
            trajectory = run_gold_episode(env, task, seed=seed)
            assert trajectory["meta"]["termination"] == "final_answer" and env.suite.state() == clean.suite.state()
            turns = trajectory["meta"]["annotations"]
            for turn, after in zip(turns, turns[1:], strict=False):
                failed = turn["categories"].count("tool_instability")
                faulted += failed > 0
                partly += 0 < failed < len(turn["categories"])
                assert after["gold_index"] == turn["gold_index"] + (0 if failed else 1), (task.id, seed)
                assert not failed or len(after["categories"]) == failed  # the retry: the failed calls, alone
    assert faulted > 0 and partly > 0  # the seeds drew faults, some in a turn whose other calls ran


def test_end_state_compared_with_gold_state():
    gold_env = ToolEnv()
    run_gold_episode(gold_env, FINANCE_TRANSFER)
    task = dataclasses.replace(FINANCE_TRANSFER, gold_state=gold_env.suite.state())
    assert run_gold_episode(ToolEnv(), task)["meta"]["end_state"]["state_match"] is True
    env = ToolEnv()
    env.reset(task)
    assert env.step(answer()).info["end_state"]["state_match"] is False


def test_batch_steps_many_episodes():
    tasks = [t for cls in SUITES.values() for t in cls.tasks()][:6]
    batch = ToolEnvBatch(len(tasks))
    batch.reset(tasks)
    while batch.active:
        batch.step([None if env.done else env.present_gold(env.step_index) for env in batch.envs])
    trajectories = batch.trajectories()
    assert [t["meta"]["task_id"] for t in trajectories] == [t.id for t in tasks]
    assert all(t["meta"]["termination"] == "final_answer" for t in trajectories)


def test_task_round_trips_through_dict():
    task = dataclasses.replace(WEATHER, follow_ups=[UserTurn([{"role": "user", "content": "x"}], ["lookup_uv_index"])])
    assert Task.from_dict(task.to_dict()) == task
