from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

import pytest

from qwen_tool.tools import Tool, ToolDefinitionError, ToolRegistry, bfcl_to_json_schema


class Passenger(TypedDict):
    name: str
    age: int


@dataclass
class Window:
    start: str
    end: str
    timezone: str = "UTC"


def book(city: str, passengers: list[Passenger], cabin: Literal["economy", "business"] = "economy",
         window: Window | None = None, tags: dict[str, int] | None = None) -> str:
    """Book a trip.

    Args:
        city: Destination city.
        passengers: Who travels,
            one entry per person.
        cabin: Cabin class.
        window: When to travel.
        tags: Free labels.
    """
    return f"{city}:{len(passengers)}:{cabin}:{type(window).__name__}:{window.timezone if window else ''}"


def test_from_callable_builds_nested_schema_with_enums_and_optionals():
    tool = Tool.from_callable(book)
    params = tool.parameters
    assert tool.description == "Book a trip."
    assert params["required"] == ["city", "passengers"]
    assert params["properties"]["cabin"] == {"type": "string", "enum": ["economy", "business"],
                                             "description": "Cabin class.", "default": "economy"}
    assert params["properties"]["passengers"]["items"]["properties"] == {"name": {"type": "string"},
                                                                        "age": {"type": "integer"}}
    assert params["properties"]["passengers"]["description"] == "Who travels, one entry per person."
    window = params["properties"]["window"]
    assert window["type"] == "object" and window["required"] == ["start", "end"]
    assert params["properties"]["tags"]["additionalProperties"] == {"type": "integer"}
    schema = tool.openai_schema()
    assert schema["type"] == "function" and schema["function"]["name"] == "book"


def test_dataclass_arguments_arrive_as_instances():
    tool = Tool.from_callable(book)
    out = tool(city="Oslo", passengers=[{"name": "a", "age": 3}], window={"start": "1", "end": "2"})
    assert out == "Oslo:1:economy:Window:UTC"


def test_sphinx_docstring_and_missing_hint():
    def f(x: int) -> int:
        """Double.

        :param x: the number
        """
        return 2 * x

    assert Tool.from_callable(f).parameters["properties"]["x"]["description"] == "the number"

    def g(x):  # no hint
        return x

    with pytest.raises(ToolDefinitionError, match="needs a type hint"):
        Tool.from_callable(g)


def test_from_schema_accepts_openai_and_bare_forms():
    fn = {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}
    assert Tool.from_schema({"type": "function", "function": fn}).parameters == fn["parameters"]
    assert Tool.from_schema(fn).name == "f"
    with pytest.raises(ToolDefinitionError, match="name"):
        Tool.from_schema({"description": "x"})


def test_bfcl_types_are_mapped_recursively():
    doc = {"name": "f", "description": "d", "parameters": {"type": "dict", "properties": {
        "ratio": {"type": "float"}, "pair": {"type": "tuple", "items": {"type": "integer"}},
        "blob": {"type": "any"}, "cfg": {"type": "dict", "properties": {"x": {"type": "float"}}}},
        "required": ["ratio"]}}
    tool = Tool.from_bfcl(doc)
    props = tool.parameters["properties"]
    assert tool.parameters["type"] == "object"
    assert props["ratio"] == {"type": "number"}
    assert props["pair"] == {"type": "array", "items": {"type": "integer"}}
    assert props["blob"] == {}
    assert props["cfg"]["properties"]["x"] == {"type": "number"}
    assert bfcl_to_json_schema({"type": "any", "description": "x"}) == {"description": "x"}


def test_registry_rejects_duplicates_and_lists_schemas():
    registry = ToolRegistry([book])
    assert "book" in registry and len(registry) == 1
    with pytest.raises(ToolDefinitionError, match="duplicate"):
        registry.register(book)
    assert registry.openai_schemas()[0]["function"]["name"] == "book"
