"""Filters: invalid, non-executable, duplicate (after normalising) and too-long records are dropped and reported."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from typer.testing import CliRunner

from qwen_tool.cli import app
from qwen_tool.data.filters import dedupe_key, filter_records, record_length
from qwen_tool.data.schema import validate_trajectory
from qwen_tool.data.synth import synthesize
from qwen_tool.testing import tiny_tokenizer


def _single(query: str = "Check the weather in Oslo.", city: str = "Oslo") -> dict:
    return {
        "tools": [{"type": "function", "function": {
            "name": "check_weather", "description": "Weather of a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "messages": [{"role": "user", "content": query},
                     {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "c1", "type": "function",
                          "function": {"name": "check_weather", "arguments": json.dumps({"city": city})}}]}],
        "meta": {"id": query},
    }


def test_each_rule_drops_its_records_and_the_report_says_why() -> None:
    bad_value = _single("Weather in Lima?", city="Lima")
    bad_value["messages"][1]["tool_calls"][0]["function"]["arguments"] = json.dumps({"city": 5})
    unknown_key = _single("Weather in Perth?", city="Perth")
    unknown_key["messages"][1]["tool_calls"][0]["function"]["arguments"] = json.dumps({"town": "Perth"})
    records = [
        _single(),
        _single("check the WEATHER in oslo!!"),  # same after normalising case and punctuation
        {"tools": [], "messages": []},  # invalid: no user message
        bad_value,
        unknown_key,
        _single("Check the weather in Hanoi, the capital of Vietnam, for my trip next week please.", city="Hanoi"),
    ]
    kept, report = filter_records(records, max_length=record_length(_single()) + 20)
    assert [r["meta"]["id"] for r in kept] == ["Check the weather in Oslo."]
    assert report.total == 6 and report.kept == 1
    assert report.dropped == {"duplicate": 1, "invalid": 1, "not_executable": 2, "too_long": 1}
    assert "integer" in report.examples["not_executable"][0] or "5" in report.examples["not_executable"][0]
    assert "dropped duplicate 1, invalid 1, not_executable 2, too_long 1" in report.summary()


def test_erroneous_turns_are_not_gold_and_length_can_be_counted_in_tokens() -> None:
    wrong = _single()
    wrong["messages"][1]["tool_calls"][0]["function"]["arguments"] = json.dumps({"town": "Oslo"})
    wrong["messages"][1]["erroneous"] = True
    wrong["messages"][1]["feedback_category"] = "parameter_hallucination"
    kept, report = filter_records([wrong])
    assert len(kept) == 1 and not report.dropped
    tokenizer = tiny_tokenizer()
    tokens = record_length(validate_trajectory(_single()), tokenizer)  # the filters measure the normalised record
    assert 0 < tokens < record_length(_single())  # a token covers several characters
    assert filter_records([_single()], max_length=tokens, tokenizer=tokenizer)[1].kept == 1
    assert filter_records([_single()], max_length=tokens - 1, tokenizer=tokenizer)[1].dropped["too_long"] == 1


def test_synthesized_data_passes_the_filters_and_keys_ignore_argument_order() -> None:
    records = synthesize(150, seed=7, mix="single=0.4,multi_step=0.3,error_recovery=0.3")
    kept, report = filter_records(records)
    assert report.kept == len(records) == len(kept)
    swapped = copy.deepcopy(records[0])
    for message in swapped["messages"]:
        for call in message.get("tool_calls") or []:
            arguments = json.loads(call["function"]["arguments"])
            call["function"]["arguments"] = json.dumps(dict(reversed(list(arguments.items()))))
    assert dedupe_key(swapped) == dedupe_key(records[0])


def test_cli_synth_prints_the_filter_report_and_writes_eval_tasks(tmp_path: Path) -> None:
    runner = CliRunner()
    tasks = tmp_path / "tasks.jsonl"
    result = runner.invoke(app, ["data", "synth", "--n", "40", "--seed", "1", "--out", str(tmp_path / "t.jsonl"),
                                 "--max-length", "1500", "--eval-tasks-out", str(tasks), "--eval-tasks-n", "6"])
    assert result.exit_code == 0, result.output
    assert "filters: kept" in result.output and "too_long" in result.output
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert all(record_length(json.loads(line)) <= 1500 for line in lines)
    assert len(tasks.read_text().splitlines()) == 6
