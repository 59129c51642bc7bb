"""Do the two decoding backends write the same greedy answers? The main job's BFCL evaluation of a model, once per
backend, in one process, compared answer by answer.

    .venv/bin/python benchmarks/backend_agreement.py --model runs/main/sft/final [--config CONFIG]

Both decode in float32 with the recipe's guidance, batch size, token cap and category limits. Prints the share of
identical answers, the accuracy under each backend, and the first differing answers side by side.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--config", default="configs/main-smollm2-cpu.yaml")
    parser.add_argument("--show", type=int, default=5, help="differing answers to print")
    parser.add_argument("--transformers-cache", type=Path, default=None,
                        help="generation cache of an evaluation already run with the transformers backend (e.g. "
                             "runs/main/eval/trained/.generation-cache): its answers are read, not decoded again")
    args = parser.parse_args()

    from qwen_tool.config import PipelineConfig, load_config
    from qwen_tool.eval.generation import load_backend
    from qwen_tool.eval.runner import run_bfcl

    cfg = load_config(PipelineConfig, args.config)
    outcomes, accuracy, seconds = {}, {}, {}
    with tempfile.TemporaryDirectory() as directory:
        for backend in ("transformers", "vllm"):
            started = time.perf_counter()
            generator = load_backend(args.model, backend, prefill_dtype="float32")
            out = Path(directory) / backend
            metrics = run_bfcl(args.model, cfg.eval.categories, dict(cfg.eval.limits), out, backend=generator,
                               batch_size=cfg.eval.batch_size, max_new_tokens=cfg.eval.max_new_tokens,
                               cache_dir=(args.transformers_cache if backend == "transformers" and
                                          args.transformers_cache else out / "cache"),
                               guided=cfg.eval.decoding[0] == "guided", progress=False)  # its first decoding
            seconds[backend] = round(time.perf_counter() - started, 1)
            accuracy[backend] = {c: m["accuracy"] for c, m in metrics["categories"].items()}
            outcomes[backend] = {o["id"]: o for o in map(json.loads, (out / "outcomes.jsonl").read_text().splitlines())}
            generator.decoder.close()
    ids = sorted(outcomes["transformers"])
    differ = [i for i in ids if outcomes["transformers"][i]["raw_output"] != outcomes["vllm"][i]["raw_output"]]
    verdicts = sum(outcomes["transformers"][i]["valid"] != outcomes["vllm"][i]["valid"] for i in ids)
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "model": args.model, "answers": len(ids),
                      "identical": len(ids) - len(differ), "identical_share": round(1 - len(differ) / len(ids), 4),
                      "verdicts_that_differ": verdicts, "accuracy": accuracy, "seconds_with_start_up": seconds},
                     indent=2))
    for i in differ[:args.show]:
        print(f"--- {i}\ntransformers: {outcomes['transformers'][i]['raw_output']!r}\n"
              f"vllm:         {outcomes['vllm'][i]['raw_output']!r}")


if __name__ == "__main__":
    main()
