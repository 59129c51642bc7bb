"""IRM: TL-Training's reward by error category (docs/references.md, TL-Training), from the reference code's table
for one call.

Several calls (parallel turns) are paired with the gold calls first by name, same-name calls in the pairing with the
highest summed reward (parallel calls are unordered: a correct turn scores +1 in any call order), then the leftovers;
the reward is the mean over the pairs and unmatched calls. With one predicted and one gold call this is exactly the
table.
The no-call cases are our extension, written the way the reference treats an empty action: a missing call, or a
call where none was due, counts as a wrong tool (−1.5); staying silent when no call was due is exact (+1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from qwen_tool.rewards.types import Call, RewardResult, as_calls, tool_parameters
from qwen_tool.tools.call_pairing import best_same_name_pairs

IRM_VALUES: dict[str, float] = {
    "unparsable": -2.0,
    "tool_hallucination": -2.0,
    "wrong_tool": -1.5,
    "hallucinated_redundant_missing": -1.8,
    "hallucinated_and_redundant_or_missing": -1.3,
    "redundant_and_missing": -1.0,
    "hallucinated": -0.8,
    "redundant_or_missing": -0.5,
    "values_differ": -0.25,
    "exact": 1.0,
}
"""Case → reward, the reference table row by row ("redundant" = an argument the tool has but gold does not use)."""


def irm_case(predicted: Call | None, gold: Call | None, parameters: Mapping[str, set[str]]) -> str:
    """The table row one (predicted, gold) pair falls into; `parameters`: offered tool name → its parameter names.

    hallucinated = keys(pred) ⊄ params(tool); redundant = ∃k ∈ keys(pred): k ∉ keys(gold) ∧ k ∈ params(tool);
    missing = ∃k ∈ keys(gold): k ∉ keys(pred). The first row that holds, top to bottom, wins.
    """
    if predicted is None:
        return "exact" if gold is None else "wrong_tool"
    if predicted.name not in parameters:
        return "tool_hallucination"
    if gold is None or predicted.name != gold.name:
        return "wrong_tool"
    params = parameters[predicted.name]
    hallucinated = not set(predicted.arguments) <= params
    redundant = any(k not in gold.arguments and k in params for k in predicted.arguments)
    missing = any(k not in predicted.arguments for k in gold.arguments)
    if hallucinated and redundant and missing:
        return "hallucinated_redundant_missing"
    if hallucinated and (redundant or missing):
        return "hallucinated_and_redundant_or_missing"
    if redundant and missing:
        return "redundant_and_missing"
    if hallucinated:
        return "hallucinated"
    if redundant or missing:
        return "redundant_or_missing"
    if predicted.arguments != gold.arguments:
        return "values_differ"
    return "exact"


def match_calls(predicted: list[Call], gold: list[Call], parameters: Mapping[str, set[str]]
                ) -> list[tuple[Call | None, Call | None]]:
    """Pairs: same-name calls first, in the pairing with the highest Σ IRM value whatever order either side lists them
    in (`best_same_name_pairs`), then the leftovers position by position, then the unmatched rest. Every leftover pair
    and unmatched call scores by its predicted tool alone (wrong tool or tool hallucination), so their order does not
    matter either."""
    same_name = best_same_name_pairs(predicted, gold, lambda p, g: IRM_VALUES[irm_case(p, g, parameters)])
    pairs: list[tuple[Call | None, Call | None]] = [(predicted[i], gold[j]) for i, j in same_name]
    paired_pred, paired_gold = {i for i, _ in same_name}, {j for _, j in same_name}
    left_pred = [p for i, p in enumerate(predicted) if i not in paired_pred]
    left_gold = [g for j, g in enumerate(gold) if j not in paired_gold]
    for k in range(max(len(left_pred), len(left_gold))):
        pairs.append((left_pred[k] if k < len(left_pred) else None, left_gold[k] if k < len(left_gold) else None))
    return pairs


def irm_reward(predicted: Iterable[Any] | None, gold: Iterable[Any] | None, tools: Iterable[Mapping[str, Any]] | None,
               *, unparsable: bool = False) -> RewardResult:
    """R = mean over matched pairs of IRM_VALUES[irm_case(pair)]; −2 when the output held a call we could not parse.

    `gold` None or empty means no call was due. Components: `irm` (the total) and the share of pairs in each case.
    """
    pred_calls, gold_calls = as_calls(predicted), as_calls(gold)
    if unparsable and not pred_calls:
        return RewardResult(IRM_VALUES["unparsable"], {"irm": IRM_VALUES["unparsable"], "irm_unparsable": 1.0})
    parameters = tool_parameters(tools)
    pairs = match_calls(pred_calls, gold_calls, parameters) or [(None, None)]
    cases = Counter(irm_case(p, g, parameters) for p, g in pairs)
    total = sum(IRM_VALUES[case] * n for case, n in cases.items()) / len(pairs)
    return RewardResult(total, {"irm": total, **{f"irm_{case}": n / len(pairs) for case, n in cases.items()}})
