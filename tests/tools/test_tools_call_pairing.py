"""`best_same_name_pairs`: the order-free pairing rewards and eval share. Values derived by hand in the comments."""

from __future__ import annotations

from qwen_tool.codec.types import ToolCall
from qwen_tool.tools.call_pairing import best_same_name_pairs


def agree(p: ToolCall, g: ToolCall) -> float:
    return float(p.arguments == g.arguments)


F1, F2 = ToolCall(name="f", arguments={"x": 1}), ToolCall(name="f", arguments={"x": 2})
G = ToolCall(name="g", arguments={})


def test_same_name_only_the_equal_arguments_together_in_gold_order():
    # f2↔f2 and f1↔f1 score 1 each (2 in all); the crossed pairing scores 0; g has no gold partner.
    assert best_same_name_pairs([F2, G, F1], [F1, F2], agree) == [(2, 0), (0, 1)]
    assert best_same_name_pairs([F1, G, F2], [F2, F1], agree) == [(2, 0), (0, 1)]


def test_as_many_pairs_as_the_names_allow():
    # Even when every pair scores below zero; and no pair across names.
    assert best_same_name_pairs([F1], [F2], lambda p, q: -5.0) == [(0, 0)]
    assert best_same_name_pairs([G], [F1, F2], agree) == []
