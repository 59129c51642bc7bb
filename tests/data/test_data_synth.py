"""Synthesis: determinism, the requested mix, valid records, executable gold calls, and no BFCL overlap."""

from __future__ import annotations

import json
import random
import re

import pytest

from qwen_tool.codec.types import ToolCall
from qwen_tool.data.catalog import CONCEPTS, name_variants
from qwen_tool.data.kinds import Enum, Num, NumDict, Param, Percent
from qwen_tool.data.mix import allocate
from qwen_tool.data.schema import to_jsonl_line, validate_trajectory
from qwen_tool.data.synth import CATEGORIES, CHAT, SynthError, held_out_split, parse_mix, synthesize
from qwen_tool.data.unseen import DrawnParam, _generic_clause, draw_style, draw_tool
from qwen_tool.env.bfcl_multi_turn import bfcl_root
from qwen_tool.env.suites import SUITES
from qwen_tool.tools import Executor, Tool


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return synthesize(600, seed=0)


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _bfcl_names_and_questions() -> tuple[set[str], set[str]]:
    names: set[str] = set()
    questions: set[str] = set()
    for path in (bfcl_root() / "data").rglob("*.json"):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(entry, dict):
                continue
            for function in entry.get("function", []) or []:
                if isinstance(function, dict) and "name" in function:
                    names.add(function["name"])
            for turn in entry.get("question", []) or []:
                for message in turn if isinstance(turn, list) else []:
                    if isinstance(message, dict) and isinstance(message.get("content"), str):
                        questions.add(_normalise(message["content"]))
    return names, questions


def test_no_tool_name_or_query_comes_from_bfcl(records: list[dict]) -> None:
    bfcl_names, bfcl_questions = _bfcl_names_and_questions()
    assert len(bfcl_names) > 1000 and len(bfcl_questions) > 1000  # the check really read BFCL
    every_possible_name = {name for concept in CONCEPTS for name in name_variants(concept)}
    every_possible_name |= {tool.name for suite in SUITES.values() for tool in suite.tool_specs()}
    assert not every_possible_name & bfcl_names
    used_names = {tool["function"]["name"] for r in records for tool in r["tools"]}
    assert not used_names & bfcl_names
    # A bare follow-up like "2000" may coincide with a BFCL turn; a sentence of four or more words must not.
    queries = {_normalise(m["content"]) for r in records for m in r["messages"] if m["role"] == "user"}
    queries |= {_normalise(question) for question, _ in CHAT}
    sentences = {q for q in queries if len(q.split()) >= 4}
    assert len(sentences) > 400
    assert not sentences & bfcl_questions
    suite_sentences = {_normalise(m["content"]) for r in records if r["meta"]["source"] == "suite"
                       for m in r["messages"] if m["role"] == "user" and len(m["content"].split()) >= 4}
    assert len(suite_sentences) > 80  # the suite queries are really part of the check


def test_same_seed_same_bytes_and_different_seed_differs() -> None:
    first = [to_jsonl_line(r) for r in synthesize(120, seed=3)]
    again = [to_jsonl_line(r) for r in synthesize(120, seed=3)]
    other = [to_jsonl_line(r) for r in synthesize(120, seed=4)]
    assert first == again
    assert len(set(first) & set(other)) < 5


def test_every_record_validates_and_mix_matches(records: list[dict]) -> None:
    for record in records:
        assert validate_trajectory(record) == json.loads(to_jsonl_line(validate_trajectory(record)))
    counts = {c: sum(r["meta"]["category"] == c for r in records) for c in CATEGORIES}
    expected = allocate(600, parse_mix(None))
    assert counts == {c: expected.get(c, 0) for c in CATEGORIES}


def test_custom_mix_is_met_within_two_points() -> None:
    mix = parse_mix("single=0.5,irrelevance=0.3,error_recovery=0.2")
    data = synthesize(97, seed=1, mix=mix)
    for category, share in mix.items():
        got = sum(r["meta"]["category"] == category for r in data) / len(data)
        assert abs(got - share) <= 0.02
    with pytest.raises(SynthError, match="unknown categories"):
        parse_mix("singel=1")


def _replay(record: dict) -> list[tuple[bool, dict]]:
    """Re-execute every assistant call against the offered schemas: (accepted, message) per call turn.

    The stub handler is trusted (`isolate=False`): the replay checks validation, not the sandbox."""
    tools = {t["function"]["name"]: Tool.from_schema(t, handler=lambda **_: {"ok": True}, isolate=False)
             for t in record["tools"]}
    executor = Executor(concurrent=False)
    results = []
    for message in record["messages"]:
        for call in message.get("tool_calls") or []:
            outcome = executor.execute(
                [ToolCall(call["function"]["name"], json.loads(call["function"]["arguments"]))], tools)[0]
            results.append((outcome.ok, message, outcome))
    return results


def test_gold_calls_execute_and_error_turns_carry_their_category(records: list[dict]) -> None:
    """Unseen-tool records replayed on their schemas (suite records replay in ToolEnv: test_data_suite_synth)."""
    seen_error_categories = set()
    for record in records:
        if record["meta"]["source"] != "unseen":
            continue
        for ok, message, outcome in _replay(record):
            if message.get("erroneous"):
                assert not ok
                assert message["feedback_category"] == outcome.category.value
                assert record["meta"]["category"] == "error_recovery"
                seen_error_categories.add(outcome.category.value)
            else:
                assert ok, (record["meta"], outcome.content)
    assert {"parameter_missing", "parameter_hallucination", "tool_hallucination"} <= seen_error_categories


def test_irrelevance_and_chat_never_call(records: list[dict]) -> None:
    for record in records:
        if record["meta"]["category"] in ("irrelevance", "chat"):
            assert not any(m.get("tool_calls") for m in record["messages"])
            assert record["messages"][-1]["role"] == "assistant"


def test_every_decline_opens_with_the_same_token(records: list[dict]) -> None:
    """Greedy decoding weighs one opener against `<tool_call>`: declines split over several openers would lose."""
    from qwen_tool.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    openers = set()
    for record in records:
        if record["meta"]["category"] == "irrelevance":
            openers.add(tokenizer(record["messages"][-1]["content"], add_special_tokens=False)["input_ids"][0])
    assert len(openers) == 1 and tokenizer.decode(list(openers)) == "I"


def test_gold_values_are_stated_in_the_query(records: list[dict]) -> None:
    """Strings in a single call's arguments appear verbatim in the user's words (the model copies, never invents)."""
    checked = 0
    for record in records:
        if record["meta"]["category"] != "single":
            continue
        users = " ".join(m["content"] for m in record["messages"] if m["role"] == "user")
        call = next(m for m in record["messages"] if m.get("tool_calls"))["tool_calls"][0]
        for value in json.loads(call["function"]["arguments"]).values():
            if isinstance(value, str):
                assert value in users, (value, users)
                checked += 1
    assert checked > 20


def test_free_form_dicts_are_objects_said_as_literals_or_pairs() -> None:
    kind = NumDict(("math", "art", "music"), 40, 100)
    rng = random.Random(0)
    value = kind.sample(rng)
    assert isinstance(value, dict) and set(value) <= {"math", "art", "music"} and len(value) >= 2
    assert kind.schema() == {"type": "object", "additionalProperties": {"type": "integer"}}
    said = [kind.say(rng, {"math": 90, "art": 75}) for _ in range(200)]
    assert "{'math': 90, 'art': 75}" in said and '{"math": 90, "art": 75}' in said
    assert any(s.startswith("math 90") or s.startswith("90 for math") for s in said)


def test_word_values_sometimes_stand_before_their_label() -> None:
    """ "ascending order", "NYSE exchange": a generic clause may put a word value before its label; numbers never."""
    word = DrawnParam("exchange", Param(("exchange",), "Exchange.", Enum(("NYSE", "LSE"))))
    number = DrawnParam("height", Param(("height",), "Height.", Num(1, 9)))
    clauses = {_generic_clause([(word, "NYSE")], random.Random(seed)) for seed in range(300)}
    assert {"with NYSE exchange", "given NYSE exchange"} <= clauses
    assert "with exchange NYSE" in clauses
    clauses = {_generic_clause([(number, "5")], random.Random(seed)) for seed in range(300)}
    assert not any("5 height" in c for c in clauses) and "with height 5" in clauses


def test_held_out_split_shares_no_tool_concept() -> None:
    held = {c.stem for c in CONCEPTS[::7]}
    train = synthesize(150, seed=0, held_out=held, split="train")
    test = synthesize(60, seed=0, held_out=held, split="eval", mix="single=1")
    assert {r["meta"]["source"] for r in test} == {"unseen"}  # no suite is held out, so eval takes none
    def stems(data: list[dict]) -> set[str]:
        found = set()
        for record in data:
            if record["meta"]["source"] != "unseen":
                continue
            for tool in record["tools"]:
                name = tool["function"]["name"]
                found |= {c.stem for c in CONCEPTS if c.stem in name or _camel(c.stem) in name.lower()}
        return found
    assert stems(test) <= held
    assert not stems(train) & held


def _camel(stem: str) -> str:
    return stem.replace("_", "")


def test_held_out_split_with_suites_shares_no_tool_name() -> None:
    held = held_out_split(0.25, seed=0)
    held_suites = held & set(SUITES)
    assert 1 <= len(held_suites) < len(SUITES) and held - held_suites
    train = synthesize(300, seed=0, held_out=held, split="train")
    test = synthesize(150, seed=0, held_out=held, split="eval")
    assert {r["meta"]["suite"] for r in test if r["meta"]["source"] == "suite"} == held_suites
    assert not {r["meta"]["suite"] for r in train if r["meta"]["source"] == "suite"} & held_suites
    def names(data: list[dict]) -> set[str]:
        return {tool["function"]["name"] for record in data for tool in record["tools"]}
    assert not names(train) & names(test)


def test_suite_share_zero_is_the_unseen_generator_alone_and_share_sets_the_sources() -> None:
    alone = synthesize(100, seed=2, suite_share=0)
    assert {r["meta"]["source"] for r in alone} == {"unseen"}
    mixed = synthesize(100, seed=2, suite_share=0.3)
    assert sum(r["meta"]["source"] == "suite" for r in mixed) == 30
    assert [r["meta"]["category"] for r in sorted(alone, key=lambda r: r["meta"]["category"])] == \
        [r["meta"]["category"] for r in sorted(mixed, key=lambda r: r["meta"]["category"])]


def test_a_suite_whose_tool_a_held_out_concept_could_name_stays_out_of_train() -> None:
    assert "fetch_stock_quote" in name_variants(next(c for c in CONCEPTS if c.stem == "stock_quote"))
    train = synthesize(200, seed=0, held_out={"stock_quote"})
    suites = {r["meta"]["suite"] for r in train if r["meta"]["source"] == "suite"}
    assert suites and "finance" not in suites


def test_whole_percentages_are_ints_and_fraction_rates_sometimes_drop_the_hint() -> None:
    """A whole 5% is gold 5 (never 5.0, which would teach ".0" on integers); a fraction-valued rate's description
    leaves the "decimal fraction" hint out about half the time (fraction is the default reading), a percent-valued
    one always keeps its "in percent" hint."""
    rng = random.Random(0)
    values = [Percent(1, 12).sample(rng) for _ in range(400)]
    assert all(type(v) is int for v in values if float(v).is_integer())
    assert any(type(v) is int for v in values) and any(type(v) is float for v in values)

    def descriptions(as_fraction: bool) -> list[str]:
        concept = next(c for c in CONCEPTS if any(isinstance(p.kind, Percent) and p.kind.as_fraction == as_fraction
                                                  for p in c.params))
        out = []
        for seed in range(200):
            draw_rng = random.Random(seed)
            tool = draw_tool(concept, draw_rng, draw_style(draw_rng, concept.domain))
            for param in tool.params:
                if isinstance(param.spec.kind, Percent):
                    out.append(tool.schema["function"]["parameters"]["properties"][param.name]["description"])
        return out

    fraction_hinted = sum("decimal fraction" in d for d in descriptions(True)) / 200
    assert 0.3 < fraction_hinted < 0.7
    assert all("in percent" in d for d in descriptions(False))


def test_short_units_are_sometimes_glued_to_the_number() -> None:
    """Users write "5m" and "300K"; the gold value stays the bare number, so the model learns to strip the unit."""
    kind = Num(1, 60, 1, "meters", "m")
    rng = random.Random(0)
    said = {kind.say(rng, 12) for _ in range(300)}
    assert {"12m", "12 m", "12 meters", "12"} <= said
