"""Procedural unseen tools: fresh names, schemas and natural-language queries drawn from the concept catalog.

A drawn tool is a concept named for this draw (verb, module, dotted or snake_case or camelCase) with one name variant
per parameter; optional parameters carry defaults the query sometimes omits. Its handler returns a plausible value
from the concept's result kind, so gold calls run through the real `Executor` (schema validation included) and the
conversation holds a real tool message. `meta.source` says "unseen".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from qwen_tool.data.catalog import CONCEPTS, MODULES, Concept
from qwen_tool.data.kinds import Bool, Enum, Param, Pick
from qwen_tool.tools import Tool

NAME_FORMS = (("verb_stem", 0.3), ("module.stem", 0.25), ("module.verb_stem", 0.2), ("stem.verb", 0.13),
              ("camel", 0.12))
GROUP_NAMES = ("options", "details", "spec", "inputs", "settings", "query")


@dataclass
class NameStyle:
    """How every tool of one domain is named within one example (shared, so siblings get near names)."""

    form: str
    module: str


def draw_style(rng: random.Random, domain: str) -> NameStyle:
    forms, weights = zip(*NAME_FORMS, strict=True)
    return NameStyle(rng.choices(forms, weights)[0], rng.choice(MODULES[domain]))


def tool_name(concept: Concept, style: NameStyle, verb: str) -> str:
    stem = concept.stem
    if style.form == "verb_stem":
        return f"{verb}_{stem}"
    if style.form == "module.stem":
        return f"{style.module}.{stem}"
    if style.form == "module.verb_stem":
        return f"{style.module}.{verb}_{stem}"
    if style.form == "stem.verb":
        return f"{stem}.{verb}"
    head, *rest = f"{verb}_{stem}".split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass
class DrawnParam:
    name: str
    spec: Param

    @property
    def label(self) -> str:
        return self.spec.label or self.name.replace("_", " ")


@dataclass
class DrawnTool:
    """A concept named for one draw; `groups` nests some parameters under an object parameter (nested category)."""

    concept: Concept
    name: str
    params: list[DrawnParam]
    schema: dict[str, Any]
    groups: dict[str, list[str]] = field(default_factory=dict)

    def tool(self, rng: random.Random) -> Tool:
        """An executable `Tool` whose handler returns a plausible result (seeded by `rng`)."""
        key, kind = self.concept.out
        results = random.Random(rng.getrandbits(64))
        return Tool.from_schema(self.schema, handler=lambda **_: {key: kind.sample(results)}, isolate=False)


def _param_schema(param: DrawnParam, rng: random.Random) -> dict[str, Any]:
    spec = param.spec
    schema = dict(spec.kind.schema())
    hint = spec.kind.hint()
    description = spec.description
    if spec.kind.hint_optional and rng.random() < 0.5:
        hint = ""
    if hint and hint.strip(" ()").split(" ")[-1] not in description:
        description = description.rstrip(".") + hint + ("." if not hint.endswith(")") else "")
    schema["description"] = description
    if not spec.required and spec.default is not None and rng.random() < 0.3:
        schema["default"] = spec.default
    return schema


def draw_tool(concept: Concept, rng: random.Random, style: NameStyle, nest: bool = False) -> DrawnTool:
    """Name the concept, pick parameter-name variants, build the OpenAI schema (optionally nesting some params)."""
    name = tool_name(concept, style, rng.choice(concept.verbs))
    params = [DrawnParam(rng.choice(p.names), p) for p in concept.params]
    properties = {p.name: _param_schema(p, rng) for p in params}
    required = [p.name for p in params if p.spec.required]
    groups: dict[str, list[str]] = {}
    if nest and len(params) >= 2:
        inner = [p.name for p in params[-rng.randint(2, len(params)):]]
        outer = rng.choice(GROUP_NAMES)
        groups[outer] = inner
        nested = {
            "type": "object",
            "description": rng.choice(("Grouped inputs.", "The inputs for the request.", "Parameters of the request.")),
            "properties": {n: properties.pop(n) for n in inner},
            "required": [n for n in inner if n in required],
        }
        required = [n for n in required if n not in inner] + [outer]
        properties[outer] = nested
    description = concept.description
    schema = {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }
    return DrawnTool(concept, name, params, schema, groups)


# ---------------------------------------------------------------- arguments and their wording


@dataclass
class Stated:
    """Gold arguments and the clauses that state them: custom clauses keep their order, generic ones are grouped."""

    arguments: dict[str, Any]
    custom: list[tuple[str, str]]
    """(parameter name, clause) in parameter order."""
    generic: list[tuple[DrawnParam, str]]
    surfaces: dict[str, str] = field(default_factory=dict)
    """Parameter name → the bare surface form of its value (for a follow-up answer such as "It's 5 cm.")."""

    def without(self, name: str) -> Stated:
        """The same statement with one argument left out of both the arguments and the wording."""
        return Stated(
            {k: v for k, v in self.arguments.items() if k != name},
            [(n, text) for n, text in self.custom if n != name],
            [(p, text) for p, text in self.generic if p.name != name],
            {k: v for k, v in self.surfaces.items() if k != name},
        )


def _say(param: DrawnParam, rng: random.Random, value: Any) -> tuple[str, bool]:
    """(clause text, is_custom). Booleans are said through their yes/no phrases."""
    spec = param.spec
    if isinstance(spec.kind, Bool):
        phrases = spec.yes if value else spec.no
        return rng.choice(phrases), True
    surface = spec.kind.say(rng, value)
    if spec.phrases and rng.random() < 0.8:
        return rng.choice(spec.phrases).format(v=surface), True
    return surface, False


def state_arguments(tool: DrawnTool, rng: random.Random, optional_rate: float = 0.7) -> Stated:
    """Sample values, decide which optional ones the query states, and word them (nested groups applied).

    Most optional parameters are stated: a model must learn that a value the user gave goes into the call whether
    or not the parameter is required (BFCL's gold answers require it; at 0.45, 50 of 400 simple_python answers left
    a stated optional value out).
    """
    arguments: dict[str, Any] = {}
    custom: list[tuple[str, str]] = []
    generic: list[tuple[DrawnParam, str]] = []
    surfaces: dict[str, str] = {}
    for param in tool.params:
        if not param.spec.required and rng.random() > optional_rate:
            continue
        value = param.spec.kind.sample(rng)
        if not param.spec.required and value == param.spec.default and not isinstance(param.spec.kind, Bool):
            continue
        text, is_custom = _say(param, rng, value)
        arguments[param.name] = value
        surfaces[param.name] = text if isinstance(param.spec.kind, Bool) else param.spec.kind.say(rng, value)
        if is_custom:
            custom.append((param.name, text))
        else:
            generic.append((param, text))
    for outer, inner in tool.groups.items():
        grouped = {n: arguments.pop(n) for n in inner if n in arguments}
        if grouped or outer in tool.schema["function"]["parameters"]["required"]:
            arguments[outer] = grouped
    return Stated(arguments, custom, generic, surfaces)


def _join(items: list[str], rng: random.Random) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + rng.choice((" and ", ", and ")) + items[-1]


_FORMS = ("a {label} of {text}", "{label} {text}", "the {label} at {text}", "{label} = {text}")


def _forms(param: DrawnParam) -> tuple[str, ...]:
    """Clause forms for one generic value; a word value may also stand before its label as a modifier ("ascending
    order", "rock genre"), as users write it, so the model learns to find a value the query never introduces."""
    if isinstance(param.spec.kind, (Enum, Pick)):
        return (*_FORMS, "{text} {label}", "{text} {label}")  # listed twice: drawn 2 times in 6
    return _FORMS


def _generic_clause(generic: list[tuple[DrawnParam, str]], rng: random.Random) -> str:
    if not generic:
        return ""
    style = rng.choice(("with", "with", "where", "given", "kv", "using"))
    if style == "kv":
        return "(" + ", ".join(f"{p.name}={text}" for p, text in generic) + ")"
    if style == "where":
        return "where " + _join([f"the {p.label} is {text}" for p, text in generic], rng)
    if style == "using":
        return "using " + _join([f"{text} as the {p.label}" for p, text in generic], rng)
    joined = _join([rng.choice(_forms(p)).format(label=p.label, text=text) for p, text in generic], rng)
    return ("with " if style == "with" else "given ") + joined


def argument_text(stated: Stated, rng: random.Random) -> str:
    parts = [text for _, text in stated.custom] + [_generic_clause(stated.generic, rng)]
    return " ".join(part for part in parts if part)


_WRAPPERS = (
    "{Task} {args}.", "Can you {task} {args}?", "Could you {task} {args}?", "Please {task} {args}.",
    "I need to {task} {args}.", "I'd like to {task} {args}.", "Help me {task} {args}.", "{Task} {args}, please.",
    "Hey, can you {task} {args}?", "Quick one: {task} {args}.", "I want to {task} {args}.",
    "Would you {task} {args}?", "{Task} {args} for me.", "Is it possible to {task} {args}?",
)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def phrase_request(task: str, args: str, rng: random.Random) -> str:
    template = rng.choice(_WRAPPERS)
    text = template.format(task=task, Task=_capital(task), args=args).replace("  ", " ").replace(" .", ".")
    return text.replace(" ?", "?").replace(" ,", ",")


def query_for(tool: DrawnTool, stated: Stated, rng: random.Random) -> str:
    return phrase_request(rng.choice(tool.concept.tasks), argument_text(stated, rng), rng)


# ---------------------------------------------------------------- answers


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def final_answer(tool: DrawnTool, result: dict[str, Any], rng: random.Random) -> str:
    value = _show(next(iter(result.values())))
    noun = tool.concept.noun or tool.concept.out[0].replace("_", " ")
    return rng.choice((
        f"The {noun} is {value}.", f"Done: the {noun} comes out to {value}.", f"Here you go: {noun}: {value}.",
        f"The result is {value} ({noun}).", f"According to the tool, the {noun} is {value}.",
    ))


def refusal(offered: list[DrawnTool], asked_task: str, rng: random.Random) -> str:
    """A no-call reply for a query none of the offered tools serves.

    Every wording opens with the same token ("I"). Calls all open with one token too (`<tool_call>`), and greedy
    decoding compares single tokens: declines spread over several openers would each lose to the call opener even
    when declining is more likely in total.
    """
    if offered:
        can = rng.choice(offered[0].concept.tasks)
        options = (
            f"I'm sorry, but none of the available tools can {asked_task}. The tools I have can {can}.",
            f"I can't {asked_task} with the functions available here; they only {can} and similar tasks.",
            f"I don't see a provided function that fits this request: I'd need a tool to {asked_task}.",
            "I can't handle this request with the tools I was given, so I won't call any of them.",
            f"I'm unable to {asked_task} with the available functions; they don't cover this.",
        )
    else:
        options = (f"I don't have a tool to {asked_task}.", "I have no tools available for that request.")
    return rng.choice(options)


def concept_pool(held_out: set[str] | None = None, keep_held_out: bool = False) -> list[Concept]:
    """Concepts for one split: those whose stem is (or is not, by default) in `held_out`."""
    if not held_out:
        return list(CONCEPTS)
    return [c for c in CONCEPTS if (c.stem in held_out) == keep_held_out]


def hallucinated_param_name(name: str, rng: random.Random) -> str:
    """A plausible wrong parameter name (the kind of slip a model makes)."""
    options = [name + "_value", name.split("_")[0] + "s", "input_" + name, name.replace("_", "")]
    options = [o for o in options if o != name]
    return rng.choice(options)


def is_nestable(concept: Concept) -> bool:
    return len(concept.params) >= 2


def has_structured_param(concept: Concept) -> bool:
    return any(p.kind.json_type in ("array", "object") for p in concept.params)


__all__ = [
    "DrawnTool", "NameStyle", "Stated", "argument_text", "concept_pool", "draw_style", "draw_tool", "final_answer",
    "hallucinated_param_name", "has_structured_param", "is_nestable", "phrase_request", "query_for", "refusal",
    "state_arguments", "tool_name",
]
