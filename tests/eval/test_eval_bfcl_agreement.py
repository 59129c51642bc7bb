"""Acceptance: our AST checker gives exactly BFCL's verdicts on perturbed gold answers."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from qwen_tool.eval import bfcl_single_turn

sys.path.insert(0, str(Path(__file__).parent))
from bfcl_oracle import load_oracle, oracle_verdict, perturbations  # noqa: E402

EXAMPLES_PER_CATEGORY = 12


@pytest.fixture(scope="module")
def oracle():
    return load_oracle()


def _spread(examples: list[bfcl_single_turn.BfclExample], n: int) -> list[bfcl_single_turn.BfclExample]:
    """n examples spread over the whole (id-sorted) category, not just its head."""
    step = max(1, len(examples) // n)
    return examples[::step][:n]


def test_oracle_import_leaves_no_stub_behind(oracle) -> None:
    assert "bfcl_eval.constants.model_config" not in sys.modules


def test_agreement_with_bfcl_checker_on_perturbed_gold(oracle) -> None:
    checker, language = oracle
    compared = 0
    verdicts: Counter[bool] = Counter()
    disagreements = []
    labels_valid: Counter[str] = Counter()
    for category in bfcl_single_turn.AST_CATEGORIES:
        for example in _spread(bfcl_single_turn.load_category(category), EXAMPLES_PER_CATEGORY):
            for label, calls in perturbations(example.gold, example.functions):
                ours = bfcl_single_turn.check_ast(category, example.functions, calls, example.gold)
                theirs = oracle_verdict(checker, language, category, example.functions, calls, example.gold)
                compared += 1
                verdicts[theirs] += 1
                labels_valid[label] += theirs
                if ours.valid != theirs:
                    disagreements.append((example.id, label, calls, ours, theirs))
    assert not disagreements, f"{len(disagreements)} of {compared} verdicts differ; first: {disagreements[:3]}"
    assert compared >= 500
    # Not vacuous: both verdicts are frequent, and the forgiving perturbations pass while the breaking ones fail.
    assert verdicts[True] >= 100 and verdicts[False] >= 300, verdicts
    assert labels_valid["gold"] >= 0.9 * len(bfcl_single_turn.AST_CATEGORIES) * EXAMPLES_PER_CATEGORY
    assert labels_valid["string_restyled"] > 0 and labels_valid["int_for_float"] > 0
    assert labels_valid["wrong_name"] == 0 and labels_valid["no_call"] == 0


def test_irrelevance_passes_only_without_calls() -> None:
    example = bfcl_single_turn.load_category("irrelevance", limit=1)[0]
    assert bfcl_single_turn.check_ast("irrelevance", example.functions, [], None).valid
    assert not bfcl_single_turn.check_ast("irrelevance", example.functions, [{"f": {}}], None).valid


@pytest.mark.slow
def test_agreement_on_every_entry_of_every_ast_category(oracle) -> None:
    """The same comparison on the full sets (about 42,000 outputs, ~4 s)."""
    checker, language = oracle
    differing = compared = 0
    for category in bfcl_single_turn.AST_CATEGORIES:
        for example in bfcl_single_turn.load_category(category):
            for _, calls in perturbations(example.gold, example.functions):
                ours = bfcl_single_turn.check_ast(category, example.functions, calls, example.gold).valid
                differing += ours != oracle_verdict(checker, language, category, example.functions, calls,
                                                    example.gold)
                compared += 1
    assert compared > 40_000 and differing == 0


def test_int_items_in_a_float_array_fail_and_the_error_names_the_item_type() -> None:
    """BFCL's nested type check rejects [1, 3] for an array of float (a top-level int for a float passes)."""
    example = next(e for e in bfcl_single_turn.load_category("simple_python") if e.id == "simple_python_13")
    name = example.functions[0]["name"]
    gold_args = {k: v[0] for k, v in next(iter(example.gold[0].values())).items() if v[0] != ""}
    assert bfcl_single_turn.check_ast("simple_python", example.functions, [{name: gold_args}], example.gold).valid
    verdict = bfcl_single_turn.check_ast("simple_python", example.functions,
                             [{name: {**gold_args, "interval": [1, 3]}}], example.gold)
    assert not verdict.valid and verdict.error_type == "type_error"
    assert "items should be float" in verdict.error
