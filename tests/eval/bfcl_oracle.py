"""BFCL's own AST checker, imported from the wheel as a test oracle, and gold-answer perturbations to feed it.

`bfcl_eval.constants.model_config` imports every API client; the checker needs only `MODEL_CONFIG_MAPPING[m]
.underscore_to_dot`, so a stub module stands in for it while the checker is imported (and is removed afterwards).
"""

from __future__ import annotations

import copy
import importlib
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

ORACLE_MODEL = "qwen-tool-eval"


def load_oracle() -> tuple[Callable[..., dict[str, Any]], Any]:
    """(ast_checker, Language) from bfcl_eval, imported with the model-config module stubbed."""
    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = {ORACLE_MODEL: types.SimpleNamespace(underscore_to_dot=False)}
    saved = {name: sys.modules.get(name) for name in ("bfcl_eval.constants.model_config",
                                                      "bfcl_eval.eval_checker.ast_eval.ast_checker")}
    sys.modules["bfcl_eval.constants.model_config"] = stub
    sys.modules.pop("bfcl_eval.eval_checker.ast_eval.ast_checker", None)
    try:
        module = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
        language = importlib.import_module("bfcl_eval.constants.enums").Language
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module.ast_checker, language


def oracle_verdict(checker: Callable[..., dict[str, Any]], language: Any, category: str,
                   functions: list[dict[str, Any]], calls: list[dict[str, Any]], gold: list[dict[str, Any]]) -> bool:
    """BFCL's verdict; an exception inside its checker counts as invalid (it would abort BFCL's own run)."""
    try:
        return bool(checker(copy.deepcopy(functions), copy.deepcopy(calls), copy.deepcopy(gold), language.PYTHON,
                            category, ORACLE_MODEL)["valid"])
    except Exception:  # noqa: BLE001 - any crash of the oracle is a failed check
        return False


# ---------------------------------------------------------------- perturbations of gold answers


def _first_value(accepted: list[Any]) -> tuple[bool, Any]:
    for value in accepted:
        if value != "":
            return True, value
    return False, None


def canonical(gold: list[dict[str, Any]], alternative: int = 0) -> list[dict[str, Any]]:
    """A call list that should pass: for each argument the `alternative`-th accepted non-empty value (or the first)."""
    calls = []
    for gold_call in gold:
        name, accepted_by_arg = next(iter(gold_call.items()))
        arguments = {}
        for arg, accepted in accepted_by_arg.items():
            options = [v for v in accepted if v != ""]
            if options:
                arguments[arg] = copy.deepcopy(options[min(alternative, len(options) - 1)])
        calls.append({name: arguments})
    return calls


def _wrong(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 7
    if isinstance(value, str):
        return value + "zz"
    if isinstance(value, list):
        return [*value, value[0]] if value else ["zz"]
    if isinstance(value, dict):
        return {**value, "zz_extra": 1}
    return "zz"


def _restyle(value: Any) -> Any:
    """Case and punctuation BFCL forgives: upper-case, spaces and `-_.` sprinkled in (also inside lists/dicts)."""
    if isinstance(value, str):
        return "-" + value.upper().replace(" ", " _ ") + "."
    if isinstance(value, list):
        return [_restyle(v) for v in value]
    if isinstance(value, dict):
        return {k: _restyle(v) for k, v in value.items()}
    return value


def _map_args(calls: list[dict[str, Any]], fn: Callable[[str, Any], Any]) -> list[dict[str, Any]]:
    return [{name: {k: fn(k, v) for k, v in args.items()}} for call in calls for name, args in call.items()]


def perturbations(gold: list[dict[str, Any]], functions: list[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    """(label, decoded calls) variants of the gold answer, some valid and some not."""
    base = canonical(gold)
    yield "gold", base
    yield "second_alternative", canonical(gold, alternative=1)
    optional = {(name, arg) for g in gold for name, acc in g.items() for arg, vals in acc.items() if "" in vals}
    yield "optional_dropped", [{n: {k: v for k, v in a.items() if (n, k) not in optional}}
                               for c in base for n, a in c.items()]
    yield "int_for_float", _map_args(base, lambda k, v: int(v) if type(v) is float and v.is_integer() else v)
    yield "float_for_int", _map_args(base, lambda k, v: float(v) if type(v) is int else v)
    yield "string_restyled", _map_args(base, lambda k, v: _restyle(v))
    yield "number_as_string", _map_args(base, lambda k, v: str(v) if isinstance(v, int | float) else v)
    yield "reversed", list(reversed(base))
    yield "first_value_wrong", [
        {n: {k: (_wrong(v) if i == 0 else v) for i, (k, v) in enumerate(a.items())}} for c in base for n, a in c.items()
    ]
    yield "all_values_wrong", _map_args(base, lambda k, v: _wrong(v))
    yield "extra_call", [*base, copy.deepcopy(base[0])] if base else [{"zz": {}}]
    yield "missing_call", base[:-1]
    yield "wrong_name", [{n + "_v2": a} for c in base for n, a in c.items()]
    yield "extra_argument", [{n: {**a, "zz_unexpected": 1}} for c in base for n, a in c.items()]
    yield "first_argument_dropped", [{n: dict(list(a.items())[1:])} for c in base for n, a in c.items()]
    yield "none_values", _map_args(base, lambda k, v: None)
    yield "no_call", []
    yield "other_offered_function", [{f["name"]: {}} for f in functions[:1]]
