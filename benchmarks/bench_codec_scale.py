"""Parse time against output length: one model output holding N calls, for every format, whole and streamed.

Each format renders N calls with its own template (so the text is what a model of that family writes), then the text
is parsed whole (`codec.parse`) and streamed (`codec.stream`, fed in chunks of `--chunk` characters, about a token).
Linear parsers take ~10x longer for 10x the calls; a quadratic one takes ~100x.

Last, the issue's own case end to end: `qwen-tool parse --format hermes` (a fresh process, start-up included) on the
largest count of one-argument Hermes calls.

Run: .venv/bin/python benchmarks/bench_codec_scale.py [--calls 10000,100000] [--chunk 4] [--formats hermes,glm]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from qwen_tool.codec import ToolCall, get_codec

FORMATS = [("hermes", None), ("qwen3_xml", None), ("llama3_json", None), ("pythonic", None), ("mistral", "v11"),
           ("mistral", "v3"), ("react", "react"), ("react", "qwen"), ("glm", "4.5"), ("glm", "4.7"),
           ("deepseek", "v3.1"), ("deepseek", "v3"), ("kimi_k2", None), ("harmony", None),
           ("deepseek_dsml", "v3.2"), ("deepseek_dsml", "v4"), ("deepseek_dsml", "v4.1"), ("kimi_k3", None),
           ("gemma4", None), ("functiongemma", None), ("mistral", "magistral_2506")]


def make_calls(count: int) -> list[ToolCall]:
    """`count` calls with a string, an integer and a nested argument (ids fixed, so renders are reproducible)."""
    return [ToolCall(f"tool_{i % 7}", {"city": "Paris", "days": i % 14, "filters": {"tags": ["a", "b"]}},
                     id=f"call{i:09d}") for i in range(count)]


def make_text(fmt: str, variant: str | None, count: int) -> str:
    """One output holding `count` calls as the format writes them."""
    return get_codec(fmt, variant).render_assistant(None, make_calls(count)).text


def time_whole(fmt: str, variant: str | None, text: str, expected: int) -> float:
    codec = get_codec(fmt, variant)
    start = time.perf_counter()
    parsed = codec.parse(text)
    elapsed = time.perf_counter() - start
    assert len(parsed.tool_calls) == expected and parsed.error is None, (fmt, len(parsed.tool_calls), parsed.error)
    return elapsed


def time_stream(fmt: str, variant: str | None, text: str, expected: int, chunk: int) -> float:
    codec = get_codec(fmt, variant)
    pieces = [text[i:i + chunk] for i in range(0, len(text), chunk)]
    start = time.perf_counter()
    stream = codec.stream()
    calls = 0
    for piece in pieces:
        calls += sum(1 for delta in stream.feed(piece) if "id" in (delta.get("tool_calls") or [{}])[0])
    calls += sum(1 for delta in stream.finish() if "id" in (delta.get("tool_calls") or [{}])[0])
    elapsed = time.perf_counter() - start
    assert calls == expected and stream.result().error is None, (fmt, calls, stream.result().error)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="10000,100000", help="comma-separated call counts")
    parser.add_argument("--chunk", type=int, default=4, help="characters per streamed piece")
    parser.add_argument("--formats", default="", help="comma-separated codec names (default: all, and auto)")
    args = parser.parse_args()
    counts = [int(c) for c in args.calls.split(",")]
    chosen = [f for f in FORMATS if not args.formats or f[0] in args.formats.split(",")]
    if not args.formats or "auto" in args.formats.split(","):
        chosen.append(("auto", None))
    import torch

    print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}; chunk {args.chunk} characters; "
          f"date: {subprocess.run(['date'], capture_output=True, text=True).stdout.strip()}")
    header = " | ".join(f"{n:,} calls: MB, whole s, stream s" for n in counts)
    print(f"| format | {header} |")
    for fmt, variant in chosen:
        cells = []
        for count in counts:
            source = ("hermes", None) if fmt == "auto" else (fmt, variant)
            text = make_text(*source, count)
            whole = time_whole(fmt, variant, text, count)
            streamed = time_stream(fmt, variant, text, count, args.chunk)
            cells.append(f"{len(text.encode()) / 1e6:.1f} | {whole:.2f} | {streamed:.2f}")
        label = fmt + (f" {variant}" if variant else "") + (" (Hermes text)" if fmt == "auto" else "")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    time_cli(max(counts))


def time_cli(count: int) -> None:
    """`qwen-tool parse` on `count` calls like the issue's (`get_weather(city)`), in a fresh process."""
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    with tempfile.TemporaryFile("w+b") as stdin:
        stdin.write((call * count).encode())
        stdin.seek(0)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "qwen_tool.cli", "parse", "--format", "hermes"], stdin=stdin,
                              capture_output=True, check=True)
        elapsed = time.perf_counter() - start
    assert done.stdout.count(b'"get_weather"') == count
    print(f"qwen-tool parse --format hermes, {count:,} calls ({len(call) * count / 1e6:.1f} MB): {elapsed:.2f} s "
          "(process start-up included)")


if __name__ == "__main__":
    main()
