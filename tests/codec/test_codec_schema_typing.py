"""Raw-text argument values (qwen3_xml, GLM) typed from the tool's schema: anyOf/oneOf/allOf, nullable types, enums
and `$ref`s, in the documented order; text no allowed type reads stays text, with the problem said."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_tool.codec import ToolCall, get_codec
from qwen_tool.codec.schema_typing import UNSAID, Allowed, allowed, marked_value, read_value, same_value
from qwen_tool.codec.values import MAX_DEPTH, Refused
from qwen_tool.eval.bfcl_single_turn import functions_to_tools, load_category

RAW_TEXT_CODECS = [("qwen3_xml", None), ("glm", "4.5")]

# --- real tool schemas, written down --------------------------------------------------------------------------------

GIT_LOG = {"type": "function", "function": {"name": "git_log", "description": "Shows the commit logs", "parameters": {
    "properties": {
        "repo_path": {"title": "Repo Path", "type": "string"},
        "max_count": {"default": 10, "title": "Max Count", "type": "integer"},
        "start_timestamp": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None,
                            "title": "Start Timestamp"},
        "end_timestamp": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "End Timestamp"},
    },
    "required": ["repo_path"], "title": "GitLog", "type": "object"}}}
"""The reference git MCP server's `git_log`, from its tools/list snapshot (modelcontextprotocol/servers,
src/git/tests/snapshots/list_tools.json); descriptions of the timestamps shortened away."""

FORECAST = {"type": "function", "function": {"name": "forecast", "description": "Weather forecast.", "parameters": {
    "$defs": {
        "Location": {"properties": {"city": {"title": "City", "type": "string"},
                                    "lat": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None,
                                            "title": "Lat"}},
                     "required": ["city"], "title": "Location", "type": "object"},
        "Unit": {"enum": ["celsius", "fahrenheit"], "title": "Unit", "type": "string"}},
    "properties": {
        "location": {"$ref": "#/$defs/Location"},
        "unit": {"$ref": "#/$defs/Unit", "default": "celsius"},
        "days": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "Days"},
        "hours": {"anyOf": [{"items": {"type": "integer"}, "type": "array"}, {"type": "null"}], "default": None,
                  "title": "Hours"},
        "alerts": {"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": None, "title": "Alerts"}},
    "required": ["location"], "title": "forecastArguments", "type": "object"}}}
"""The inputSchema the MCP Python SDK (mcp 2.3.0, `MCPServer`, formerly FastMCP) lists for
`def forecast(location: Location, unit: Unit = Unit.celsius, days: int | None = None, hours: list[int] | None = None,
alerts: bool | None = None)`, with `Location` a pydantic model (`city: str`, `lat: float | None = None`) and `Unit` a
str enum: pydantic puts models and enums under `$defs` and says `X | None` as `anyOf [X, null]`."""

STRICT_SEARCH = {"type": "function", "function": {"name": "search", "parameters": {
    "type": "object", "additionalProperties": False, "required": ["query", "limit", "since"],
    "properties": {"query": {"type": "string"}, "limit": {"type": ["integer", "null"]},
                   "since": {"type": ["string", "null"], "format": "date"}}}}}
"""OpenAI strict function calling: every field required, an optional one written as a type list with "null"."""

GEMINI_STYLE = {"type": "function", "function": {"name": "set_alarm", "parameters": {
    "type": "object", "properties": {"time": {"type": "string"}, "repeat": {"type": "integer", "nullable": True},
                                     "sound": {"type": "string", "enum": ["bell", "chime"], "nullable": True}}}}}
"""OpenAPI 3.0 schemas (Gemini function declarations) say "may be null" with `nullable: true`."""


def same(got: Any, expected: Any) -> bool:
    """Equal and of the same JSON type, all the way down (`1` is not `True`, `5` is not `"5"`)."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(same(got[k], v)
                                                                                for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(same, got, expected))
    return type(got) is type(expected) and got == expected


# --- the reading order, case by case --------------------------------------------------------------------------------

NULLABLE_STRING = {"type": ["string", "null"]}
STRING_OR_NUMBER = {"anyOf": [{"type": "string"}, {"type": "number"}]}


@pytest.mark.parametrize(("schema", "raw", "expected"), [
    # the issue's two cases: a null in a nullable string; a number, an array and an object behind anyOf/oneOf
    (NULLABLE_STRING, "null", None),
    (NULLABLE_STRING, "Paris", "Paris"),
    (NULLABLE_STRING, " none at all ", " none at all "),  # a string keeps its spaces
    ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "7", 7),
    ({"oneOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]}, "[1, 2]", [1, 2]),
    ({"anyOf": [{"type": "object"}, {"type": "string"}]}, '{"a": {"b": null}}', {"a": {"b": None}}),
    # null, then integer/number, then boolean, then object/array, then string: the first that reads wins
    (STRING_OR_NUMBER, "5", 5),
    (STRING_OR_NUMBER, "5.5", 5.5),
    (STRING_OR_NUMBER, "007", "007"),  # leading zeros are no JSON number
    (STRING_OR_NUMBER, "NaN", "NaN"),  # nor is NaN
    (STRING_OR_NUMBER, "1e999", "1e999"),  # nor an infinity
    ({"type": ["boolean", "string"]}, "True", True),
    ({"type": ["boolean", "string"]}, "yes", "yes"),
    ({"type": ["array", "string"]}, "[not json", "[not json"),
    ({"type": ["null", "integer"]}, "NULL", None),
    # integers and numbers: JSON number syntax; a whole number where only integers are allowed
    ({"type": "integer"}, " 42\n", 42),
    ({"type": "integer"}, "5.0", 5),
    ({"type": "integer"}, "1e3", 1000),
    ({"type": "number"}, "5", 5),
    ({"type": "number"}, "5.0", 5.0),
    ({"type": "number"}, "-2.5e-3", -0.0025),
    ({"type": "integer"}, "123456789012345678901234567890", 123456789012345678901234567890),
    # OpenAPI nullable
    ({"type": "integer", "nullable": True}, "null", None),
    ({"type": "integer", "nullable": True}, "3", 3),
    ({"type": "string", "nullable": True}, "null", None),
    # enums and const: a member equal to the text, of the member's own type
    ({"enum": [1, 2, 3]}, "2", 2),
    ({"enum": ["1", "2"]}, "2", "2"),
    ({"enum": ["auto", 0, None]}, "auto", "auto"),
    ({"enum": ["auto", 0, None]}, "0", 0),
    ({"enum": ["auto", 0, None]}, "null", None),
    ({"enum": [True, 1]}, "1", 1),  # JSON's 1 is not true
    ({"enum": [True, 1]}, "true", True),
    ({"enum": [1.5, "x"]}, "1.5", 1.5),
    ({"type": "string", "enum": ["null", "none"]}, "null", "null"),  # the member is the string
    ({"const": 3}, "3", 3),
    # allOf: every part holds
    ({"allOf": [{"type": ["integer", "string"]}, {"type": "number"}]}, "5", 5),
    ({"allOf": [{"type": ["integer", "string"]}, {"type": "string"}]}, "5", "5"),
    ({"allOf": [{"enum": ["a", "b", 1]}, {"enum": ["b", 1]}]}, "1", 1),
    # nothing said about the type: the text, as before
    (None, "5", "5"),
    ({}, "5", "5"),
    ({"description": "anything"}, "null", "null"),
    ({"anyOf": [{"type": "integer"}, {}]}, "5", "5"),  # one alternative allows anything
    # a type name JSON Schema does not have (BFCL's own): any JSON value, as before
    ({"type": "float"}, "2.5", 2.5),
    ({"type": "dict"}, '{"k": 1}', {"k": 1}),
])
def test_text_is_read_as_the_first_allowed_type_it_parses_as(schema: Any, raw: str, expected: Any) -> None:
    value, problem = read_value(raw, schema)
    assert same(value, expected), (value, expected)
    assert problem is None


@pytest.mark.parametrize(("schema", "raw", "said"), [
    ({"type": "integer"}, "3.5", "'3.5' is not integer; kept as text"),
    ({"type": "integer"}, "[1]", "'[1]' is not integer; kept as text"),
    ({"type": ["integer", "null"]}, "None", "'None' is not null or integer; kept as text"),
    ({"anyOf": [{"type": "object"}, {"type": "boolean"}]}, "{'a': 1}", "\"{'a': 1}\" is not boolean or object; "
                                                                          "kept as text"),
    ({"type": "number"}, "NaN", "'NaN' is not number; kept as text"),
    ({"type": "float"}, "x", "'x' is not JSON; kept as text"),
    ({"allOf": [{"type": "integer"}, {"type": "string"}]}, "1", "'1' is not any value (the schema allows none); "
                                                                "kept as text"),
])
def test_text_no_allowed_type_reads_is_kept_as_written_and_the_problem_said(schema: dict, raw: str, said: str) -> None:
    assert read_value(raw, schema) == (raw, said)


def test_values_a_call_cannot_hold_are_refused_not_typed() -> None:
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert isinstance(read_value(deep, {"anyOf": [{"type": "array"}, {"type": "null"}]})[0], Refused)
    assert isinstance(read_value("a\ud800b", NULLABLE_STRING)[0], Refused)


def test_json_equality_tells_booleans_numbers_and_strings_apart() -> None:
    assert same_value(1, 1.0) and same_value([1], [1])
    assert not same_value(True, 1) and not same_value("1", 1) and not same_value(None, 0)


# --- what a schema allows: references, recursion, combinators -------------------------------------------------------

DEFS = {"$defs": {"Unit": {"enum": ["c", "f"]}, "Count": {"type": "integer", "minimum": 0},
                  "Maybe": {"anyOf": [{"$ref": "#/$defs/Count"}, {"type": "null"}]},
                  "Tree": {"anyOf": [{"type": "object", "properties": {"kids": {"$ref": "#/$defs/Tree"}}},
                                     {"$ref": "#/$defs/Tree"}, {"type": "null"}]},
                  "Ping": {"$ref": "#/$defs/Pong"}, "Pong": {"$ref": "#/$defs/Ping"},
                  "a/b": {"type": "boolean"}},
        "definitions": {"Old": {"type": "number"}}}


@pytest.mark.parametrize(("schema", "expected"), [
    ({"$ref": "#/$defs/Unit"}, Allowed(frozenset({"string"}), ("c", "f"))),
    ({"$ref": "#/$defs/Maybe"}, Allowed(frozenset({"integer", "null"}))),
    ({"$ref": "#/definitions/Old"}, Allowed(frozenset({"number"}))),
    ({"$ref": "#/$defs/a~1b"}, Allowed(frozenset({"boolean"}))),  # JSON pointer escape
    ({"$ref": "#/$defs/Tree"}, Allowed(frozenset({"object", "null"}))),  # the self-reference adds nothing
    ({"$ref": "#/$defs/Ping"}, UNSAID),  # a loop of references says nothing (and ends)
    ({"$ref": "#/$defs/Missing"}, UNSAID),
    ({"$ref": "https://example.com/unit.json"}, UNSAID),  # another document is not read
    ({"$ref": "#unit"}, UNSAID),  # nor an anchor name
    ({"$ref": "#"}, Allowed(frozenset({"boolean"}))),  # the whole parameters schema
    ({"$ref": "#/$defs/Count", "type": ["integer", "string"]}, Allowed(frozenset({"integer"}))),  # beside $ref: both
])
def test_references_resolve_in_the_tool_parameters_and_recursion_ends(schema: dict, expected: Allowed) -> None:
    assert allowed(schema, {**DEFS, "type": "boolean"}) == expected


def test_combinators_nested_deeper_than_the_limit_end_without_recursion_error() -> None:
    schema: dict = {"type": "integer"}
    for _ in range(5 * MAX_DEPTH):
        schema = {"anyOf": [schema, {"type": "null"}]}
    assert allowed(schema) == UNSAID  # past the limit the schema is taken to say nothing: the text is kept


# --- through the codecs: real schemas, whole and streamed -----------------------------------------------------------


def parse_both_ways(fmt: str, variant: str | None, text: str, tools: list[dict]) -> dict:
    """The arguments of the one call in `text`, parsed whole; streamed one character at a time must agree."""
    codec = get_codec(fmt, variant)
    whole = codec.parse(text, tools)
    assert whole.error is None and len(whole.tool_calls) == 1, whole
    stream = codec.stream(tools)
    for char in text:
        stream.feed(char)
    stream.finish()
    assert [c.arguments for c in stream.result().tool_calls] == [whole.tool_calls[0].arguments]
    return whole.tool_calls[0].arguments


def written(fmt: str, name: str, pairs: list[tuple[str, str]]) -> str:
    """A call as the model writes it, from its chat template: Qwen3-Coder's `<parameter=k>` blocks with a newline on
    each side of the value, or GLM-4.5's `<arg_key>`/`<arg_value>` pairs."""
    if fmt == "qwen3_xml":
        body = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in pairs)
        return f"Let me look.\n<tool_call>\n<function={name}>\n{body}</function>\n</tool_call>"
    body = "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{v}</arg_value>\n" for k, v in pairs)
    return f"Let me look.\n<tool_call>{name}\n{body}</tool_call>"


@pytest.mark.parametrize(("fmt", "variant"), RAW_TEXT_CODECS)
def test_the_git_mcp_servers_nullable_timestamps(fmt: str, variant: str | None) -> None:
    text = written(fmt, "git_log", [("repo_path", "/srv/repo"), ("max_count", "5"), ("start_timestamp", "null"),
                                    ("end_timestamp", "2 weeks ago")])
    arguments = parse_both_ways(fmt, variant, text, [GIT_LOG])
    assert same(arguments, {"repo_path": "/srv/repo", "max_count": 5, "start_timestamp": None,
                            "end_timestamp": "2 weeks ago"})


@pytest.mark.parametrize(("fmt", "variant"), RAW_TEXT_CODECS)
def test_an_mcp_python_sdk_schema_with_defs_refs_and_optional_values(fmt: str, variant: str | None) -> None:
    text = written(fmt, "forecast", [("location", '{"city": "Oslo", "lat": null}'), ("unit", "fahrenheit"),
                                     ("days", "3"), ("hours", "[6, 12]"), ("alerts", "null")])
    arguments = parse_both_ways(fmt, variant, text, [FORECAST])
    assert same(arguments, {"location": {"city": "Oslo", "lat": None}, "unit": "fahrenheit", "days": 3,
                            "hours": [6, 12], "alerts": None})
    text = written(fmt, "forecast", [("location", "Oslo"), ("days", "three"), ("alerts", "False")])
    assert same(parse_both_ways(fmt, variant, text, [FORECAST]), {"location": "Oslo", "days": "three",
                                                                  "alerts": False})  # kept as written


@pytest.mark.parametrize(("fmt", "variant"), RAW_TEXT_CODECS)
def test_openai_strict_type_lists_and_openapi_nullable(fmt: str, variant: str | None) -> None:
    text = written(fmt, "search", [("query", "null pointer"), ("limit", "null"), ("since", "2025-01-31")])
    assert same(parse_both_ways(fmt, variant, text, [STRICT_SEARCH]),
                {"query": "null pointer", "limit": None, "since": "2025-01-31"})
    text = written(fmt, "set_alarm", [("time", "07:00"), ("repeat", "null"), ("sound", "chime")])
    assert same(parse_both_ways(fmt, variant, text, [GEMINI_STYLE]), {"time": "07:00", "repeat": None,
                                                                      "sound": "chime"})


def bfcl_calls(categories: tuple[str, ...]) -> list[tuple[list[dict], ToolCall]]:
    """Each BFCL gold call (its first accepted value per argument, optional ones left out) with the offered tools."""
    out = []
    for category in categories:
        for example in load_category(category):
            tools = functions_to_tools(example.functions)
            for gold in example.gold or []:
                (name, accepted), = gold.items()
                arguments = {k: values[0] for k, values in accepted.items() if values and values[0] != ""}
                out.append((tools, ToolCall(name, arguments)))
    return out


@pytest.mark.parametrize(("fmt", "variant"), RAW_TEXT_CODECS)
def test_bfcl_gold_calls_come_back_with_their_types_from_raw_text(fmt: str, variant: str | None) -> None:
    """BFCL's tools use no anyOf, oneOf, $ref or nullable (none in the bfcl-eval data), but their types, enums and
    string values that look like numbers must survive the trip through text: render, parse, same values."""
    codec = get_codec(fmt, variant)
    calls = bfcl_calls(("simple_python", "multiple", "live_simple"))
    assert len(calls) > 800
    for tools, call in calls:
        parsed = codec.parse(codec.render_calls([call]).text, tools)
        assert len(parsed.tool_calls) == 1, (call, parsed)
        assert same(parsed.tool_calls[0].arguments, call.arguments), (call, parsed.tool_calls[0].arguments)


@pytest.mark.parametrize(("raw", "is_string", "schema", "expected"), [
    ("42", True, {"type": "integer"}, "42"),  # marked a string: the text, whatever the schema says
    ("42", False, {"type": "string"}, 42),  # marked JSON: decoded, whatever the schema says
    ("[1, 2]", False, None, [1, 2]),
    ("not json", False, {"type": "integer"}, "not json"),  # marked JSON but is not: the schema, which keeps the text
    ("not json", False, None, "not json"),
    ("42", None, {"type": "integer"}, 42),  # unmarked: the schema decides
    ("42", None, {"type": "string"}, "42"),
])
def test_marked_values_follow_their_markup_then_the_schema(raw: str, is_string: bool | None, schema: dict | None,
                                                           expected: object) -> None:
    assert same_value(marked_value(raw, is_string, schema), expected)
