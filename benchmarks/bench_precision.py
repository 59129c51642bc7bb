"""What `precision: auto` decides on this machine, and the measurements behind it, in one run.

For fp32 and bf16 side by side on the built-in model: a plain matmul (the probe's shape), a prompt prefill, a decode
step at batch 1 and 8 over a 512-token cache (serving), and a training forward + backward (SFT/RL, autocast).
Each figure is the median of `--repeats` timed calls after one untimed call of the same shape.

    .venv/bin/python benchmarks/bench_precision.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

import torch

from qwen_tool import hardware
from qwen_tool.cost import decode_step_seconds
from qwen_tool.models import load_model


def median_seconds(work, repeats: int) -> float:
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    choice = hardware.detect_auto_precision()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU capability {hardware.cpu_capability()}, "
          f"AVX512-BF16/AMX reported: {hardware.cpu_bf16_instructions()}")
    print(f"precision auto → {choice.describe()}")
    print(f"matmul probe: bf16 at {hardware.probe_bf16_speedup():.2f}x fp32")
    fp32 = load_model(args.model)
    bf16 = load_model(args.model, dtype="bfloat16")
    ids = torch.randint(0, int(fp32.config.vocab_size), (4, 256))
    rows = []
    for label, model in (("fp32", fp32), ("bf16", bf16)):
        with torch.inference_mode():
            prefill = median_seconds(lambda m=model: m(ids[:1]), args.repeats)
            decode_1 = statistics.median(decode_step_seconds(model, 1) for _ in range(args.repeats))
            decode_8 = statistics.median(decode_step_seconds(model, 8) for _ in range(args.repeats))
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=label == "bf16")

        def train(cast=autocast):
            with cast:
                loss = fp32(ids, labels=ids).loss  # training keeps fp32 weights; bf16 runs under autocast
            loss.backward()

        fp32.train()
        training = median_seconds(train, args.repeats)
        fp32.eval()
        fp32.zero_grad(set_to_none=True)
        rows.append((label, 256 / prefill, 1000 * decode_1, 1000 * decode_8, 4 * 256 / training))
    print("| precision | prefill tokens/s (1×256) | decode step, batch 1 (ms) | decode step, batch 8 (ms) "
          "| training tokens/s (4×256, fwd+bwd) |")
    print("|---|---|---|---|---|")
    for label, prefill, decode_1, decode_8, training in rows:
        print(f"| {label} | {prefill:.0f} | {decode_1:.1f} | {decode_8:.1f} | {training:.0f} |")
    (_, p32, d1_32, d8_32, t32), (_, p16, d1_16, d8_16, t16) = rows
    print(f"bf16 / fp32: prefill {p16 / p32:.2f}x, decode batch 1 {d1_32 / d1_16:.2f}x, "
          f"batch 8 {d8_32 / d8_16:.2f}x, training {t16 / t32:.2f}x")


if __name__ == "__main__":
    main()
