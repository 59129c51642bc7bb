"""Tokens per prompt with the tool declarations as JSON schemas against compact typed signatures (issue 27).

For the main job's training set (synthesised as `qwen-tool run` does from the recipe's `data:` settings, or read
from --data) it counts the tokens of each whole SFT example (what training pays for), and for BFCL's simple_python,
multiple and irrelevance prompts the tokens of each prompt (what evaluation prefills), in both renderings, with the
recipe model's tokenizer and tool format.

Run: .venv/bin/python benchmarks/bench_tool_rendering.py [--config configs/main-smollm2-cpu.yaml] [--data PATH]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from qwen_tool.codec import TOOL_RENDERINGS, get_codec
from qwen_tool.codec.chat import render_prompt
from qwen_tool.config import PipelineConfig, load_config
from qwen_tool.eval import bfcl_single_turn
from qwen_tool.models import load_tokenizer, tool_format_for
from qwen_tool.sft.tokenize import encode_trajectory

CATEGORIES = ("simple_python", "multiple", "irrelevance")


def training_set(cfg: PipelineConfig, data: Path | None) -> list[dict[str, Any]]:
    """The main job's training trajectories: `data` when given, else synthesised as its data stage does."""
    if data is not None:
        from qwen_tool.data.schema import read_any

        return read_any(str(data))[0]
    from qwen_tool.data.synth import held_out_split, synthesize

    held_out = held_out_split(cfg.data.held_out_fraction, cfg.data.seed)
    return synthesize(cfg.data.n_train, seed=cfg.data.seed, mix=cfg.data.mix, held_out=held_out, split="train",
                      suite_share=cfg.data.suite_share)


def count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def measure(cfg: PipelineConfig, trajectories: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean tokens per training example, per training example's tool block, and per BFCL prompt, by rendering."""
    tokenizer = load_tokenizer(cfg.model)
    fmt = cfg.sft.tool_format or tool_format_for(cfg.model)
    prompts = {category: bfcl_single_turn.load_category(category) for category in CATEGORIES}
    rows: dict[str, dict[str, float]] = {}
    for rendering in TOOL_RENDERINGS:
        codec = get_codec(fmt, tool_rendering=rendering)
        row = {
            "training example": statistics.mean(len(encode_trajectory(t, tokenizer, codec).input_ids)
                                                for t in trajectories),
            "its tool block": statistics.mean(count(tokenizer, codec.render_tools(t["tools"]))
                                              for t in trajectories if t.get("tools")),
        }
        for category, examples in prompts.items():
            row[f"BFCL {category}"] = statistics.mean(
                count(tokenizer, render_prompt(tokenizer, e.messages,
                                               bfcl_single_turn.functions_to_tools(e.functions), codec))
                for e in examples)
        rows[rendering] = row
    return rows


def table(rows: dict[str, dict[str, float]], sizes: dict[str, int]) -> str:
    """Markdown: one line per measure, a column per rendering and compact's share of json."""
    lines = ["| mean tokens per | n | json | compact | compact / json |", "|---|---|---|---|---|"]
    for measure_name in rows["json"]:
        json_tokens, compact_tokens = rows["json"][measure_name], rows["compact"][measure_name]
        lines.append(f"| {measure_name} | {sizes[measure_name]} | {json_tokens:.1f} | {compact_tokens:.1f} | "
                     f"{compact_tokens / json_tokens:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/main-smollm2-cpu.yaml"))
    parser.add_argument("--data", type=Path, default=None, help="Training JSONL (default: synthesise it).")
    args = parser.parse_args()
    cfg = load_config(PipelineConfig, args.config)
    trajectories = training_set(cfg, args.data)
    rows = measure(cfg, trajectories)
    sizes = {"training example": len(trajectories),
             "its tool block": sum(1 for t in trajectories if t.get("tools")),
             **{f"BFCL {c}": len(bfcl_single_turn.load_category(c)) for c in CATEGORIES}}
    print(f"{cfg.model}, format {cfg.sft.tool_format or tool_format_for(cfg.model)}, data "
          f"{args.data or f'synthesised ({cfg.data.n_train} training trajectories, seed {cfg.data.seed})'}")
    print(table(rows, sizes))


if __name__ == "__main__":
    main()
