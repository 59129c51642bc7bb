"""RoTBench noise levels (docs/references.md, RoTBench) applied to tool names, parameter names and descriptions.

The model sees the noisy tools; each noisy tool's handler renames the arguments back and calls the real handler, so
episodes keep working. `NoisyToolset.present` translates a gold call into the names the model sees.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from qwen_tool import QwenToolError
from qwen_tool.tools import Tool

NoiseLevel = Literal["clean", "slight", "medium", "heavy", "union"]
NOISE_LEVELS: tuple[str, ...] = ("clean", "slight", "medium", "heavy", "union")
_DESCRIPTION_WORD_RATE = {"clean": 0.0, "slight": 0.1, "medium": 0.2, "heavy": 0.3, "union": 0.2}


@dataclass
class NoisyToolset:
    """The presented tools and how their names map back to the real ones."""

    tools: list[Tool]
    name_of: dict[str, str] = field(default_factory=dict)  # real tool name -> presented name
    params_of: dict[str, dict[str, str]] = field(default_factory=dict)  # real tool -> {real param: presented param}
    extra_params: dict[str, str] = field(default_factory=dict)  # real tool -> added required parameter (heavy)

    def present(self, name: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A call on the real tools as the model should write it on the presented tools."""
        mapping = self.params_of.get(name, {})
        presented = {mapping.get(key, key): value for key, value in arguments.items()}
        if name in self.extra_params:
            presented[self.extra_params[name]] = ""
        return self.name_of.get(name, name), presented


def char_edit(text: str, rng: random.Random, max_fraction: float = 1 / 3) -> str:
    """Random insertions, deletions and substitutions on up to `max_fraction` of the characters (at least one)."""
    chars = list(text)
    for _ in range(rng.randint(1, max(1, int(len(text) * max_fraction)))):
        op = rng.choice(("insert", "delete", "substitute")) if len(chars) > 1 else "insert"
        pos = rng.randrange(len(chars) + (op == "insert"))
        if op == "insert":
            chars.insert(pos, rng.choice(string.ascii_lowercase))
        elif op == "delete":
            del chars[pos]
        else:
            chars[pos] = rng.choice(string.ascii_lowercase)
    return "".join(chars)


def _random_name(rng: random.Random, max_len: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, max_len)))


def _unique(candidate: str, taken: set[str], rng: random.Random) -> str:
    while candidate in taken or not candidate or not (candidate[0].isalpha() or candidate[0] == "_"):
        candidate = _random_name(rng, 10)
    taken.add(candidate)
    return candidate


def _medium(name: str, rng: random.Random, max_len: int) -> str:
    return name[::-1] if rng.random() < 0.5 else _random_name(rng, max_len)


def apply_noise(tools: list[Tool], level: str, rng: random.Random) -> NoisyToolset:
    """The tools as the model sees them at `level` (clean returns them unchanged)."""
    if level not in NOISE_LEVELS:
        raise QwenToolError(f"unknown noise level '{level}'; fix: use one of {list(NOISE_LEVELS)}")
    if level == "clean":
        return NoisyToolset(list(tools))
    per_tool = {t.name: (rng.choice(("slight", "medium", "heavy")) if level == "union" else level) for t in tools}
    heavy = [t.name for t in tools if per_tool[t.name] == "heavy"]
    shuffled = heavy[:]
    rng.shuffle(shuffled)
    heavy_name = dict(zip(heavy, shuffled, strict=True))
    taken_names: set[str] = set()
    out = NoisyToolset([])
    for tool in tools:
        kind = per_tool[tool.name]
        if kind == "slight":
            new_name = char_edit(tool.name, rng)
        elif kind == "medium":
            new_name = _medium(tool.name, rng, 10)
        else:
            new_name = heavy_name[tool.name]
        new_name = _unique(new_name, taken_names, rng)
        params = list(tool.parameters.get("properties", {}))
        if kind == "heavy":
            permuted = params[:]
            rng.shuffle(permuted)
            param_map = dict(zip(params, permuted, strict=True))
        else:
            param_map = {}
            taken_params: set[str] = set()
            for pname in params:
                noisy = char_edit(pname, rng) if kind == "slight" else _medium(pname, rng, 5)
                param_map[pname] = _unique(noisy, taken_params, rng)
        out.name_of[tool.name] = new_name
        out.params_of[tool.name] = param_map
        schema = _rename_params(tool.parameters, param_map)
        extra = None
        if kind == "heavy":
            extra = _unique(_random_name(rng, 8), set(param_map.values()), rng)
            schema["properties"][extra] = {"type": "string", "description": "Required."}
            schema["required"] = [*schema.get("required", []), extra]
            out.extra_params[tool.name] = extra
        description = _noisy_description(tool.description, rng, _DESCRIPTION_WORD_RATE[level])
        out.tools.append(Tool(new_name, description, schema, _translating_handler(tool, param_map, extra),
                              tool.timeout_s, tool.isolate))
    return out


def _rename_params(parameters: dict[str, Any], param_map: dict[str, str]) -> dict[str, Any]:
    schema = dict(parameters)
    schema["properties"] = {param_map[k]: v for k, v in parameters.get("properties", {}).items()}
    schema["required"] = [param_map[k] for k in parameters.get("required", [])]
    return schema


def _noisy_description(description: str, rng: random.Random, rate: float) -> str:
    words = description.split(" ")
    return " ".join(char_edit(w, rng, 0.2) if len(w) > 3 and rng.random() < rate else w for w in words)


def _translating_handler(tool: Tool, param_map: dict[str, str], extra: str | None) -> Any:
    back = {noisy: real for real, noisy in param_map.items()}
    real_handler = tool.handler

    def handler(**arguments: Any) -> Any:
        real_args = {back.get(k, k): v for k, v in arguments.items() if k != extra}
        return real_handler(**real_args) if real_handler is not None else None

    return handler
