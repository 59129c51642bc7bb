"""Check a call's arguments against its tool's JSON schema before running it, and say precisely what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from qwen_tool.tools.feedback import FeedbackCategory
from qwen_tool.tools.tool import Tool

ProblemKind = Literal["missing", "unexpected", "type", "enum", "other"]

_JSON_TYPE_OF = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
_CATEGORY_OF_KIND = {
    "unexpected": FeedbackCategory.PARAMETER_HALLUCINATION,
    "missing": FeedbackCategory.PARAMETER_MISSING,
    "type": FeedbackCategory.CALL_FAILURE,
    "enum": FeedbackCategory.CALL_FAILURE,
    "other": FeedbackCategory.CALL_FAILURE,
}


@dataclass(frozen=True)
class ArgumentProblem:
    """One schema violation: which argument (dotted path for nested values), what was expected, what came."""

    kind: ProblemKind
    argument: str
    expected: Any
    got: Any
    message: str


def json_type_name(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value (`True` is boolean, not integer)."""
    return "null" if value is None else _JSON_TYPE_OF.get(type(value), type(value).__name__)


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_arguments(tool: Tool, arguments: dict[str, Any]) -> list[ArgumentProblem]:
    """All schema violations of `arguments`, unexpected and missing arguments first."""
    problems: list[ArgumentProblem] = []
    for error in tool.validator.iter_errors(arguments):
        where = _path(error.absolute_path)
        prefix = f"{where}." if where else ""
        if error.validator == "required":
            declared = error.schema.get("properties", {})
            for name in error.validator_value:
                if isinstance(error.instance, dict) and name not in error.instance:
                    expected = declared.get(name, {}).get("type", "any")
                    problems.append(ArgumentProblem(
                        "missing", prefix + name, expected, None,
                        f"missing required argument '{prefix}{name}' (expected {expected})"))
        elif error.validator == "additionalProperties":
            declared = sorted(error.schema.get("properties", {}))
            allowed = error.schema.get("additionalProperties")
            extras = [k for k in error.instance if k not in declared] if allowed is False else []
            for name in extras:
                problems.append(ArgumentProblem(
                    "unexpected", prefix + name, declared, error.instance[name],
                    f"unexpected argument '{prefix}{name}'; '{tool.name}' accepts {declared}"))
            if not extras:
                problems.append(ArgumentProblem("other", where, error.validator_value, error.instance, error.message))
        elif error.validator == "type":
            got = json_type_name(error.instance)
            problems.append(ArgumentProblem(
                "type", where, error.validator_value, error.instance,
                f"argument '{where}' expected {error.validator_value} but got {got} {error.instance!r}"))
        elif error.validator in ("enum", "const"):
            expected = error.validator_value if error.validator == "enum" else [error.validator_value]
            problems.append(ArgumentProblem(
                "enum", where, expected, error.instance,
                f"argument '{where}' must be one of {expected} but got {error.instance!r}"))
        else:
            problems.append(ArgumentProblem(
                "other", where, error.validator_value, error.instance, f"argument '{where}': {error.message}"))
    order = {"unexpected": 0, "missing": 1, "type": 2, "enum": 3, "other": 4}
    return sorted(problems, key=lambda p: order[p.kind])


def category_of_problems(problems: list[ArgumentProblem]) -> FeedbackCategory:
    """The category of the worst problem: hallucinated argument, then missing argument, then a bad value."""
    return _CATEGORY_OF_KIND[problems[0].kind] if problems else FeedbackCategory.OK
