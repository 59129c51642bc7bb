"""Per-category statistics of a trajectory set, and a PNG chart of its mix."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from qwen_tool.data.difficulty import difficulty
from qwen_tool.files import save_figure


def category_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per category: count, share, mean messages, mean calls, mean difficulty, erroneous turns."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record.get("meta", {}).get("category") or "?"].append(record)
    rows = []
    for category, group in sorted(groups.items()):
        calls = [sum(len(m.get("tool_calls") or []) for m in r["messages"]) for r in group]
        rows.append({
            "category": category, "count": len(group), "share": len(group) / len(records),
            "messages": sum(len(r["messages"]) for r in group) / len(group), "calls": sum(calls) / len(group),
            "difficulty": sum(difficulty(r) for r in group) / len(group),
            "erroneous": sum(bool(m.get("erroneous")) for r in group for m in r["messages"]),
        })
    return rows


def plot_mix(rows: list[dict[str, Any]], path: str | Path) -> None:
    """A horizontal bar chart of the category shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    axis.barh([r["category"] for r in rows], [r["share"] for r in rows], color="#4c72b0")
    axis.set_xlabel("share of trajectories")
    axis.set_title("Category mix")
    axis.invert_yaxis()
    figure.tight_layout()
    try:
        save_figure(figure, path, dpi=100)
    finally:
        plt.close(figure)
