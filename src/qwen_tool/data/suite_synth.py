"""Suite-based synthesis: trajectories on the env's simulated suites, every call executed in `ToolEnv`.

Note (lead engineer): data may import env (suite-based synthesis executes gold calls in ToolEnv). The env never
imports data, so imports still flow one way.

Plan, then play. A builder plans on a scratch instance of one suite, seeded like the episode: it draws arguments the
tool accepts, runs a producer to feed its real output into the next call (multi-step), learns which branch a
condition takes (conditional), and writes the user's query before anything runs. The plan is then played in
`ToolEnv` on the same suite and seed: tool messages are what the env returned, a deliberate wrong call carries the
env's real error text and feedback category, and the final answer reports the real results. A played outcome that
differs from the scratch run is a generator bug and raises.

`synthesize_eval_tasks(n, seed, held_out)` turns the same plans (error turns excluded) into `env.Task` dicts: the
opening messages, the offered tool names, gold calls per assistant step (an empty step is a text reply: the final
answer, or the question asking for missing information, which a `follow_ups` user turn answers), the gold answer and
the suite's gold end state. The evaluation room replays them through `ToolEnv` with a model policy to score DE, CE
and VA; held-out suites keep them disjoint from the training tools.
"""

from __future__ import annotations

import copy
import difflib
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from qwen_tool import QwenToolError
from qwen_tool.codec.types import ParsedOutput, ToolCall
from qwen_tool.data.filters import dedupe_key
from qwen_tool.data.mix import allocate
from qwen_tool.data.suite_phrases import TASKS, answer_for, made_values, optional_clause, say
from qwen_tool.data.unseen import hallucinated_param_name, phrase_request
from qwen_tool.env import Task, ToolEnv, UserTurn, run_gold_episode
from qwen_tool.env.suites import SUITES, get_suite
from qwen_tool.tools import CallOutcome, Executor, FeedbackCategory

SUITE_CATEGORIES = ("single", "parallel", "choice", "irrelevance", "missing_info", "multi_step", "conditional",
                    "error_recovery", "nested")
"""Categories the suites build; `chat` comes from the unseen-tool generator only."""
EVAL_CATEGORIES = tuple(c for c in SUITE_CATEGORIES if c != "error_recovery")
EVAL_MIX = {"single": 0.15, "parallel": 0.15, "choice": 0.15, "irrelevance": 0.05, "missing_info": 0.1,
            "multi_step": 0.2, "conditional": 0.1, "nested": 0.1}
"""Default category weights of the internal eval set: weighted towards multi-turn episodes."""

SYSTEM_PROMPTS = (
    "You are the assistant of a {domain} service. Use the tools when they help; answer the user when you are done.",
    "You can call {domain} tools. Call them only when they fit the request, then report what they returned.",
)
CONNECTORS = (", then ", " and then ", ", and after that ", ", and once that's done, ")
REF_ONE = ("the {label} it returns", "the resulting {label}", "that {label}", "the {label} from that step")
REF_LIST = ("the first {label} it returns", "the {label} of the first result", "the top result's {label}")
ALIASES: dict[str, tuple[str, ...]] = {
    "stored": ("key",), "price": ("value",), "amount": ("value",), "rate": ("value",), "group_name": ("recipient",),
    "name": ("recipient", "contact"), "path": ("path", "source"), "created": ("path", "folder"),
}
"""Output key → parameter names it may feed (besides a parameter of the same name)."""
LIST_KEYS = {"find_paths": "path", "list_reservations": "booking_id"}
"""Tools returning a list of plain strings: what one item is."""
MISSING_LABELS = {
    "city": "city", "ticker": "stock symbol", "account_id": "account", "recipient": "recipient", "path": "path",
    "product_id": "product id", "order_id": "order id", "booking_id": "booking id", "meeting_id": "meeting id",
    "country": "country", "code": "coupon code", "date": "date", "contact": "contact", "hotel_id": "hotel id",
    "flight_id": "flight id", "to_currency": "target currency", "base": "base currency", "to_account": "account",
}
"""Parameters a query may leave out (missing_info), with how the assistant names them when asking."""
ASK = ("Sure, which {label} should I use?", "I can do that. What {label} do you mean?",
       "Happy to help. Could you tell me the {label}?", "Before I start, I need the {label}. What is it?")
TELL = ("{v}", "It's {v}.", "Use {v}.", "The {label} is {v}.", "Oh, {v}.")
# Every decline opens with the same token ("I"), as in `unseen.refusal`: see there for why.
REFUSE = ("I'm sorry, but none of the available tools can {task}.",
          "I can't {task} with the functions I have here, so I won't call any of them.",
          "I don't see a provided tool that fits this request: I'd need a tool to {task}.",
          "I'm unable to {task} with the available functions; they don't cover this.")


class SuiteSynthError(QwenToolError):
    """A suite-synthesis request that cannot be met (no suite left for the split)."""


class _Retry(Exception):
    """This draw cannot make a valid example (e.g. nothing to chain); the next attempt re-draws."""


@dataclass
class ScriptedStep:
    """One scripted assistant step: calls (gold, or deliberately wrong with the expected category) or a text reply."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    content: str | None = None
    wrong: str | None = None
    expected: list[str] = field(default_factory=list)
    """Tool message texts the scratch run produced (the played episode must reproduce them)."""
    reply: str | None = None
    """A user message that answers this text step (missing_info: the user gives the missing value)."""


@dataclass
class Plan:
    category: str
    suite: str
    seed: int
    offered: list[str]
    messages: list[dict[str, Any]]
    turns: list[ScriptedStep]
    meta: dict[str, Any] = field(default_factory=dict)

    def task(self, task_id: str) -> Task:
        """The gold episode as an `env.Task` (deliberate wrong turns left out)."""
        gold_calls: list[list[dict[str, Any]]] = []
        follow_ups = []
        for turn in self.turns:
            if turn.wrong:
                continue
            gold_calls.append([{"name": name, "arguments": arguments} for name, arguments in turn.calls])
            if turn.reply is not None:
                follow_ups.append(UserTurn([{"role": "user", "content": turn.reply}]))
        return Task(id=task_id, suite=self.suite, messages=copy.deepcopy(self.messages), tools=list(self.offered),
                    gold_calls=gold_calls, gold_answer=self.turns[-1].content, follow_ups=follow_ups,
                    domain=get_suite(self.suite).domain, seed=self.seed,
                    meta={"category": self.category, "source": "suite", **self.meta})


_VALIDATORS: dict[str, Draft202012Validator] = {}


def _fits(schema: dict[str, Any], value: Any) -> bool:
    key = repr(sorted(schema.items()))
    if key not in _VALIDATORS:
        _VALIDATORS[key] = Draft202012Validator(schema)
    return _VALIDATORS[key].is_valid(value)


class Planner:
    """A scratch suite instance for one example: draw accepted arguments, run calls, word the requests."""

    def __init__(self, rng: random.Random, suites: list[str], executor: Executor) -> None:
        self.rng = rng
        self.suite_name = rng.choice(suites)
        self.seed = rng.randrange(1_000_000)
        self.suite = get_suite(self.suite_name)(seed=self.seed)
        self.tools = {tool.name: tool for tool in self.suite.tools()}
        self.executor = executor

    # --- running -------------------------------------------------------------------------------------------------
    def run(self, calls: list[tuple[str, dict[str, Any]]], offered: list[str] | None = None) -> list[CallOutcome]:
        """Execute on the scratch suite, offering `offered` (default: every tool of the suite)."""
        tools = self.tools if offered is None else {name: self.tools[name] for name in offered}
        return self.executor.execute([ToolCall(name, arguments) for name, arguments in calls], tools)

    def probe(self, calls: list[tuple[str, dict[str, Any]]], offered: list[str] | None = None) -> list[CallOutcome]:
        """Run the calls and undo their state changes (handlers read `suite.data` afresh on every call)."""
        saved = copy.deepcopy(self.suite.data)
        try:
            return self.run(calls, offered)
        finally:
            self.suite.data = saved

    def gold(self, calls: list[tuple[str, dict[str, Any]]]) -> tuple[ScriptedStep, list[CallOutcome]]:
        """Run a gold step for real; a failing gold call makes the draw unusable."""
        outcomes = self.run(calls)
        if not all(outcome.ok for outcome in outcomes):
            raise _Retry
        return ScriptedStep(calls, expected=[o.content for o in outcomes]), outcomes

    # --- arguments -----------------------------------------------------------------------------------------------
    def arguments(self, name: str, optional_rate: float = 0.35, fixed: dict[str, Any] | None = None,
                  tries: int = 8) -> dict[str, Any]:
        """Arguments the tool accepts in the current state (probed); optional ones stated at `optional_rate`."""
        fixed = fixed or {}
        schema = self.tools[name].parameters
        required = set(schema.get("required", []))
        for _ in range(tries):
            pool = self.suite.argument_pool()
            sampled = self.suite.sample_arguments(name, self.rng, include_optional=True)
            arguments: dict[str, Any] = {}
            for pname, pschema in schema["properties"].items():
                if pname in fixed:
                    arguments[pname] = fixed[pname]
                    continue
                if pname not in required and self.rng.random() > optional_rate:
                    continue
                made = [v for v in made_values(pname, self.rng, pool) if _fits(pschema, v)]
                value = self.rng.choice(made) if made and (self.rng.random() < 0.7 or _placeholder(sampled[pname])) \
                    else sampled[pname]
                if _placeholder(value) or (pname not in required and value == pschema.get("default")):
                    continue
                arguments[pname] = value
            if required <= set(arguments) and self.probe([(name, arguments)])[0].ok:
                return arguments
        raise _Retry

    def pick(self, candidates: list[str], **options: Any) -> tuple[str, dict[str, Any]]:
        """The first candidate (in a random order) with accepted arguments."""
        for name in self.rng.sample(candidates, len(candidates)):
            try:
                return name, self.arguments(name, tries=4, **options)
            except _Retry:
                continue
        raise _Retry

    # --- words ---------------------------------------------------------------------------------------------------
    def phrase(self, name: str, arguments: dict[str, Any], refs: dict[str, str] | None = None) -> str:
        """The task as a verb phrase: required values in the tool's template, optional ones as clauses."""
        refs = refs or {}
        template = self.rng.choice(TASKS[name])
        slots = {p: refs.get(p, say(v)) for p, v in arguments.items()}
        text = template.format(**{p: slots.get(p, "") for p in _slots(template)})
        extras = [optional_clause(p, refs.get(p, v), self.rng) for p, v in arguments.items()
                  if "{" + p + "}" not in template]
        return self.rng.choice((" ", ", ")).join([text, *extras]) if extras else text

    def request(self, task: str) -> str:
        return phrase_request(task, "", self.rng)

    def offer(self, needed: list[str], extra: int) -> list[str]:
        """The needed tools plus `extra` others of the suite, shuffled."""
        others = [n for n in self.tools if n not in needed]
        offered = list(dict.fromkeys(needed)) + self.rng.sample(others, min(extra, len(others)))
        return self.rng.sample(offered, len(offered))

    def near_names(self, name: str) -> list[str]:
        """The suite's tools with names close to `name` (fetch_stock_quote ~ fetch_stock_quotes), closest first."""
        scored = [(difflib.SequenceMatcher(None, name, other).ratio(), other) for other in self.tools if other != name]
        return [other for ratio, other in sorted(scored, reverse=True) if ratio >= 0.6]

    def opening(self, text: str) -> list[dict[str, Any]]:
        messages = []
        if self.rng.random() < 0.3:
            domain = get_suite(self.suite_name).domain
            messages.append({"role": "system", "content": self.rng.choice(SYSTEM_PROMPTS).format(domain=domain)})
        messages.append({"role": "user", "content": text})
        return messages

    def plan(self, category: str, text: str, turns: list[ScriptedStep], offered: list[str], **meta: Any) -> Plan:
        return Plan(category, self.suite_name, self.seed, offered, self.opening(text), turns, meta)


def _placeholder(value: Any) -> bool:
    """The env's fallback string for a parameter without pool values (`sample_<name>`): not something a user says."""
    return isinstance(value, str) and value.startswith("sample_")


def _slots(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _answer(outcomes: list[CallOutcome], rng: random.Random) -> ScriptedStep:
    return ScriptedStep(content=answer_for([o.result for o in outcomes], rng))


# ---------------------------------------------------------------- categories


def build_single(p: Planner) -> Plan:
    name, arguments = p.pick(list(p.tools))
    step, outcomes = p.gold([(name, arguments)])
    return p.plan("single", p.request(p.phrase(name, arguments)), [step, _answer(outcomes, p.rng)],
                  p.offer([name], p.rng.randint(0, 3)))


def build_nested(p: Planner) -> Plan:
    structured = [n for n, t in p.tools.items()
                  if any(s.get("type") in ("object", "array") for s in t.parameters["properties"].values())]
    if not structured:
        raise _Retry
    name, arguments = p.pick(structured, optional_rate=0.6)
    if not any(isinstance(v, (dict, list)) for v in arguments.values()):
        raise _Retry
    step, outcomes = p.gold([(name, arguments)])
    return p.plan("nested", p.request(p.phrase(name, arguments)), [step, _answer(outcomes, p.rng)],
                  p.offer([name], p.rng.randint(0, 2)))


def build_choice(p: Planner) -> Plan:
    """Near-name distractors: the gold tool offered beside the suite's tools with the closest names."""
    with_near = [n for n in p.tools if p.near_names(n)]
    name, arguments = p.pick(with_near if with_near and p.rng.random() < 0.7 else list(p.tools))
    near = p.near_names(name)[: p.rng.randint(1, 3)]
    offered = p.offer([name, *near], p.rng.randint(0, 2) if near else p.rng.randint(2, 4))
    step, outcomes = p.gold([(name, arguments)])
    return p.plan("choice", p.request(p.phrase(name, arguments)), [step, _answer(outcomes, p.rng)], offered,
                  distractors=len(offered) - 1, near_names=len(near))


def build_parallel(p: Planner) -> Plan:
    with_params = [n for n, t in p.tools.items() if t.parameters.get("required")]
    if p.rng.random() < 0.5 and with_params:  # the same function several times
        name, first = p.pick(with_params)
        calls = [(name, first)]
        for _ in range(p.rng.choice((1, 1, 2))):
            calls.append((name, p.arguments(name)))
        names = [name]
    else:  # several different functions
        names = p.rng.sample(list(p.tools), min(len(p.tools), p.rng.choice((2, 2, 3))))
        calls = [p.pick([n]) for n in names]
    if len({repr(c) for c in calls}) < len(calls):
        raise _Retry
    step, outcomes = p.gold(calls)
    phrases = [p.phrase(n, a) for n, a in calls]
    joiner = p.rng.choice((" and ", ", and also ", "; also "))
    return p.plan("parallel", p.request(joiner.join(phrases)), [step, _answer(outcomes, p.rng)],
                  p.offer(names, p.rng.randint(0, 2)), calls=len(calls))


def _outputs(tool: str, result: Any) -> list[tuple[str, Any, bool]]:
    """(key, value, from_list) pairs a later call can use: fields of a dict, of a list's first item, or a number."""
    if isinstance(result, dict):
        return [(k, v, False) for k, v in result.items() if not isinstance(v, dict)]
    if isinstance(result, list) and result and isinstance(result[0], dict):
        return [(k, v, True) for k, v in result[0].items() if not isinstance(v, (dict, list))]
    if isinstance(result, list) and result and tool in LIST_KEYS:
        return [(LIST_KEYS[tool], result[0], True)]
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        return [("value", result, False)]
    return []


def _links(p: Planner, producer: str, result: Any) -> list[tuple[str, str, Any, str]]:
    """(consumer, parameter, value, reference phrase) for each tool that can take one of the producer's outputs."""
    links = []
    for key, value, from_list in _outputs(producer, result):
        for consumer, tool in p.tools.items():
            if consumer == producer:
                continue
            for pname in {key, *ALIASES.get(key, ())} & set(tool.parameters.get("required", [])):
                if _fits(tool.parameters["properties"][pname], value):
                    ref = p.rng.choice(REF_LIST if from_list else REF_ONE).format(label=key.replace("_", " "))
                    links.append((consumer, pname, value, ref))
    return links


def build_multi_step(p: Planner) -> Plan:
    """An output feeds the next call (search a flight, then book it with the returned id); two or three steps."""
    producer, arguments = p.pick(list(p.tools))
    steps, phrases, fed, outcome = [], [p.phrase(producer, arguments)], [], None
    step, outcomes = p.gold([(producer, arguments)])
    steps.append(step)
    name = producer
    for _ in range(p.rng.choice((1, 1, 1, 2))):
        links = _links(p, name, outcomes[0].result)
        p.rng.shuffle(links)
        for consumer, pname, value, ref in links:
            try:
                consumer_args = p.arguments(consumer, fixed={pname: value}, tries=3)
            except _Retry:
                continue
            step, outcomes = p.gold([(consumer, consumer_args)])
            steps.append(step)
            phrases.append(p.phrase(consumer, consumer_args, refs={pname: ref}))
            fed.append(pname)
            name, outcome = consumer, outcomes[0]
            break
        else:
            break
    if outcome is None:
        raise _Retry
    text = phrases[0] + "".join(p.rng.choice(CONNECTORS) + phrase for phrase in phrases[1:])
    used = [s.calls[0][0] for s in steps]
    return p.plan("multi_step", p.request(text), [*steps, _answer(outcomes, p.rng)], p.offer(used, p.rng.randint(0, 2)),
                  steps=len(steps), fed=fed)


def build_conditional(p: Planner) -> Plan:
    """The first result decides which of two follow-up calls to make."""
    producer, arguments = p.pick(list(p.tools))
    numeric = [(k, v) for k, v, from_list in _outputs(producer, p.probe([(producer, arguments)])[0].result)
               if not from_list and isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numeric:
        raise _Retry
    key, value = p.rng.choice(numeric)
    threshold = value * p.rng.uniform(0.5, 1.5) + p.rng.choice((-1, 1))
    threshold = round(threshold) if isinstance(value, int) or abs(threshold) >= 20 else round(threshold, 1)
    if threshold == value:
        raise _Retry
    first, _ = p.gold([(producer, arguments)])
    others = [n for n in p.tools if n != producer]
    yes_name, yes_args = p.pick(others)
    no_name, no_args = p.pick([n for n in others if n != yes_name])
    above = value > threshold
    chosen = (yes_name, yes_args) if above else (no_name, no_args)
    second, outcomes = p.gold([chosen])
    label = key.replace("_", " ")
    text = (p.request(p.phrase(producer, arguments)) + f" If the {label} is above {say(threshold)}, "
            + p.phrase(yes_name, yes_args) + "; otherwise, " + p.phrase(no_name, no_args) + ".")
    verdict = f"The {label} is {say(value)}, which is {'above' if above else 'not above'} {say(threshold)}. "
    answer = _answer(outcomes, p.rng)
    answer.content = verdict + (answer.content or "")
    return p.plan("conditional", text, [first, second, answer],
                  p.offer([producer, yes_name, no_name], p.rng.randint(0, 1)), steps=2,
                  branch="yes" if above else "no")


def _wrong_calls(p: Planner, name: str, arguments: dict[str, Any], offered: list[str]) -> list[tuple[str, dict]]:
    """Realistic slips: a missing required argument, an invented argument name, a tool name not offered, a bad
    value the tool rejects at run time (unknown id) or at validation (a number written as text)."""
    required = p.tools[name].parameters.get("required", [])
    options: list[tuple[str, dict[str, Any]]] = []
    if required:
        dropped = p.rng.choice(required)
        options.append((name, {k: v for k, v in arguments.items() if k != dropped}))
    if arguments:
        key = p.rng.choice(list(arguments))
        renamed = hallucinated_param_name(key, p.rng)
        options.append((name, {(renamed if k == key else k): v for k, v in arguments.items()}))
    unseen = [n for n in [*p.near_names(name), "get_" + name.split("_", 1)[-1], name.split("_", 1)[-1]]
              if n not in offered and n != name]
    if unseen:
        options.append((p.rng.choice(unseen), arguments))
    for key, value in arguments.items():
        if isinstance(value, str) and any(ch.isdigit() for ch in value):
            options.append((name, {**arguments, key: value[:-1] + ("7" if value[-1] != "7" else "8") + "9"}))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            options.append((name, {**arguments, key: f"{say(value)} units"}))
    return options


def build_error_recovery(p: Planner) -> Plan:
    """A wrong call, its real error feedback from the suite, then the corrected call (what MAE masks)."""
    name, arguments = p.pick(list(p.tools))
    offered = p.offer([name], p.rng.randint(0, 2))
    options = _wrong_calls(p, name, arguments, offered)
    p.rng.shuffle(options)
    for wrong in options:
        outcome = p.probe([wrong], offered)[0]
        if outcome.category.is_model_error and outcome.category is not FeedbackCategory.OTHER:
            break
    else:
        raise _Retry
    wrong_turn = ScriptedStep([wrong], wrong=outcome.category.value, expected=[outcome.content])
    step, outcomes = p.gold([(name, arguments)])
    return p.plan("error_recovery", p.request(p.phrase(name, arguments)), [wrong_turn, step,
                                                                          _answer(outcomes, p.rng)],
                  offered, steps=2, error=outcome.category.value)


def build_missing_info(p: Planner) -> Plan:
    """The query leaves out a required value; the assistant asks, the user answers, then the call."""
    candidates = [n for n, t in p.tools.items() if any(
        r in MISSING_LABELS and t.parameters["properties"][r].get("type") == "string"
        and all("'{" + r + "}'" not in template for template in TASKS[n]) for r in t.parameters.get("required", []))]
    name, arguments = p.pick(candidates)
    missing = p.rng.choice([r for r in p.tools[name].parameters["required"] if r in MISSING_LABELS
                            and isinstance(arguments[r], str)])
    label = MISSING_LABELS[missing]
    text = p.request(p.phrase(name, arguments, refs={missing: p.rng.choice(("a " + label, "some " + label))}))
    reply = p.rng.choice(TELL).format(v=arguments[missing], label=label)
    ask = ScriptedStep(content=p.rng.choice(ASK).format(label=label), reply=reply)
    step, outcomes = p.gold([(name, arguments)])
    return p.plan("missing_info", text, [ask, step, _answer(outcomes, p.rng)], p.offer([name], p.rng.randint(0, 2)),
                  missing=missing)


def build_irrelevance(p: Planner) -> Plan:
    """A request for another suite's task while only this suite's tools are offered: no call, a short refusal."""
    others = [name for name in SUITES if name != p.suite_name]
    asker = Planner(random.Random(p.rng.getrandbits(64)), others, p.executor)
    name, arguments = asker.pick(list(asker.tools))
    task = asker.phrase(name, arguments)
    offered = p.offer([], p.rng.randint(1, 4))
    refusal = ScriptedStep(content=p.rng.choice(REFUSE).format(task=task))
    return p.plan("irrelevance", asker.request(task), [refusal], offered, distractors=len(offered), asked=name)


BUILDERS: dict[str, Callable[[Planner], Plan]] = {
    "single": build_single, "parallel": build_parallel, "choice": build_choice, "irrelevance": build_irrelevance,
    "missing_info": build_missing_info, "multi_step": build_multi_step, "conditional": build_conditional,
    "error_recovery": build_error_recovery, "nested": build_nested,
}


# ---------------------------------------------------------------- playing plans in ToolEnv


def play(plan: Plan, env: ToolEnv) -> dict[str, Any]:
    """Run the plan in `ToolEnv`; returns the trajectory (tools, messages with feedback annotations, meta)."""
    env.reset(plan.task(f"{plan.suite}-{plan.category}"))
    categories: dict[str, str] = {}
    wrong_ids: dict[str, str] = {}
    for turn in plan.turns:
        if not turn.calls:
            env.step(ParsedOutput(content=turn.content))
            continue
        result = env.step(ParsedOutput(tool_calls=[ToolCall(name, arguments) for name, arguments in turn.calls]))
        contents = [o.content for o in result.feedback]
        if contents != turn.expected:
            raise RuntimeError(f"{plan.suite} episode differs from its plan: {contents} != {turn.expected}")
        for outcome in result.feedback:
            assert outcome.call is not None
            categories[outcome.call.id] = outcome.category.value
        if turn.wrong:
            wrong_ids[result.feedback[0].call.id] = turn.wrong  # type: ignore[union-attr]
    if not env.done:
        raise RuntimeError(f"{plan.suite} episode did not end after its plan ({env.termination})")
    messages = []
    for message in env.messages:
        message = {k: v for k, v in message.items() if k != "name"}
        if message["role"] == "assistant" and message.get("tool_calls"):
            message["content"] = None
            first_id = message["tool_calls"][0]["id"]
            if first_id in wrong_ids:
                message["erroneous"] = True
                message["feedback_category"] = wrong_ids[first_id]
        if message["role"] == "tool":
            message["feedback_category"] = categories[message["tool_call_id"]]
        messages.append(message)
    called = {name for turn in plan.turns if not turn.wrong for name, _ in turn.calls}
    meta = {"category": plan.category, "source": "suite", "suite": plan.suite, "seed": plan.seed,
            "domain": get_suite(plan.suite).domain, "distractors": len(set(plan.offered) - called), **plan.meta}
    return {"tools": env.tool_schemas(), "messages": messages, "meta": meta}


def suites_for(held_out: set[str] | None, split: str) -> list[str]:
    """The suites of one split: whole suites are held out, so the eval split shares no tool with training."""
    held = set(held_out or ()) & set(SUITES)
    if split == "eval":
        return sorted(held) if held_out is not None else sorted(SUITES)
    return sorted(set(SUITES) - held)


def make_plan(category: str, index: int, seed: int, split: str, suites: list[str], executor: Executor,
              accept: Callable[[Plan], bool] = lambda plan: True, attempts: int = 40) -> Plan:
    """A plan for example `index` of `category`, from its own seeded rng (retried with a new draw on failure)."""
    if category not in BUILDERS:
        raise SuiteSynthError(f"the suites do not build {category!r}; use one of {', '.join(SUITE_CATEGORIES)}")
    if not suites:
        raise SuiteSynthError(f"no suite left for split {split!r}; fix: hold out fewer (or, for eval, some) suites")
    for attempt in range(attempts):
        rng = random.Random(f"{seed}:{split}:suite:{category}:{index}:{attempt}")
        try:
            plan = BUILDERS[category](Planner(rng, suites, executor))
        except _Retry:
            continue
        if accept(plan):
            return plan
    raise RuntimeError(f"could not build a suite {category} example after {attempts} attempts")


def build_suite_record(category: str, index: int, seed: int, split: str, suites: list[str], env: ToolEnv,
                       seen: set[Any] | None = None) -> dict[str, Any]:
    """One trajectory played in `env`; `seen` holds de-duplication keys of earlier records (a repeat is redrawn)."""
    return unseen_plan(category, index, seed, split, suites, env, seen)[1]


def unseen_plan(category: str, index: int, seed: int, split: str, suites: list[str], env: ToolEnv,
                seen: set[Any] | None) -> tuple[Plan, dict[str, Any]]:
    """A plan and the trajectory it plays in `env` (play checks that it replays exactly), redrawn while the trajectory
    repeats one whose de-duplication key is in `seen` (None: no check); the key joins `seen`."""
    record: dict[str, Any] = {}

    def fresh(plan: Plan) -> bool:
        nonlocal record
        record = play(plan, env)
        return seen is None or dedupe_key(record) not in seen

    plan = make_plan(category, index, seed, split, suites, env.executor, accept=fresh)
    if seen is not None:
        seen.add(dedupe_key(record))
    return plan, record


def new_env() -> ToolEnv:
    return ToolEnv(executor=Executor(timeout_s=5.0, concurrent=False))


def synthesize_eval_tasks(n: int, seed: int = 0, held_out: set[str] | None = None,
                          mix: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """`n` multi-turn eval tasks (`env.Task` dicts) on the held-out suites (all suites when `held_out` is None).

    Each task holds the opening messages, the offered tool names, `gold_calls` per assistant step, `gold_answer`,
    `follow_ups` (missing_info) and `gold_state` (the suite's state after the gold episode). Load one with
    `env.Task.from_dict` and step a policy through `ToolEnv`. No two tasks are the same episode (tools, user text and
    gold calls): a repeat is redrawn, so a large set measures `n` distinct items.
    """
    weights = dict(mix or EVAL_MIX)
    unknown = set(weights) - set(EVAL_CATEGORIES)
    if unknown:
        raise SuiteSynthError(f"eval tasks cannot be {sorted(unknown)}; use some of {', '.join(EVAL_CATEGORIES)}")
    suites = suites_for(held_out, "eval")
    env = new_env()
    tasks = []
    seen: set[Any] = set()
    for category, count in allocate(n, {k: v / sum(weights.values()) for k, v in weights.items()}).items():
        for index in range(count):
            plan, _ = unseen_plan(category, index, seed, "eval", suites, env, seen)
            task = plan.task(f"eval-{seed}-{category}-{index:05d}")
            run_gold_episode(env, task)
            task.gold_state = env.suite.state()
            tasks.append(task.to_dict())
    random.Random(f"{seed}:eval-order").shuffle(tasks)
    return tasks


__all__ = ["BUILDERS", "EVAL_CATEGORIES", "SUITE_CATEGORIES", "Plan", "Planner", "ScriptedStep", "SuiteSynthError",
           "build_suite_record", "make_plan", "new_env", "play", "suites_for", "synthesize_eval_tasks"]
