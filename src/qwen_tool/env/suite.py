"""`Suite`: a stateful, deterministic, offline set of tools for one domain; fresh state per episode from a seed.

A suite is a class whose public tool methods are marked with `@tool_method`; their schemas come from type hints and
docstrings (built once per class). Each episode gets a new instance, so state never leaks between episodes.

Hooks for data synthesis (the data room builds queries on these):
- `state()`: a JSON-like snapshot, comparable with `==` for end-state checks.
- `argument_pool()`: example values per parameter name drawn from the current state (ids that exist, cities known).
- `sample_arguments(tool_name, rng)`: a valid argument dict for a tool (pool values, enums, type defaults).
- `tasks()`: a few hand-written example tasks with gold calls (used by `env play`, tests and the benchmark).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any, ClassVar

from qwen_tool.env.task import Task
from qwen_tool.tools import Tool


def tool_method(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a suite method as a tool offered to the model."""
    fn.__is_tool__ = True  # type: ignore[attr-defined]
    return fn


class Suite:
    """Base class: subclasses set `name`, `domain`, build `self.data` in `setup()`, and mark tool methods."""

    name: ClassVar[str] = ""
    domain: ClassVar[str] = ""
    description: ClassVar[str] = ""
    concurrent_safe: ClassVar[bool] = False
    """Whether parallel calls of one turn may run at the same time (False: in the order written)."""
    _specs: ClassVar[dict[type, list[Tool]]] = {}

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.data: dict[str, Any] = {}
        self.setup()

    def setup(self) -> None:
        """Build the initial `self.data` from `self.rng`."""

    @classmethod
    def tool_specs(cls) -> list[Tool]:
        """The suite's tools without handlers (schemas only), built once per class."""
        if cls not in Suite._specs:
            specs = []
            for attr in dir(cls):
                member = getattr(cls, attr)
                if callable(member) and getattr(member, "__is_tool__", False):
                    specs.append(Tool.from_callable(member, isolate=False))
            Suite._specs[cls] = specs
        return Suite._specs[cls]

    def tools(self) -> list[Tool]:
        """The tools bound to this instance's state: they run in-process (`isolate=False`), state lives on."""
        tools = []
        for spec in self.tool_specs():
            method = getattr(self, spec.name)
            if spec.handler is getattr(type(self), spec.name):  # plain JSON arguments: bind the method directly
                tools.append(spec.with_handler(method))
            else:  # arguments converted to dataclasses/enums: rebuild around the bound method
                tools.append(Tool.from_callable(method, isolate=False))
        return tools

    def state(self) -> Any:
        return copy.deepcopy(self.data)

    def argument_pool(self) -> dict[str, list[Any]]:
        return {}

    def sample_arguments(self, tool_name: str, rng: random.Random, include_optional: bool = False) -> dict[str, Any]:
        """Arguments for `tool_name` from the pool, the schema's enums, or type defaults."""
        spec = next(t for t in self.tool_specs() if t.name == tool_name)
        pool = self.argument_pool()
        required = set(spec.parameters.get("required", []))
        args: dict[str, Any] = {}
        for pname, schema in spec.parameters["properties"].items():
            if pname not in required and not include_optional:
                continue
            args[pname] = _sample_value(pname, schema, pool, rng)
        return args

    @classmethod
    def tasks(cls) -> list[Task]:
        return []

    def record_calls(self, calls: list[Any]) -> None:
        """Called with every assistant turn's calls, valid or not, before they run (BFCL counts attempts)."""

    def end_user_turn(self, turn_index: int) -> None:
        """Called when the assistant closes a user turn (BFCL checks state here)."""

    def check(self) -> dict[str, Any] | None:
        """The suite's own end-of-episode verdict (None when it has none)."""
        return None


def _sample_value(pname: str, schema: dict[str, Any], pool: dict[str, list[Any]], rng: random.Random) -> Any:
    from jsonschema import Draft202012Validator

    fitting = [v for v in pool.get(pname, []) if Draft202012Validator(schema).is_valid(v)]
    if fitting:  # pool values are keyed by parameter name; the schema decides whether one fits this tool
        return rng.choice(fitting)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return rng.randint(1, 10)
    if kind == "number":
        return round(rng.uniform(1, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        return [_sample_value(pname, schema.get("items", {}), pool, rng)]
    if kind == "object":
        return {k: _sample_value(k, v, pool, rng) for k, v in schema.get("properties", {}).items()
                if k in schema.get("required", [])}
    return f"sample_{pname}"
