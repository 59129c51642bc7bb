"""Compact tool rendering: typed signatures written by hand for each schema feature, every format's default (JSON)
rendering byte for byte as before the option existed, and the option threaded through the chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen_tool.codec import CodecError, available_formats, get_codec
from qwen_tool.codec.chat import render_conversation, render_prompt
from qwen_tool.codec.tool_signatures import render_signature, render_signatures

PROMPTS = Path(__file__).parent / "fixtures" / "tool_prompts"
TOOLS = json.loads((PROMPTS / "tools.json").read_text())
"""A function with a required string, an enum with a default, an array, a nested object; one without parameters
(bare function dict); one with an empty parameters object and no description."""

WEATHER = (
    'get_weather(city: string, unit?: "celsius" | "fahrenheit" = "celsius", days?: integer[], '
    "where?: {lat: number, lon: number})\n"
    "  Current weather for a city.\n"
    "  - city: City name.\n"
    "  - days: Days ahead.\n"
    "  - where: Exact spot."
)


def test_signatures_of_the_fixture_tools() -> None:
    assert render_signatures(TOOLS) == WEATHER + "\nnow()\n  Zeit jetzt (UTC).\nping()"


def test_nested_objects_and_arrays_of_objects_keep_fields_defaults_and_descriptions() -> None:
    book = {"name": "book", "parameters": {"type": "object", "required": ["trip"], "properties": {"trip": {
        "type": "object", "required": ["from"], "properties": {
            "from": {"type": "string", "description": "Origin."},
            "stops": {"type": "array", "items": {"type": "object", "required": ["city"], "properties": {
                "city": {"type": "string", "description": "Stop city."},
                "nights": {"type": "integer", "default": 1}}}}}}}}}
    assert render_signature(book) == (
        "book(trip: {from: string, stops?: {city: string, nights?: integer = 1}[]})\n"
        "  - trip.from: Origin.\n"
        "  - trip.stops[].city: Stop city."
    )


def test_what_a_signature_cannot_say_follows_as_json_of_exactly_the_keys_left() -> None:
    f = {"name": "f", "description": "Line one.\nLine two.", "parameters": {
        "type": "object", "required": ["id", "n"], "additionalProperties": False, "properties": {
            "id": {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "Key."},
            "when": {"type": "string", "format": "date"},
            "n": {"type": "integer", "minimum": 1, "maximum": 10, "description": "Count."},
            "tag": {"type": ["string", "null"]},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "mode": {"const": "fast"},
            "first-name": {"type": "string"},
            "x": {"type": "number", "optional": True, "format": "float"},  # BFCL's optional agrees with required
            "labels": {"type": "array", "items": {"enum": ["a", "b"]}},
            "anything": {}}}}
    assert render_signature(f) == (
        'f(id: {"anyOf": [{"type": "string"}, {"type": "integer"}]}, when?: string, n: integer, tag?: string | null, '
        'counts?: {[key: string]: integer}, mode?: "fast", "first-name"?: string, x?: number, '
        'labels?: ("a" | "b")[], anything?: any)\n'
        "  Line one.\n"
        "  Line two.\n"
        "  - id: Key.\n"
        '  - when: {"format": "date"}\n'
        '  - n: Count. {"minimum": 1, "maximum": 10}\n'
        '  - x: {"format": "float"}'
    )


def test_contradictions_and_unknown_top_level_keys_are_kept_not_dropped() -> None:
    g = {"name": "g", "parameters": {"type": "object", "required": ["a", "b"], "minProperties": 1, "properties": {
        "a": {"type": "string", "optional": True}, "c": {"type": "object", "additionalProperties": False}}}}
    assert render_signature(g) == (
        "g(a: string, c?: {})\n"
        '  {"required": ["a", "b"], "minProperties": 1}\n'
        '  - a: {"optional": true}'
    )
    legacy = {"name": "h", "parameters": {"type": "object", "required": True, "properties": {"a": {"type": "string"}}}}
    assert render_signature(legacy) == 'h(a?: string)\n  {"required": true}'


def test_a_tool_without_a_name_is_refused_with_the_fix() -> None:
    with pytest.raises(CodecError, match="has no string `name`; fix:"):
        render_signatures([{"type": "function", "function": {"description": "x"}}])


@pytest.mark.parametrize("prompt", sorted(PROMPTS.glob("*.txt")), ids=lambda path: path.stem)
def test_the_default_rendering_is_unchanged_for_every_format(prompt: Path) -> None:
    """Fixtures written by the code before `tool_rendering` existed (git 4fab789)."""
    fmt, variant = prompt.stem.rsplit("-", 1)
    assert get_codec(fmt, variant).render_tools(TOOLS) == prompt.read_text()


def test_every_format_and_variant_has_a_fixture() -> None:
    names = {f"{fmt}-{variant}" for fmt in available_formats() for variant in get_codec(fmt).variants}
    assert names == {path.stem for path in PROMPTS.glob("*.txt")}


def test_compact_hermes_keeps_its_instructions_and_lists_signatures() -> None:
    expected = (
        "# Tools\n\n"
        "You can call the functions described below to help with the user's request.\n\n"
        "Each function's signature (`?` marks an optional argument, `=` its default) is inside the <tools></tools> "
        "tags:\n"
        f"<tools>\n{WEATHER}\nnow()\n  Zeit jetzt (UTC).\nping()\n</tools>\n\n"
        "To call a function, write a JSON object with its name and arguments between <tool_call></tool_call> tags, "
        "one block per call:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )
    assert get_codec("hermes", tool_rendering="compact").render_tools(TOOLS) == expected
    prompt = render_prompt(None, [{"role": "user", "content": "Hi"}], TOOLS, get_codec("hermes", None, "compact"))
    assert prompt == (f"<|im_start|>system\n{expected}<|im_end|>\n"
                      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("fmt", available_formats())
def test_every_format_lists_the_signatures_instead_of_its_declarations(fmt: str) -> None:
    codec = get_codec(fmt, tool_rendering="compact")
    text = codec.render_tools(TOOLS)
    assert render_signatures(TOOLS) in text
    assert '"properties"' not in text and "<parameter>" not in text and "type get_weather" not in text
    assert text == codec.tools_prompt(TOOLS, render_signatures(TOOLS))


def test_an_unknown_rendering_is_one_line_with_did_you_mean() -> None:
    with pytest.raises(CodecError, match=r"^unknown tool rendering 'compakt'; fix: did you mean 'compact'\? use one "
                                         r"of json, compact$"):
        get_codec("hermes", tool_rendering="compakt")


class _ToolTemplateTokenizer:
    """Just enough of a tokenizer whose own chat template takes tools."""

    chat_template = "{% if tools %}...{% endif %}"
    eos_token = "<|im_end|>"

    def get_vocab(self) -> dict[str, int]:
        return {"<|im_start|>": 0}


def test_compact_never_goes_through_a_models_own_template() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    compact = get_codec("hermes", tool_rendering="compact")
    chat = render_conversation(_ToolTemplateTokenizer(), messages, TOOLS, compact)
    assert chat.template == "ours:hermes" and render_signatures(TOOLS) in chat.text
    with pytest.raises(CodecError, match="use_model_template=False"):
        render_conversation(_ToolTemplateTokenizer(), messages, TOOLS, compact, use_model_template=True)
