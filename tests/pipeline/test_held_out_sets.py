"""The held-out sets at the report recipe's sizes: at least 500 decisions and 100 distinct tasks, on tools never
trained on, the same bytes for the same seed, and sized without touching the training data (so a finished SFT stage
stays valid)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen_tool.config import PipelineConfig, load_config
from qwen_tool.data.filters import dedupe_key
from qwen_tool.data.prepare import decision_count, synthesize_held_out_data
from qwen_tool.data.synth import held_out_split
from qwen_tool.eval.runner import decision_points
from qwen_tool.pipeline import Run, stage_settings, synthesize_held_out, synthesize_training

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture(scope="module")
def main_recipe() -> PipelineConfig:
    return load_config(PipelineConfig, CONFIGS / "main-smollm2-cpu.yaml")


@pytest.fixture(scope="module")
def report_recipe() -> PipelineConfig:
    return load_config(PipelineConfig, CONFIGS / "report-smollm2-cpu.yaml")


@pytest.fixture(scope="module")
def made(tmp_path_factory, main_recipe, report_recipe) -> dict[str, Path]:
    """Training data of both recipes, and the report recipe's held-out sets twice (two directories)."""
    root = tmp_path_factory.mktemp("held-out")
    synthesize_training(main_recipe, Run(root / "main"))
    synthesize_training(report_recipe, Run(root / "report"))
    synthesize_held_out(report_recipe, root / "report")
    synthesize_held_out(report_recipe, root / "again")
    return {"main": root / "main", "report": root / "report", "again": root / "again"}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _tool_names(records: list[dict]) -> set[str]:
    return {tool["function"]["name"] for record in records for tool in record["tools"]}


def test_the_report_recipe_holds_500_decisions_and_100_distinct_tasks(made) -> None:
    records = _lines(made["report"] / "data" / "internal_eval.jsonl")
    tasks = _lines(made["report"] / "data" / "internal_tasks.jsonl")
    assert sum(len(decision_points(record)) for record in records) >= 500
    assert len(tasks) == 100
    assert len({dedupe_key(record) for record in records}) == len(records)  # no item repeated
    assert len({json.dumps([t["messages"], t["tools"], t["gold_calls"]], sort_keys=True) for t in tasks}) == 100


def test_held_out_tools_are_disjoint_from_every_training_tool(made, report_recipe) -> None:
    training = _tool_names(_lines(made["report"] / "data" / "train.jsonl"))
    records = _lines(made["report"] / "data" / "internal_eval.jsonl")
    tasks = _lines(made["report"] / "data" / "internal_tasks.jsonl")
    held_single = _tool_names(records)
    held_tasks = {name for task in tasks for name in task["tools"]}  # a task offers its suite's tools by name
    assert len(training) > 100 and len(held_single) > 100 and held_tasks  # not vacuous: many names on each side
    assert not training & held_single
    assert not training & held_tasks
    held_out = held_out_split(report_recipe.data.held_out_fraction, report_recipe.data.seed)
    assert {task["suite"] for task in tasks} <= held_out
    assert {r["meta"]["suite"] for r in records if r["meta"]["source"] == "suite"} <= held_out


def test_the_same_seed_gives_byte_identical_held_out_files(made, report_recipe, tmp_path) -> None:
    for name in ("internal_eval.jsonl", "internal_tasks.jsonl"):
        assert (made["report"] / "data" / name).read_bytes() == (made["again"] / "data" / name).read_bytes()
    other_seed = load_config(
        PipelineConfig,
        CONFIGS / "report-smollm2-cpu.yaml",
        ["data.seed=1", "data.n_eval_decisions=20", "data.n_eval_tasks=5"],
    )
    small = load_config(
        PipelineConfig, CONFIGS / "report-smollm2-cpu.yaml", ["data.n_eval_decisions=20", "data.n_eval_tasks=5"]
    )
    synthesize_held_out(other_seed, tmp_path / "seed-1")
    synthesize_held_out(small, tmp_path / "seed-0")
    assert (tmp_path / "seed-1" / "data" / "internal_eval.jsonl").read_bytes() != (
        tmp_path / "seed-0" / "data" / "internal_eval.jsonl"
    ).read_bytes()


def test_held_out_sizes_leave_the_training_data_and_the_sft_stage_alone(made, main_recipe, report_recipe) -> None:
    assert (main_recipe.data.n_eval_decisions, main_recipe.data.n_eval_tasks) != (500, 100)
    train = [made[recipe] / "data" / "train.jsonl" for recipe in ("main", "report")]
    assert train[0].read_bytes() == train[1].read_bytes()
    main, report = stage_settings(main_recipe), stage_settings(report_recipe)
    assert main["data"] == report["data"] and main["sft"] == report["sft"] and main["rl"] == report["rl"]
    assert main["held_out"] != report["held_out"] and main["trained_eval"] != report["trained_eval"]


def test_a_marker_recorded_with_the_held_out_sizes_still_matches_its_stage(tmp_path, main_recipe) -> None:
    """Markers written before the held-out sets had their own stage recorded the held-out sizes for data and SFT:
    those retired keys are ignored, any other difference (a setting removed included) still stops the run."""
    from qwen_tool import QwenToolError

    run = Run(tmp_path / "run")
    current = stage_settings(main_recipe)["sft"]
    older = json.loads(json.dumps(current))
    older["data"].update(n_eval=60, n_eval_tasks=20, eval_mix={"single": 0.5, "irrelevance": 0.5})
    run.stage("sft", lambda: {"model": "m"}, older)
    assert run.stage("sft", lambda: {"model": "other"}, current) == {"model": "m"}
    with pytest.raises(QwenToolError, match=r"sft\.learning_rate"):
        run.completed("sft", {**current, "sft": {**current["sft"], "learning_rate": 0.5}})
    run.stage("trained_eval", lambda: {}, {"eval": {"limits": {"multiple": 100, "irrelevance": 100}}})
    with pytest.raises(QwenToolError, match=r"eval\.limits\.irrelevance: 100 -> None"):
        run.completed("trained_eval", {"eval": {"limits": {"multiple": 100}}})


def test_decision_count_is_the_evaluations_rule(made) -> None:
    records = _lines(made["report"] / "data" / "train.jsonl")  # every category, erroneous turns included
    assert any(m.get("erroneous") for r in records for m in r["messages"])
    assert [decision_count(r) for r in records] == [len(decision_points(r)) for r in records]


def test_n_eval_alone_sizes_the_set_and_a_decision_floor_grows_it(report_recipe) -> None:
    held_out = held_out_split(0.2, 0)
    plain, _ = synthesize_held_out_data(10, seed=1, mix=report_recipe.data.eval_mix, held_out=held_out)
    assert len(plain) == 10
    few = sum(decision_count(r) for r in plain)
    assert (
        synthesize_held_out_data(10, min_decisions=few, seed=1, mix=report_recipe.data.eval_mix, held_out=held_out)[0]
        == plain
    )  # already enough: the same records
    grown, _ = synthesize_held_out_data(
        10, min_decisions=few + 30, seed=1, mix=report_recipe.data.eval_mix, held_out=held_out
    )
    assert sum(decision_count(r) for r in grown) >= few + 30 and len(grown) > 10


def _first_accepted(accepted: list):
    value = next(v for v in accepted if v != "")
    if isinstance(value, dict):
        return {k: _first_accepted(vals) for k, vals in value.items() if any(v != "" for v in vals)}
    return value


def test_the_report_recipes_caps_cut_no_gold_answer(made, report_recipe) -> None:
    """Each gold answer, written in the built-in model's format and ended by its end-of-turn token, fits the cap its
    set is decoded under; under max_new_tokens alone some would be cut (so the caps are needed)."""
    from qwen_tool.codec import ToolCall
    from qwen_tool.eval import bfcl_single_turn
    from qwen_tool.eval.runner import model_codec
    from qwen_tool.pipeline import answer_cap
    from qwen_tool.testing import tiny_tokenizer

    codec, tokenizer = model_codec(report_recipe.model), tiny_tokenizer()

    def tokens(calls: list[ToolCall]) -> int:
        return len(tokenizer(codec.render_calls(calls).text, add_special_tokens=False)["input_ids"]) + 1

    longest = {}
    for category in report_recipe.eval.categories:
        golds = [
            [
                ToolCall(name, {k: _first_accepted(v) for k, v in accepted.items() if any(x != "" for x in v)})
                for call in example.gold or []
                for name, accepted in call.items()
            ]
            for example in bfcl_single_turn.load_category(category)
        ]
        longest[category] = max((tokens(calls) for calls in golds if calls), default=0)  # irrelevance: none
    longest["internal"] = max(
        tokens(gold)
        for record in _lines(made["report"] / "data" / "internal_eval.jsonl")
        for _, gold in decision_points(record)
        if gold
    )
    assert all(length <= answer_cap(report_recipe, scored) for scored, length in longest.items()), longest
    assert any(length > report_recipe.eval.max_new_tokens for length in longest.values()), longest
