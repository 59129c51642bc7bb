"""Guided decoding of tool calls: per prompt, a structural tag (xgrammar) that leaves free text alone and, once the
model opens a call, holds it to the offered tools' names and argument schemas until the call closes.

The model still decides whether to call (the tag only triggers on the format's opening marker); what guidance removes
is JSON that does not parse, unknown parameters, missing required ones and values of the wrong JSON type. vLLM and
SGLang serve tool calls the same way through xgrammar's structural tags; only formats whose xgrammar template we have
checked against our codec's rendering are listed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from qwen_tool.codec.base import CodecError

XGRAMMAR_TEMPLATES: dict[str, str] = {"hermes": "qwen_3"}
"""Our format → xgrammar's built-in structural tag of the same wire text."""

GUIDE_KIND = "xgrammar structural tag, arguments in any order, OpenAPI nullable allows null"
"""What `structural_tag` builds; part of the generation cache key, so a change to the grammar's options must change it
(cached guided generations of the old grammar are then not reused)."""


def structural_tag(fmt: str, tools: Sequence[Mapping[str, Any]] | None, prefix: str = "", *,
                   max_whitespace: int | None = None) -> str | None:
    """The structural tag (JSON text) that guides calls in format `fmt` to `tools`; None when no tool is offered.

    `max_whitespace`: whitespace characters allowed wherever JSON allows whitespace in the arguments (None: any
    number). Without a bound, a weak model held to a grammar can spend every remaining token on whitespace.

    `prefix`: the start of a call already written at the end of the prompt (the server forces one for `tool_choice`
    "required" or a named function, e.g. `<tool_call>\\n{"name": "`). The generation must then first complete that
    call, under the schema of a tool whose opening text the prefix begins, before the usual guide takes over.
    """
    if fmt not in XGRAMMAR_TEMPLATES:
        raise CodecError(f"guided tool-call decoding has no template for format {fmt!r}; fix: use one of "
                         f"{sorted(XGRAMMAR_TEMPLATES)} or decode without guidance")
    if not tools:
        return None
    try:
        import xgrammar
    except ImportError as err:
        raise CodecError("guided decoding needs xgrammar; fix: `make setup` (or `pip install xgrammar`)") from err
    # any_order: a model may name arguments in any order (xgrammar's default holds them to the schema's order).
    tag = xgrammar.get_builtin_structural_tag(XGRAMMAR_TEMPLATES[fmt], tools=[json_schema_tool(t) for t in tools],
                                             tool_choice="auto", reasoning=False, any_order=True,
                                             max_whitespace_cnt=max_whitespace)
    if not prefix:
        return tag.model_dump_json()
    free = tag.format.model_dump()  # triggered tags: one per tool, {"begin": opening text, "content", "end"}
    rest = [{**t, "begin": t["begin"][len(prefix):]} for t in free["tags"] if t["begin"].startswith(prefix)]
    if not rest:
        raise CodecError(f"the forced call opening {prefix!r} begins no tool's call in xgrammar's {fmt} template; fix: "
                         "decode without guidance")
    forced = rest[0] if len(rest) == 1 else {"type": "or", "elements": rest}
    return json.dumps({"type": "structural_tag", "format": {"type": "sequence", "elements": [forced, free]}})


def json_schema_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI tool with its parameters' `nullable` said in JSON Schema (`with_json_nulls`), for xgrammar."""
    function = tool.get("function")
    if not isinstance(function, Mapping) or "parameters" not in function:
        return dict(tool)
    return {**tool, "function": {**function, "parameters": with_json_nulls(function["parameters"])}}


SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
"""Keywords whose value maps names to schemas."""
SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
SCHEMA_VALUES = frozenset({"items", "additionalItems", "additionalProperties", "unevaluatedItems",
                           "unevaluatedProperties", "contains", "propertyNames", "not", "if", "then", "else"})


def with_json_nulls(schema: Any) -> Any:
    """`schema` (a copy) with OpenAPI's `nullable: true` said in JSON Schema: `null` added to the `type` list (and to
    the `enum`), or, with no `type`, the schema made an `anyOf` of itself and `{"type": "null"}`.

    xgrammar reads JSON Schema, where `nullable` is no keyword: without this, guidance would forbid the `null` that
    the tool allows (and that the codec reads back from raw-text formats). Only schema positions are visited, so a
    property or a default value that happens to be named `nullable` is left alone.
    """
    if isinstance(schema, list):  # `items` as a list (older drafts)
        return [with_json_nulls(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: with_json_nulls(sub) for name, sub in value.items()}
        elif key in SCHEMA_LISTS and isinstance(value, list) or key in SCHEMA_VALUES:
            out[key] = with_json_nulls(value)
        else:
            out[key] = value
    if out.get("nullable") is not True:
        return out
    del out["nullable"]
    named = out.get("type")
    if named is None:
        return {"anyOf": [out, {"type": "null"}]}
    names = [named] if isinstance(named, str) else list(named)
    out["type"] = names if "null" in names else [*names, "null"]
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


__all__ = ["GUIDE_KIND", "XGRAMMAR_TEMPLATES", "structural_tag"]
