"""Evaluation generation throughput: our greedy loop (length-sorted batches, finished rows dropped) against a plain
batched `model.generate` loop on the same BFCL prompts, in the same process.

    .venv/bin/python benchmarks/bench_generation.py --prompts 30 --batch-size 8 --max-new-tokens 128 --threads 1

Useful new tokens (up to and including each row's end-of-turn token) per second of wall time, for both.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from qwen_tool.codec.chat import render_prompt
from qwen_tool.eval import bfcl
from qwen_tool.eval.generation import GenerationSettings, TransformersBackend, stop_token_ids
from qwen_tool.models import DEFAULT_MODEL, load_model, load_tokenizer


def bfcl_prompts(tokenizer, count: int) -> list[str]:
    """`count` prompts spread evenly over every single-turn BFCL category, in category then id order (the order a
    straightforward evaluation script would take them in)."""
    categories = bfcl.SINGLE_TURN_CATEGORIES
    per_category = max(1, count // len(categories))
    examples = []
    for category in categories:
        entries = bfcl.load_category(category)
        step = max(1, len(entries) // per_category)
        examples.extend(entries[::step][:per_category])
    return [render_prompt(tokenizer, e.messages, bfcl.functions_to_tools(e.functions), "hermes")
            for e in examples[:count]]


def plain_generate(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> int:
    """The baseline: prompts in their given order, `model.generate` per batch; returns useful new tokens."""
    stops = stop_token_ids(tokenizer)
    tokenizer.padding_side = "left"
    useful = 0
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id)
        for row in out[:, batch["input_ids"].shape[1]:].tolist():
            ends = [i for i, token in enumerate(row) if token in stops]
            useful += ends[0] + 1 if ends else len(row)
    return useful


def compare_prefill(model, tokenizer, prompts: list[str], settings: GenerationSettings) -> None:
    """Our loop with a float32 and with a bfloat16 prompt prefill, same prompts: seconds and identical answers."""
    runs = {}
    for dtype in ("float32", "bfloat16"):
        backend = TransformersBackend(model, tokenizer, "bench", prefill_dtype=dtype)
        backend.generate(prompts[:2], GenerationSettings(max_new_tokens=4, batch_size=2))  # warm-up
        started = time.perf_counter()
        generations = backend.generate(prompts, settings)
        seconds = time.perf_counter() - started
        tokens = sum(g.new_tokens for g in generations)
        runs[dtype] = {"seconds": round(seconds, 1), "new_tokens": tokens, "tokens_per_s": round(tokens / seconds, 2),
                       "texts": [g.text for g in generations], "load_average_5min": round(os.getloadavg()[1], 2)}
    same = sum(a == b for a, b in zip(runs["float32"].pop("texts"), runs["bfloat16"].pop("texts"), strict=True))
    print(json.dumps({"prompts": len(prompts), "batch_size": settings.batch_size,
                      "max_new_tokens": settings.max_new_tokens, "threads": torch.get_num_threads(), **runs,
                      "speedup": round(runs["float32"]["seconds"] / runs["bfloat16"]["seconds"], 2),
                      "identical_answers": same}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="built-in name or trained directory")
    parser.add_argument("--prompts", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--prefill-dtype", choices=("float32", "bfloat16"), default="float32",
                        help="our loop's prompt prefill dtype (decoding stays float32)")
    parser.add_argument("--compare-prefill", action="store_true",
                        help="instead of plain generate, time our loop with float32 and with bfloat16 prefill and "
                             "count the answers that come out identical")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model)
    prompts = bfcl_prompts(tokenizer, args.prompts)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    if args.compare_prefill:
        compare_prefill(model, tokenizer, prompts, settings)
        return
    backend = TransformersBackend(model, tokenizer, args.model, prefill_dtype=args.prefill_dtype)
    backend.generate(prompts[:2], GenerationSettings(max_new_tokens=4, batch_size=2))  # warm-up

    load = {}
    started = time.perf_counter()
    plain = plain_generate(model, tokenizer, prompts, args.batch_size, args.max_new_tokens)
    plain_s = time.perf_counter() - started
    load["plain_generate"] = round(os.getloadavg()[1], 2)

    started = time.perf_counter()
    ours = sum(g.new_tokens for g in backend.generate(prompts, settings))
    ours_s = time.perf_counter() - started
    load["ours"] = round(os.getloadavg()[1], 2)

    result = {
        "prompts": len(prompts), "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "threads": torch.get_num_threads(), "prefill_dtype": args.prefill_dtype,
        "ours": {"new_tokens": ours, "seconds": round(ours_s, 1), "tokens_per_s": round(ours / ours_s, 2)},
        "plain_generate": {"new_tokens": plain, "seconds": round(plain_s, 1),
                           "tokens_per_s": round(plain / plain_s, 2)},
        "speedup": round((ours / ours_s) / (plain / plain_s), 2),
        "load_average_5min_after": load,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
