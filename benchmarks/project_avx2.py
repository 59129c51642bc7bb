"""The main job's time on a 2-core CPU without AVX-512, projected from per-stage throughput measured on this machine
with its vector units held to AVX2.

    .venv/bin/python benchmarks/project_avx2.py [--config configs/main-smollm2-cpu.yaml] [override ...]

The job's own probe (`qwen_tool.pipeline.project_job`: a prefill, a decode step, a training step of the recipe's
micro-batch) runs in a child process whose torch, oneDNN and MKL dispatch only AVX2 kernels
(ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2): `auto` precision then picks fp32,
as it would there, and a bf16 matmul runs at ~1 GFLOP/s, as measured on a real AVX2 CPU. The cores stay this
machine's, so each stage is scaled by the ratio of fp32 matmul throughput: this machine held to AVX2 against
`--reference-gflops` (2 cores × 45 GFLOP/s, measured on a 2-core AVX2 CPU, 2026-12-01).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def matmul_gflops() -> float:
    import torch

    a = torch.randn(2048, 2048)
    a @ a
    started = time.perf_counter()
    for _ in range(5):
        a @ a
    return 5 * 2 * 2048**3 / (time.perf_counter() - started) / 1e9


def child(config: str, overrides: list[str]) -> None:
    """In the AVX2-held process: the job's projection of every stage, and this process's fp32 matmul rate."""
    import torch

    from qwen_tool.config import PipelineConfig, load_config
    from qwen_tool.pipeline import Run, project_job, synthesize_data

    cfg = load_config(PipelineConfig, config, overrides)
    with tempfile.TemporaryDirectory() as directory:
        run = Run(directory)
        data = synthesize_data(cfg, run)
        projection = project_job(cfg, run, data)
    print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "matmul_gflops": matmul_gflops(),
                      "projected_s": projection.projected}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/main-smollm2-cpu.yaml")
    parser.add_argument("--reference-gflops", type=float, default=90.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.child:
        child(args.config, args.overrides)
        return
    out = subprocess.run([sys.executable, __file__, "--child", "--config", args.config, *args.overrides],
                         env={**os.environ, **AVX2_ENV}, check=True, capture_output=True, text=True).stdout
    held = json.loads(out.strip().splitlines()[-1])
    scale = held["matmul_gflops"] / args.reference_gflops
    stages = {stage: round(seconds * scale / 60, 1) for stage, seconds in held["projected_s"].items()}
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "held_to": held["capability"],
                      "matmul_gflops_held_to_avx2": round(held["matmul_gflops"], 1),
                      "reference_gflops": args.reference_gflops, "scale": round(scale, 2),
                      "minutes_here_held_to_avx2": {k: round(v / 60, 1) for k, v in held["projected_s"].items()},
                      "minutes_projected_on_the_reference_avx2_cpu": stages,
                      "total_minutes_projected": round(sum(stages.values()), 1), "overrides": args.overrides},
                     indent=2))


if __name__ == "__main__":
    main()
