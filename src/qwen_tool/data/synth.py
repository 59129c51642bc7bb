"""Synthesise training trajectories: one builder per category, gold calls executed, a requested category mix.

Two sources. The unseen-tool generator (`meta.source = "unseen"`, most of the data: it teaches generalisation to
functions never seen) runs gold calls through the tools room's `Executor`; the suite generator (`data.suite_synth`,
`meta.source = "suite"`, a `suite_share` of the examples) plays them in the env's `ToolEnv` on its stateful suites.
Either way tool messages hold what was really returned, and the deliberate wrong calls of `error_recovery` carry the
category the executor assigned (`erroneous: true` on the assistant turn, for MAE).

Every example has its own `random.Random(f"{seed}:{category}:{index}")`, so the same seed gives the same bytes and
one category's count never shifts another's draws; with `suite_share=0` the output is exactly the unseen generator's.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.codec.types import ToolCall
from qwen_tool.data.catalog import CONCEPTS, Concept, name_variants
from qwen_tool.data.difficulty import difficulty
from qwen_tool.data.kinds import Int, Money, Num
from qwen_tool.data.mix import allocate
from qwen_tool.data.schema import validate_trajectory
from qwen_tool.data.suite_synth import SUITE_CATEGORIES, build_suite_record, new_env, suites_for
from qwen_tool.data.unseen import (
    DrawnTool,
    NameStyle,
    argument_text,
    concept_pool,
    draw_style,
    draw_tool,
    final_answer,
    hallucinated_param_name,
    has_structured_param,
    is_nestable,
    phrase_request,
    query_for,
    refusal,
    state_arguments,
)
from qwen_tool.env.suites import SUITES
from qwen_tool.tools import Executor, Tool

CATEGORIES = (
    "single", "parallel", "choice", "irrelevance", "chat", "missing_info", "multi_step", "conditional",
    "error_recovery", "nested",
)
DEFAULT_MIX: dict[str, float] = {
    "single": 0.22, "parallel": 0.12, "choice": 0.2, "irrelevance": 0.14, "chat": 0.04, "missing_info": 0.05,
    "multi_step": 0.07, "conditional": 0.04, "error_recovery": 0.06, "nested": 0.06,
}
"""Weighted towards single-turn calling (single, choice, irrelevance), with every other skill present."""

SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a helpful assistant with access to functions. Call them only when they fit the request.",
    "You are an assistant that can call tools. Use them when they help; otherwise answer directly.",
)

CHAT = (
    ("Hi there! How are you today?", "I'm doing well, thanks for asking! How can I help you today?"),
    ("What's the capital of Australia?", "The capital of Australia is Canberra."),
    ("Thanks, that's all I needed.", "You're welcome! Let me know if you need anything else."),
    ("Can you tell me a fun fact?", "Sure! Octopuses have three hearts and blue blood."),
    ("Who wrote 'Pride and Prejudice'?", "'Pride and Prejudice' was written by Jane Austen."),
    ("How many continents are there?", "There are seven continents."),
    ("What does CPU stand for?", "CPU stands for central processing unit."),
    ("Good morning!", "Good morning! What can I do for you?"),
    ("What is the boiling point of water at sea level in Celsius?", "Water boils at 100 °C at sea level."),
    ("Write a haiku about autumn.",
     "Crisp leaves drift and fall,\ngold light on the quiet path,\nthe year exhales slow."),
    ("Which planet is known as the Red Planet?", "Mars is known as the Red Planet."),
    ("Give me a synonym for 'happy'.", "A synonym for 'happy' is 'cheerful'."),
    ("What language is spoken in Brazil?", "The official language of Brazil is Portuguese."),
    ("Can you explain what a noun is?", "A noun is a word that names a person, place, thing or idea, like 'river'."),
    ("Tell me a joke about scarecrows.", "Why did the scarecrow win an award? He was outstanding in his field."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("Who painted the Mona Lisa?", "The Mona Lisa was painted by Leonardo da Vinci."),
    ("What is photosynthesis in one sentence?",
     "Photosynthesis is how plants use sunlight, water and carbon dioxide to make sugar and release oxygen."),
    ("Say hello in French.", "Hello in French is 'bonjour'."),
    ("What's 2 plus 2?", "2 plus 2 is 4."),
)


class SynthError(QwenToolError):
    """A synthesis request that cannot be met (unknown category, bad mix)."""


def parse_mix(text: str | dict[str, float] | None) -> dict[str, float]:
    """`single=0.3,parallel=0.1,...` (or a dict) → normalised weights; unnamed categories get 0 when any is named."""
    if text is None or text == "":
        return dict(DEFAULT_MIX)
    if isinstance(text, str):
        weights: dict[str, float] = {}
        for item in text.split(","):
            if "=" not in item:
                raise SynthError(f"--mix item {item!r} is not category=weight; fix: e.g. single=0.3,parallel=0.1")
            key, value = item.split("=", 1)
            try:
                weights[key.strip()] = float(value)
            except ValueError:
                raise SynthError(f"--mix weight {value!r} for {key!r} is not a number") from None
    else:
        weights = dict(text)
    unknown = [k for k in weights if k not in CATEGORIES]
    if unknown:
        raise SynthError(f"unknown categories {unknown} in the mix; fix: use some of {', '.join(CATEGORIES)}")
    if any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        raise SynthError("mix weights must be non-negative and not all zero")
    total = sum(weights.values())
    return {k: weights.get(k, 0.0) / total for k in CATEGORIES if weights.get(k, 0.0) > 0}


# ---------------------------------------------------------------- building blocks


@dataclass
class Builder:
    """State for one example: its rng, the offered tools, the executor, the messages so far."""

    rng: random.Random
    executor: Executor
    pool: list[Concept]
    drawn: list[DrawnTool] = field(default_factory=list)
    tools: dict[str, Tool] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    styles: dict[str, NameStyle] = field(default_factory=dict)

    def offer(self, concept: Concept, nest: bool = False) -> DrawnTool:
        style = self.styles.setdefault(concept.domain, draw_style(self.rng, concept.domain))
        drawn = draw_tool(concept, self.rng, style, nest=nest)
        while drawn.name in self.tools:  # two concepts that happen to share a name: draw another verb
            drawn = draw_tool(concept, self.rng, draw_style(self.rng, concept.domain), nest=nest)
        self.drawn.append(drawn)
        self.tools[drawn.name] = drawn.tool(self.rng)
        return drawn

    def call_id(self) -> str:
        return f"call_{self.rng.getrandbits(64):016x}"

    def system(self, rate: float = 0.15) -> None:
        if self.rng.random() < rate:
            self.messages.append({"role": "system", "content": self.rng.choice(SYSTEM_PROMPTS)})

    def user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def say(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})

    def act(self, calls: list[tuple[str, dict[str, Any]]], expect_ok: bool = True) -> list[Any]:
        """Append an assistant turn with `calls`, execute them, append the tool messages; returns the outcomes.

        A gold turn (`expect_ok`) that fails is a generator bug and raises; a deliberate wrong turn is marked
        erroneous with the executor's category.
        """
        tool_calls = [ToolCall(name, arguments, self.call_id()) for name, arguments in calls]
        turn: dict[str, Any] = {"role": "assistant", "content": None,
                                "tool_calls": [c.to_openai() for c in tool_calls]}
        self.messages.append(turn)
        outcomes = self.executor.execute(tool_calls, self.tools)
        for call, outcome in zip(tool_calls, outcomes, strict=True):
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome.content,
                                  "feedback_category": outcome.category.value})
        failed = [o for o in outcomes if not o.ok]
        if expect_ok and failed:
            raise RuntimeError(f"gold call failed: {failed[0].content}")
        if not expect_ok:
            if not failed:
                raise RuntimeError("a deliberate wrong call was accepted by the executor")
            turn["erroneous"] = True
            turn["feedback_category"] = failed[0].category.value
        return outcomes

    def finish(self, category: str, **meta: Any) -> dict[str, Any]:
        domains = sorted({d.concept.domain for d in self.drawn})
        record_meta = {"category": category, "source": "unseen", "domain": ",".join(domains) or "chat",
                       "distractors": meta.pop("distractors", 0)}
        record_meta.update(meta)
        return {"tools": [d.schema for d in self.drawn], "messages": self.messages, "meta": record_meta}


def _strip_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the trailing tool messages of a single-shot example that ends at its call."""
    while messages and messages[-1]["role"] == "tool":
        messages.pop()
    return messages


def _concepts(b: Builder, count: int, exclude: set[str] = frozenset()) -> list[Concept]:
    candidates = [c for c in b.pool if c.stem not in exclude]
    return b.rng.sample(candidates, count)


def _siblings(b: Builder, concept: Concept, count: int) -> list[Concept]:
    """Near-name distractors: other concepts of the same domain first, then any."""
    same = [c for c in b.pool if c.domain == concept.domain and c.stem != concept.stem]
    b.rng.shuffle(same)
    picked = same[:count]
    if len(picked) < count:
        others = [c for c in b.pool if c.domain != concept.domain]
        picked += b.rng.sample(others, count - len(picked))
    return picked


def _single_call(b: Builder, drawn: DrawnTool, answer_rate: float) -> None:
    stated = state_arguments(drawn, b.rng)
    b.user(query_for(drawn, stated, b.rng))
    outcomes = b.act([(drawn.name, stated.arguments)])
    if b.rng.random() < answer_rate:
        b.say(final_answer(drawn, outcomes[0].result, b.rng))
    else:
        _strip_tool_results(b.messages)


# ---------------------------------------------------------------- categories


def build_single(b: Builder) -> dict[str, Any]:
    b.system()
    drawn = b.offer(_concepts(b, 1)[0])
    _single_call(b, drawn, answer_rate=0.3)
    return b.finish("single")


def build_nested(b: Builder) -> dict[str, Any]:
    b.system()
    structured = [c for c in b.pool if has_structured_param(c)]
    if structured and b.rng.random() < 0.4:
        drawn = b.offer(b.rng.choice(structured))
    else:
        drawn = b.offer(b.rng.choice([c for c in b.pool if is_nestable(c)]), nest=True)
    _single_call(b, drawn, answer_rate=0.3)
    return b.finish("nested")


def build_choice(b: Builder) -> dict[str, Any]:
    b.system()
    gold = _concepts(b, 1)[0]
    count = b.rng.choice((1, 2, 2, 3, 3, 4))
    near = b.rng.randint(1, count)
    distractors = _siblings(b, gold, near) + _concepts(b, count - near, exclude={gold.stem} | set())
    distractors = list({c.stem: c for c in distractors if c.stem != gold.stem}.values())
    concepts = [gold, *distractors]
    b.rng.shuffle(concepts)
    drawn = {c.stem: b.offer(c) for c in concepts}
    _single_call(b, drawn[gold.stem], answer_rate=0.25)
    return b.finish("choice", distractors=len(distractors))


def build_parallel(b: Builder) -> dict[str, Any]:
    b.system()
    if b.rng.random() < 0.55:  # the same function several times
        drawn = b.offer(_concepts(b, 1)[0])
        extra = [b.offer(c) for c in _concepts(b, b.rng.randint(0, 2), exclude={drawn.concept.stem})]
        b.drawn = b.rng.sample(b.drawn, len(b.drawn))
        times = b.rng.choice((2, 2, 3))
        stated = [state_arguments(drawn, b.rng) for _ in range(times)]
        task = b.rng.choice(drawn.concept.tasks)
        parts = [argument_text(s, b.rng) for s in stated]
        query = b.rng.choice((
            phrase_request(task, parts[0], b.rng).rstrip(".?") + ", and also " + "; and also ".join(parts[1:]) + ".",
            f"{task[0].upper()}{task[1:]} for each of these: " + "; ".join(parts) + ".",
            phrase_request(task, parts[0], b.rng) + " Then do the same " + " and again ".join(parts[1:]) + ".",
        ))
        b.user(query)
        calls = [(drawn.name, s.arguments) for s in stated]
        meta = {"distractors": len(extra)}
    else:  # several different functions
        concepts = _concepts(b, b.rng.choice((2, 2, 3)))
        tools = [b.offer(c) for c in concepts]
        stated = [state_arguments(t, b.rng) for t in tools]
        sentences = [phrase_request(b.rng.choice(t.concept.tasks), argument_text(s, b.rng), b.rng)
                     for t, s in zip(tools, stated, strict=True)]
        joiner = b.rng.choice((" Also, ", " And ", " In addition, ", " "))
        b.user(sentences[0] + "".join(joiner + s[0].lower() + s[1:] for s in sentences[1:]))
        calls = [(t.name, s.arguments) for t, s in zip(tools, stated, strict=True)]
        b.drawn = b.rng.sample(b.drawn, len(b.drawn))
        meta = {"distractors": 0}
    outcomes = b.act(calls)
    if b.rng.random() < 0.25:
        by_id = {id(o): o for o in outcomes}
        answers = [final_answer(next(d for d in b.drawn if d.name == o.call.name), o.result, b.rng)
                   for o in by_id.values()]
        b.say(" ".join(answers))
    else:
        _strip_tool_results(b.messages)
    return b.finish("parallel", calls=len(calls), **meta)


def build_irrelevance(b: Builder) -> dict[str, Any]:
    b.system()
    asked = _concepts(b, 1)[0]
    count = b.rng.choice((1, 1, 2, 2, 3))
    if b.rng.random() < 0.35:  # same domain, different task: the hard near-miss case
        offered = _siblings(b, asked, count)
    else:
        offered = b.rng.sample([c for c in b.pool if c.domain != asked.domain], count)
    drawn = [b.offer(c) for c in offered]
    asked_tool = draw_tool(asked, b.rng, draw_style(b.rng, asked.domain))
    stated = state_arguments(asked_tool, b.rng)
    task = b.rng.choice(asked.tasks)
    b.user(phrase_request(task, argument_text(stated, b.rng), b.rng))
    b.say(refusal(drawn, task, b.rng))
    return b.finish("irrelevance", distractors=len(drawn), asked=asked.stem)


def build_chat(b: Builder) -> dict[str, Any]:
    b.system(0.3)
    if b.rng.random() < 0.6:
        for concept in _concepts(b, b.rng.randint(1, 3)):
            b.offer(concept)
    question, answer = b.rng.choice(CHAT)
    b.user(question)
    b.say(answer)
    return b.finish("chat", distractors=len(b.drawn))


_ASK = (
    "Sure, I can {task}. What {label} should I use?", "I can help with that. Could you tell me the {label}?",
    "To {task}, I still need the {label}. What is it?", "Happy to help. Which {label} do you mean?",
    "I need one more detail first: the {label}. Can you provide it?",
)
_TELL = ("{v}", "It's {v}.", "Use {v}.", "The {label} is {v}.", "Oh right, {v}.", "{v}, please.")


def build_missing_info(b: Builder) -> dict[str, Any]:
    b.system()
    concept = b.rng.choice([c for c in b.pool if any(p.required for p in c.params)])
    drawn = b.offer(concept)
    for extra in _concepts(b, b.rng.randint(0, 1), exclude={concept.stem}):
        b.offer(extra)
    b.drawn = b.rng.sample(b.drawn, len(b.drawn))
    stated = state_arguments(drawn, b.rng)
    missing = b.rng.choice([p for p in drawn.params if p.spec.required])
    task = b.rng.choice(concept.tasks)
    b.user(phrase_request(task, argument_text(stated.without(missing.name), b.rng), b.rng))
    b.say(b.rng.choice(_ASK).format(task=task, label=missing.label))
    b.user(b.rng.choice(_TELL).format(v=stated.surfaces[missing.name], label=missing.label))
    outcomes = b.act([(drawn.name, stated.arguments)])
    if b.rng.random() < 0.4:
        b.say(final_answer(drawn, outcomes[0].result, b.rng))
    else:
        _strip_tool_results(b.messages)
    return b.finish("missing_info", distractors=len(b.drawn) - 1, missing=missing.name)


_NUMERIC_OUT = (Num, Money, Int)


def _feeds(producer: Concept, consumer: Concept) -> list[int]:
    """Indexes of the consumer's required parameters that can take the producer's result."""
    out_kind = producer.out[1]
    if not isinstance(out_kind, _NUMERIC_OUT):
        return []
    return [i for i, p in enumerate(consumer.params) if p.required and (
        isinstance(p.kind, (Num, Money)) or (isinstance(p.kind, Int) and isinstance(out_kind, Int)))]


def _chain_pair(b: Builder) -> tuple[Concept, Concept, int]:
    """A producer with a numeric result and a consumer with a required parameter of a compatible type."""
    producers = [c for c in b.pool if isinstance(c.out[1], _NUMERIC_OUT)]
    for _ in range(100):
        first = b.rng.choice(producers)
        second = b.rng.choice([c for c in b.pool if c.stem != first.stem])
        slots = _feeds(first, second)
        if slots:
            return first, second, b.rng.choice(slots)
    raise _Retry


_THEN = ("Then use that result as the {label} to {task}", "After that, {task} using it as the {label}",
         "Next, take the result as the {label} and {task}", "Then plug it in as the {label} and {task}")


def build_multi_step(b: Builder) -> dict[str, Any]:
    """An output feeds the next call: the second call's argument is the first call's real result."""
    b.system()
    first, second, slot = _chain_pair(b)
    producer, consumer = b.offer(first), b.offer(second)
    b.drawn = b.rng.sample(b.drawn, 2)
    stated = state_arguments(producer, b.rng)
    slot_name = consumer.params[slot].name
    rest = state_arguments(consumer, b.rng).without(slot_name)
    first_text = phrase_request(b.rng.choice(first.tasks), argument_text(stated, b.rng), b.rng)
    then = b.rng.choice(_THEN).format(label=consumer.params[slot].label, task=b.rng.choice(second.tasks))
    b.user(f"{first_text} {then} {argument_text(rest, b.rng)}".rstrip() + ".")
    value = b.act([(producer.name, stated.arguments)])[0].result[first.out[0]]
    arguments = {p.name: rest.arguments[p.name] if p.name != slot_name else value
                 for p in consumer.params if p.name in rest.arguments or p.name == slot_name}
    outcome = b.act([(consumer.name, arguments)])[0]
    b.say(final_answer(consumer, outcome.result, b.rng))
    return b.finish("multi_step", steps=2)


def build_conditional(b: Builder) -> dict[str, Any]:
    """The first result decides which of two follow-up calls to make."""
    b.system()
    producers = [c for c in b.pool if isinstance(c.out[1], _NUMERIC_OUT)]
    first = b.rng.choice(producers)
    if_yes, if_no = _concepts(b, 2, exclude={first.stem})
    producer, yes_tool, no_tool = b.offer(first), b.offer(if_yes), b.offer(if_no)
    b.drawn = b.rng.sample(b.drawn, 3)
    stated = state_arguments(producer, b.rng)
    threshold = first.out[1].sample(b.rng)
    yes_args, no_args = state_arguments(yes_tool, b.rng), state_arguments(no_tool, b.rng)
    noun = first.noun or first.out[0].replace("_", " ")
    first_text = phrase_request(b.rng.choice(first.tasks), argument_text(stated, b.rng), b.rng)
    yes_text = f"{b.rng.choice(if_yes.tasks)} {argument_text(yes_args, b.rng)}".rstrip()
    no_text = f"{b.rng.choice(if_no.tasks)} {argument_text(no_args, b.rng)}".rstrip()
    b.user(f"{first_text} If the {noun} is above {threshold}, {yes_text}; otherwise, {no_text}.")
    value = b.act([(producer.name, stated.arguments)])[0].result[first.out[0]]
    chosen, arguments = (yes_tool, yes_args) if value > threshold else (no_tool, no_args)
    outcome = b.act([(chosen.name, arguments.arguments)])[0]
    b.say(final_answer(chosen, outcome.result, b.rng))
    return b.finish("conditional", steps=2, distractors=1, branch="yes" if value > threshold else "no")


def build_error_recovery(b: Builder) -> dict[str, Any]:
    b.system()
    drawn = b.offer(_concepts(b, 1)[0])
    for extra in _concepts(b, b.rng.randint(0, 1), exclude={drawn.concept.stem}):
        b.offer(extra)
    stated = state_arguments(drawn, b.rng)
    b.user(query_for(drawn, stated, b.rng))
    wrong_name, wrong_args, intended = _wrong_call(b, drawn, stated.arguments)
    b.act([(wrong_name, wrong_args)], expect_ok=False)
    outcomes = b.act([(drawn.name, stated.arguments)])
    b.say(final_answer(drawn, outcomes[0].result, b.rng))
    return b.finish("error_recovery", steps=2, error=intended)


def _wrong_call(b: Builder, drawn: DrawnTool, arguments: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """A realistic slip: a missing required argument, an invented argument name, a wrong tool name, a bad type."""
    required = drawn.schema["function"]["parameters"]["required"]
    options = ["tool_hallucination", "parameter_hallucination"]
    if required:
        options.append("parameter_missing")
    if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arguments.values()):
        options.append("call_failure")
    kind = b.rng.choice(options)
    if kind == "parameter_missing":
        dropped = b.rng.choice(required)
        return drawn.name, {k: v for k, v in arguments.items() if k != dropped}, kind
    if kind == "parameter_hallucination":
        key = b.rng.choice(list(arguments)) if arguments else "value"
        renamed = hallucinated_param_name(key, b.rng)
        wrong = {(renamed if k == key else k): v for k, v in arguments.items()} if arguments else {renamed: 1}
        return drawn.name, wrong, kind
    if kind == "call_failure":
        key = b.rng.choice([k for k, v in arguments.items() if isinstance(v, (int, float)) and not isinstance(v, bool)])
        return drawn.name, {**arguments, key: f"{arguments[key]} units"}, kind
    stem = drawn.concept.stem
    candidates = [f"{verb}_{stem}" for verb in ("get", "calculate", "compute", "find", "run")]
    candidates += [stem, f"{drawn.concept.domain}.{stem}", f"{stem}_tool"]
    return b.rng.choice([c for c in candidates if c not in b.tools]), arguments, kind


BUILDERS: dict[str, Callable[[Builder], dict[str, Any]]] = {
    "single": build_single,
    "parallel": build_parallel,
    "choice": build_choice,
    "irrelevance": build_irrelevance,
    "chat": build_chat,
    "missing_info": build_missing_info,
    "multi_step": build_multi_step,
    "conditional": build_conditional,
    "error_recovery": build_error_recovery,
    "nested": build_nested,
}


DEFAULT_SUITE_SHARE = 0.2
"""Share of the examples built on the env's suites (modest: the unseen-tool generator teaches generalisation)."""


def suite_allocation(counts: dict[str, int], share: float) -> dict[str, int]:
    """How many examples of each category the suites build: round(share·n), spread over the categories the suites
    know in proportion to their counts, never more than a category's count (the rest come from unseen tools)."""
    if not 0 <= share <= 1:
        raise SynthError(f"suite share must be between 0 and 1, got {share}")
    eligible = {c: k for c, k in counts.items() if c in SUITE_CATEGORIES and k > 0}
    wanted = min(round(share * sum(counts.values())), sum(eligible.values()))
    if wanted == 0:
        return {}
    spread = allocate(wanted, {c: k / sum(eligible.values()) for c, k in eligible.items()})
    return {c: min(k, eligible[c]) for c, k in spread.items() if k > 0}


def synthesize(n: int, seed: int = 0, mix: str | dict[str, float] | None = None,
               held_out: set[str] | None = None, split: str = "train",
               suite_share: float = DEFAULT_SUITE_SHARE) -> list[dict[str, Any]]:
    """`n` trajectories in the requested category mix, deterministic in `seed`.

    held_out: concept stems and suite names reserved for evaluation (see `held_out_split`); `split="train"` never uses
        them, `split="eval"` uses only them (an eval split without held-out suites takes no suite examples).
    suite_share: share of examples built on the env's simulated suites (0 gives the unseen generator alone).
    """
    if n < 0:
        raise SynthError(f"cannot synthesize {n} trajectories; fix: ask for 0 or more")
    weights = parse_mix(mix)
    counts = allocate(n, weights)
    pool = concept_pool(held_out, keep_held_out=(split == "eval"))
    if len(pool) < 6:
        raise SynthError(f"only {len(pool)} concepts left for split {split!r}; fix: hold out fewer tools")
    suites = [name for name in suites_for(held_out, split) if _suite_fits_split(name, held_out, split)]
    from_suites = suite_allocation(counts, suite_share if suites else 0.0)
    executor = Executor(timeout_s=5.0, concurrent=False)
    records = []
    for category in CATEGORIES:
        for index in range(counts.get(category, 0) - from_suites.get(category, 0)):
            records.append(_build_one(category, index, seed, split, pool, executor))
    if from_suites:
        env, seen = new_env(), set()
        for category in SUITE_CATEGORIES:
            for index in range(from_suites.get(category, 0)):
                record = build_suite_record(category, index, seed, split, suites, env, seen)
                records.append(_finish(record, category, index, split))
    random.Random(f"{seed}:order").shuffle(records)
    for position, record in enumerate(records):
        record["meta"]["id"] = f"{split}-{seed}-{position:06d}"
    return records


def _linked_stems(suite_name: str) -> set[str]:
    """Concepts that can be named like one of the suite's tools (stock_quote → fetch_stock_quote)."""
    names = {tool.name for tool in SUITES[suite_name].tool_specs()}
    return {concept.stem for concept in CONCEPTS if names & set(name_variants(concept))}


def _suite_fits_split(suite_name: str, held_out: set[str] | None, split: str) -> bool:
    """A suite whose tool names a concept of the other split can take stays out, so no tool name crosses splits."""
    if held_out is None:
        return True
    linked = _linked_stems(suite_name)
    return not (linked - held_out if split == "eval" else linked & held_out)


def _build_one(category: str, index: int, seed: int, split: str, pool: list[Concept],
               executor: Executor) -> dict[str, Any]:
    for attempt in range(20):
        rng = random.Random(f"{seed}:{split}:{category}:{index}:{attempt}")
        builder = Builder(rng, executor, pool)
        try:
            record = BUILDERS[category](builder)
        except _Retry:
            continue
        return _finish(record, category, index, split)
    raise RuntimeError(f"could not build a {category} example after 20 attempts")


def _finish(record: dict[str, Any], category: str, index: int, split: str) -> dict[str, Any]:
    record["meta"]["split"] = split
    record["meta"]["difficulty"] = difficulty(record)
    return validate_trajectory(record, f"synthesized {category} #{index}")


def held_out_stems(fraction: float, seed: int = 0) -> set[str]:
    """A seeded choice of concept stems (`fraction` of the catalog) reserved for the eval split."""
    if not 0 < fraction < 1:
        raise SynthError(f"held-out share must be between 0 and 1, got {fraction}")
    stems = sorted(c.stem for c in CONCEPTS)
    return set(random.Random(f"{seed}:held-out").sample(stems, max(1, round(fraction * len(stems)))))


def held_out_split(fraction: float, seed: int = 0) -> set[str]:
    """Concept stems and whole suites reserved for the eval split: `fraction` of each (at least one suite).

    A concept that can be named like one of a suite's tools (stock_quote → fetch_stock_quote) goes to the same side
    as that suite, so no tool name is shared between the splits.
    """
    held = held_out_stems(fraction, seed)
    names = sorted(SUITES)
    held |= set(random.Random(f"{seed}:held-out-suites").sample(names, max(1, round(fraction * len(names)))))
    for concept in CONCEPTS:
        variants = set(name_variants(concept))
        for suite_name, suite in SUITES.items():
            if variants & {tool.name for tool in suite.tool_specs()} and held & {concept.stem, suite_name}:
                held |= {concept.stem, suite_name}
    return held


class _Retry(Exception):
    """A draw that cannot make a valid example (e.g. nothing to chain); the next attempt re-draws."""


def mix_of(records: list[dict[str, Any]]) -> dict[str, float]:
    counts = Counter(r["meta"].get("category", "?") for r in records)
    total = max(1, len(records))
    return {k: v / total for k, v in sorted(counts.items())}


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))
