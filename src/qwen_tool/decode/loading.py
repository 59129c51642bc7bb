"""Which backend decodes, and building it from a model name."""

from __future__ import annotations

import importlib.util
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.decode.request import Decoder
from qwen_tool.log import logger

BACKENDS = ("auto", "transformers", "vllm")


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def pick_backend(backend: str) -> str:
    """`auto`: vLLM where it is installed and a GPU is visible; transformers otherwise. On the dev box's CPU the main
    job's trained evaluation took 450 s through vLLM and 471 s through transformers, start-up counted, with all 600
    answers identical (BENCHMARKS.md, "Decoding engine"): 4 % is not worth an in-process engine that binds the
    process's threads (torch.set_num_threads stops working) in a job that trains next."""
    if backend not in BACKENDS:
        from qwen_tool import did_you_mean

        raise QwenToolError(f"unknown decoding backend {backend!r}; fix: {did_you_mean(backend, BACKENDS)}use one "
                            f"of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    import torch

    return "vllm" if vllm_available() and torch.cuda.is_available() else "transformers"


def load_decoder(name: str, backend: str = "auto", *, device: str | None = None, dtype: str = "float32",
                 prefill_dtype: str | None = None, max_batch: int = 16, seed: int | None = None,
                 purpose: str = "decoding", **vllm_options: Any) -> Decoder:
    """A decoder for a model name (built-in, local directory or hub id)."""
    from qwen_tool.models import load_model, load_tokenizer, resolve

    chosen = pick_backend(backend)
    logger.info("%s: %s backend%s", purpose, chosen, " (auto)" if backend == "auto" else "")
    tokenizer = load_tokenizer(name)
    if chosen == "vllm":
        from qwen_tool.decode.vllm_decoder import VLLMDecoder

        return VLLMDecoder(str(resolve(name).path), tokenizer, dtype=dtype, seed=seed or 0, max_batch=max_batch,
                           **vllm_options)
    if vllm_options:
        raise QwenToolError(f"options {sorted(vllm_options)} apply to the vLLM backend only; fix: drop them or "
                            "choose --backend vllm")
    from qwen_tool.decode.transformers_decoder import TransformersDecoder

    model = load_model(name, dtype=dtype, device=device or "cpu")
    return TransformersDecoder(model, tokenizer, max_batch=max_batch, prefill_dtype=prefill_dtype, seed=seed)
