"""Parse throughput (calls/s). Default: Hermes, our codec against Qwen-Agent's own parser on the same texts, same run.
With `--formats`: each format parsing the same model-like outputs written by its own template, whole (`parse`) and
streamed (`stream`, fed `--chunk` characters at a time, about a token).

Run: .venv/bin/python benchmarks/bench_codec.py [--outputs 3000] [--repeats 5]
     .venv/bin/python benchmarks/bench_codec.py --formats deepseek_dsml:v3.2,kimi_k3,gemma4 [--chunk 4]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from qwen_tool.codec import ToolCall, get_codec


def make_texts(count: int, seed: int = 0, fmt: str = "hermes", variant: str | None = None) -> tuple[list[str], int]:
    """Model-like outputs as `fmt` writes them: optional reasoning and content, 1-3 calls with mixed argument types."""
    rng = random.Random(seed)
    codec = get_codec(fmt, variant)
    texts, calls = [], 0
    for i in range(count):
        batch = [ToolCall(f"tool_{rng.randint(0, 30)}", {"city": rng.choice(["Paris", "Köln", "東京"]),
                                                         "days": rng.randint(1, 14), "units": "metric",
                                                         "filters": {"tags": ["a", "b"], "limit": i}})
                 for _ in range(rng.randint(1, 3))]
        calls += len(batch)
        texts.append(codec.render_assistant("Let me look that up." if i % 2 else None, batch,
                                            "The user wants data." if i % 3 == 0 else None).text)
    return texts, calls


def ours(texts: list[str]) -> int:
    parse = get_codec("hermes").parse
    return sum(len(parse(text).tool_calls) for text in texts)


def qwen_agent(texts: list[str]) -> int:
    from qwen_agent.llm.fncall_prompts.nous_fncall_prompt import NousFnCallPrompt
    from qwen_agent.llm.schema import ASSISTANT, ContentItem, Message

    prompt = NousFnCallPrompt()
    found = 0
    for text in texts:
        out = prompt.postprocess_fncall_messages([Message(role=ASSISTANT, content=[ContentItem(text=text)])])
        found += sum(1 for message in out if message.function_call)
    return found


def whole(fmt: str, variant: str | None) -> Callable[[list[str]], int]:
    def parse_all(texts: list[str]) -> int:
        parse = get_codec(fmt, variant).parse
        return sum(len(parse(text).tool_calls) for text in texts)

    parse_all.__name__ = f"{fmt} whole"
    return parse_all


def streamed(fmt: str, variant: str | None, chunk: int) -> Callable[[list[str]], int]:
    def stream_all(texts: list[str]) -> int:
        codec, found = get_codec(fmt, variant), 0
        for text in texts:
            stream = codec.stream()
            for start in range(0, len(text), chunk):
                stream.feed(text[start:start + chunk])
            stream.finish()
            found += len(stream.result().tool_calls)
        return found

    stream_all.__name__ = f"{fmt} streamed"
    return stream_all


def best_rate(fn, texts: list[str], calls: int, repeats: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        assert fn(texts) == calls, f"{fn.__name__} found a different number of calls"
        best = min(best, time.perf_counter() - start)
    return calls / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outputs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--formats", default="", help="comma-separated FORMAT[:VARIANT]; measures each, whole and "
                                                      "streamed, instead of the Hermes/Qwen-Agent comparison")
    parser.add_argument("--chunk", type=int, default=4, help="characters per streamed piece")
    args = parser.parse_args()
    if args.formats:
        print(f"outputs={args.outputs} repeats={args.repeats} chunk={args.chunk} (best run)")
        print("| format | calls | whole calls/s | streamed calls/s |\n|---|---|---|---|")
        for spec in args.formats.split(","):
            fmt, _, variant = spec.partition(":")
            texts, calls = make_texts(args.outputs, fmt=fmt, variant=variant or None)
            rate_whole = best_rate(whole(fmt, variant or None), texts, calls, args.repeats)
            rate_streamed = best_rate(streamed(fmt, variant or None, args.chunk), texts, calls, args.repeats)
            print(f"| {spec} | {calls} | {rate_whole:,.0f} | {rate_streamed:,.0f} |", flush=True)
        return
    texts, calls = make_texts(args.outputs)
    rate_ours = best_rate(ours, texts, calls, args.repeats)
    rate_qa = best_rate(qwen_agent, texts, calls, args.repeats)
    print(f"outputs={len(texts)} calls={calls} repeats={args.repeats} (best run)")
    print(f"qwen-tool hermes parse : {rate_ours:12,.0f} calls/s")
    print(f"qwen-agent nous parse  : {rate_qa:12,.0f} calls/s")
    print(f"speed-up               : {rate_ours / rate_qa:.1f}x")


if __name__ == "__main__":
    main()
