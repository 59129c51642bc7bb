from __future__ import annotations

import sys

import pytest

from qwen_tool import QwenToolError
from qwen_tool.codec.types import ParsedOutput
from qwen_tool.env import ToolEnv, replay_gold, run_gold_episode
from qwen_tool.env.bfcl_multi_turn import compare_instances, load_bfcl_tasks, missing_results, parse_call_string


def test_call_strings_are_parsed_as_literals_only():
    assert parse_call_string("sort('a.txt')") == ("sort", ["a.txt"], {})
    assert parse_call_string("f(x=-1.5, y=[1, (2, 3)], z={'k': None}, w=True)") == (
        "f", [], {"x": -1.5, "y": [1, (2, 3)], "z": {"k": None}, "w": True})
    for hostile in ("f(x=__import__('os').system('true'))", "f(x=g(1))", "os.system('x')", "f(x=a+b)", "f(x"):
        with pytest.raises(QwenToolError):
            parse_call_string(hostile)


def test_instance_comparison_and_result_containment_follow_bfcl():
    class Box:
        def __init__(self, items, hidden):
            self.items, self._hidden = items, hidden

    assert compare_instances(Box([1], "a"), Box([1], "b")) == {}  # private attributes are not compared
    assert set(compare_instances(Box([1], "a"), Box([2], "a"))) == {"items"}
    assert missing_results(["x", "x"], ["x", "y"]) == ["x"]  # multiset: each model result matches once
    assert missing_results(["b", "a"], ["a", "z", "b"]) == []  # unordered


def test_loader_builds_follow_ups_and_gold_steps():
    task = load_bfcl_tasks("multi_turn_base", limit=1)[0]
    truth = task.meta["ground_truth"]
    assert len(task.follow_ups) == len(truth) - 1
    assert len(task.gold_calls) == sum(len(turn) + 1 for turn in truth)
    assert task.gold_calls[0] == [{"name": "cd", "arguments": {"folder": "document"}}]
    sort_step = next(step for step in task.gold_calls if step and step[0]["name"] == "sort")
    assert sort_step[0]["arguments"] == {"file_name": "final_report.pdf"}  # positional mapped to its name
    assert "bfcl_eval.eval_checker.eval_runner" not in sys.modules
    assert "bfcl_eval.model_handler" not in sys.modules


def test_miss_func_holds_tools_back_until_their_turn():
    task = load_bfcl_tasks("multi_turn_miss_func", limit=1)[0]
    assert "sort" not in task.tools
    added = [(i, turn.add_tools) for i, turn in enumerate(task.follow_ups, start=1) if turn.add_tools]
    assert added == [(3, ["sort"])]
    env = ToolEnv(max_turns=20)
    run_gold_episode(env, task)
    assert "sort" in env.tools
    assert env.trajectory()["meta"]["end_state"]["valid"] is True


def test_gold_replay_reproduces_bfcl_end_state_on_multi_turn_base():
    tasks = load_bfcl_tasks("multi_turn_base")
    assert len(tasks) == 200
    verdicts = replay_gold(tasks)
    failures = [v for v in verdicts if not v["valid"]]
    assert len(verdicts) - len(failures) >= 198, failures  # at least 99 %
    assert all(v["error_type"].startswith("multi_turn:") for v in failures)


def test_a_wrong_policy_fails_the_check():
    task = load_bfcl_tasks("multi_turn_base", limit=1)[0]
    env = ToolEnv(max_turns=20)
    env.reset(task)
    env.step(ParsedOutput(content="I will not do that."))  # no call where gold has three
    verdict = run_rest(env)
    assert verdict["valid"] is False and verdict["error_type"] == "multi_turn:empty_turn_model_response"

    env.reset(task)
    skipped = False
    while not env.done:
        gold = env.present_gold(env.step_index)
        if gold.tool_calls and gold.tool_calls[0].name == "mkdir" and not skipped:
            skipped = True  # answer instead of creating the directory: the state must differ
            env.step(ParsedOutput(content="skipping"))
            continue
        env.step(gold)
    assert env.trajectory()["meta"]["end_state"]["valid"] is False


def run_rest(env: ToolEnv) -> dict:
    while not env.done:
        env.step(env.present_gold(env.step_index))
    return env.trajectory()["meta"]["end_state"]
