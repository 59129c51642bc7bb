"""Tool declarations as typed signatures: the compact alternative to listing each tool's JSON schema.

A JSON schema spends most of its tokens on structure (`"type": "object", "properties": {...}, "required": [...]`),
which a small model's context pays for in every training example and every prompt. A signature says the same:

    get_weather(city: string, unit?: "celsius" | "fahrenheit" = "celsius", days?: integer[])
      Current weather for a city.
      - city: City name.
      - days: {"maxItems": 7}

Everything a valid call depends on is kept: names; types (`string`, `integer`, `number`, `boolean`, `null`, an
array's item type as `T[]`, an object's fields as `{name: T, ...}`, a map as `{[key: string]: T}`, type lists and
enums as `A | B`); required or optional (`?`); defaults (`= value`); the function's description and one `- path:`
line per parameter, nested field (`location.city`) or array item (`stops[].city`) that has a description. Whatever a
signature cannot say (`anyOf`, `format`, ranges, patterns, ...) follows on that line as a JSON fragment of exactly
the keys not yet said; a schema with no type at all becomes its JSON fragment in the signature itself. Two keys are
taken as said because the signature already says them: `additionalProperties: false` (a call that names only the
listed fields is valid either way; an object with none reads `{}`) and BFCL's `optional` when it agrees with
`required`.
"""

from __future__ import annotations

import re
from typing import Any

from qwen_tool.codec.base import CodecError, dumps, function_of

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INDENT = "  "


def render_signatures(tools: list[dict]) -> str:
    """OpenAI `tools` (or bare function dicts) as one signature block per function, one after another."""
    return "\n".join(render_signature(function_of(tool)) for tool in tools)


def render_signature(function: dict) -> str:
    """One function as its signature line, then (indented) its description, any keys of its parameters object that
    the signature cannot say, and a line per described parameter (see the module docstring)."""
    if not isinstance(function.get("name"), str):
        raise CodecError(f"tool {function!r:.120} has no string `name`; fix: use {{'type': 'function', "
                         "'function': {'name': ..., 'parameters': ...}}")
    parameters = function.get("parameters") or {}
    rest = dict(parameters) if isinstance(parameters, dict) else {"parameters": parameters}
    if rest.get("type") == "object":
        del rest["type"]
    fields, notes = _object_fields(rest, "")
    lines = [f"{function['name']}({', '.join(fields)})"]
    description = function.get("description")
    if isinstance(description, str) and description.strip():
        lines.append(_indented(description.strip(), INDENT, INDENT))
    if rest:
        lines.append(INDENT + dumps(rest))
    lines += [_indented(note, INDENT, INDENT * 2) for note in notes]
    return "\n".join(lines)


def _indented(text: str, first: str, rest: str) -> str:
    """`text` with `first` before its first line and `rest` before every later one (so a block stays one block)."""
    head, *tail = text.split("\n")
    return "\n".join([first + head, *(rest + line for line in tail)])


def _object_fields(rest: dict[str, Any], path: str) -> tuple[list[str], list[str]]:
    """The fields of an object schema as `name?: T = default` texts, and their `- path:` notes; the keys said are
    removed from `rest` (a `required` naming an undeclared field stays, so it reaches a note). The fields are the
    ones the call may name; `additionalProperties: false` adds nothing to that, so it is taken as said."""
    fields: list[str] = []
    notes: list[str] = []
    properties = rest.get("properties")
    if isinstance(properties, dict) and properties:
        del rest["properties"]
        listed = rest.get("required")
        required = [name for name in listed if isinstance(name, str)] if isinstance(listed, list) else []
        if listed is not None and required == listed and all(name in properties for name in required):
            del rest["required"]  # said by the `?` marks
        for name, schema in properties.items():
            text, field_notes = _field(str(name), schema, name in required, path)
            fields.append(text)
            notes += field_notes
    if rest.get("additionalProperties") is False:
        del rest["additionalProperties"]
    additional = rest.get("additionalProperties")
    if isinstance(additional, dict):
        del rest["additionalProperties"]
        text, value_notes = _describe(additional, f"{path}[key]", ())
        fields.append(f"[key: string]: {text}")
        notes += value_notes
    return fields, notes


def _field(name: str, schema: Any, required: bool, parent: str) -> tuple[str, list[str]]:
    """`name?: T = default` of one field, and the notes of it and what it holds."""
    key = name if IDENTIFIER.fullmatch(name) else dumps(name)
    path = f"{parent}.{key}" if parent else key
    said = ("optional",) if isinstance(schema, dict) and schema.get("optional") is (not required) else ()
    text, notes = _describe(schema, path, said)
    default = f" = {dumps(schema['default'])}" if isinstance(schema, dict) and "default" in schema else ""
    return f"{key}{'' if required else '?'}: {text}{default}", notes


def _describe(schema: Any, path: str, said: tuple[str, ...]) -> tuple[str, list[str]]:
    """(type text, notes) of the schema at `path`: its own note first (description, then a JSON fragment of the keys
    the type text did not say), then its fields' and items' notes. `said`: keys the caller has already said."""
    if not isinstance(schema, dict):
        return dumps(schema), []  # a boolean schema (true: anything, false: nothing) reads as itself
    rest = {k: v for k, v in schema.items() if k not in ("description", "default", *said)}
    text, nested = _type(rest, path)
    parts = []
    description = schema.get("description")
    if isinstance(description, str):
        if description.strip():
            parts.append(description.strip())
    elif description is not None:
        rest["description"] = description
    if rest:
        parts.append(dumps(rest))
    own = [f"- {path}: {' '.join(parts)}"] if parts else []
    return text, own + nested


def _type(rest: dict[str, Any], path: str) -> tuple[str, list[str]]:
    """The type text of a schema (without description and default), removing from `rest` the keys it says."""
    enum = rest.get("enum")
    if isinstance(enum, list) and enum:
        del rest["enum"]
        rest.pop("type", None)  # the values say their own types
        return " | ".join(dumps(value) for value in enum), []
    if "const" in rest:
        rest.pop("type", None)
        return dumps(rest.pop("const")), []
    types = rest.get("type")
    names = [types] if isinstance(types, str) else types
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        if not rest:
            return "any", []
        text = dumps(rest)  # no type a signature can say (anyOf, $ref, ...): the schema itself is the type
        rest.clear()
        return text, []
    del rest["type"]
    texts, notes = [], []
    for name in names:
        text, more = _named_type(name, rest, path)
        texts.append(text)
        notes += more
    return " | ".join(texts), notes


def _named_type(name: str, rest: dict[str, Any], path: str) -> tuple[str, list[str]]:
    """One JSON-schema type name as signature text; arrays and objects take their items and fields from `rest`."""
    if name == "array" and isinstance(rest.get("items"), dict):
        text, notes = _describe(rest.pop("items"), f"{path}[]", ())
        return (f"({text})[]" if " | " in text else f"{text}[]"), notes
    if name == "object":
        closed = rest.get("additionalProperties") is False
        fields, notes = _object_fields(rest, path)
        return ("{" + ", ".join(fields) + "}" if fields or closed else "object"), notes
    return name, []
