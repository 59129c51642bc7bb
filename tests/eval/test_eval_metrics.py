from __future__ import annotations

import pytest

from qwen_tool.codec.types import ToolCall
from qwen_tool.eval import metrics as m


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


GOLD = call("get_weather", city="Paris", days=3)


def test_ts_pi_cf_ladder() -> None:
    wrong_tool = call("get_time", city="Paris", days=3)
    wrong_keys = call("get_weather", city="Paris")
    wrong_value = call("get_weather", city="Rome", days=3)
    exact = call("get_weather", days=3.0, city="Paris")  # 3.0 == 3, key order irrelevant
    assert (m.tool_selection(wrong_tool, GOLD), m.parameter_identification(wrong_tool, GOLD)) == (False, False)
    assert (m.tool_selection(wrong_keys, GOLD), m.parameter_identification(wrong_keys, GOLD)) == (True, False)
    assert (m.parameter_identification(wrong_value, GOLD), m.content_filling(wrong_value, GOLD)) == (True, False)
    assert m.content_filling(exact, GOLD)
    # No call when one is due fails everything; no call when none is due passes everything.
    assert not m.tool_selection(None, GOLD)
    assert m.content_filling(None, None)
    assert not m.tool_selection(exact, None)


def test_single_turn_scores_hand_derived() -> None:
    # 4 pairs: wrong tool (TS0 PI0 CF0), wrong keys (1 0 0), wrong value (1 1 0), exact (1 1 1)
    # TS = 3/4, PI = 2/4, CF = 1/4
    pairs = [
        (call("get_time"), GOLD),
        (call("get_weather", city="Paris"), GOLD),
        (call("get_weather", city="Rome", days=3), GOLD),
        (call("get_weather", city="Paris", days=3), GOLD),
    ]
    assert m.single_turn_scores(pairs) == {"TS": 0.75, "PI": 0.5, "CF": 0.25}
    assert m.single_turn_scores([]) == {"TS": 0.0, "PI": 0.0, "CF": 0.0}


def test_de_ce_hand_derived() -> None:
    # 8 calls: 2 ok, 1 instability (nobody's error), 1 tool_hallucination + 1 parameter_missing (DE: 2),
    # 2 call_failure + 1 "other" (CE: 3). DE = 2/8 = 0.25, CE = 3/8 = 0.375.
    cats = ["ok", "ok", "tool_instability", "tool_hallucination", "parameter_missing",
            "call_failure", "call_failure", "other"]
    assert m.documentation_error_rate(cats) == 0.25
    assert m.call_error_rate(cats) == 0.375
    assert m.documentation_error_rate([]) == 0.0


def test_valid_answer_and_success_and_average_calls() -> None:
    # VA: 2 of 3 episodes valid = 2/3; average calls: (0 + 2 + 7) / 3 = 3
    assert m.valid_answer_rate([True, False, True]) == pytest.approx(2 / 3)
    assert m.end_to_end_success([False, False, True, True]) == 0.5
    assert m.average_calls([0, 2, 7]) == 3.0


def test_call_timing_hand_derived() -> None:
    # called:  T T T F F F
    # gold:    T T F T F F
    # both = 2, called = 3 → precision 2/3; gold calls = 3 → recall 2/3; neither = 2, gold silent = 3 → 2/3
    # change the last gold to T: gold calls 4, recall 2/4; silent gold = 2 (idx 2, 4), neither = 1 (idx 4) → 1/2
    called = [True, True, True, False, False, False]
    assert m.call_timing(called, [True, True, False, True, False, False]) == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "abstain_recall": 2 / 3})
    assert m.call_timing(called, [True, True, False, True, False, True]) == pytest.approx(
        {"precision": 2 / 3, "recall": 0.5, "abstain_recall": 0.5})
    with pytest.raises(ValueError):
        m.call_timing([True], [])


def test_parameter_accuracy_pairs_calls_by_name() -> None:
    # example 1: gold f(a=1,b=2), g(c=3); predicted g(c=3), f(a=1,b=5) → a, c right: 2 of 3
    # example 2: gold f(a=1); predicted nothing → 0 of 1
    # micro: (2 + 0) / (3 + 1) = 0.5
    ex1 = ([call("g", c=3), call("f", a=1, b=5)], [call("f", a=1, b=2), call("g", c=3)])
    ex2 = ([], [call("f", a=1)])
    assert m.matched_arguments(*ex1) == (2, 3)
    assert m.parameter_accuracy([ex1, ex2]) == 0.5
    # one predicted call cannot serve two gold calls: gold f(a=1), f(a=1); predicted f(a=1) → 1 of 2
    assert m.matched_arguments([call("f", a=1)], [call("f", a=1), call("f", a=1)]) == (1, 2)


def test_same_name_parallel_calls_in_swapped_order_are_exact() -> None:
    # gold f(a=1, b=2), f(a=3, b=4); predicted the same two calls, swapped → 4 of 4 arguments, no error category.
    # (First-come pairing took f(a=3, b=4) for f(a=1, b=2) and the reverse: 0 of 4.)
    first, second = call("f", a=1, b=2), call("f", a=3, b=4)
    assert m.matched_arguments([second, first], [first, second]) == (4, 4)
    assert m.parameter_accuracy([([second, first], [first, second])]) == 1.0
    assert m.decision_error([second, first], [first, second]) is None


def test_calls_are_paired_for_the_most_reproduced_arguments() -> None:
    # gold g0 = f(a=1, b=2), g1 = f(a=3, c=4); predicted p0 = f(a=3, c=5), p1 = f(a=1, b=7); no call is exact.
    # Reproduced: p0·g0 = 0, p1·g1 = 0 (first-come: 0 of 4); p0·g1 = 1 (a), p1·g0 = 1 (a) → best 2 of 4, either order.
    # Best pairs g0↔p1 (b: 7 vs 2), g1↔p0 (c: 5 vs 4): keys agree, first differing value in gold order is a number.
    # (First-come paired g0↔p0, where b is missing: missing_argument.)
    g0, g1 = call("f", a=1, b=2), call("f", a=3, c=4)
    p0, p1 = call("f", a=3, c=5), call("f", a=1, b=7)
    for predicted in ([p0, p1], [p1, p0]):
        assert m.matched_arguments(predicted, [g0, g1]) == (2, 4)
        assert m.decision_error(predicted, [g0, g1]) == "value_number"


def test_accuracy_by_category_and_mean() -> None:
    # simple: 1 of 2 = 0.5; parallel: 3 of 3 = 1.0; unweighted mean = 0.75 (micro would be 4/5)
    verdicts = [("simple", True), ("simple", False), ("parallel", True), ("parallel", True), ("parallel", True)]
    acc = m.accuracy_by_category(verdicts)
    assert acc == {"parallel": 1.0, "simple": 0.5}
    assert m.unweighted_mean(acc.values()) == 0.75


def test_decision_error_names_each_kind_of_miss() -> None:
    weather = call("get_weather", city="Paris", days=3)
    time_ = call("get_time", city="Paris")
    assert m.decision_error([], []) is None
    assert m.decision_error([time_, weather], [weather, time_]) is None  # parallel calls are unordered
    assert m.decision_error([call("get_weather", city="Paris", days=3.0)], [weather]) is None  # 3.0 == 3
    assert m.decision_error([weather], []) == "unneeded_call"
    assert m.decision_error([], [weather]) == "missed_call"
    assert m.decision_error([weather], [weather, time_]) == "call_count"
    assert m.decision_error([time_], [weather]) == "wrong_tool"
    # a key missing outranks a key added, which outranks a wrong value
    assert m.decision_error([call("get_weather", city="Rome", unit="c")], [weather]) == "missing_argument"
    assert m.decision_error([call("get_weather", city="Rome", days=3, unit="c")], [weather]) == "extra_argument"
    # the exact call of a parallel pair is set aside; the other one is judged
    assert m.decision_error([weather, call("get_time", city=" Paris")], [time_, weather]) == "value_whitespace"


@pytest.mark.parametrize(("predicted", "gold", "kind"), [
    (" Harbor City Comets", "Harbor City Comets", "value_whitespace"),
    ("LIMA", "Lima", "value_case"),
    ("the Magna Carta", "the signing of the Magna Carta", "value_string"),
    (False, True, "value_boolean"),
    (0, False, "value_boolean"),  # 0 == False in Python, but a bool on either side names the kind
    (0.06, 0.6, "value_number"),
    ([" lentils", "quinoa"], ["lentils", "quinoa"], "value_whitespace"),  # first differing item
    (["lentils"], ["lentils", "quinoa"], "value_other"),
    ({"a": 1}, {"a": 2}, "value_other"),
])
def test_value_error_kinds(predicted, gold, kind) -> None:
    assert m.value_error(predicted, gold) == kind
