"""BFCL (Berkeley Function Calling Leaderboard) data and our own AST checker, with BFCL's semantics.

Data come from the installed `bfcl-eval` wheel (plain JSON-lines files; its checker module is never imported here,
it pulls in every API client). The checker reproduces BFCL's `ast_checker` rule for rule (docs/references.md, BFCL),
including its quirks, because a score is only comparable with the leaderboard when the verdicts are identical:

- a call is `{name: {arg: value}}`; gold is `{name: {arg: [accepted values]}}`, `""` among them = optional;
- Python types from the function doc; an int is accepted for a float; a value of the gold answer's own type is a
  "variable" and is compared as is; nested type check one level into arrays;
- strings compared after removing spaces and `,./-_*^`, lower-casing and `'`→`"` (also inside lists and dicts);
- simple = exactly one call; multiple = one call, doc found by the gold name; parallel = greedy unordered matching
  (each gold call takes the first unused output call that passes);
- irrelevance passes when no call was decoded.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from qwen_tool import QwenToolError, did_you_mean
from qwen_tool.env.bfcl_multi_turn import bfcl_root
from qwen_tool.files import read_json_objects

AST_CATEGORIES = (
    "simple_python", "multiple", "parallel", "parallel_multiple",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
)
IRRELEVANCE_CATEGORIES = ("irrelevance", "live_irrelevance")
SINGLE_TURN_CATEGORIES = AST_CATEGORIES + IRRELEVANCE_CATEGORIES
MULTI_TURN_CATEGORIES = ("multi_turn_base",)
"""Multi-turn categories `runner.run_bfcl` plays through ToolEnv."""
CATEGORIES = SINGLE_TURN_CATEGORIES + MULTI_TURN_CATEGORIES
"""Every category `runner.run_bfcl` (and so `qwen-tool eval`) scores."""
VERSION_PREFIX = "BFCL_v4"
_REINSTALL = "reinstall bfcl-eval (`make setup`)"
PYTHON_HINT = " Note that the provided function is in Python 3 syntax."
"""BFCL appends this to every Python function description before prompting (utils._get_language_specific_hint)."""

# BFCL function-doc type → Python type of a decoded value (ast_checker.PYTHON_TYPE_MAPPING).
PYTHON_TYPES: dict[str, type] = {
    "string": str, "integer": int, "float": float, "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "any": str,
}
# BFCL function-doc type → JSON-schema type for the prompt (constants.type_mappings.GORILLA_TO_OPENAPI, Python part).
OPENAPI_TYPES = {
    "integer": "integer", "number": "number", "float": "number", "string": "string", "boolean": "boolean",
    "bool": "boolean", "array": "array", "list": "array", "dict": "object", "object": "object", "tuple": "array",
    "any": "string",
}
_STRIP = re.compile(r"[ ,./\-_*^]")


class BfclDataError(QwenToolError):
    """The BFCL data files are missing or a category name is unknown."""


def check_categories(names: list[str] | tuple[str, ...], option: str = "--categories") -> None:
    """Raise `BfclDataError` (with did-you-mean) for the first name that is not a category `run_bfcl` scores."""
    for name in names:
        if name not in CATEGORIES:
            raise BfclDataError(f"{option}: unknown BFCL category {name!r}; fix: {did_you_mean(name, CATEGORIES)}"
                                f"choose from {', '.join(CATEGORIES)}")


# ---------------------------------------------------------------- data


def natural_key(example_id: str) -> tuple[Any, ...]:
    """Sort key that orders `simple_python_2` before `simple_python_10` (digits compared as numbers)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", example_id))


@dataclass
class BfclExample:
    """One single-turn BFCL entry: the chat so far, the offered functions (BFCL doc format) and the gold calls."""

    id: str
    category: str
    messages: list[dict[str, Any]]
    functions: list[dict[str, Any]]
    gold: list[dict[str, dict[str, list[Any]]]] | None = field(default=None)
    """`[{name: {arg: [accepted...]}}]`; None for irrelevance categories (the gold is "no call")."""


def load_category(category: str, limit: int | None = None) -> list[BfclExample]:
    """Entries of one single-turn category, sorted by id (natural order); `limit` keeps the first `limit` of them."""
    if category not in SINGLE_TURN_CATEGORIES:
        raise BfclDataError(f"unknown BFCL category {category!r}; fix: choose from {', '.join(SINGLE_TURN_CATEGORIES)}")
    base = bfcl_root() / "data"
    entries = read_json_objects(base / f"{VERSION_PREFIX}_{category}.json", fix=_REINSTALL)
    gold_by_id: dict[str, Any] = {}
    if category not in IRRELEVANCE_CATEGORIES:
        answers = base / "possible_answer" / f"{VERSION_PREFIX}_{category}.json"
        gold_by_id = {e["id"]: e["ground_truth"] for e in read_json_objects(answers, fix=_REINSTALL)}
    entries.sort(key=lambda e: natural_key(e["id"]))
    if limit is not None:
        entries = entries[:limit]
    examples = []
    for entry in entries:
        if category not in IRRELEVANCE_CATEGORIES and entry["id"] not in gold_by_id:
            raise BfclDataError(f"BFCL entry {entry['id']} has no possible answer; fix: reinstall bfcl-eval")
        examples.append(BfclExample(
            id=entry["id"], category=category, messages=entry["question"][0], functions=entry["function"],
            gold=gold_by_id.get(entry["id"]),
        ))
    return examples


def _cast_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """BFCL types → JSON-schema types, recursively, the way BFCL prepares docs for function-calling models."""
    for prop in properties.values():
        bfcl_type = prop.get("type")
        if bfcl_type == "float":
            prop["format"] = "float"
            prop["description"] = prop.get("description", "") + " This is a float type value."
        prop["type"] = OPENAPI_TYPES.get(bfcl_type, "string") if bfcl_type is not None else "string"
        if prop["type"] in ("array", "object"):
            if "properties" in prop:
                prop["properties"] = _cast_properties(prop["properties"])
            elif "items" in prop:
                items = prop["items"]
                items["type"] = OPENAPI_TYPES.get(items.get("type"), "string")
                if items["type"] == "array" and "items" in items:
                    items["items"]["type"] = OPENAPI_TYPES.get(items["items"].get("type"), "string")
                elif items["type"] == "object" and "properties" in items:
                    items["properties"] = _cast_properties(items["properties"])
    return properties


def functions_to_tools(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BFCL function docs → OpenAI tool schemas (`{"type": "function", "function": {...}}`) for the prompt.

    Follows BFCL's own preparation for function-calling models: the Python-syntax hint appended to the description,
    `dict`→object, `float`→number (with `format: float`), `tuple`→array, `any`→string (the checker wants a string for
    `any`), recursively into properties and items. Names keep their dots (our formats allow them).
    """
    tools = []
    for function in copy.deepcopy(functions):
        parameters = function.get("parameters", {})
        parameters["type"] = "object"
        parameters["properties"] = _cast_properties(parameters.get("properties", {}))
        function["description"] = function.get("description", "") + PYTHON_HINT
        function["parameters"] = parameters
        tools.append({"type": "function", "function": function})
    return tools


# ---------------------------------------------------------------- checker


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one example: valid or not, and if not, why (BFCL's error_type vocabulary)."""

    valid: bool
    error_type: str = ""
    error: str = ""


PASS = Verdict(True)


def standardize_string(text: str) -> str:
    """BFCL's string normalisation: drop spaces and `,./-_*^`, lower-case, single quotes → double quotes."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _std(value: Any) -> Any:
    return standardize_string(value) if type(value) is str else value


def _elements(container: Any) -> list[Any]:
    """`[container[i] for i in range(len(container))]`, the way BFCL walks accepted values (a string → characters)."""
    return [container[i] for i in range(len(container))]


def _first_answer_type(accepted: list[Any]) -> type | None:
    return next((type(answer) for answer in accepted if answer != ""), None)


def _type_check(value: Any, accepted: list[Any], expected: type, item_type: type | None) -> tuple[bool, bool]:
    """(type ok, value is a "variable"): exact Python type match (bool is not int), one level into lists; a value of
    the gold answer's type when that differs from the doc's type counts as a variable (compared verbatim later)."""
    answer_type = _first_answer_type(accepted)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if item_type is None:
            return True, is_variable
        for alternative in accepted:
            if type(alternative) is not list:
                return True, is_variable  # an optional "" (or a scalar) alternative skips the item check
            if all(_type_check(item, alternative, item_type, None)[0] for item in value):
                return True, is_variable
        return False, False
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, False


def _dict_matches(value: dict[str, Any], alternative: dict[str, list[Any]]) -> bool:
    for key, item in value.items():
        if key not in alternative:
            return False
        if _std(item) not in [_std(choice) for choice in _elements(alternative[key])]:
            return False
    return all(key in value or "" in choices for key, choices in alternative.items())


def _dict_ok(value: dict[str, Any], accepted: list[Any]) -> bool:
    return any(alternative != "" and _dict_matches(value, alternative) for alternative in accepted)


def _list_of_dicts_ok(value: list[Any], accepted: list[Any]) -> bool:
    for alternative in accepted:
        if len(value) != len(alternative):
            continue
        if all(_dict_ok(item, [alt_item]) for item, alt_item in zip(value, _elements(alternative), strict=True)):
            return True
    return False


def _list_ok(value: list[Any], accepted: list[Any]) -> bool:
    return [_std(item) for item in value] in [[_std(x) for x in _elements(alt)] for alt in accepted]


def _string_ok(value: str, accepted: list[Any]) -> bool:
    return standardize_string(value) in [standardize_string(a) for a in accepted if type(a) is str]


def check_call(doc: dict[str, Any], call: dict[str, Any], gold: dict[str, dict[str, list[Any]]],
               underscore_to_dot: bool = False) -> Verdict:
    """One decoded call `{name: args}` against one gold call, with `doc` the function description to type by.

    `underscore_to_dot`: the model saw dotted names with dots replaced by underscores (OpenAI-style name rules).
    """
    accepted_by_arg = next(iter(gold.values()))
    name = doc["name"]
    if underscore_to_dot and "." in name:
        name = name.replace(".", "_")
    if name not in call:
        return Verdict(False, "simple_function_checker:wrong_func_name", f"function {name!r} not called")
    arguments = call[name]
    properties = doc["parameters"]["properties"]
    for param in doc["parameters"]["required"]:
        if param not in arguments:
            return Verdict(False, "simple_function_checker:missing_required", f"missing required parameter {param!r}")
    for param, value in arguments.items():
        if param not in properties or param not in accepted_by_arg:
            return Verdict(False, "simple_function_checker:unexpected_param", f"unexpected parameter {param!r}")
        accepted = accepted_by_arg[param]
        doc_type = properties[param]["type"]
        expected = PYTHON_TYPES[doc_type]
        item_doc_type = properties[param]["items"]["type"] if doc_type in ("array", "tuple") else None
        item_type = PYTHON_TYPES[item_doc_type] if item_doc_type else None
        if doc_type == "float" and type(value) is int:
            value = float(value)
        type_ok, is_variable = _type_check(value, accepted, expected, item_type)
        if not type_ok:
            if type(value) is expected and item_type is not None:  # BFCL's nested type check: the items are wrong
                return Verdict(False, "type_error", f"parameter {param!r}: items should be {item_doc_type}, got "
                                                    f"{value!r}")
            return Verdict(False, "type_error", f"parameter {param!r}: expected {doc_type}, got {type(value).__name__}")
        if not is_variable:
            if expected is dict:
                ok, kind = _dict_ok(value, accepted), "value_error:dict"
            elif expected is list and item_type is dict:
                ok, kind = _list_of_dicts_ok(value, accepted), "value_error:list_dict"
            elif expected is str:
                ok, kind = _string_ok(value, accepted), "value_error:string"
            elif expected is list:
                ok, kind = _list_ok(value, accepted), "value_error:list/tuple"
            else:
                ok, kind = value in accepted, "value_error:others"
        else:
            ok, kind = value in accepted, "value_error:others"
        if not ok:
            return Verdict(False, kind, f"parameter {param!r}: {value!r} not among {accepted!r}")
    for param, accepted in accepted_by_arg.items():
        if param not in arguments and "" not in accepted:
            return Verdict(False, "simple_function_checker:missing_optional",
                           f"parameter {param!r} is not optional in the gold answer but was not given")
    return PASS


def _find_doc(functions: list[dict[str, Any]] | dict[str, Any], name: str) -> dict[str, Any]:
    if isinstance(functions, dict):
        return functions
    for doc in functions:
        if doc["name"] == name:
            return doc
    raise KeyError(f"gold function {name!r} is not among the offered functions")


def _check_ast_unguarded(category: str, functions: list[dict[str, Any]], calls: list[dict[str, Any]],
                         gold: list[dict[str, Any]], underscore_to_dot: bool) -> Verdict:
    if "parallel" in category:
        if len(calls) != len(gold):
            return Verdict(False, "parallel:wrong_count", f"{len(calls)} calls, expected {len(gold)}")
        used: set[int] = set()
        for index, gold_call in enumerate(gold):
            doc = _find_doc(functions, next(iter(gold_call)))
            match = next((i for i, call in enumerate(calls)
                          if i not in used and check_call(doc, call, gold_call, underscore_to_dot).valid), None)
            if match is None:
                return Verdict(False, "parallel:cannot_find_match", f"no output call matches gold call {index}")
            used.add(match)
        return PASS
    if "multiple" in category:
        if len(calls) != len(gold):
            return Verdict(False, "multiple:wrong_count", f"{len(calls)} calls, expected {len(gold)}")
        return check_call(_find_doc(functions, next(iter(gold[0]))), calls[0], gold[0], underscore_to_dot)
    if len(calls) != 1:
        return Verdict(False, "simple:wrong_count", f"{len(calls)} calls, expected 1")
    return check_call(functions[0], calls[0], gold[0], underscore_to_dot)


def is_call_list(calls: Any) -> bool:
    """BFCL's output-format check: a list of `{name: {args}}` dicts, each with exactly one key."""
    return isinstance(calls, list) and all(
        isinstance(c, dict) and len(c) == 1 and isinstance(next(iter(c.values())), dict) for c in calls
    )


def check_ast(category: str, functions: list[dict[str, Any]], calls: list[dict[str, Any]],
              gold: list[dict[str, Any]] | None, underscore_to_dot: bool = False) -> Verdict:
    """Verdict for one example of any single-turn category; `calls` are decoded `[{name: {args}}]`.

    Irrelevance categories pass iff no call was decoded. Inputs BFCL's checker would crash on (e.g. a list value
    whose items are not dicts where dicts are due) are judged invalid rather than raising.
    """
    if category in IRRELEVANCE_CATEGORIES or gold is None:
        has_call = is_call_list(calls) and len(calls) > 0
        return Verdict(False, "irrelevance:called", "a call was made where none is due") if has_call else PASS
    if not is_call_list(calls):
        return Verdict(False, "ast_decoder:wrong_output_format", "output is not a list of {name: {args}}")
    try:
        return _check_ast_unguarded(category, functions, calls, gold, underscore_to_dot)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        return Verdict(False, "checker:malformed", f"{type(exc).__name__}: {exc}")

