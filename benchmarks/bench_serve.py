"""Serving throughput and latency on the built-in model: the real server (uvicorn on 127.0.0.1), the openai client.

At each concurrency level C, C clients each send `--rounds` streamed requests back to back (a tool-calling prompt,
greedy, `--max-tokens` new tokens at most). Reported: completion tokens per second over the whole level, requests per
second, and p50/p99 of end-to-end latency and of time to first token.

Run: .venv/bin/python benchmarks/bench_serve.py [--concurrency 1 4 16] [--rounds 2] [--max-tokens 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import torch
from openai import AsyncOpenAI

from qwen_tool.models import DEFAULT_MODEL, load_tokenizer, tool_format_for
from qwen_tool.serve.engine import load_engine
from qwen_tool.serve.server import BackgroundServer, ServeSettings, create_app

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Seoul"]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100)
    return ordered[int(rank) - 1]


async def one_request(client: AsyncOpenAI, model: str, index: int, max_tokens: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = None
    tokens = 0
    stream = await client.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True}, tools=TOOLS, temperature=0,
        max_tokens=max_tokens, messages=[{"role": "user", "content": f"What is the weather in {CITIES[index % 8]}?"}])
    async for chunk in stream:
        if first is None and chunk.choices and (chunk.choices[0].delta.content or chunk.choices[0].delta.tool_calls):
            first = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    return end - start, (first or end) - start, tokens


async def level(base_url: str, model: str, concurrency: int, rounds: int, max_tokens: int) -> dict[str, float]:
    async with AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600) as client:
        async def worker(worker_index: int) -> list[tuple[float, float, int]]:
            return [await one_request(client, model, worker_index * rounds + r, max_tokens) for r in range(rounds)]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(w) for w in range(concurrency))) for r in rs]
        elapsed = time.perf_counter() - start
    latencies, ttfts, tokens = zip(*results, strict=True)
    return {"requests": len(results), "seconds": elapsed, "tokens_per_s": sum(tokens) / elapsed,
            "requests_per_s": len(results) / elapsed, "p50_s": statistics.median(latencies),
            "p99_s": percentile(list(latencies), 99), "ttft_p50_s": statistics.median(ttfts),
            "mean_tokens": sum(tokens) / len(tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=2, help="requests per client at each level")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--backend", default="transformers")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = load_engine(args.model, args.backend, max_batch=args.max_batch, max_queue=256)
    app = create_app(engine, load_tokenizer(args.model), ServeSettings(args.model, tool_format_for(args.model),
                                                                        request_timeout_s=3600))
    print(f"model {args.model}, backend {args.backend}, max_batch {args.max_batch}, max_tokens {args.max_tokens}, "
          f"torch threads {torch.get_num_threads()}")
    print("| concurrency | requests | wall s | completion tok/s | req/s | p50 latency s | p99 latency s | p50 TTFT s |")
    print("|---|---|---|---|---|---|---|---|")
    with BackgroundServer(app) as url:
        asyncio.run(level(url + "/v1", args.model, 1, 1, 4))  # warm-up
        for concurrency in args.concurrency:
            row = asyncio.run(level(url + "/v1", args.model, concurrency, args.rounds, args.max_tokens))
            print(f"| {concurrency} | {row['requests']} | {row['seconds']:.1f} | {row['tokens_per_s']:.1f} | "
                  f"{row['requests_per_s']:.2f} | {row['p50_s']:.2f} | {row['p99_s']:.2f} | {row['ttft_p50_s']:.2f} |",
                  flush=True)
    engine.close()


if __name__ == "__main__":
    main()
