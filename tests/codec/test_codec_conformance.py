"""Conformance: every format's rendered fixtures parse back exactly, whole and streamed under every chunking."""

from __future__ import annotations

import json

import pytest
from codec_cases import CODECS, MARKER_TEXT, RAW_TEXT_VALUES, chunkings, fixture_dir

from qwen_tool.codec import get_codec

CASES = [(fmt, variant, path.stem)
         for fmt, variant in CODECS for path in sorted(fixture_dir(fmt, variant).glob("*.txt"))]


def load(fmt: str, variant: str | None, name: str) -> tuple[str, dict]:
    directory = fixture_dir(fmt, variant)
    text = (directory / f"{name}.txt").read_text(encoding="utf-8")
    return text, json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))




def assemble(deltas: list[dict]) -> dict:
    """Rebuild a message from OpenAI-style deltas, merging call fragments by integer `index`."""
    content, reasoning, calls = "", "", {}
    for delta in deltas:
        content += delta.get("content", "")
        reasoning += delta.get("reasoning_content", "")
        for fragment in delta.get("tool_calls", []):
            assert isinstance(fragment["index"], int)
            entry = calls.setdefault(fragment["index"], {"id": None, "name": "", "arguments": ""})
            if "id" in fragment:
                assert entry["id"] is None, "id sent twice"
                entry["id"] = fragment["id"]
                entry["name"] = fragment["function"]["name"]
            else:
                assert "name" not in fragment.get("function", {}), "name sent twice"
            entry["arguments"] += fragment["function"].get("arguments", "")
    assert sorted(calls) == list(range(len(calls))), "indexes must be 0..n-1"
    return {"content": content, "reasoning": reasoning,
            "calls": [{"name": c["name"], "arguments": json.loads(c["arguments"]), "id": c["id"]}
                      for _, c in sorted(calls.items())]}


def test_at_least_30_cases_per_format() -> None:
    for fmt, variant in CODECS:
        assert len(list(fixture_dir(fmt, variant).glob("*.txt"))) >= 30, (fmt, variant)


@pytest.mark.parametrize(("fmt", "variant", "name"), CASES)
def test_parse_and_stream(fmt: str, variant: str | None, name: str) -> None:
    text, expected = load(fmt, variant, name)
    codec = get_codec(fmt, variant)
    parsed = codec.parse(text, expected["tools"])
    assert parsed.content == expected["content"]
    assert (parsed.reasoning or None) == (expected["reasoning"] or None)
    assert [{"name": c.name, "arguments": c.arguments} for c in parsed.tool_calls] == expected["calls"]
    assert (parsed.error is not None) == expected["error"], parsed.error
    assert len({c.id for c in parsed.tool_calls}) == len(parsed.tool_calls)
    if expected["error"]:  # truncated: no marker of the format leaks into content
        for marker in codec.call_markers + ("</", "<|", "[ARGS]", "{"):
            assert marker not in parsed.content
    for pieces in chunkings(text, largest=12):
        stream = codec.stream(expected["tools"])
        deltas = [d for piece in pieces for d in stream.feed(piece)] + stream.finish()
        got = assemble(deltas)
        assert got["content"] == parsed.content
        assert got["reasoning"] == (parsed.reasoning or "")
        assert [{"name": c["name"], "arguments": c["arguments"]} for c in got["calls"]] == expected["calls"]
        assert (stream.result().error is not None) == expected["error"]


@pytest.mark.parametrize("fmt", sorted(RAW_TEXT_VALUES))
def test_raw_text_values_are_typed_only_from_schema(fmt: str) -> None:
    codec = get_codec(fmt)
    text, expected = load(fmt if fmt != "glm" else "glm", "4.5" if fmt == "glm" else None, "numeric_strings")
    untyped = codec.parse(text).tool_calls[0].arguments
    assert untyped == {"code": "123_456", "zip": "007", "phone": "+1 555"}
    text, expected = load(fmt, "4.5" if fmt == "glm" else None, "big_int")
    assert codec.parse(text).tool_calls[0].arguments == {"amount": "123456789012345678901234567890", "cents": "-7"}
    typed = codec.parse(text, expected["tools"]).tool_calls[0].arguments
    assert typed == {"amount": 123456789012345678901234567890, "cents": -7}


@pytest.mark.parametrize(("fmt", "variant"), CODECS)
def test_marker_text_survives_round_trip(fmt: str, variant: str | None) -> None:
    text, _ = load(fmt, variant, "marker_in_string")
    assert get_codec(fmt, variant).parse(text).tool_calls[0].arguments["text"] == MARKER_TEXT[fmt]
