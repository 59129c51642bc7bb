"""The BFCL runner end to end with scripted backends: garbage, empty and runaway outputs are scored, never raised on;
the gold answer rendered in the model's format scores 100%; an interrupted run resumes from its cache."""

from __future__ import annotations

import json

import pytest

from qwen_tool.codec import ToolCall, get_codec
from qwen_tool.eval import bfcl_single_turn
from qwen_tool.eval.runner import run_bfcl
from qwen_tool.testing import ScriptedBackend, tiny_tokenizer

CATEGORIES = ["simple_python", "parallel", "live_multiple", "irrelevance"]
LIMIT = 3


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _run(tmp_path, backend, tokenizer, name="run", categories=CATEGORIES):
    return run_bfcl("scripted", categories, LIMIT, tmp_path / name, backend=backend, tokenizer=tokenizer,
                    tool_format="hermes", batch_size=2, cache_dir=tmp_path / "cache", progress=False)


def _first_accepted(accepted: list) -> object:
    """The first non-optional accepted value; dict values hold accepted lists per key one level down."""
    value = next(v for v in accepted if v != "")
    if isinstance(value, dict):
        return {k: _first_accepted(vals) for k, vals in value.items() if any(v != "" for v in vals)}
    return value


def _gold_answers() -> dict[str, str]:
    """User message → the gold calls rendered as Hermes text (first accepted value of each argument)."""
    codec = get_codec("hermes")
    answers = {}
    for category in CATEGORIES:
        for example in bfcl_single_turn.load_category(category, LIMIT):
            calls = []
            for gold_call in example.gold or []:
                name, accepted = next(iter(gold_call.items()))
                calls.append(ToolCall(name, {k: _first_accepted(vals) for k, vals in accepted.items()
                                             if any(v != "" for v in vals)}))
            answers[example.messages[-1]["content"]] = codec.render_calls(calls).text if calls else "No tool fits."
    return answers


def test_gold_answers_score_everything(tmp_path, tokenizer) -> None:
    answers = _gold_answers()

    def answer(prompt: str) -> str:
        return next(text for question, text in answers.items() if question in prompt)

    result = _run(tmp_path, ScriptedBackend(answer), tokenizer)
    assert {c: r["accuracy"] for c, r in result["categories"].items()} == {c: 1.0 for c in CATEGORIES}
    assert result["summary"]["call_timing_precision"] == 1.0 and result["summary"]["call_timing_abstain_recall"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()]
    assert len(rows) == len(CATEGORIES) * LIMIT
    assert {"id", "category", "prompt_hash", "raw_output", "parsed_calls", "valid", "error_category"} <= set(rows[0])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["summary"]["valid"] == len(rows)


@pytest.mark.parametrize("text", ["", "\x00\x01 garbage {{{ <tool_call> {\"name\": ", "na " * 5000,
                                  "<tool_call>\n{\"name\": \"f\", \"arguments\": [1, 2]}\n</tool_call>"])
def test_bad_outputs_are_scored_as_errors(tmp_path, tokenizer, text) -> None:
    result = _run(tmp_path, ScriptedBackend(lambda prompt: text), tokenizer)
    for category in CATEGORIES:
        expected = 1.0 if category == "irrelevance" else 0.0  # no call made: only irrelevance passes
        assert result["categories"][category]["accuracy"] == expected


def test_interrupted_run_resumes_from_cache(tmp_path, tokenizer) -> None:
    first = ScriptedBackend(lambda prompt: "no call", fail_after=5)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, first, tokenizer)
    second = ScriptedBackend(lambda prompt: "no call")
    _run(tmp_path, second, tokenizer)
    assert len(first.decoded) == 5  # each reached the cache as it finished
    assert len(second.decoded) == len(CATEGORIES) * LIMIT - 5
    assert not set(first.decoded) & set(second.decoded)


def test_unknown_category_and_bad_limit_are_user_errors(tmp_path, tokenizer) -> None:
    from qwen_tool import QwenToolError

    with pytest.raises(QwenToolError, match="unknown BFCL category .simple_cobol.; fix: did you mean .simple_python.?"):
        _run(tmp_path, ScriptedBackend(str), tokenizer, categories=["simple_cobol"])
    with pytest.raises(QwenToolError, match="--limit"):
        run_bfcl("scripted", ["simple_python"], 0, tmp_path, backend=ScriptedBackend(str), tokenizer=tokenizer,
                 tool_format="hermes")


def _internal_records() -> list[dict]:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather forecast.",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}, "days": {"type": "integer"}},
                                                   "required": ["city"]}}}]
    call = {"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "days": 3})}}
    return [
        {"tools": tools, "messages": [
            {"role": "user", "content": "Weather in Paris for 3 days?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny-data"},
            {"role": "assistant", "content": "Sunny."}]},
        {"tools": tools, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]},
    ]


def test_internal_suite_hand_derived(tmp_path, tokenizer) -> None:
    from qwen_tool.eval.runner import run_internal

    path = tmp_path / "held.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _internal_records()))
    wrong_days = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>'

    def answer(prompt: str) -> str:
        if "sunny-data" in prompt:
            return wrong_days  # calls again where the gold answers
        return wrong_days if "Paris" in prompt else "Hello!"

    result = run_internal("scripted", path, tmp_path / "internal", backend=ScriptedBackend(answer), tokenizer=tokenizer,
                          tool_format="hermes", cache_dir=tmp_path / "cache", progress=False)
    # decisions: (get_weather days=2 vs gold days=3): TS PI, not CF; (call vs no call): none; (no call vs none): all.
    # TS = PI = 2/3, CF = 1/3; timing: called [T, T, F], gold [T, F, F] → precision 1/2, recall 1, abstain 1/2;
    # parameter accuracy: gold arguments city (right) and days (wrong) → 1/2.
    summary = result["summary"]
    assert result["decisions"] == 3
    assert summary["TS"] == pytest.approx(2 / 3) and summary["PI"] == pytest.approx(2 / 3)
    assert summary["CF"] == pytest.approx(1 / 3)
    assert (summary["call_timing_precision"], summary["call_timing_recall"]) == (0.5, 1.0)
    assert summary["call_timing_abstain_recall"] == 0.5
    assert summary["parameter_accuracy"] == 0.5
    # misses by kind: days 2 for 3 is a wrong number, the second call an unneeded one; the silent answer is right.
    assert result["error_categories"] == {"value_number": 1, "unneeded_call": 1}
    outcomes = [json.loads(line) for line in (tmp_path / "internal" / "outcomes.jsonl").read_text().splitlines()]
    assert [o["error_category"] for o in outcomes] == ["value_number", "unneeded_call", None]


def test_multi_turn_through_tool_env(tmp_path, tokenizer) -> None:
    """Gold calls replayed step by step pass BFCL's end-state check; silence and hallucinated tools fail it."""
    from qwen_tool.env.bfcl_multi_turn import load_bfcl_tasks

    tasks = load_bfcl_tasks("multi_turn_base", 2)
    codec = get_codec("hermes")

    def gold_player(prompt: str) -> str:
        task = next(t for t in tasks if t.messages[-1]["content"] in prompt)
        step = prompt.count("<|im_start|>assistant") - 1
        calls = [ToolCall(c["name"], c["arguments"]) for c in task.gold_calls[step]]
        return codec.render_calls(calls).text if calls else "Done."

    def run(answer, name):
        return run_bfcl("scripted", ["multi_turn_base"], 2, tmp_path / name, backend=ScriptedBackend(answer),
                        tokenizer=tokenizer, tool_format="hermes", cache_dir=tmp_path / name / "cache",
                        progress=False)  # one cache per scripted "model": they share a model_id

    gold = run(gold_player, "gold")["categories"]["multi_turn_base"]
    assert gold["accuracy"] == 1.0 and gold["DE"] == 0.0 and gold["VA"] == 1.0
    silent = run(lambda prompt: "I cannot help.", "silent")["categories"]["multi_turn_base"]
    assert silent["accuracy"] == 0.0 and silent["average_calls"] == 0.0
    assert set(silent["error_categories"]) == {"multi_turn:empty_turn_model_response"}
    ghost = '<tool_call>\n{"name": "teleport", "arguments": {}}\n</tool_call>'
    hallucinating = run(lambda prompt: ghost, "ghost")["categories"]["multi_turn_base"]
    # every call names a tool that is not offered: DE = 1, and each episode stops at 20 steps in its first turn
    assert hallucinating["DE"] == 1.0 and hallucinating["CE"] == 0.0 and hallucinating["VA"] == 0.0
    assert hallucinating["accuracy"] == 0.0 and hallucinating["average_calls"] == 20.0


def test_internal_tasks_gold_silent_and_hallucinating_players(tmp_path, tokenizer) -> None:
    """Held-out multi-turn tasks through ToolEnv: the gold player reaches every gold state and answers (VA 1); a
    player that only talks answers at once (VA 1) and reaches only the states no call changes; a player that calls
    a tool that does not exist never answers (VA 0) and every call is a documentation error."""
    from qwen_tool.data.suite_synth import synthesize_eval_tasks
    from qwen_tool.env.task import Task
    from qwen_tool.eval.runner import run_internal_tasks

    records = synthesize_eval_tasks(6, seed=3)
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    tasks = [Task.from_dict(r) for r in records]
    codec = get_codec("hermes")

    def gold_player(prompt: str) -> str:
        task = next(t for t in tasks if t.messages[-1]["content"] in prompt)
        step = prompt.count("<|im_start|>assistant") - 1
        calls = [ToolCall(c["name"], c["arguments"]) for c in task.gold_calls[step]] if step < len(
            task.gold_calls) else []
        return codec.render_calls(calls).text if calls else (task.gold_answer or "Done.")

    def run(answer, name):
        return run_internal_tasks("scripted", path, tmp_path / name, backend=ScriptedBackend(answer),
                                  tokenizer=tokenizer, tool_format="hermes", cache_dir=tmp_path / name / "cache",
                                  max_turns=4, progress=False)

    gold = run(gold_player, "gold")
    assert gold["episodes"] == 6
    assert gold["summary"]["VA"] == 1.0 and gold["summary"]["end_state_accuracy"] == 1.0
    assert gold["summary"]["DE"] == 0.0 and gold["summary"]["CE"] == 0.0
    silent = run(lambda prompt: "I cannot help.", "silent")["summary"]
    from qwen_tool.env import ToolEnv

    def untouched(task: Task) -> bool:  # the gold episode leaves the suite's state as it starts (read-only calls)
        env = ToolEnv(fmt="hermes")
        env.reset(task)
        return env.suite.state() == task.gold_state

    unchanged = sum(untouched(t) for t in tasks) / len(tasks)
    assert silent["VA"] == 1.0 and silent["end_state_accuracy"] == unchanged < 1.0
    ghost = '<tool_call>\n{"name": "teleport", "arguments": {}}\n</tool_call>'
    hallucinating = run(lambda prompt: ghost, "ghost")
    assert hallucinating["summary"]["VA"] == 0.0 and hallucinating["summary"]["DE"] == 1.0
    assert hallucinating["summary"]["average_steps"] == 4.0
    written = [json.loads(line) for line in (tmp_path / "ghost" / "outcomes.jsonl").read_text().splitlines()]
    assert len(written) == 6 and all(not o["valid"] for o in written)


def test_guided_run_gives_every_prompt_a_grammar_its_gold_answer_satisfies(tmp_path, tokenizer) -> None:
    import xgrammar

    answers = _gold_answers()
    backend = ScriptedBackend(lambda prompt: next(a for q, a in answers.items() if q in prompt))
    result = run_bfcl("scripted", CATEGORIES, LIMIT, tmp_path / "guided", backend=backend, tokenizer=tokenizer,
                      tool_format="hermes", batch_size=2, cache_dir=tmp_path / "cache", progress=False, guided=True)
    assert result["generation"]["guided"] is True
    assert len(backend.guides) == len(CATEGORIES) * LIMIT and all(backend.guides.values())
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    compiler = xgrammar.GrammarCompiler(info)
    for prompt, guide in backend.guides.items():
        answer = next(a for q, a in answers.items() if q in prompt)
        assert xgrammar.GrammarMatcher(compiler.compile_structural_tag(guide)).accept_string(answer), answer


def test_output_is_parsed_from_the_think_block_the_prompt_opened(tmp_path, tokenizer) -> None:
    """A template whose generation prompt opens `<think>` (as Qwen3 Thinking-2507's does): a call drafted in the
    reasoning is not scored, only the call after `</think>` (read as content, the draft would double the calls)."""
    import copy

    thinking = copy.deepcopy(tokenizer)
    thinking.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                              "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
                              "{# tools #}")
    answers = _gold_answers()
    draft = get_codec("hermes").render_calls([ToolCall("draft_only", {})]).text

    def answer(prompt: str) -> str:
        assert prompt.endswith("<think>\n")
        gold = next(text for question, text in answers.items() if question in prompt)
        return f"Plan: {draft}\n</think>\n\n{gold}"

    result = _run(tmp_path, ScriptedBackend(answer), thinking, categories=["simple_python"])
    assert result["categories"]["simple_python"]["accuracy"] == 1.0


def test_the_report_recipes_bfcl_sets_load_whole() -> None:
    """Issue 30: full sets, no subsets (the sizes of the bfcl-eval wheel's v4 files)."""
    sizes = {c: len(bfcl_single_turn.load_category(c))
             for c in ("simple_python", "multiple", "parallel", "irrelevance", "live_simple")}
    assert sizes == {"simple_python": 400, "multiple": 200, "parallel": 200, "irrelevance": 240, "live_simple": 258}


class _CapRecorder(ScriptedBackend):
    """A scripted backend that also records the answer cap each prompt was decoded under."""

    def __init__(self, answer) -> None:
        super().__init__(answer)
        self.caps: dict[str, int] = {}

    def generate(self, prompts, settings, guides=None, on_done=None, progress=None):
        self.caps.update({prompt: settings.max_new_tokens for prompt in prompts})
        return super().generate(prompts, settings, guides=guides, on_done=on_done, progress=progress)


def test_parallel_calls_match_in_any_order_and_live_simple_scores_through_the_runner(tmp_path, tokenizer,
                                                                                      monkeypatch) -> None:
    """Real entries of parallel and live_simple, spread over each set: the gold calls in reverse order pass (BFCL
    matches parallel calls without order), one call short fails; each category decodes under its own cap."""
    codec = get_codec("hermes")
    load = bfcl_single_turn.load_category
    examples = {c: load(c)[::40] for c in ("parallel", "live_simple")}
    assert all(len(example.gold) >= 2 for example in examples["parallel"])  # several calls each: order matters
    monkeypatch.setattr(bfcl_single_turn, "load_category",
                        lambda category, limit=None: [e for e in load(category, limit) if e in examples[category]])

    def calls(example) -> list[ToolCall]:
        return [ToolCall(name, {k: _first_accepted(v) for k, v in accepted.items() if any(x != "" for x in v)})
                for gold_call in example.gold for name, accepted in gold_call.items()]

    def backend(drop_last: bool) -> _CapRecorder:
        answers = {e.messages[-1]["content"]: list(reversed(calls(e)))[: -1 if drop_last else None]
                   for chosen in examples.values() for e in chosen}
        return _CapRecorder(lambda prompt: codec.render_calls(
            next(a for question, a in answers.items() if question in prompt)).text)

    def run(name: str, scripted: _CapRecorder) -> dict:
        result = run_bfcl("scripted", list(examples), None, tmp_path / name, backend=scripted, tokenizer=tokenizer,
                          tool_format="hermes", max_new_tokens={"parallel": 384, "live_simple": 128},
                          cache_dir=tmp_path / name / "cache", progress=False)
        return {c: (r["accuracy"], r["n"]) for c, r in result["categories"].items()}

    reversed_order = backend(drop_last=False)
    assert run("reversed", reversed_order) == {c: (1.0, len(chosen)) for c, chosen in examples.items()}
    assert run("short", backend(drop_last=True)) == {c: (0.0, len(chosen)) for c, chosen in examples.items()}
    caps = {cap: sum(1 for c in reversed_order.caps.values() if c == cap) for cap in (128, 384)}
    assert caps == {128: len(examples["live_simple"]), 384: len(examples["parallel"])}
