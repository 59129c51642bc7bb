from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from qwen_tool.env import ToolEnv, run_gold_episode
from qwen_tool.env.suites import SUITES, get_suite
from qwen_tool.tools import validate_arguments


def _bfcl_function_names() -> set[str]:
    import importlib.util

    root = Path(importlib.util.find_spec("bfcl_eval").submodule_search_locations[0]) / "data"
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("name"), str) and "parameters" in node:
                names.add(node["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in [*root.glob("*.json"), *(root / "multi_turn_func_doc").glob("*.json")]:
        text = path.read_text()
        try:  # most files are JSON lines; a few are one JSON document
            walk([json.loads(line) for line in text.splitlines() if line.strip()])
        except json.JSONDecodeError:
            walk(json.loads(text))
    return names


ALL_SPECS = {name: cls.tool_specs() for name, cls in SUITES.items()}
ALL_NAMES = [tool.name for specs in ALL_SPECS.values() for tool in specs]


def test_at_least_eight_domains_and_sixty_unique_tools():
    assert len(SUITES) >= 8
    assert len(ALL_NAMES) >= 60
    assert len(set(ALL_NAMES)) == len(ALL_NAMES)


def test_no_tool_name_comes_from_bfcl():
    bfcl = _bfcl_function_names()
    assert len(bfcl) > 1000  # the scan really read BFCL's function docs
    assert set(ALL_NAMES) & bfcl == set()


def test_near_identical_names_and_rich_schemas_exist():
    names = set(ALL_NAMES)
    plural_pairs = [n for n in names if n + "s" in names]
    assert len(plural_pairs) >= 4
    schemas = json.dumps([t.parameters for specs in ALL_SPECS.values() for t in specs])
    assert '"enum"' in schemas and '"type": "array"' in schemas
    nested = [t for specs in ALL_SPECS.values() for t in specs
              if any(p.get("type") == "object" and "properties" in p for p in t.parameters["properties"].values())]
    optional = [t for specs in ALL_SPECS.values() for t in specs
                if set(t.parameters["properties"]) - set(t.parameters["required"])]
    assert len(nested) >= 5 and len(optional) >= 15


@pytest.mark.parametrize("suite_name", sorted(SUITES))
def test_state_is_seeded_fresh_and_comparable(suite_name):
    cls = get_suite(suite_name)
    first, again = cls(seed=7), cls(seed=7)
    assert first.state() == again.state()
    assert first.state() is not again.state()
    assert any(cls(seed=s).state() != first.state() for s in range(8, 12)) or suite_name == "math_units"


@pytest.mark.parametrize("suite_name", sorted(SUITES))
def test_sample_arguments_are_schema_valid_for_every_tool(suite_name):
    suite = get_suite(suite_name)(seed=1)
    rng = random.Random(0)
    for tool in suite.tools():
        for include_optional in (False, True):
            args = suite.sample_arguments(tool.name, rng, include_optional=include_optional)
            assert validate_arguments(tool, args) == [], (tool.name, args)


@pytest.mark.parametrize("task", [t for cls in SUITES.values() for t in cls.tasks()], ids=lambda t: t.id)
def test_gold_episodes_run_clean_and_end_in_an_answer(task):
    trajectory = run_gold_episode(ToolEnv(), task)
    meta = trajectory["meta"]
    assert meta["termination"] == "final_answer"
    categories = [c for a in meta["annotations"] for c in a["categories"]]
    assert categories and set(categories) == {"ok"}
    assert trajectory["messages"][-1]["role"] == "assistant"
    assert trajectory["messages"][-1]["content"] == task.gold_answer


def test_stateful_effects_are_visible_in_end_state():
    env = ToolEnv()
    task = get_suite("finance").tasks()[1]
    start = get_suite("finance")(seed=task.seed).state()
    run_gold_episode(env, task)
    end = env.suite.state()
    assert end["balances"]["ACC-1001"] == pytest.approx(start["balances"]["ACC-1001"] - 50)
    assert end["transfers"][0]["memo"] == "rent"
