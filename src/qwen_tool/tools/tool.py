"""`Tool`: a name, an OpenAI JSON schema and a handler, built from a Python callable, a JSON schema or a BFCL doc."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from qwen_tool import QwenToolError


class ToolDefinitionError(QwenToolError):
    """A tool cannot be built from what was given (unsupported type hint, malformed schema, duplicate name)."""


@dataclass(frozen=True)
class Tool:
    """A callable tool: `parameters` is a JSON Schema object; `handler(**arguments)` runs it.

    `timeout_s` overrides the executor's default. `isolate`: True always runs the handler in the sandbox
    (`tools.sandbox`), False runs it in the caller's process (trusted code, such as the built-in simulated suites,
    whose state must live on between calls), None (the default) leaves it to the executor, which sandboxes it.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[..., Any] | None = field(default=None, compare=False)
    timeout_s: float | None = None
    isolate: bool | None = None

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry: `{"type": "function", "function": {name, description, parameters}}`."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    @cached_property
    def validator(self) -> Any:
        """A jsonschema validator that also rejects arguments the schema does not declare."""
        from jsonschema import Draft202012Validator

        schema = dict(self.parameters)
        schema.setdefault("type", "object")
        schema.setdefault("additionalProperties", False)
        return Draft202012Validator(schema)

    def __call__(self, **arguments: Any) -> Any:
        if self.handler is None:
            raise QwenToolError(f"tool '{self.name}' has no handler; build it with one or bind one (with_handler)")
        return self.handler(**arguments)

    def with_handler(self, handler: Callable[..., Any]) -> Tool:
        """The same schema bound to another handler (e.g. a method of this episode's suite instance)."""
        return dataclasses.replace(self, handler=handler)

    @classmethod
    def from_callable(
        cls, fn: Callable[..., Any], name: str | None = None, description: str | None = None, **options: Any
    ) -> Tool:
        """Schema from type hints and the docstring (Google `Args:` or Sphinx `:param x:`).

        Literal/Enum → enum; list/tuple → array; dict, TypedDict, dataclass → object; `Optional[X]` or a default →
        not required. Dataclass-typed arguments arrive as dicts and are turned back into instances before the call.
        """
        summary, param_docs = _parse_docstring(inspect.getdoc(fn) or "")
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:  # unresolvable forward reference
            raise ToolDefinitionError(f"tool '{fn.__name__}': cannot resolve hints ({exc}); import the types") from exc
        properties: dict[str, Any] = {}
        required: list[str] = []
        converters: dict[str, Any] = {}
        for pname, param in inspect.signature(fn).parameters.items():
            if pname in ("self", "cls") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if pname not in hints:
                raise ToolDefinitionError(f"tool '{fn.__name__}': parameter '{pname}' needs a type hint")
            hint = hints[pname]
            schema = schema_for_type(hint, where=f"{fn.__name__}({pname})")
            if pname in param_docs:
                schema = {**schema, "description": param_docs[pname]}
            if param.default is not inspect.Parameter.empty and param.default is not None:
                schema = {**schema, "default": param.default}
            properties[pname] = schema
            if param.default is inspect.Parameter.empty and not _is_optional(hint):
                required.append(pname)
            if _needs_conversion(hint):
                converters[pname] = hint
        parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
        handler = ConvertingHandler(fn, converters) if converters else fn
        description = description if description is not None else summary
        return cls(name or fn.__name__, description, parameters, handler, **options)

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any], handler: Callable[..., Any] | None = None, **options: Any) -> Tool:
        """From an OpenAI tool entry (`{"type":"function","function":{...}}`) or a bare function description."""
        function = schema.get("function", schema) if schema.get("type") == "function" else schema
        if "name" not in function:
            raise ToolDefinitionError(f"tool schema without a 'name': {dict(schema)!r}; give the function's name")
        parameters = dict(function.get("parameters") or {"type": "object", "properties": {}})
        parameters.setdefault("properties", {})
        return cls(function["name"], function.get("description", ""), parameters, handler, **options)

    @classmethod
    def from_bfcl(cls, doc: Mapping[str, Any], handler: Callable[..., Any] | None = None, **options: Any) -> Tool:
        """From a BFCL function doc: its `dict`, `float`, `tuple` and `any` types become JSON Schema types."""
        parameters = bfcl_to_json_schema(doc.get("parameters") or {"type": "dict", "properties": {}})
        parameters.setdefault("properties", {})
        return cls(doc["name"], doc.get("description", ""), parameters, handler, **options)


_BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None, "String": "string"}


def bfcl_to_json_schema(schema: Any) -> Any:
    """BFCL's Python-flavoured schema types mapped to JSON Schema, recursively (`any` drops the type constraint)."""
    if isinstance(schema, list):
        return [bfcl_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            mapped = _BFCL_TYPES.get(value, value)
            if mapped is not None:
                out["type"] = mapped
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: bfcl_to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems"):
            out[key] = bfcl_to_json_schema(value)
        else:
            out[key] = value
    return out


_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def schema_for_type(hint: Any, where: str = "") -> dict[str, Any]:
    """JSON Schema for a Python type hint; raises ToolDefinitionError naming `where` for unsupported hints."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        schema = schema_for_type(args[0], where)
        doc = next((a for a in args[1:] if isinstance(a, str)), None)
        return {**schema, "description": doc} if doc else schema
    if origin in (typing.NotRequired, typing.Required):  # TypedDict markers; __required_keys__ has the answer
        return schema_for_type(args[0], where)
    if hint in _PRIMITIVES:
        return {"type": _PRIMITIVES[hint]}
    if hint is Any or hint is object:
        return {}
    if origin is typing.Literal:
        kinds = {_PRIMITIVES.get(type(a)) for a in args}
        return {"type": kinds.pop(), "enum": list(args)} if len(kinds) == 1 else {"enum": list(args)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [member.value for member in hint]
        kinds = {_PRIMITIVES.get(type(v)) for v in values}
        return {"type": kinds.pop(), "enum": values} if len(kinds) == 1 else {"enum": values}
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # Optional[X]: requiredness is decided by the caller
            return schema_for_type(members[0], where)
        return {"anyOf": [schema_for_type(a, where) for a in members]}
    if origin in (list, set, frozenset, Sequence, Iterable) or hint in (list, set):
        return {"type": "array", "items": schema_for_type(args[0], where)} if args else {"type": "array"}
    if origin is tuple or hint is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_for_type(args[0], where)}
        if args:
            items = [schema_for_type(a, where) for a in args]
            return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        return {"type": "array"}
    if origin in (dict, Mapping) or hint is dict:
        if len(args) == 2 and args[1] is not Any:
            return {"type": "object", "additionalProperties": schema_for_type(args[1], where)}
        return {"type": "object"}
    if typing.is_typeddict(hint):
        hints = typing.get_type_hints(hint, include_extras=True)
        props = {k: schema_for_type(v, f"{where}.{k}") for k, v in hints.items()}
        required = [k for k, v in hints.items() if _typeddict_key_required(hint, k, v)]
        return {"type": "object", "properties": props, "required": required}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint, include_extras=True)
        props, required = {}, []
        for f in dataclasses.fields(hint):
            props[f.name] = schema_for_type(hints[f.name], f"{where}.{f.name}")
            no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if no_default and not _is_optional(hints[f.name]):
                required.append(f.name)
        return {"type": "object", "properties": props, "required": required}
    raise ToolDefinitionError(f"tool {where}: type hint {hint!r} has no JSON Schema mapping; use str, int, float, "
                              "bool, Literal, Enum, list, tuple, dict, TypedDict, a dataclass or Optional of these")


def _typeddict_key_required(typed_dict: Any, key: str, hint: Any) -> bool:
    """Required unless marked NotRequired (checked on the hint too: with postponed annotations Python 3.11 cannot
    see the marker when it builds `__required_keys__`), declared in a `total=False` class, or Optional."""
    origin = typing.get_origin(hint)
    if origin is typing.NotRequired:
        return False
    if origin is typing.Required:
        return True
    return key in typed_dict.__required_keys__ and not _is_optional(hint)


def _is_optional(hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _needs_conversion(hint: Any) -> bool:
    """Whether JSON arguments must be rebuilt into Python objects (dataclasses, enums) for this hint."""
    if (dataclasses.is_dataclass(hint) and isinstance(hint, type)) or (
        isinstance(hint, type) and issubclass(hint, enum.Enum)
    ):
        return True
    return any(_needs_conversion(a) for a in typing.get_args(hint) if a is not Ellipsis)


def _convert(value: Any, hint: Any) -> Any:
    """Turn a JSON value into the Python object `hint` asks for (dataclass, Enum, containers of them)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _convert(value, args[0])
    if value is None:
        return None
    if dataclasses.is_dataclass(hint) and isinstance(hint, type) and isinstance(value, dict):
        hints = typing.get_type_hints(hint)
        return hint(**{k: _convert(v, hints.get(k, Any)) for k, v in value.items()})
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return _convert(value, members[0]) if len(members) == 1 else value
    if origin in (list, Sequence, Iterable) and args and isinstance(value, list):
        return [_convert(v, args[0]) for v in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: _convert(v, args[1]) for k, v in value.items()}
    return value


class ConvertingHandler:
    """Calls `fn` after turning JSON arguments into the dataclasses and enums its hints ask for.

    A class rather than a closure so the sandbox can name `fn` to a fresh interpreter, which rebuilds the conversion.
    """

    def __init__(self, fn: Callable[..., Any], converters: dict[str, Any]) -> None:
        self.fn = fn
        self.converters = converters
        self.__name__ = getattr(fn, "__name__", "handler")

    def __call__(self, **arguments: Any) -> Any:
        for pname, hint in self.converters.items():
            if pname in arguments:
                arguments[pname] = _convert(arguments[pname], hint)
        return self.fn(**arguments)


_GOOGLE_ARG = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_SPHINX_ARG = re.compile(r"^\s*:param\s+(?:\S+\s+)?(\w+)\s*:\s*(.*)$")
_SECTIONS = ("args:", "arguments:", "parameters:", "returns:", "return:", "raises:", "yields:", "examples:", "example:")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Summary (text before any section) and per-parameter descriptions from a Google or Sphinx docstring."""
    summary_lines: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None  # indentation of argument lines; deeper lines continue the current argument
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.lower() in _SECTIONS:
            section, current, arg_indent = stripped.lower().rstrip(":"), None, None
            continue
        sphinx = _SPHINX_ARG.match(line)
        if sphinx:
            current, params[sphinx.group(1)] = sphinx.group(1), sphinx.group(2).strip()
            section = "args"
            continue
        if stripped.startswith(":"):
            section, current = "other", None
            continue
        if section is None:
            summary_lines.append(stripped)
        elif section in ("args", "arguments", "parameters"):
            match = _GOOGLE_ARG.match(line)
            indent = len(line) - len(line.lstrip())
            if match and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = match.group(1).lstrip("*")
                params[current] = match.group(3).strip()
            elif current and stripped:
                params[current] = f"{params[current]} {stripped}".strip()
    return " ".join(s for s in summary_lines if s).strip(), params


class ToolRegistry(Mapping[str, Tool]):
    """A suite of tools by name; `register` accepts Tools or plain callables (and works as a decorator)."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool | Callable[..., Any]) -> Any:
        built = tool if isinstance(tool, Tool) else Tool.from_callable(tool)
        if built.name in self._tools:
            raise ToolDefinitionError(f"duplicate tool name '{built.name}' in the registry; rename one of them")
        self._tools[built.name] = built
        return tool

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def openai_schemas(self) -> list[dict[str, Any]]:
        return [tool.openai_schema() for tool in self._tools.values()]
