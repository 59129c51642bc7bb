"""RoTBench noise (REFERENCE §1) on trajectories: tools and every call in the conversation renamed consistently.

Levels: clean (as is); slight (insert/delete/substitute up to a third of the characters of tool and parameter names);
medium (names replaced by random 1-10 letters, parameters 1-5, or reversed); heavy (tool names shuffled among the
offered tools, parameter names shuffled within a tool, plus a new required parameter whose gold value is ""); union (a
random level per tool). Only top-level parameters are renamed; nested keys stay.
"""

from __future__ import annotations

import copy
import json
import random
import string
from typing import Any

from qwen_tool.data.schema import TrajectoryError

NOISE_LEVELS = ("clean", "slight", "medium", "heavy", "union")


def char_edit(text: str, rng: random.Random, max_fraction: float = 1 / 3) -> str:
    """Random insertions, deletions and substitutions on up to `max_fraction` of the characters (at least one)."""
    chars = list(text)
    for _ in range(rng.randint(1, max(1, int(len(text) * max_fraction)))):
        op = rng.choice(("insert", "delete", "substitute")) if len(chars) > 1 else "insert"
        position = rng.randrange(len(chars) + (op == "insert"))
        if op == "insert":
            chars.insert(position, rng.choice(string.ascii_lowercase))
        elif op == "delete":
            del chars[position]
        else:
            chars[position] = rng.choice(string.ascii_lowercase)
    return "".join(chars)


def _letters(rng: random.Random, max_len: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, max_len)))


def _fresh(candidate: str, taken: set[str], rng: random.Random) -> str:
    while not candidate or candidate in taken or not (candidate[0].isalpha() or candidate[0] == "_"):
        candidate = _letters(rng, 10)
    taken.add(candidate)
    return candidate


def _rename(name: str, level: str, rng: random.Random, max_len: int) -> str:
    if level == "slight":
        return char_edit(name, rng)
    return name[::-1] if rng.random() < 0.5 else _letters(rng, max_len)


def augment(record: dict[str, Any], level: str, rng: random.Random) -> dict[str, Any]:
    """A copy of `record` with noisy tool and parameter names, its calls rewritten to match; `meta.noise` = level."""
    if level not in NOISE_LEVELS:
        raise TrajectoryError(f"unknown noise level {level!r}; fix: use one of {', '.join(NOISE_LEVELS)}")
    record = copy.deepcopy(record)
    record.setdefault("meta", {})["noise"] = level
    if level == "clean" or not record.get("tools"):
        return record
    functions = [tool["function"] for tool in record["tools"]]
    per_tool = {f["name"]: rng.choice(("slight", "medium", "heavy")) if level == "union" else level for f in functions}
    heavy = [f["name"] for f in functions if per_tool[f["name"]] == "heavy"]
    shuffled = rng.sample(heavy, len(heavy))
    taken: set[str] = set()
    name_map: dict[str, str] = {}
    param_maps: dict[str, dict[str, str]] = {}
    extra: dict[str, str] = {}
    for function in functions:
        name, kind = function["name"], per_tool[function["name"]]
        new_name = shuffled[heavy.index(name)] if kind == "heavy" else _rename(name, kind, rng, 10)
        name_map[name] = _fresh(new_name, taken, rng)
        params = list(function["parameters"].get("properties", {}))
        if kind == "heavy":
            param_maps[name] = dict(zip(params, rng.sample(params, len(params)), strict=True))
        else:
            used: set[str] = set()
            param_maps[name] = {p: _fresh(_rename(p, kind, rng, 5), used, rng) for p in params}
        if kind == "heavy":
            extra[name] = _fresh(_letters(rng, 8), set(param_maps[name].values()), rng)
    for function in functions:
        old = function["name"]
        mapping = param_maps[old]
        schema = function["parameters"]
        schema["properties"] = {mapping[k]: v for k, v in schema.get("properties", {}).items()}
        schema["required"] = [mapping[k] for k in schema.get("required", [])]
        if old in extra:
            schema["properties"][extra[old]] = {"type": "string", "description": "Required."}
            schema["required"].append(extra[old])
        function["name"] = name_map[old]
    for message in record["messages"]:
        for call in message.get("tool_calls") or []:
            old = call["function"]["name"]
            if old not in name_map:  # a hallucinated name stays hallucinated
                continue
            arguments = json.loads(call["function"]["arguments"])
            renamed = {param_maps[old].get(k, k): v for k, v in arguments.items()}
            if old in extra and not message.get("erroneous"):
                renamed[extra[old]] = ""
            call["function"] = {"name": name_map[old], "arguments": json.dumps(renamed, ensure_ascii=False)}
    return record


def augment_all(records: list[dict[str, Any]], levels: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """Every record at every level, each with its own seeded rng (deterministic)."""
    return [augment(record, level, random.Random(f"{seed}:{index}:{level}"))
            for index, record in enumerate(records) for level in levels]


__all__ = ["NOISE_LEVELS", "augment", "augment_all", "char_edit"]
