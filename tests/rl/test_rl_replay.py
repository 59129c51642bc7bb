"""Multi-turn tasks replayed from the SFT data's multi-step trajectories (`rl.replay`), the task pool that draws them
(`multi_turn_trajectories`), and the error-recovery reward in replays and in ToolEnv episodes."""

from __future__ import annotations

import json

import pytest

from qwen_tool import QwenToolError
from qwen_tool.codec.types import ParsedOutput, ToolCall
from qwen_tool.config import ConfigError, RLTrainingConfig, load_config
from qwen_tool.data.schema import read_jsonl
from qwen_tool.rl.episodes import ToolEnvEpisode
from qwen_tool.rl.replay import ReplayEpisode, ReplayTask
from qwen_tool.rl.task_pool import TaskPool

TOOLS = [
    {"type": "function", "function": {"name": "get_rate", "description": "Exchange rate.", "parameters": {
        "type": "object", "properties": {"base": {"type": "string"}, "quote": {"type": "string"}},
        "required": ["base", "quote"]}}},
    {"type": "function", "function": {"name": "convert", "description": "Amount times rate.", "parameters": {
        "type": "object", "properties": {"amount": {"type": "number"}, "rate": {"type": "number"}},
        "required": ["amount", "rate"]}}},
]


def _call(call_id: str, name: str, arguments: dict) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def _result(call_id: str, content: str, category: str = "ok") -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": content, "feedback_category": category}


EUR, GBP = {"base": "EUR", "quote": "USD"}, {"base": "GBP", "quote": "USD"}
CHAIN = {  # parallel rates, then a conversion that uses one of them, then the answer
    "tools": TOOLS, "meta": {"id": "chain", "category": "multi_step"},
    "messages": [
        {"role": "user", "content": "EUR and GBP rates to USD, then convert 10 EUR."},
        {"role": "assistant", "content": "", "tool_calls": [_call("a", "get_rate", EUR), _call("b", "get_rate", GBP)]},
        _result("a", '{"rate": 1.1}'), _result("b", '{"rate": 1.3}'),
        {"role": "assistant", "content": "", "tool_calls": [_call("c", "convert", {"amount": 10, "rate": 1.1})]},
        _result("c", '{"result": 11.0}'),
        {"role": "assistant", "content": "EUR 1.1, GBP 1.3; 10 EUR is 11 USD."},
    ],
}
WRONG = {"from": "EUR", "quote": "USD"}
RECOVERY = {  # error_recovery: a hallucinated parameter, its error, the corrected call, the answer
    "tools": TOOLS, "meta": {"id": "recovery", "category": "error_recovery"},
    "messages": [
        {"role": "user", "content": "What is the EUR to USD rate?"},
        {"role": "assistant", "content": "", "tool_calls": [_call("w", "get_rate", WRONG)], "erroneous": True,
         "feedback_category": "parameter_hallucination"},
        _result("w", "Error: unknown parameter 'from'", "parameter_hallucination"),
        {"role": "assistant", "content": "", "tool_calls": [_call("r", "get_rate", EUR)]},
        _result("r", '{"rate": 1.1}'),
        {"role": "assistant", "content": "It is 1.1."},
    ],
}
SINGLE = {
    "tools": TOOLS, "meta": {"id": "single", "category": "single"},
    "messages": [{"role": "user", "content": "EUR to USD?"},
                 {"role": "assistant", "content": "", "tool_calls": [_call("s", "get_rate", EUR)]}],
}
WEIGHTS = {"irm": 1.0, "coherence": 1.0}


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (CHAIN, RECOVERY, SINGLE)))
    records, report = read_jsonl(path)  # the data room's validating reader: the file is valid SFT data
    assert report.kept == 3
    return records


def calls(*pairs: tuple[str, dict]) -> ParsedOutput:
    return ParsedOutput(tool_calls=[ToolCall(name, arguments, f"p{k}") for k, (name, arguments) in enumerate(pairs)])


def test_replay_tasks_from_a_trajectory_file(records):
    chain, recovery, single = (ReplayTask.from_trajectory(r) for r in records)
    assert single is None  # calls in one assistant turn only: a single-turn task
    assert chain.prompt == CHAIN["messages"][:1] and chain.prompt_failures == []
    assert [s.gold_calls for s in chain.steps] == [[{"name": "get_rate", "arguments": EUR},
                                                    {"name": "get_rate", "arguments": GBP}],
                                                   [{"name": "convert", "arguments": {"amount": 10, "rate": 1.1}}], []]
    # the erroneous turn and its error are context: the episode starts where the recovery is due
    assert recovery.prompt == RECOVERY["messages"][:3]
    assert [(c.name, c.arguments) for c in recovery.prompt_failures] == [("get_rate", WRONG)]
    assert [s.gold_calls for s in recovery.steps] == [[{"name": "get_rate", "arguments": EUR}], []]


def test_matching_turns_see_the_recorded_results_in_their_own_call_order(records):
    # Tool-N1 (order-free multiset match) scores the turns: IRM pairs same-name parallel calls by position
    episode = ReplayEpisode(ReplayTask.from_trajectory(records[0]), {"tool_n1": 1.0, "coherence": 1.0})
    messages, tools = episode.reset()
    assert messages == CHAIN["messages"][:1] and tools == TOOLS
    first = episode.step(calls(("get_rate", GBP), ("get_rate", EUR)), truncated=False)  # gold, reordered
    assert not first.done and first.reward.total == 1.0 and first.categories == ["ok", "ok"]
    assert first.new_messages == [{"role": "tool", "tool_call_id": "p0", "content": '{"rate": 1.3}'},
                                  {"role": "tool", "tool_call_id": "p1", "content": '{"rate": 1.1}'}]
    second = episode.step(calls(("convert", {"rate": 1.1, "amount": 10})), truncated=False)
    assert not second.done and [m["content"] for m in second.new_messages] == ['{"result": 11.0}']
    last = episode.step(ParsedOutput(content="11 USD."), truncated=False)
    assert last.done and last.reward.total == 1.0  # no call where none was due matches the gold
    assert episode.succeeded() and episode.finish().total == 1.0  # coherence: end reached, no model error


def test_a_turn_off_the_recording_ends_the_episode_with_its_reward(records):
    episode = ReplayEpisode(ReplayTask.from_trajectory(records[0]), WEIGHTS)
    episode.reset()
    report = episode.step(calls(("get_rate", {"base": "EUR"})), truncated=False)
    # IRM: EUR is missing quote (−0.5), the GBP call is missing (−1.5) → mean −1; the schema rejects the call
    assert report.done and report.new_messages == [] and report.reward.total == pytest.approx(-1.0)
    assert report.categories == ["parameter_missing"]
    # coherence: end not reached (0) − 0.25 for the model error
    assert not episode.succeeded() and episode.finish().total == pytest.approx(-0.25)
    # a call the schemas accept but the recording never made: nothing ran, so it has no category
    episode.reset()
    report = episode.step(calls(("get_rate", EUR), ("get_rate", {"base": "JPY", "quote": "USD"})), truncated=False)
    assert report.done and report.categories == [] and episode.finish().total == 0.0


def test_recovery_in_a_replay_pays_for_fixing_the_recorded_slip(records):
    task = ReplayTask.from_trajectory(records[1])
    weights = {"recovery": 1.0}
    fixed = ReplayEpisode(task, weights)
    fixed.reset()
    assert fixed.step(calls(("get_rate", EUR)), truncated=False).reward.total == 1.0
    assert fixed.step(ParsedOutput(content="1.1"), truncated=False).reward.total == 0.0  # nothing left to recover
    repeated = ReplayEpisode(task, weights)
    repeated.reset()
    report = repeated.step(calls(("get_rate", WRONG)), truncated=False)
    assert report.reward.total == 0.0 and report.done and report.categories == ["parameter_hallucination"]
    other = ReplayEpisode(task, weights)  # schema-valid but not the gold call: it never ran, so it did not succeed
    other.reset()
    assert other.step(calls(("get_rate", GBP)), truncated=False).reward.total == 0.0


def test_the_gold_policy_completes_every_synthesised_replay():
    from qwen_tool.data.synth import synthesize

    records = synthesize(16, seed=3, mix={"multi_step": 0.4, "conditional": 0.3, "error_recovery": 0.3})
    tasks = [ReplayTask.from_trajectory(r) for r in records]
    assert all(t is not None for t in tasks)
    assert {r["meta"]["source"] for r in records} == {"unseen", "suite"}
    assert 0 < sum(bool(t.prompt_failures) for t in tasks) < len(tasks)
    for task in tasks:
        episode = ReplayEpisode(task, {"irm": 1.0, "recovery": 1.0, "coherence": 1.0})
        episode.reset()
        rewards = []
        for step in task.steps:
            report = episode.step(calls(*((c["name"], c["arguments"]) for c in step.gold_calls)), truncated=False)
            rewards.append(report.reward.total)
        recovering = bool(task.prompt_failures)  # error_recovery: the first gold call fixes the recorded slip
        assert report.done and episode.succeeded() and episode.finish().total == 1.0
        assert rewards == [1.0 + recovering] + [1.0] * (len(rewards) - 1)


def test_recovery_in_a_tool_env_episode():
    """Weather task 0 (gold: Lisbon and Oslo in fahrenheit). A hallucinated argument fails; repeating it earns
    nothing; a corrected call that succeeds earns the weight once; with nothing pending, another good call earns 0."""
    from qwen_tool.env.suites import get_suite

    episode = ToolEnvEpisode(get_suite("weather").tasks()[0], {"recovery": 1.0})
    episode.reset()
    wrong = ("fetch_current_conditions", {"town": "Lisbon"})
    rewards = [episode.step(calls(*turn), truncated=False).reward.total for turn in [
        [wrong], [wrong], [("fetch_current_conditions", {"city": "Lisbon", "unit": "fahrenheit"})],
        [("fetch_current_conditions", {"city": "Oslo", "unit": "fahrenheit"})]]]
    assert episode.step_categories == [["parameter_hallucination"], ["parameter_hallucination"], ["ok"], ["ok"]]
    assert rewards == [0.0, 0.0, 1.0, 0.0]


def _config(*overrides: str) -> RLTrainingConfig:
    return load_config(RLTrainingConfig, None, ["suites=[]", "prompts_per_step=4", "samples_per_prompt=2",
                                                "curriculum.enabled=false", *overrides])


def test_the_pool_plays_multi_step_trajectories_whole_when_asked(records):
    import random

    plain = TaskPool(_config(), records, [])
    assert (plain.single_turn_count, plain.multi_turn_count) == (3, 0)  # unchanged: each one a single-turn task
    pool = TaskPool(_config("multi_turn_trajectories=true", "multi_turn_share=0.5"), records, [])
    assert (pool.single_turn_count, pool.multi_turn_count) == (1, 2)
    assert [r.id for r in pool.replays] == ["chain", "recovery"]
    episodes = pool.episodes(random.Random(0))
    assert len(episodes) == 8 and sum(isinstance(e, ReplayEpisode) for e in episodes) == 4  # 2 of 4 prompts × 2


def test_trajectory_tasks_need_multi_step_data_and_a_share(records):
    with pytest.raises(QwenToolError, match="no trajectory in data= has calls in several assistant turns"):
        TaskPool(_config("multi_turn_trajectories=true"), [records[2]], [])
    with pytest.raises(ConfigError, match="multi_turn_share is 0"):
        _config("multi_turn_trajectories=true", "multi_turn_share=0")


class GoldDecoder:
    """A `Decoder` that writes the scripted turns in order (the turn by how many assistant turns the prompt holds)."""

    backend = "scripted"

    def __init__(self, tokenizer, turns: list[str]) -> None:
        self.tokenizer, self.turns = tokenizer, turns
        self.stop_id = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def generate(self, requests, *, on_done=None, progress=None):
        from qwen_tool.decode import Completion

        out = []
        for request in requests:
            turn = self.tokenizer.decode(request.prompt_ids).count("<|im_start|>assistant") - 2  # the slip's turn too
            ids = self.tokenizer(self.turns[turn], add_special_tokens=False)["input_ids"] + [self.stop_id]
            out.append(Completion(ids, "stop", [-0.5] * len(ids), prompt_tokens=len(request.prompt_ids)))
        return out


def test_a_replay_rollout_inserts_the_recorded_result_as_masked_tokens(records):
    import torch

    from qwen_tool.rl.rollout import run_episodes
    from qwen_tool.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    fixed = '<tool_call>\n{"name": "get_rate", "arguments": {"base": "EUR", "quote": "USD"}}\n</tool_call>'
    episode = ReplayEpisode(ReplayTask.from_trajectory(records[1]), {"irm": 1.0, "recovery": 0.5, "coherence": 1.0})
    (rollout,) = run_episodes(GoldDecoder(tokenizer, [fixed, "It is 1.1."]), tokenizer, "hermes", [episode])
    ids, mask = torch.tensor(rollout.completion_ids), torch.tensor(rollout.action_mask).bool()
    assert tokenizer.decode(ids[mask]) == fixed + "<|im_end|>" + "It is 1.1.<|im_end|>"
    inserted = tokenizer.decode(ids[~mask])
    assert '{"rate": 1.1}' in inserted and "Error" not in inserted  # the recorded result; the slip is in the prompt
    assert "unknown parameter 'from'" in tokenizer.decode(rollout.prompt_ids)
    # turn 1: IRM exact +1 and the recovery 0.5; turn 2: the answer, IRM +1; episode: coherence 1 (every step matched)
    assert rollout.turn_rewards == [1.5, 1.0] and rollout.episode_reward == 1.0 and rollout.success


def test_a_tool_env_episode_scores_a_retry_against_the_step_it_retries():
    """Finance task 1 (gold steps: move_funds; check_account_balance; the answer). Turn 0 writes `note` for `memo`
    (parameter_hallucination), turns 1-3 play gold steps 0, 1, 2. IRM: −1.3 (hallucinated and missing), then +1 each;
    compared with steps 1 and 2 instead, turns 1 and 2 would be wrong tools (−1.5)."""
    from qwen_tool.env.suites import get_suite

    episode = ToolEnvEpisode(get_suite("finance").tasks()[1], {"irm": 1.0})
    episode.reset()
    transfer = {"from_account": "ACC-1001", "to_account": "ACC-1002", "amount": 50.0}
    turns = [calls(("move_funds", {**transfer, "note": "rent"})), calls(("move_funds", {**transfer, "memo": "rent"})),
             calls(("check_account_balance", {"account_id": "ACC-1002"})), ParsedOutput(content="Done.")]
    rewards = [episode.step(turn, truncated=False).reward.total for turn in turns]
    assert rewards == pytest.approx([-1.3, 1.0, 1.0, 1.0])
    assert [a["gold_index"] for a in episode.env.annotations] == [0, 0, 1, 2]
