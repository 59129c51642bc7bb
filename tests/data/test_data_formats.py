"""Loaders/exporters round-trip, malformed lines name file:line, schema errors name the field."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from qwen_tool.data.annotate import annotate
from qwen_tool.data.augment import NOISE_LEVELS, augment
from qwen_tool.data.difficulty import difficulty, nesting_depth
from qwen_tool.data.formats import FORMATS, from_bfcl, read_format, to_bfcl, write_format
from qwen_tool.data.schema import (
    TrajectoryError,
    read_jsonl,
    read_parquet,
    to_hf_dataset,
    validate_trajectory,
    write_jsonl,
    write_parquet,
)
from qwen_tool.data.synth import synthesize


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return synthesize(80, seed=5)


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "xlam", "react"])
def test_each_format_round_trips(fmt: str, records: list[dict]) -> None:
    export, load = FORMATS[fmt]
    for record in records:
        item = export(record)
        assert export(validate_trajectory(load(json.loads(json.dumps(item))))) == item


def test_openai_keeps_conversation_and_marks_erroneous_turns(records: list[dict]) -> None:
    export, load = FORMATS["openai"]
    recovery = next(r for r in records if r["meta"]["category"] == "error_recovery")
    item = export(recovery)
    assert [m.get("weight") for m in item["messages"] if m["role"] == "assistant"][0] == 0
    back = load(item)
    assert [m.get("erroneous") for m in back["messages"]] == [m.get("erroneous") for m in recovery["messages"]]


def test_bfcl_entry_round_trips_and_is_eval_only() -> None:
    entry = {"id": "x_1", "question": [[{"role": "user", "content": "Area of a 3 by 4 rectangle?"}]],
             "function": [{"name": "rect.area", "description": "Area.", "parameters": {
                 "type": "dict", "properties": {"w": {"type": "float"}, "h": {"type": "integer"},
                                                "unit": {"type": "string"}}, "required": ["w", "h"]}}]}
    answer = {"id": "x_1", "ground_truth": [{"rect.area": {"w": [3.0, 3], "h": [4], "unit": ["", "cm"]}}]}
    record = validate_trajectory(from_bfcl(entry, answer))
    assert record["meta"]["eval_only"] is True
    assert record["tools"][0]["function"]["parameters"]["properties"]["w"]["type"] == "number"
    assert json.loads(record["messages"][-1]["tool_calls"][0]["function"]["arguments"]) == {"w": 3.0, "h": 4}
    assert to_bfcl(record) == entry


def test_malformed_lines_are_reported_with_file_and_line(tmp_path: Path, records: list[dict]) -> None:
    path = tmp_path / "mixed.jsonl"
    write_jsonl(records[:3], path)
    lines = path.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["messages"][0]["role"] = "robot"
    lines[1] = json.dumps(broken)
    lines.insert(2, "{not json")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrajectoryError, match=r"mixed\.jsonl:2: field messages\.0\.role"):
        read_jsonl(path)
    kept, report = read_jsonl(path, skip_invalid=True)
    assert (len(kept), report.skipped) == (2, 2)
    assert any(":3: not valid JSON" in e for e in report.errors)
    sharegpt = tmp_path / "s.jsonl"
    write_format(records[:2], sharegpt, "sharegpt")
    sharegpt.write_text(sharegpt.read_text() + '{"conversations": [{"from": "alien", "value": "x"}]}\n')
    with pytest.raises(TrajectoryError, match=r"s\.jsonl:3: not a sharegpt item"):
        read_format(sharegpt, "sharegpt")


def test_schema_rejects_calls_to_tools_not_offered(records: list[dict]) -> None:
    record = json.loads(json.dumps(next(r for r in records if r["meta"]["category"] == "single")))
    call_turn = next(m for m in record["messages"] if m.get("tool_calls"))
    call_turn["tool_calls"][0]["function"]["name"] = "not_offered"
    with pytest.raises(TrajectoryError, match="not among the offered tools"):
        validate_trajectory(record, "x.jsonl:7")
    call_turn["erroneous"] = True
    validate_trajectory(record)


def test_parquet_and_datasets_views(tmp_path: Path, records: list[dict]) -> None:
    write_parquet(records, tmp_path / "d.parquet")
    back, report = read_parquet(tmp_path / "d.parquet")
    assert back == records and report.kept == len(records)
    dataset = to_hf_dataset(records)
    assert len(dataset) == len(records)
    assert json.loads(dataset[0]["tools"]) == records[0]["tools"]


@pytest.mark.parametrize("level", NOISE_LEVELS)
def test_noise_renames_tools_and_calls_consistently(level: str, records: list[dict]) -> None:
    from qwen_tool.codec.types import ToolCall
    from qwen_tool.tools import Executor, Tool

    executor = Executor(concurrent=False)
    for index, record in enumerate(records):
        noisy = validate_trajectory(augment(record, level, random.Random(index)))
        tools = {t["function"]["name"]: Tool.from_schema(t) for t in noisy["tools"]}
        for message in noisy["messages"]:
            for call in message.get("tool_calls") or []:
                rejection = executor.reject(
                    ToolCall(call["function"]["name"], json.loads(call["function"]["arguments"])), tools)
                assert (rejection is None) != bool(message.get("erroneous"))
    if level != "clean":
        before = {t["function"]["name"] for r in records for t in r["tools"]}
        after = {t["function"]["name"] for r in records for t in augment(r, level, random.Random(0))["tools"]}
        assert len(before & after) < len(before) / 2 or level in ("heavy", "union")


def test_annotate_recovers_the_synthesised_error_annotations(records: list[dict]) -> None:
    for record in records:
        stripped = json.loads(json.dumps(record))
        for message in stripped["messages"]:
            message.pop("erroneous", None)
            if message["role"] == "assistant":
                message.pop("feedback_category", None)
        assert annotate(stripped) == record


def test_annotate_classifies_recorded_feedback_text() -> None:
    record = {"tools": [{"type": "function", "function": {"name": "f", "description": "",
                                                          "parameters": {"type": "object", "properties": {}}}}],
              "messages": [{"role": "user", "content": "go"},
                           {"role": "assistant", "tool_calls": [{"id": "a", "type": "function",
                                                                 "function": {"name": "f", "arguments": "{}"}}]},
                           {"role": "tool", "tool_call_id": "a", "content": "503 Server Error: Service Unavailable"},
                           {"role": "assistant", "tool_calls": [{"id": "b", "type": "function",
                                                                 "function": {"name": "f", "arguments": "{}"}}]},
                           {"role": "tool", "tool_call_id": "b", "content": "Traceback: ValueError: bad input"}],
              "meta": {}}
    out = annotate(record)
    assert "erroneous" not in out["messages"][1]  # instability is not the model's fault
    assert out["messages"][2]["feedback_category"] == "tool_instability"
    assert out["messages"][3]["erroneous"] and out["messages"][3]["feedback_category"] == "call_failure"


def test_difficulty_by_hand() -> None:
    assert nesting_depth({"a": [1, {"b": 2}]}) == 3
    # two call turns of one call each, one distractor, flat args, no error:
    # d = 2 calls + 2*(2-1) + 0.5*1 + 0 + 0 + 0 = 4.5
    record = {"tools": [{"function": {"name": n}} for n in ("f", "g", "h")], "messages": [
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"x": 1}'}}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "g", "arguments": '{"y": 2}'}}]}]}
    assert difficulty(record) == 4.5
