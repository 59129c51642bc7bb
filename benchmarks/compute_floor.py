"""The least time a recipe's arithmetic can take on a CPU: its matrix-multiply FLOPs at the CPU's fp32 matmul peak.

    .venv/bin/python benchmarks/compute_floor.py [--config configs/main-smollm2-cpu.yaml] [--gflops 90] [override ...]

A lower bound, not a projection: it counts only the weight matmuls of the stages that dominate (SFT's forward and
backward, every evaluation's prompt prefill) and leaves out decoding, attention scores, the optimiser, data loading and
start-up. Per stage:

    SFT             F = 6 · N_trunk · T_train + 6 · N_head · T_loss
    evaluation      F = 2 · N_trunk · Σ p_i       (once per decoding of `eval.decoding`)
    floor           t = F / R

N_trunk the weights of the decoder layers' linear maps, N_head the LM head's (it runs only on positions with a loss,
and on one position per prompt), T_train the tokens of every training example (all epochs), T_loss those with a
label, p_i the prompts' token lengths (as the job's own projection estimates them), R the fp32 matmul rate: `--gflops`
(default 90, 2 cores × 45 GFLOP/s measured on a 2-core AVX2 CPU, 2026-12-01) and, for comparison, this machine's own
rate on a 2048² fp32 matmul. If the floor is near a time budget, no engine or kernel work can bring the recipe
inside it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace

from project_avx2 import matmul_gflops  # the same 2048² fp32 probe (benchmarks/ is on the path when run)


def weight_counts(model) -> tuple[int, int]:
    """(N_trunk, N_head): weights of the linear maps inside the decoder layers, and of the LM head."""
    import torch

    trunk = sum(module.weight.numel() for layer in model.model.layers for module in layer.modules()
                if isinstance(module, torch.nn.Linear))
    return trunk, model.lm_head.weight.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/main-smollm2-cpu.yaml")
    parser.add_argument("--gflops", type=float, default=90.0, help="fp32 matmul rate of the CPU to bound (GFLOP/s)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    from qwen_tool.config import PipelineConfig, load_config
    from qwen_tool.models import load_model, load_tokenizer
    from qwen_tool.pipeline import Run, evaluation_prompt_lengths, synthesize_data
    from qwen_tool.sft.tokenize import IGNORE_INDEX
    from qwen_tool.sft.trainer import encode_dataset, sft_codec, training_trajectories

    cfg = load_config(PipelineConfig, args.config, args.overrides)
    tokenizer = load_tokenizer(cfg.model)
    trunk, head = weight_counts(load_model(cfg.model))
    with tempfile.TemporaryDirectory() as directory:
        data = synthesize_data(cfg, Run(directory))
        trajectories = training_trajectories(replace(cfg.sft, model=cfg.model, data=data["train"]))
        trained_codec = sft_codec(replace(cfg.sft, model=cfg.model))
        examples = encode_dataset(trajectories, tokenizer, trained_codec, cfg.sft)
        baseline, trained = evaluation_prompt_lengths(cfg, tokenizer, trained_codec, data["internal_eval"])
    train_tokens = sum(len(e["input_ids"]) for e in examples) * cfg.sft.epochs
    loss_tokens = sum(sum(label != IGNORE_INDEX for label in e["labels"]) for e in examples) * cfg.sft.epochs
    flops = {
        "baseline_eval": 2 * trunk * sum(baseline),
        "sft": 6 * trunk * train_tokens + 6 * head * loss_tokens,
        "trained_eval": 2 * trunk * sum(trained),
    }
    here = matmul_gflops()

    def minutes(gflops: float) -> dict[str, float]:
        return {stage: round(f / (gflops * 1e9) / 60, 1) for stage, f in flops.items()}

    print(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "config": args.config, "overrides": args.overrides,
        "weights": {"trunk": trunk, "head": head},
        "tokens": {"sft": train_tokens, "sft_with_loss": loss_tokens, "baseline_prompts": sum(baseline),
                   "trained_prompts": sum(trained)},
        "tflop": {stage: round(f / 1e12, 1) for stage, f in flops.items()},
        f"floor_minutes_at_{args.gflops:g}_gflops": minutes(args.gflops),
        f"floor_total_minutes_at_{args.gflops:g}_gflops": round(sum(minutes(args.gflops).values()), 1),
        "this_machine_fp32_matmul_gflops": round(here, 1),
        "floor_minutes_here": minutes(here),
    }, indent=2))


if __name__ == "__main__":
    main()
