"""The start-up check that the data's answers fit one sampled turn (`max_new_tokens`): an answer longer than the cap
is cut in every rollout, so RL would teach shorter answers."""

from __future__ import annotations

import logging

from qwen_tool.codec import get_codec
from qwen_tool.codec.base import normalise_calls
from qwen_tool.config import RLTrainingConfig
from qwen_tool.rl.run_setup import check_turn_cap
from qwen_tool.testing import tiny_tokenizer

CODEC = get_codec("hermes")


def _call(city: str) -> dict:
    return {"type": "function", "function": {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'}}


def _record(category: str, calls: list[dict], erroneous: list[dict] | None = None) -> dict:
    messages = [{"role": "user", "content": "Weather?"}]
    if erroneous:
        messages += [{"role": "assistant", "content": "", "tool_calls": erroneous, "erroneous": True},
                     {"role": "tool", "content": "{\"error\": \"unknown city\"}"}]
    messages.append({"role": "assistant", "content": "", "tool_calls": calls})
    return {"tools": [], "messages": messages, "meta": {"category": category}}


def _tokens(calls: list[dict]) -> int:
    return len(tiny_tokenizer()(CODEC.render_assistant(None, normalise_calls(calls)).text,
                                add_special_tokens=False)["input_ids"])


PARALLEL = [_call("Oslo"), _call("Bergen"), _call("Tromsø")]
SINGLE = [_call("Oslo")]


def test_the_cap_counts_the_end_of_turn_token(caplog) -> None:
    need = _tokens(PARALLEL) + 1  # the answer's tokens, then the end-of-turn token
    data = [_record("parallel", PARALLEL), _record("single", SINGLE)]
    assert check_turn_cap(RLTrainingConfig(max_new_tokens=need), data, tiny_tokenizer(), CODEC) == 0
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="qwen_tool"):
        assert check_turn_cap(RLTrainingConfig(max_new_tokens=need - 1), data, tiny_tokenizer(), CODEC) == 1
    message = caplog.records[-1].getMessage()
    assert f"1 of 2 answers in data= need more than max_new_tokens={need - 1}" in message
    assert f"(parallel 1/1; the longest {need})" in message
    assert message.endswith(f"fix: set max_new_tokens={need} or more")


def test_erroneous_turns_are_not_answers_to_fit() -> None:
    need = _tokens(SINGLE) + 1
    record = _record("error_recovery", SINGLE, erroneous=PARALLEL)  # the long turn is the recorded mistake
    assert check_turn_cap(RLTrainingConfig(max_new_tokens=need), [record], tiny_tokenizer(), CODEC) == 0
    assert check_turn_cap(RLTrainingConfig(max_new_tokens=need - 1), [record], tiny_tokenizer(), CODEC) == 1
