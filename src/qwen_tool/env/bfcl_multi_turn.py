"""BFCL multi-turn (base, miss_func, miss_param) in ToolEnv, checked with BFCL's own semantics.

The executable classes ship in the bfcl-eval wheel (`.../multi_turn_eval/func_source_code/*.py`); we load those files
by path (they are plain Python; the checker package that imports API clients is never touched). Calls are dispatched
by method name with keyword arguments; BFCL's gold answers ("cd(folder='document')") are parsed with `ast.parse` and
only literal nodes are accepted, so nothing is `eval`ed.

Checking follows `multi_turn_checker.py` of bfcl-eval 2026.3.23: after each user turn whose gold is non-empty,
(1) the model made at least one call in that turn, (2) for every involved class, every public attribute (name not
starting with "_") of the gold instance equals the model instance's, (3) the gold execution results of that turn are
contained, as an unordered multiset, in the model's execution results of all turns so far. Turns with empty gold
(miss_func / miss_param) must have no call (BFCL's irrelevance check). An episode that stops before the last user turn
fails (BFCL's force-terminated case). Results are compared as BFCL formats them: strings as is, dicts as `json.dumps`,
anything else `str()`, exceptions as "Error during execution: {e}".
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.env.suite import Suite
from qwen_tool.env.task import Task, UserTurn
from qwen_tool.files import read_json_objects
from qwen_tool.tools import Tool, ToolCallError

CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param")
CLASS_FILES = {
    "GorillaFileSystem": "gorilla_file_system", "MathAPI": "math_api", "MessageAPI": "message_api",
    "TwitterAPI": "posting_api", "TicketAPI": "ticket_api", "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking", "VehicleControlAPI": "vehicle_control",
}
STATELESS_CLASSES = ("MathAPI",)
ADDED_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"
_SOURCE_PACKAGE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
_REINSTALL = "reinstall bfcl-eval (`make setup`)"


def bfcl_root() -> Path:
    """The installed `bfcl_eval` package folder, located without importing its modules (its checker imports every
    API client); the one place both BFCL modules find their files."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise QwenToolError("the bfcl-eval package is not installed, so BFCL data are unavailable; "
                            "fix: `.venv/bin/pip install --no-deps bfcl-eval==2026.3.23` (or run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def _source_module(stem: str) -> ModuleType:
    """One func_source_code file loaded by path (under its own dotted name, so its sibling imports resolve)."""
    name = f"{_SOURCE_PACKAGE}.{stem}"
    if name in sys.modules:
        return sys.modules[name]
    path = bfcl_root() / "eval_checker" / "multi_turn_eval" / "func_source_code" / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def bfcl_class(class_name: str) -> type:
    if class_name not in CLASS_FILES:
        raise QwenToolError(f"unknown BFCL class '{class_name}'; known: {sorted(CLASS_FILES)}")
    return getattr(_source_module(CLASS_FILES[class_name]), class_name)


@cache
def function_docs(class_name: str) -> tuple[dict[str, Any], ...]:
    path = bfcl_root() / "data" / "multi_turn_func_doc" / f"{CLASS_FILES[class_name]}.json"
    return tuple(read_json_objects(path, fix=_REINSTALL))


# --- gold answers: "f(a=1, b='x')" parsed without eval -------------------------------------------------------------
def _literal(node: ast.AST, where: str) -> Any:
    """The value of a literal expression node (constants, lists, tuples, dicts, sets, signed numbers)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        values = [_literal(item, where) for item in node.elts]
        return tuple(values) if isinstance(node, ast.Tuple) else set(values) if isinstance(node, ast.Set) else values
    if isinstance(node, ast.Dict):
        return {_literal(k, where): _literal(v, where) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand, where)
        if isinstance(value, int | float):
            return -value if isinstance(node.op, ast.USub) else value
    raise QwenToolError(f"{where}: only literal arguments are allowed, found {ast.dump(node)[:80]}")


def parse_call_string(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """`name(arg, key=value)` → (name, positional values, keyword values); anything but literals is refused."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise QwenToolError(f"call string {text!r} is not a Python call expression ({exc.msg})") from exc
    node = tree.body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise QwenToolError(f"call string {text!r} must look like name(arg=value, ...)")
    args = [_literal(arg, text) for arg in node.args]
    kwargs = {kw.arg: _literal(kw.value, text) for kw in node.keywords if kw.arg is not None}
    return node.func.id, args, kwargs


def _to_json_value(value: Any) -> Any:
    """Tuples and sets as lists: what a JSON tool call can carry."""
    if isinstance(value, tuple | list | set):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json_value(v) for k, v in value.items()}
    return value


def gold_call(text: str, methods: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    """A BFCL gold string as a ToolEnv call `{"name", "arguments"}`; positional values get their parameter names."""
    name, args, kwargs = parse_call_string(text)
    if name not in methods:
        raise QwenToolError(f"gold call {text!r} names '{name}', which no involved class defines")
    bound = inspect.signature(methods[name]).bind_partial(*args, **kwargs)
    return {"name": name, "arguments": {k: _to_json_value(v) for k, v in bound.arguments.items()}}


# --- execution and checking -----------------------------------------------------------------------------------------
def bfcl_result_text(result: Any) -> str:
    """A result as BFCL's executor records it."""
    if type(result) is str:
        return result
    if type(result) is dict:
        try:
            return json.dumps(result)
        except (TypeError, ValueError):
            return str(result)
    return str(result)


def _instances(config: dict[str, Any], classes: list[str], long_context: bool) -> dict[str, Any]:
    instances = {}
    for class_name in classes:
        instance = bfcl_class(class_name)()
        if class_name not in STATELESS_CLASSES:
            instance._load_scenario(copy.deepcopy(config.get(class_name, {})), long_context=long_context)
        instances[class_name] = instance
    return instances


def _public_methods(instances: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    methods = {}
    for instance in instances.values():
        for name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
            if not name.startswith("_"):
                methods[name] = method
    return methods


def _run(method: Callable[..., Any], arguments: dict[str, Any]) -> tuple[Any, str, bool]:
    """Call and format as BFCL does: (raw result, recorded text, raised?)."""
    try:
        result = method(**arguments)
    except Exception as exc:
        return None, f"Error during execution: {exc}", True
    return result, bfcl_result_text(result), False


def compare_instances(model: Any, gold: Any) -> dict[str, Any]:
    """Public attributes of the gold instance that differ on the model instance (BFCL `_compare_instances`)."""
    return {attr: {"model": getattr(model, attr), "ground_truth": getattr(gold, attr)}
            for attr in vars(gold) if not attr.startswith("_") and getattr(model, attr) != getattr(gold, attr)}


def missing_results(gold_results: list[str], model_results: list[str]) -> list[str]:
    """Gold results not found in the model's, matching each model result at most once (unordered multiset)."""
    remaining = list(model_results)
    missing = []
    for item in gold_results:
        if item in remaining:
            remaining.remove(item)
        else:
            missing.append(item)
    return missing


class BFCLSuite(Suite):
    """The involved BFCL classes of one entry as a suite, with a gold twin executed turn by turn for the check."""

    name = "bfcl"
    domain = "bfcl"
    description = "BFCL multi-turn executable classes (file system, trading, travel, vehicle, ...)."

    def __init__(self, config: dict[str, Any], classes: list[str], ground_truth: list[list[str]],
                 long_context: bool = False) -> None:
        super().__init__(0)
        self.classes = classes
        self.ground_truth = ground_truth
        self.instances = _instances(config, classes, long_context)
        self.gold_instances = _instances(config, classes, long_context)
        self.methods = _public_methods(self.instances)
        self.gold_methods = _public_methods(self.gold_instances)
        self.model_results: list[str] = []
        self.calls_this_turn = 0
        self.turn_verdicts: list[dict[str, Any]] = []

    @classmethod
    def from_task(cls, task: Task) -> BFCLSuite:
        meta = task.meta
        return cls(meta["initial_config"], meta["involved_classes"], meta["ground_truth"],
                   meta.get("long_context", False))

    def tools(self) -> list[Tool]:
        return [Tool.from_bfcl(doc, handler=self._handler(doc["name"]), isolate=False)
                for class_name in self.classes for doc in function_docs(class_name)]

    def _handler(self, name: str) -> Callable[..., Any]:
        method = self.methods[name]

        def handler(**arguments: Any) -> str:
            result, text, raised = _run(method, arguments)
            self.model_results.append(text)
            if raised:
                raise ToolCallError(text, content=text)
            if isinstance(result, dict) and set(result) == {"error"}:
                raise ToolCallError(str(result["error"]), content=text)
            return text

        return handler

    def record_calls(self, calls: list[Any]) -> None:
        """BFCL counts a turn as answered when the model emitted calls, whether or not they executed."""
        self.calls_this_turn += len(calls)

    def state(self) -> dict[str, Any]:
        return {name: {k: v for k, v in vars(inst).items() if not k.startswith("_")}
                for name, inst in self.instances.items()}

    def end_user_turn(self, turn_index: int) -> None:
        gold = self.ground_truth[turn_index] if turn_index < len(self.ground_truth) else []
        gold_results = [_run(self.gold_methods[c["name"]], c["arguments"])[1]
                        for c in (gold_call(text, self.gold_methods) for text in gold)]
        made_calls, self.calls_this_turn = self.calls_this_turn, 0
        verdict: dict[str, Any] = {"turn": turn_index, "valid": True}
        if not gold:
            if made_calls:
                verdict = {"turn": turn_index, "valid": False, "error_type": "multi_turn:irrelevance_error",
                           "error_message": "calls were made in a turn whose gold has none"}
        elif not made_calls:
            verdict = {"turn": turn_index, "valid": False, "error_type": "multi_turn:empty_turn_model_response",
                       "error_message": f"no call in turn {turn_index}"}
        else:
            for class_name, gold_instance in self.gold_instances.items():
                differences = compare_instances(self.instances[class_name], gold_instance)
                if differences:
                    verdict = {"turn": turn_index, "valid": False, "error_type": "multi_turn:instance_state_mismatch",
                               "error_message": f"{class_name} state differs: {sorted(differences)}",
                               "differences": differences}
                    break
            else:
                missing = missing_results(gold_results, self.model_results)
                if missing:
                    verdict = {"turn": turn_index, "valid": False,
                               "error_type": "multi_turn:execution_response_mismatch",
                               "error_message": f"gold results missing from the model's: {missing}"}
        self.turn_verdicts.append(verdict)

    def check(self) -> dict[str, Any]:
        """BFCL's verdict for the episode: valid when every user turn was reached and passed."""
        for verdict in self.turn_verdicts:
            if not verdict["valid"]:
                return {"valid": False, **{k: v for k, v in verdict.items() if k != "valid"}}
        if len(self.turn_verdicts) < len(self.ground_truth):
            return {"valid": False, "error_type": "multi_turn:force_terminated",
                    "error_message": f"episode ended after {len(self.turn_verdicts)} of "
                                     f"{len(self.ground_truth)} user turns"}
        return {"valid": True}


def load_bfcl_tasks(category: str = "multi_turn_base", limit: int | None = None) -> list[Task]:
    """BFCL multi-turn entries as Tasks (suite "bfcl"); gold steps are one call per step in BFCL's order."""
    if category not in CATEGORIES:
        raise QwenToolError(f"unsupported BFCL category '{category}'; fix: use one of {list(CATEGORIES)}")
    data = bfcl_root() / "data"
    entries = read_json_objects(data / f"BFCL_v4_{category}.json", fix=_REINSTALL)
    answers = {a["id"]: a["ground_truth"]
               for a in read_json_objects(data / "possible_answer" / f"BFCL_v4_{category}.json", fix=_REINSTALL)}
    tasks = []
    for entry in entries[:limit]:
        classes = entry["involved_classes"]
        missed = {int(turn): names for turn, names in entry.get("missed_function", {}).items()}
        held_out = {name for names in missed.values() for name in names}
        offered = [doc["name"] for c in classes for doc in function_docs(c) if doc["name"] not in held_out]
        ground_truth = answers[entry["id"]]
        methods = _public_methods({c: bfcl_class(c)() for c in classes})
        gold_steps: list[list[dict[str, Any]]] = []
        for turn in ground_truth:
            gold_steps.extend([gold_call(text, methods)] for text in turn)
            gold_steps.append([])
        follow_ups = []
        for turn_index, messages in enumerate(entry["question"][1:], start=1):
            if turn_index in missed:
                messages = [{"role": "user", "content": ADDED_FUNCTIONS_PROMPT}]
            follow_ups.append(UserTurn(messages=messages, add_tools=missed.get(turn_index, [])))
        tasks.append(Task(
            id=entry["id"], suite="bfcl", domain="bfcl:" + "+".join(classes), messages=entry["question"][0],
            tools=offered, gold_calls=gold_steps, follow_ups=follow_ups,
            meta={"category": category, "initial_config": entry["initial_config"], "involved_classes": classes,
                  "ground_truth": ground_truth, "long_context": False},
        ))
    return tasks

