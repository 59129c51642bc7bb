"""Evaluation metrics as pure functions: each takes plain predictions and gold data and returns a number in [0, 1]
(or a count), with its definition in the docstring. Percentages are a presentation matter left to the report.

A call is anything with `.name` and `.arguments` (e.g. `qwen_tool.codec.ToolCall`); `None` means "no call".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from qwen_tool.tools.call_pairing import best_same_name_pairs
from qwen_tool.tools.feedback import FeedbackCategory


class CallLike(Protocol):
    name: str
    arguments: dict[str, Any]


DOCUMENTATION_ERRORS = frozenset({FeedbackCategory.TOOL_HALLUCINATION, FeedbackCategory.PARAMETER_HALLUCINATION,
                                  FeedbackCategory.PARAMETER_MISSING})
"""Feedback categories (the tools room's taxonomy; its values are the strings the metrics take) that show the model
misread the tool documentation: DE counts these."""
NOT_THE_MODELS_FAULT = frozenset(category for category in FeedbackCategory if not category.is_model_error)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, and 0.0 for an empty denominator (no evidence scores nothing, never NaN)."""
    return numerator / denominator if denominator else 0.0


# ---------------------------------------------------------------- single turn (RoTBench)


def tool_selection(predicted: CallLike | None, gold: CallLike | None) -> bool:
    """TS: the predicted tool name equals the gold name. With no gold call, TS holds iff no call was made."""
    if gold is None or predicted is None:
        return gold is None and predicted is None
    return predicted.name == gold.name


def parameter_identification(predicted: CallLike | None, gold: CallLike | None) -> bool:
    """PI: TS and set(predicted argument keys) == set(gold argument keys)."""
    if not tool_selection(predicted, gold):
        return False
    if gold is None or predicted is None:
        return True
    return set(predicted.arguments) == set(gold.arguments)


def content_filling(predicted: CallLike | None, gold: CallLike | None) -> bool:
    """CF: PI and predicted.arguments[k] == gold.arguments[k] for every key k (Python equality, so 3 == 3.0)."""
    if not parameter_identification(predicted, gold):
        return False
    if gold is None or predicted is None:
        return True
    return all(predicted.arguments[key] == value for key, value in gold.arguments.items())


def single_turn_scores(pairs: Iterable[tuple[CallLike | None, CallLike | None]]) -> dict[str, float]:
    """Mean TS, PI, CF over (predicted, gold) pairs: TS = (1/N) Σ 1[TS_i], and so on. CF ≤ PI ≤ TS by construction."""
    pairs = list(pairs)
    return {
        "TS": _ratio(sum(tool_selection(p, g) for p, g in pairs), len(pairs)),
        "PI": _ratio(sum(parameter_identification(p, g) for p, g in pairs), len(pairs)),
        "CF": _ratio(sum(content_filling(p, g) for p, g in pairs), len(pairs)),
    }


def decision_error(predicted: Sequence[CallLike], gold: Sequence[CallLike]) -> str | None:
    """What kind of miss one decision is; None when its calls equal the gold calls as a multiset (values by ==).

    The first test that holds names the miss: missed_call (a call was due, none came); unneeded_call (calls where none
    was due); call_count; wrong_tool (the names differ as multisets). Otherwise the calls with an exact twin on the
    other side are set aside (a multiset difference, so order-free), and the rest are paired order-free with the
    same-name pairing that reproduces the most gold arguments (`reproduced_arguments`, `best_same_name_pairs`); the
    pairs give: missing_argument (a gold key absent), then extra_argument (a key gold lacks), then the first differing
    value in gold key order (see `value_error`). Setting exact twins aside first loses no reproduced argument: some
    best pairing keeps every exact pair.
    """
    if not gold:
        return "unneeded_call" if predicted else None
    if not predicted:
        return "missed_call"
    if len(predicted) != len(gold):
        return "call_count"
    if sorted(call.name for call in predicted) != sorted(call.name for call in gold):
        return "wrong_tool"
    unused = list(range(len(predicted)))
    inexact = []
    for gold_call in gold:
        exact = next((i for i in unused if predicted[i].name == gold_call.name
                      and predicted[i].arguments == gold_call.arguments), None)
        if exact is None:
            inexact.append(gold_call)
        else:
            unused.remove(exact)
    rest = [predicted[i] for i in unused]
    pairs = [(rest[i].arguments, inexact[j].arguments)
             for i, j in best_same_name_pairs(rest, inexact, reproduced_arguments)]
    if not pairs:
        return None
    if any(set(gold_args) - set(args) for args, gold_args in pairs):
        return "missing_argument"
    if any(set(args) - set(gold_args) for args, gold_args in pairs):
        return "extra_argument"
    return next(value_error(args[key], value) for args, gold_args in pairs
                for key, value in gold_args.items() if args[key] != value)


def value_error(predicted: Any, gold: Any) -> str:
    """The kind of one wrong argument value: value_boolean (either side is a bool), value_whitespace (strings equal
    once stripped), value_case (strings equal ignoring case), value_string, value_number; a list of the gold's length
    takes the kind of its first differing item; anything else is value_other."""
    if isinstance(predicted, bool) or isinstance(gold, bool):
        return "value_boolean"
    if isinstance(predicted, str) and isinstance(gold, str):
        if predicted.strip() == gold.strip():
            return "value_whitespace"
        return "value_case" if predicted.casefold() == gold.casefold() else "value_string"
    if isinstance(predicted, int | float) and isinstance(gold, int | float):
        return "value_number"
    if isinstance(predicted, list) and isinstance(gold, list) and len(predicted) == len(gold):
        return next((value_error(p, g) for p, g in zip(predicted, gold, strict=True) if p != g), "value_other")
    return "value_other"


# ---------------------------------------------------------------- multi turn (ToolEyes-style)


def documentation_error_rate(call_categories: Sequence[str]) -> float:
    """DE = #calls in {tool_hallucination, parameter_hallucination, parameter_missing} / #calls (lower is better)."""
    return _ratio(sum(c in DOCUMENTATION_ERRORS for c in call_categories), len(call_categories))


def call_error_rate(call_categories: Sequence[str]) -> float:
    """CE = #calls with any other error / #calls (lower is better).

    "Other" means not "ok", not a documentation error, and not "tool_instability" (network/5xx/timeouts are the
    tool's fault, not the model's: docs/references.md, TL-Training). Every unknown category counts as an error.
    """
    return _ratio(
        sum(c not in DOCUMENTATION_ERRORS and c not in NOT_THE_MODELS_FAULT for c in call_categories),
        len(call_categories),
    )


def valid_answer_rate(episode_valid: Sequence[bool]) -> float:
    """VA = #episodes ending in a valid final answer / #episodes (higher is better)."""
    return _ratio(sum(bool(v) for v in episode_valid), len(episode_valid))


# ------------------------------------- Qwen-Tool metrics (docs/references.md, Qwen-Tool design brief)


def call_timing(called: Sequence[bool], gold_calls: Sequence[bool]) -> dict[str, float]:
    """Whether the model calls exactly when it should, over N decision points.

    precision = #(called ∧ gold calls) / #called; recall = #(called ∧ gold calls) / #gold calls;
    abstain_recall = #(¬called ∧ ¬gold calls) / #¬gold calls (it stayed silent when no call was due).
    """
    if len(called) != len(gold_calls):
        raise ValueError(f"call_timing: {len(called)} predictions but {len(gold_calls)} gold labels")
    both = sum(c and g for c, g in zip(called, gold_calls, strict=True))
    neither = sum(not c and not g for c, g in zip(called, gold_calls, strict=True))
    return {
        "precision": _ratio(both, sum(map(bool, called))),
        "recall": _ratio(both, sum(map(bool, gold_calls))),
        "abstain_recall": _ratio(neither, sum(not g for g in gold_calls)),
    }


def reproduced_arguments(predicted: CallLike, gold: CallLike) -> int:
    """#{k ∈ keys(gold): k ∈ keys(predicted) and predicted.arguments[k] == gold.arguments[k]}."""
    args = predicted.arguments
    return sum(key in args and args[key] == value for key, value in gold.arguments.items())


def matched_arguments(predicted: Sequence[CallLike], gold: Sequence[CallLike]) -> tuple[int, int]:
    """(Σ_paired reproduced_arguments(p, g), Σ_g |keys(g)|) for one example.

    Gold calls are paired with predicted calls of the same name order-free (calls of a parallel step are unordered):
    as many pairs as the names allow, the pairing with the most reproduced arguments (`best_same_name_pairs`). A gold
    call left unpaired reproduces nothing.
    """
    pairs = best_same_name_pairs(predicted, gold, reproduced_arguments)
    correct = sum(reproduced_arguments(predicted[i], gold[j]) for i, j in pairs)
    return correct, sum(len(gold_call.arguments) for gold_call in gold)


def parameter_accuracy(examples: Iterable[tuple[Sequence[CallLike], Sequence[CallLike]]]) -> float:
    """Micro-averaged parameter accuracy = Σ_i correct_i / Σ_i total_i, with (correct_i, total_i) from
    `matched_arguments(predicted_i, gold_i)`."""
    correct = total = 0
    for predicted, gold in examples:
        c, t = matched_arguments(predicted, gold)
        correct += c
        total += t
    return _ratio(correct, total)


def end_to_end_success(episode_success: Sequence[bool]) -> float:
    """Share of episodes whose final state/answer was judged correct: #success / #episodes."""
    return _ratio(sum(bool(s) for s in episode_success), len(episode_success))


def average_calls(calls_per_episode: Sequence[int]) -> float:
    """Efficiency: mean number of tool calls per episode = Σ calls_i / #episodes."""
    return _ratio(sum(calls_per_episode), len(calls_per_episode))


# ---------------------------------------------------------------- BFCL


def accuracy_by_category(verdicts: Iterable[tuple[str, bool]]) -> dict[str, float]:
    """BFCL AST accuracy per category: acc_c = #valid in c / #examples in c, for each category c seen."""
    valid: dict[str, int] = defaultdict(int)
    seen: dict[str, int] = defaultdict(int)
    for category, ok in verdicts:
        seen[category] += 1
        valid[category] += bool(ok)
    return {category: valid[category] / seen[category] for category in sorted(seen)}


def unweighted_mean(values: Iterable[float]) -> float:
    """Mean over categories, each counting once whatever its size (how BFCL summarises a group of categories)."""
    values = list(values)
    return _ratio(sum(values), len(values))
