"""Training tokens/s of our SFT (MAE + PKT weights) against plain TRL SFTTrainer, same model, data and batch, one run.

Both trainers see the same encoded examples in the same order (sequential sampling): ours with `loss_weights`
(MAE + PKT on), TRL with the same `input_ids` and `labels` and its own collator and loss. Tokens/s counts every input
token of the batches (padding excluded) over the timed optimiser steps; the first step of each is a warm-up.

    .venv/bin/python benchmarks/bench_sft.py --model smollm2-135m-instruct --examples 48 --steps 4
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from qwen_tool.config import SFTTrainingConfig
from qwen_tool.data.synth import synthesize
from qwen_tool.models import load_model, load_tokenizer
from qwen_tool.sft.tokenize import encode_trajectory
from qwen_tool.sft.trainer import build_trainer


class StepTimer(TrainerCallback):
    """Wall time of each optimiser step."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.starts.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def timed_train(trainer, examples_per_step: int, lengths: list[int]) -> float:
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    timed_steps = range(1, len(timer.ends))  # step 0 is a warm-up
    seconds = sum(timer.ends[i] - timer.starts[i] for i in timed_steps)
    tokens = sum(sum(lengths[i * examples_per_step:(i + 1) * examples_per_step]) for i in timed_steps)
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--examples-per-device", type=int, default=4)
    parser.add_argument("--accumulation", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per trainer (the first is warm-up)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: CPU autocast for both trainers (fast where the CPU has AVX512-BF16 or AMX)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    per_step = args.examples_per_device * args.accumulation
    tokenizer = load_tokenizer(args.model)
    records = synthesize(per_step * args.steps, seed=0)
    ours_examples = [encode_trajectory(r, tokenizer, "hermes", mae=True, pkt=True).to_dict() for r in records]
    lengths = [len(e["input_ids"]) for e in ours_examples]
    common = dict(per_device_train_batch_size=args.examples_per_device, gradient_accumulation_steps=args.accumulation,
                  max_steps=args.steps, report_to=[], save_strategy="no", logging_steps=1000,
                  train_sampling_strategy="sequential", use_cpu=True, bf16=args.precision == "bf16", learning_rate=1e-5,
                  activation_checkpointing=False)  # TRL turns it on by default; the same setting for both
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(args.model)
        ours = build_trainer(SFTTrainingConfig(output_dir=f"{tmp}/ours"), model, tokenizer, ours_examples, **common)
        results["ours (MAE+PKT)"] = timed_train(ours, per_step, lengths)

        model = load_model(args.model)
        plain = Dataset.from_list([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in ours_examples])
        trl = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=plain,
                         args=SFTConfig(output_dir=f"{tmp}/trl", dataset_kwargs={"skip_prepare_dataset": True},
                                        max_length=None, **common))
        results["plain TRL SFTTrainer"] = timed_train(trl, per_step, lengths)

    print(f"model {args.model}, {per_step} examples per step ({args.examples_per_device}×{args.accumulation}), "
          f"{args.steps - 1} timed steps, {torch.get_num_threads()} threads, {args.precision}")
    for name, rate in results.items():
        print(f"| {name} | {rate:.1f} tokens/s |")
    ratio = results["ours (MAE+PKT)"] / results["plain TRL SFTTrainer"]
    print(f"| ratio | {ratio:.3f}× |")


if __name__ == "__main__":
    main()
