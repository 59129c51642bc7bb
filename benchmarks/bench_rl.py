"""One GRPO step of ours against one step of TRL's GRPOTrainer: same single-turn task, model, batch and settings.

Both sample 4 prompts × 4 completions (temperature 1, up to --max-new-tokens), score them with the same IRM reward,
and take one optimiser step with the same loss (token-level aggregation, ε 0.2, β 0, fp32, AdamW, lr 1e-5, the whole
batch in one forward). Step times are wall-clock, measured in the same process, after loading.

Run: .venv/bin/python benchmarks/bench_rl.py [--model tiny|smollm2-135m-instruct] [--steps 2] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from qwen_tool.codec import get_codec
from qwen_tool.codec.chat import render_prompt
from qwen_tool.config import RLTrainingConfig, load_config
from qwen_tool.data.synth import synthesize
from qwen_tool.rewards import irm_reward
from qwen_tool.rl.trainer import train_rl
from qwen_tool.testing import tiny_model, tiny_tokenizer

PROMPTS, SAMPLES = 4, 4


def load(model_name: str):
    if model_name == "tiny":
        return tiny_model(), tiny_tokenizer()
    from qwen_tool.models import load_model, load_tokenizer

    return load_model(model_name), load_tokenizer(model_name)


def task() -> dict:
    """One synthesised single-call task (the same for both trainers)."""
    return synthesize(1, seed=0, mix="single=1")[0]


def run_ours(model_name: str, steps: int, max_new_tokens: int, record: dict) -> list[dict]:
    model, tokenizer = load(model_name)
    out = Path(tempfile.mkdtemp())
    cfg = load_config(RLTrainingConfig, None, [
        f"output_dir={out}", f"steps={steps}", f"prompts_per_step={PROMPTS}", f"samples_per_prompt={SAMPLES}",
        f"max_new_tokens={max_new_tokens}", f"episodes_per_forward={PROMPTS * SAMPLES}", "kl_coef=0",
        "learning_rate=1e-5", "suites=[]", "curriculum.enabled=false", "rewards.format=0", "rewards.coherence=0",
        "precision=fp32", f"save_steps={steps + 1}"])
    train_rl(cfg, trajectories=[record], policy=model, tokenizer=tokenizer)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{"seconds": m["seconds"], "completion_tokens": m["response_length"] * PROMPTS * SAMPLES,
             "reward": m["reward"]} for m in lines]


def run_trl(model_name: str, steps: int, max_new_tokens: int, record: dict) -> list[dict]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load(model_name)
    first = next(i for i, m in enumerate(record["messages"]) if m["role"] == "assistant")
    prompt = render_prompt(tokenizer, record["messages"][:first], record["tools"], "hermes", use_model_template=False)
    gold = [c["function"] for c in record["messages"][first]["tool_calls"]]
    codec = get_codec("hermes")

    def irm(completions, **_):
        return [irm_reward(codec.parse(c, record["tools"]).tool_calls, gold, record["tools"]).total
                for c in completions]

    times: list[float] = []
    tokens: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            times.append(time.perf_counter())

        def on_step_end(self, *args, **kwargs):
            times.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                tokens.append(logs["completions/mean_length"] * PROMPTS * SAMPLES)

    args = GRPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=PROMPTS * SAMPLES,
                      num_generations=SAMPLES, max_completion_length=max_new_tokens, temperature=1.0, beta=0.0,
                      learning_rate=1e-5, lr_scheduler_type="constant", max_steps=steps, logging_steps=1,
                      report_to=[], use_cpu=True, bf16=False, save_strategy="no", seed=0, disable_tqdm=True)
    trainer = GRPOTrainer(model=model, reward_funcs=irm, args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_dict({"prompt": [prompt] * (PROMPTS * steps)}),
                          callbacks=[Clock()])
    trainer.train()
    return [{"seconds": b - a, "completion_tokens": n} for a, b, n in zip(times, times[1:], tokens, strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny (random 2-layer) or a model name")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    record = task()
    results = {"ours": run_ours(args.model, args.steps, args.max_new_tokens, record),
               "trl": run_trl(args.model, args.steps, args.max_new_tokens, record)}
    print(json.dumps({"model": args.model, "batch": f"{PROMPTS}x{SAMPLES}", "max_new_tokens": args.max_new_tokens,
                      "torch_threads": torch.get_num_threads(), **results}, indent=1))


if __name__ == "__main__":
    main()
