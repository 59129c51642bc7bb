"""Train one SFT variant on the main job's data and score it on the first N entries of the main job's BFCL categories
and on the internal held-out suite: a quick way to compare SFT settings (BENCHMARKS.md, "SFT variants").

    .venv/bin/python benchmarks/sft_variants.py NAME [--threads 1] [--limit 50] [sft.pkt=false ...]

`--limit 0` scores the main job's own evaluation (the recipe's `eval.limits`: all 400 simple_python, 100 multiple,
100 irrelevance), so the result compares with a full `make run`.

Every stage goes into /tmp/sft-variants/NAME (resumable, like `qwen-tool run`); the last line printed is the result.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of configs/main-smollm2-cpu.yaml")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=50, help="first N of each category; 0: the recipe's eval.limits")
    parser.add_argument("--config", default="configs/main-smollm2-cpu.yaml")
    parser.add_argument("--root", default="/tmp/sft-variants")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from qwen_tool.config import PipelineConfig, load_config
    from qwen_tool.pipeline import Run, evaluate, synthesize_data
    from qwen_tool.sft.trainer import train_sft

    cfg = load_config(PipelineConfig, args.config, [*args.overrides, f"run_dir={args.root}/{args.name}"])
    run = Run(cfg.run_dir)
    started = time.perf_counter()
    data = run.stage("data", lambda: synthesize_data(cfg, run))
    sft_cfg = replace(cfg.sft, model=cfg.model, data=data["train"], output_dir=str(run.root / "sft"))
    sft = run.stage("sft", lambda: {"model": str(train_sft(sft_cfg, resume=True))})
    trained = time.perf_counter()
    limits = ({category: args.limit for category in cfg.eval.categories} if args.limit
              else {category: cfg.eval.limits.get(category) for category in cfg.eval.categories})
    result = run.stage("eval", lambda: evaluate(sft["model"], run.root / "eval", cfg, limits, data["internal_eval"]))
    accuracy = {name: round(100 * c["accuracy"], 1) for name, c in result["categories"].items()}
    internal = {k: round(100 * result["internal"]["summary"][k], 1) for k in ("TS", "PI", "CF")}
    print("RESULT", args.name, json.dumps(accuracy), json.dumps(internal),
          f"sft {(trained - started) / 60:.1f} min, eval {(time.perf_counter() - trained) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
