from __future__ import annotations

import json

from qwen_tool.eval.report import write_report


def _metrics(simple: float, parallel: float) -> dict:
    return {
        "model": "m", "limit": 10, "wall_seconds": 1.0, "generation": {"new_tokens": 5},
        "categories": {
            "simple_python": {"accuracy": simple, "n": 10, "error_categories": {"type_error": 3}},
            "parallel": {"accuracy": parallel, "n": 10, "error_categories": {}},
        },
        "summary": {"overall_accuracy_unweighted": (simple + parallel) / 2, "examples": 20},
    }


def test_report_side_by_side(tmp_path) -> None:
    trained = {**_metrics(0.55, 0.1), "internal": {"summary": {"TS": 0.9, "CF": 0.5},
                                                   "error_categories": {"value_whitespace": 4, "missed_call": 2}},
               "generation": {"new_tokens": 5, "guided": True}}
    report = write_report(tmp_path, {"baseline": _metrics(0.3, 0.1), "trained": trained},
                          stage_seconds={"sft": 12.34})
    text = report.read_text()
    # simple_python: 55.0 − 30.0 = +25.0 points; overall: (0.55+0.1)/2 − (0.3+0.1)/2 = 0.125 → +12.5
    assert "| simple_python | 10 | 30.0 | 55.0 | +25.0 |" in text
    assert "| Overall accuracy (mean over categories) | 20.0 | 32.5 | +12.5 |" in text
    assert "type_error (3)" in text
    assert "| trained | internal suite | value_whitespace (4), missed_call (2) |" in text
    assert "| sft | 12.3 |" in text
    assert "| baseline | m | 20 | 10 | greedy | 1.0 | 5 |" in text  # a guided run says so in its row
    assert "| trained | m | 20 | 10 | greedy, tool calls guided by schema | 1.0 | 5 |" in text
    assert "| TS: tool selection | – | 90.0 | – |" in text
    assert (tmp_path / "bfcl_categories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<td>+25.0</td>" in (tmp_path / "report.html").read_text()
    assert set(json.loads((tmp_path / "metrics.json").read_text())["runs"]) == {"baseline", "trained"}



def test_lead_tables_come_first(tmp_path) -> None:
    lead = [("Paired differences", ["metric", "Δ"], [["simple_python accuracy", "+25.0 [+5.0, +45.0]"]])]
    text = write_report(tmp_path, {"baseline": _metrics(0.3, 0.1)}, lead_tables=lead).read_text()
    table = "## Paired differences\n\n| metric | Δ |\n|---|---|\n| simple_python accuracy | +25.0 [+5.0, +45.0] |"
    assert table in text
    assert text.index("## Paired differences") < text.index("## Runs")


def test_the_runs_table_says_which_sets_were_capped(tmp_path) -> None:
    full = {**_metrics(0.5, 0.5), "limit": {}}
    capped = {**_metrics(0.5, 0.5), "limit": {"simple_python": None, "parallel": 100}}
    text = write_report(tmp_path, {"full": full, "capped": capped, "whole": {**_metrics(0.5, 0.5), "limit": None}}
                        ).read_text()
    assert "| full | m | 20 | none | greedy |" in text and "| whole | m | 20 | none | greedy |" in text
    assert "| capped | m | 20 | parallel: 100 | greedy |" in text
