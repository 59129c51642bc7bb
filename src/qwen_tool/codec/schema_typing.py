"""Typing a raw-text argument from its tool's JSON schema.

Some formats write each argument as bare text (qwen3_xml's `<parameter=days>5</parameter>`, GLM's
`<arg_key>days</arg_key><arg_value>5</arg_value>`): whether `5` is the number or the text is left to the reader, and the
tool's schema decides. A schema says what a value may be in several ways, and `allowed` folds them all into one
`Allowed` (the JSON types and the enum members a value may take):

- `type`: one name or a list of names (`["string", "null"]`); OpenAPI's `nullable: true` adds `null`;
- `enum` and `const`: the members (and, without `type`, their types);
- `anyOf` / `oneOf`: any alternative; `allOf`: every part (types and members intersected);
- `$ref` to a place in the tool's parameters (`#/$defs/Unit`, `#/definitions/Unit`); a reference that comes back to
  itself through combinators adds nothing, one that cannot be resolved (another document) says nothing.

Only the value's own type is read from the text: what an object or array holds is JSON and says its own types.
A type name JSON Schema does not have (BFCL's `float`, `dict`, `tuple`) reads any JSON value, else the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from qwen_tool.codec.values import MAX_DEPTH, Refused, loads, surrogate_problem

JSON_TYPES = ("null", "integer", "number", "boolean", "object", "array", "string")
"""JSON Schema's type names."""
ANY_JSON = "json"
"""Stands for a type name JSON Schema does not have: the text is read as any JSON value."""
READING_ORDER = ("null", "integer", "number", "boolean", "object", "array", ANY_JSON, "string")
"""The order `read_value` tries the allowed types in: the first the text reads as wins."""

JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
PYTHON_TYPES: dict[type, str] = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
                                 list: "array", dict: "object"}


@dataclass(frozen=True)
class Allowed:
    """What a schema lets a value be: its JSON types (None: the schema does not say) and, where the schema lists
    them (`enum`, `const`), the members (None: any value of those types)."""

    types: frozenset[str] | None = None
    members: tuple[Any, ...] | None = None


ORDERS: dict[frozenset[str], tuple[str, ...]] = {}
"""`reading_order` of each set of types met so far (at most one per subset of READING_ORDER)."""


def reading_order(types: frozenset[str]) -> tuple[str, ...]:
    """`types` in READING_ORDER, `integer` left to `number` where both are allowed."""
    order = ORDERS.get(types)
    if order is None:
        order = ORDERS[types] = tuple(kind for kind in READING_ORDER
                                      if kind in types and not (kind == "integer" and "number" in types))
    return order


UNSAID = Allowed()


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: `1` equals `1.0`, but `true` is not `1` and `"1"` is not `1` (Python's `==` says otherwise)."""
    kind_a, kind_b = PYTHON_TYPES.get(type(a)), PYTHON_TYPES.get(type(b))
    numbers = ("integer", "number")
    if kind_a != kind_b and not (kind_a in numbers and kind_b in numbers):
        return False
    return a == b


def with_subtypes(types: frozenset[str]) -> frozenset[str]:
    """`number` holds every `integer`; an unknown type name (ANY_JSON) holds every type."""
    if ANY_JSON in types:
        return frozenset((*JSON_TYPES, ANY_JSON))
    return types | {"integer"} if "number" in types else types


def meet(a: Allowed, b: Allowed) -> Allowed:
    """What both `a` and `b` allow (allOf, or a keyword beside `$ref`)."""
    if a.types is None and a.members is None:
        return b
    if b.types is None and b.members is None:
        return a
    if a.types is None or b.types is None:
        types = a.types if b.types is None else b.types
    else:
        types = with_subtypes(a.types) & with_subtypes(b.types)
        if ANY_JSON in types:  # both name types this module does not know
            types = frozenset({ANY_JSON})
        elif "number" in types:
            types -= {"integer"}
    if a.members is None or b.members is None:
        members = a.members if b.members is None else b.members
    else:
        members = tuple(m for m in a.members if any(same_value(m, n) for n in b.members))
    return Allowed(types, members)


def join(a: Allowed, b: Allowed) -> Allowed:
    """What `a` or `b` allows (anyOf, oneOf): a side that does not say makes the whole say nothing."""
    types = None if a.types is None or b.types is None else a.types | b.types
    members = None if a.members is None or b.members is None else a.members + b.members
    return Allowed(types, members)


def resolve(ref: str, root: dict) -> Any:
    """The schema a local `$ref` (a JSON pointer after `#`) points to in `root`, or None (another document, an
    anchor name, or nothing there)."""
    if ref != "#" and not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


SAYS_MORE = frozenset({"$ref", "anyOf", "oneOf", "allOf", "enum", "const", "nullable"})
"""Keywords beside `type` that change what a value may be: a schema with none of them is read without a walk."""
ONE_TYPE = {name: Allowed(frozenset({name})) for name in JSON_TYPES}
STRING = frozenset({"string"})


def allowed(schema: Any, root: Any = None) -> Allowed:
    """What `schema` lets a value be; `$ref`s are resolved in `root` (the tool's parameters; default `schema`)."""
    return _allowed(schema, root if isinstance(root, dict) else schema, frozenset(), 0) or UNSAID


def _allowed(schema: Any, root: Any, refs: frozenset[str], depth: int) -> Allowed | None:
    """`allowed`, or None for a `$ref` already being resolved on this path (it adds nothing to its combinator)."""
    if schema is False:
        return Allowed(frozenset(), ())
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return UNSAID
    if SAYS_MORE.isdisjoint(schema):
        named = schema.get("type")
        return ONE_TYPE[named] if isinstance(named, str) and named in ONE_TYPE else own_keywords(schema)
    parts: list[Allowed | None] = [own_keywords(schema)]
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = resolve(ref, root) if isinstance(root, dict) else None
        if ref in refs:
            parts.append(None)
        elif target is None:
            parts.append(UNSAID)
        else:
            parts.append(_allowed(target, root, refs | {ref}, depth + 1))
    for keyword in ("anyOf", "oneOf"):
        listed = schema.get(keyword)
        if not isinstance(listed, list) or not listed:
            continue
        said = [alt for alt in (_allowed(alt, root, refs, depth + 1) for alt in listed) if alt is not None]
        if said:
            union = said[0]
            for alt in said[1:]:
                union = join(union, alt)
            parts.append(union)
        else:
            parts.append(None)
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        parts.extend(_allowed(part, root, refs, depth + 1) for part in all_of)
    said = [part for part in parts if part is not None]
    if len(said) < len(parts) and said == [UNSAID]:
        return None  # only a recursive reference here: the value is whatever the other alternatives allow
    result = UNSAID
    for part in said:
        result = meet(result, part)
    return result


def own_keywords(schema: dict) -> Allowed:
    """What `type`, `nullable`, `enum` and `const` say (nothing when none of them is there)."""
    if "type" not in schema and "enum" not in schema and "const" not in schema:
        return UNSAID
    named = schema.get("type")
    if isinstance(named, list):
        names = [name for name in named if isinstance(name, str)]
    else:
        names = [named] if isinstance(named, str) else []
    members: tuple[Any, ...] | None = None
    if "const" in schema:
        members = (schema["const"],)
    elif isinstance(schema.get("enum"), list):
        members = tuple(schema["enum"])
    if names:
        types = frozenset(name if name in JSON_TYPES else ANY_JSON for name in names)
    elif members is not None:
        types = frozenset(PYTHON_TYPES.get(type(member), ANY_JSON) for member in members)
    else:
        return UNSAID
    if schema.get("nullable") is True:
        types |= {"null"}
        members = None if members is None else (*members, None)
    return Allowed(types, members)


def read_as(kind: str, text: str) -> tuple[bool, Any]:
    """(True, value) when the stripped `text` reads as a value of JSON type `kind` (ANY_JSON: any JSON value); a
    value `values.loads` refuses (too deep, a lone surrogate) comes back as (True, Refused).

    A JSON integer literal reads as an int for both `integer` and `number`; `integer` also reads a number literal with
    no fraction (`5.0`, `1e3`) as that int, and `number` reads other literals as floats."""
    if kind == "null":
        return text.lower() == "null", None
    if kind in ("integer", "number"):
        match = JSON_NUMBER.fullmatch(text)
        if match is None:
            return False, None
        if match.group(1) is None and match.group(2) is None:
            try:
                return True, int(text)
            except ValueError:  # more digits than Python converts (4,300)
                return False, None
        number = float(text)
        if number in (float("inf"), float("-inf")):
            return False, None
        if kind == "number":
            return True, number
        return number.is_integer(), int(number) if number.is_integer() else None
    if kind == "boolean":
        return text.lower() in ("true", "false"), text.lower() == "true"
    if not text or text[0] not in "[{" and kind != ANY_JSON:
        return False, None
    try:
        value = loads(text)
    except ValueError:
        return False, None
    if isinstance(value, Refused) or kind == ANY_JSON:
        return True, value
    return isinstance(value, dict if kind == "object" else list), value


def read_value(raw: str, schema: Allowed | dict | None) -> tuple[Any, str | None]:
    """Type a raw-text argument from what its schema allows: (value, problem), where `problem` says why the text was
    kept as text against its schema (None when it was read as an allowed type, or the schema says nothing).

    Never invents a value; the first reading that fits wins, in this order:
    1. an `enum`/`const` member equal to the text (a string member as written or stripped; another member when the
       text is that JSON value);
    2. nothing said about the type (no schema, `{}`, or an alternative that allows anything): the text;
    3. the stripped text as, in turn: `null` (also `NULL`), an integer, a number (JSON number syntax: no `NaN`, no
       leading zeros; `5.0` is the integer 5 where only integers are allowed), a boolean (`true`/`false`, any
       case), an object, an array (JSON), any JSON value (for a type name JSON Schema does not have);
    4. a string, if allowed: the text as written (not stripped);
    5. otherwise the text as written, with the problem.
    A value too deep or holding a lone surrogate comes back as `Refused` (its call is dropped), with no problem.
    """
    if problem := surrogate_problem(raw):
        return Refused(problem), None
    can = schema if isinstance(schema, Allowed) else allowed(schema)
    if can.members is not None:
        stripped = raw.strip()
        for member in can.members:
            if isinstance(member, str):
                if member in (raw, stripped):
                    return member, None
            else:
                readable, value = read_as(PYTHON_TYPES.get(type(member), ANY_JSON), stripped)
                if readable and same_value(value, member):
                    return member, None
    if can.types is None or can.types == STRING:
        return raw, None
    text = raw.strip()
    for kind in reading_order(can.types):
        if kind == "string":
            return raw, None
        readable, value = read_as(kind, text)
        if readable:
            return value, None
    wanted = " or ".join(kind if kind != ANY_JSON else "JSON" for kind in READING_ORDER if kind in can.types)
    return raw, f"{text[:40]!r} is not {wanted or 'any value (the schema allows none)'}; kept as text"


def type_value(raw: str, schema: Allowed | dict | None) -> Any:
    """`read_value` without the problem: the typed value, the text, or `Refused`."""
    return read_value(raw, schema)[0]


def argument_allowed(parameters: Any, key: str) -> Allowed:
    """What the tool whose `parameters` schema is given lets argument `key` be (`$ref`s resolved in `parameters`)."""
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict) or key not in properties:
        return UNSAID
    return allowed(properties[key], parameters)


def marked_value(raw: str, is_string: bool | None, schema: Allowed | dict | None) -> Any:
    """An argument whose markup says whether it is a string (DSML's `string="true|false"`, Kimi K3's `type`): the
    text when it is; JSON when it is not; from the schema when the markup says nothing. Text marked JSON that does not
    decode is typed from the schema instead (as text if the schema says nothing): kept, never invented."""
    if is_string:
        return type_value(raw, {"type": "string"})
    if is_string is False:
        try:
            return loads(raw)
        except ValueError:
            pass
    return type_value(raw, schema)
