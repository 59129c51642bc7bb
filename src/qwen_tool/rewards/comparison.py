"""Reward designs from other tool-RL work, for comparison and ablation: ToolRL and Tool-N1 (docs/references.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from qwen_tool.rewards.types import Call, RewardResult, as_calls, canonical
from qwen_tool.tools.call_pairing import best_same_name_pairs


def multiset_jaccard(a: Sequence[Any], b: Sequence[Any]) -> float:
    """J(A, B) = |A ∩ B| / (|A| + |B| − |A ∩ B|) over multisets; J(∅, ∅) = 1 (nothing to get wrong)."""
    if not a and not b:
        return 1.0
    common = sum((Counter(a) & Counter(b)).values())
    return common / (len(a) + len(b) - common)


def toolrl_reward(predicted: Iterable[Any] | None, gold: Iterable[Any] | None, *, format_ok: bool = True,
                  unparsable: bool = False) -> RewardResult:
    """ToolRL: R = R_format + R_correct, R_format ∈ {0, 1}, R_correct ∈ [−3, 3].

    R_correct = 0 with no gold call; −3 when the output could not be parsed; +3 on an exact (multiset) match; else
    S = J(names) + Σ_gold g [J(keys(g), keys(p_g)) + #{k: p_g[k] = g[k]}], S_max = 1 + Σ_g (1 + |keys(g)|), and
    R_correct = 6·S / S_max − 3, where p_g is the predicted call of the same name paired with g (none: the term is 0).
    ToolRL's code pairs greedily, gold call by gold call, which can score the same calls differently in another
    order; here the pairing is the one with the largest S (`best_same_name_pairs`), so the order of parallel calls
    does not matter.
    """
    r_format = 1.0 if format_ok and not unparsable else 0.0
    pred, gold_calls = as_calls(predicted), as_calls(gold)
    if not gold_calls:
        r_correct = 0.0
    elif unparsable:
        r_correct = -3.0
    elif _signature(pred) == _signature(gold_calls):
        r_correct = 3.0
    else:
        pairs = best_same_name_pairs(pred, gold_calls, _argument_score)
        score = multiset_jaccard([c.name for c in pred], [c.name for c in gold_calls])
        score += sum(_argument_score(pred[i], gold_calls[j]) for i, j in pairs)
        best_possible = 1.0 + sum(1 + len(g.arguments) for g in gold_calls)
        r_correct = 6.0 * score / best_possible - 3.0
    return RewardResult(r_format + r_correct, {"toolrl_format": r_format, "toolrl_correct": r_correct})


def tool_n1_reward(predicted: Iterable[Any] | None, gold: Iterable[Any] | None, *, format_ok: bool = True
                   ) -> RewardResult:
    """Tool-N1: R = 1 if the format holds and {(name, canonical JSON args)} equals gold as multisets, else 0."""
    match = format_ok and _signature(as_calls(predicted)) == _signature(as_calls(gold))
    return RewardResult(float(match), {"tool_n1": float(match)})


def _argument_score(predicted: Call, gold: Call) -> float:
    """J(keys(gold), keys(predicted)) + #{k: predicted[k] = gold[k]}: one pair's share of ToolRL's S."""
    score = multiset_jaccard(list(gold.arguments), list(predicted.arguments))
    return score + sum(1 for k, v in gold.arguments.items() if k in predicted.arguments and predicted.arguments[k] == v)


def _signature(calls: Sequence[Any]) -> Counter[tuple[str, str]]:
    return Counter((c.name, canonical(c.arguments)) for c in calls)
