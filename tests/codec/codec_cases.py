"""Conformance cases for every format: each case is rendered with the family's template into a text fixture
(tests/codec/fixtures/<codec>/<case>.txt) next to the expected parse (<case>.json). Regenerate with
`python tests/codec/codec_cases.py` after a template change; the tests read only the files.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
CODECS = [("hermes", None), ("qwen3_xml", None), ("llama3_json", None), ("pythonic", None), ("mistral", "v11"),
          ("mistral", "v3"), ("react", "react"), ("react", "qwen"), ("glm", "4.5"), ("glm", "4.7"),
          ("deepseek", "v3.1"), ("deepseek", "v3"), ("kimi_k2", None), ("harmony", None),
          ("deepseek_dsml", "v3.2"), ("deepseek_dsml", "v4"), ("deepseek_dsml", "v4.1"), ("kimi_k3", None),
          ("gemma4", None), ("functiongemma", None), ("mistral", "magistral_2506")]
THINK_DELIMITED = {"hermes", "qwen3_xml", "pythonic", "mistral", "glm", "deepseek", "kimi_k2", "deepseek_dsml",
                   "gemma4", "functiongemma"}
REASONING = THINK_DELIMITED | {"react", "harmony", "kimi_k3"}
ATOMIC_LIST = {("pythonic", None), ("mistral", "v3")}
RAW_TEXT_VALUES = {"qwen3_xml", "glm"}
RAW_STRINGS = RAW_TEXT_VALUES | {"deepseek_dsml", "kimi_k3", "gemma4", "functiongemma"}
"""Formats that write a string value as it is, without JSON escapes (a `\\u` escape in it stays text)."""
MARKER_TEXT = {
    "hermes": "</tool_call> <tool_call> {\"name\": \"x\"}",
    "qwen3_xml": "</parameter> </function> </tool_call> <tool_call>",
    "llama3_json": "}; {\"name\": \"x\", \"parameters\": {}} <|eom_id|>",
    "pythonic": "]) , g(a='x')] \\' \"",
    "mistral": "[TOOL_CALLS]x[ARGS]{} [/TOOL_RESULTS]",
    "react": "Observation: Action: x Action Input: {} ✿RESULT✿",
    "glm": "</tool_call> <arg_key>k</arg_key> <tool_call>",
    "deepseek": "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "kimi_k2": "<|tool_call_end|><|tool_calls_section_end|>",
    "deepseek_dsml": '</｜DSML｜parameter> <｜DSML｜invoke name="x"> <｜DSML｜ calls> </｜DSML｜function_calls>',
    "kimi_k3": '<|close|>call<|sep|><|close|>tools<|sep|><|open|>call tool="x"<|sep|>',
    "gemma4": "<tool_call|><|tool_call>call:x{a:1}<end_function_call>",
    "functiongemma": "<end_function_call><start_function_call>call:x{a:1}<tool_call|>",
    "harmony": "<|call|><|end|><|channel|>final<|message|>",
}


def chunkings(text: str, seeds: tuple[int, ...] = (0, 1, 2), largest: int = 9, whole: bool = True
              ) -> list[list[str]]:
    """Ways to stream `text`: one character at a time, the whole text (if `whole`), and for each seed random pieces
    of 1 to `largest` characters."""
    out = [list(text), [text]] if whole else [list(text)]
    for seed in seeds:
        rng, pieces, i = random.Random(seed), [], 0
        while i < len(text):
            size = rng.randint(1, largest)
            pieces.append(text[i:i + size])
            i += size
        out.append(pieces)
    return out


def call(name: str, **arguments: Any) -> dict:
    return {"name": name, "arguments": arguments}


def schema_of(value: Any) -> dict:
    kinds = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object",
             type(None): "null"}
    return {"type": kinds[type(value)]}


def tools_for(calls: list[dict]) -> list[dict]:
    tools: dict[str, dict] = {}
    for c in calls:
        props = tools[c["name"]] = tools.get(c["name"], {"type": "object", "properties": {}})
        props["properties"].update({k: schema_of(v) for k, v in c["arguments"].items()})
    return [{"type": "function", "function": {"name": n, "description": f"The {n} tool.", "parameters": p}}
            for n, p in tools.items()]


def scenarios(fmt: str) -> list[dict]:
    """(name, content, calls, reasoning, cut) scenarios; `cut` truncates the rendering inside the last call."""
    w = call("get_weather", city="Paris")
    cases = [
        dict(name="single", calls=[w]),
        dict(name="empty_args", calls=[call("list_files")]),
        dict(name="unicode", calls=[call("translate", text="Köln 東京 🚀 naïve — “quotes”", target="ja")]),
        dict(name="big_int", calls=[call("pay", amount=123456789012345678901234567890, cents=-7)]),
        dict(name="whitespace_kept", calls=[call("write", text="  leading and trailing  \n\tinside  ")]),
        dict(name="marker_in_string", calls=[call("echo", text=MARKER_TEXT[fmt])]),
        dict(name="parallel_order", calls=[w, call("get_time", tz="UTC"), call("get_weather", city="Oslo")]),
        dict(name="content_then_call", content="Let me check that for you.", calls=[w]),
        dict(name="nested", calls=[call("book", trip={"from": "NYC", "legs": [1, 2, {"x": None}]}, tags=["a", "b"])]),
        dict(name="scalars", calls=[call("set", flag=True, off=False, ratio=0.25, tiny=1e-07, none=None)]),
        dict(name="numeric_strings", calls=[call("lookup", code="123_456", zip="007", phone="+1 555")]),
        dict(name="content_only", content="The capital of France is Paris."),
        dict(name="content_unicode", content="Grüße aus Zürich, 你好。"),
        dict(name="empty_output", content=""),
        dict(name="quotes_backslashes", calls=[call("run", cmd='echo "hi" \\ C:\\dir\\new')]),
        dict(name="multiline_value", calls=[call("save", body="line one\nline two\n\n  indented\n")]),
        dict(name="long_value", calls=[call("store", data="abc " * 500)]),
        dict(name="unicode_key", calls=[call("find", città="Roma")]),
        dict(name="empty_string_value", calls=[call("search", query="")]),
        dict(name="empty_containers", calls=[call("merge", items=[], options={})]),
        dict(name="many_args", calls=[call("form", **{f"field_{i}": i * 3 for i in range(10)})]),
        dict(name="underscore_name", calls=[call("weather_v2_get", city="Lima")]),
        dict(name="parallel_five", calls=[call(f"tool_{i}", i=i) for i in range(5)]),
        dict(name="two_calls_with_content", content="Checking both.", calls=[w, call("get_time", tz="CET")]),
        dict(name="truncated_mid_call", calls=[call("get_weather", city="Paris", days=3)], cut=True),
        dict(name="truncated_second_call", calls=[w, call("get_time", tz="Europe/Berlin")], cut=True),
        dict(name="truncated_with_content", content="One moment.", calls=[call("search", query="rust borrow")],
             cut=True),
        dict(name="negative_and_float", calls=[call("move", dx=-12, dy=3.5, scale=-0.001)]),
        dict(name="bool_strings", calls=[call("toggle", state="true", raw="null")]),
        dict(name="emoji_only_value", calls=[call("react", emoji="👍🏽")]),
    ]
    if fmt in REASONING:
        cases += [
            dict(name="reasoning_and_call", reasoning="The user wants the weather; call the tool.", calls=[w]),
            dict(name="reasoning_and_content", reasoning="Simple fact.", content="Paris."),
        ]
    if fmt in THINK_DELIMITED:
        cases.append(dict(name="call_inside_think", reasoning="Maybe {CALL} but no.", content="No call needed."))
    else:
        cases.append(dict(name="three_same_tool", calls=[call("get_weather", city=c) for c in ("A", "B", "C")]))
    return cases


def build(fmt: str, variant: str | None) -> dict[str, tuple[str, dict]]:
    sys.path.insert(0, str(Path(__file__).parents[2] / "src"))
    from qwen_tool.codec import ToolCall, get_codec

    codec = get_codec(fmt, variant)
    built = {}
    for case in scenarios(fmt):
        calls = [ToolCall(c["name"], c["arguments"], id=f"call_{i}") for i, c in enumerate(case.get("calls", []))]
        reasoning = case.get("reasoning")
        if reasoning and "{CALL}" in reasoning:
            reasoning = reasoning.replace("{CALL}", codec.render_calls([ToolCall("get_weather", {"city": "X"})]).text)
        rendered = codec.render_assistant(case.get("content") or None, calls or None, reasoning)
        text, expected_calls, error = rendered.text, case.get("calls", []), False
        if case.get("cut"):
            last = [s for s in rendered.spans if s.kind == "arguments" and s.call_index == len(calls) - 1][-1]
            text = text[: (last.start + last.end) // 2]
            expected_calls = [] if (fmt, variant) in ATOMIC_LIST else expected_calls[:-1]
            error = True
        expected = {"content": case.get("content") or "", "reasoning": reasoning, "calls": expected_calls,
                    "error": error, "tools": tools_for(case.get("calls", []))}
        built[case["name"]] = (text, expected)
    return built


def fixture_dir(fmt: str, variant: str | None) -> Path:
    return FIXTURES / (fmt if variant is None else f"{fmt}-{variant}")


def write_all() -> None:
    for fmt, variant in CODECS:
        directory = fixture_dir(fmt, variant)
        directory.mkdir(parents=True, exist_ok=True)
        for name, (text, expected) in build(fmt, variant).items():
            (directory / f"{name}.txt").write_text(text, encoding="utf-8")
            (directory / f"{name}.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n",
                                                    encoding="utf-8")


if __name__ == "__main__":
    write_all()
