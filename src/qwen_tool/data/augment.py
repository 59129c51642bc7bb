"""RoTBench noise (docs/references.md) on trajectories: tools and every call in the conversation renamed consistently.

One noise implementation: the renaming is the env's `apply_noise` (levels clean, slight, medium, heavy, union; see
`env.noise`), run on the record's tools; this module only carries its mapping over to the conversation. Gold calls
are rewritten with `NoisyToolset.present` (heavy noise adds its new required parameter with the value ""); a
deliberately wrong call keeps its slip (renamed keys only, no added parameter; a hallucinated name stays as is).
Only top-level parameters are renamed; nested keys stay.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from qwen_tool.data.schema import TrajectoryError
from qwen_tool.env.noise import NOISE_LEVELS, apply_noise, char_edit
from qwen_tool.tools import Tool


def augment(record: dict[str, Any], level: str, rng: random.Random) -> dict[str, Any]:
    """A copy of `record` with noisy tool and parameter names, its calls rewritten to match; `meta.noise` = level."""
    if level not in NOISE_LEVELS:
        raise TrajectoryError(f"unknown noise level {level!r}; fix: use one of {', '.join(NOISE_LEVELS)}")
    record = copy.deepcopy(record)
    record.setdefault("meta", {})["noise"] = level
    if level == "clean" or not record.get("tools"):
        return record
    noisy = apply_noise([Tool.from_schema(tool) for tool in record["tools"]], level, rng)
    record["tools"] = [tool.openai_schema() for tool in noisy.tools]
    for message in record["messages"]:
        for call in message.get("tool_calls") or []:
            name = call["function"]["name"]
            if name not in noisy.name_of:  # a hallucinated name stays hallucinated
                continue
            arguments = json.loads(call["function"]["arguments"])
            if message.get("erroneous"):
                mapping = noisy.params_of.get(name, {})
                new_name, renamed = noisy.name_of[name], {mapping.get(k, k): v for k, v in arguments.items()}
            else:
                new_name, renamed = noisy.present(name, arguments)
            call["function"] = {"name": new_name, "arguments": json.dumps(renamed, ensure_ascii=False)}
    return record


def augment_all(records: list[dict[str, Any]], levels: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """Every record at every level, each with its own seeded rng (deterministic)."""
    return [augment(record, level, random.Random(f"{seed}:{index}:{level}"))
            for index, record in enumerate(records) for level in levels]


__all__ = ["NOISE_LEVELS", "augment", "augment_all", "char_edit"]
