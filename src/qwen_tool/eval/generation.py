"""Greedy generation for evaluation, text in and text out, through the one generation engine (`qwen_tool.decode`),
and an on-disk cache so re-scoring is free and an interrupted run resumes where it stopped (each generation is
written as soon as it finishes).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from qwen_tool import QwenToolError
from qwen_tool.codec.guided import GUIDE_KIND
from qwen_tool.log import logger

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from qwen_tool.decode import Completion, Decoder

@dataclass(frozen=True)
class GenerationSettings:
    """What determines a generation besides the model and the prompt (part of the cache key)."""

    max_new_tokens: int = 256
    """Upper bound per prompt; a row that reaches it is returned with finish_reason "length"."""
    batch_size: int = 8
    """Prompts decoded together (rows leave the batch as they finish)."""
    guided: bool = False
    """Tool calls decoded under each prompt's structural tag (`qwen_tool.codec.guided`); free text stays free."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise QwenToolError(f"generation settings {self} need max_new_tokens >= 1 and batch_size >= 1; "
                                "fix: pass positive values")

    def key(self) -> dict[str, Any]:
        """The fields that change the text (batch size does not, under greedy decoding)."""
        guided = {"guided": GUIDE_KIND} if self.guided else {}
        return {"max_new_tokens": self.max_new_tokens, "decoding": "greedy", **guided}


@dataclass
class Generation:
    text: str
    new_tokens: int
    """Generated tokens, the end-of-turn token included."""
    finish_reason: str
    """"stop" (end-of-turn token) or "length" (max_new_tokens reached)."""


class Backend(Protocol):
    """A model that continues prompts greedily."""

    model_id: str
    """Identifies the weights in cache keys (name plus a fingerprint of the files)."""

    def token_length(self, prompt: str) -> int: ...

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 guides: Sequence[str | None] | None = None,
                 on_done: Callable[[int, Generation], None] | None = None,
                 progress: str | None = None) -> list[Generation]:
        """`guides`: one structural tag (JSON text) or None per prompt, given when `settings.guided`;
        `on_done(index, generation)` as each prompt finishes; `progress`: a description to show progress under."""
        ...


def model_fingerprint(path: str | os.PathLike[str]) -> str:
    """Size and mtime of the weight files of a local model directory (changes when the model is re-saved)."""
    directory = Path(path)
    if not directory.is_dir():
        return "hub"
    parts = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in sorted(directory.iterdir())
             if p.suffix in (".safetensors", ".bin", ".json") and p.is_file()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class DecoderBackend:
    """Text in, text out, greedily, through a `qwen_tool.decode` decoder (the one generation engine)."""

    def __init__(self, decoder: Decoder, tokenizer: PreTrainedTokenizerBase, model_id: str) -> None:
        self.decoder, self.tokenizer, self.model_id = decoder, tokenizer, model_id

    def _encode(self, prompt: str) -> list[int]:
        # The rendered prompt already holds every special token the chat markup needs.
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def token_length(self, prompt: str) -> int:
        return len(self._encode(prompt))

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 guides: Sequence[str | None] | None = None,
                 on_done: Callable[[int, Generation], None] | None = None,
                 progress: str | None = None) -> list[Generation]:
        """`on_done(index, generation)` as each prompt finishes (the cache writes it at once)."""
        from qwen_tool.decode import Request, SamplingParams

        if hasattr(self.decoder, "max_batch"):
            self.decoder.max_batch = settings.batch_size
        requests = [Request(self._encode(prompt), SamplingParams(
            max_tokens=settings.max_new_tokens, guide=guides[i] if guides is not None else None))
            for i, prompt in enumerate(prompts)]

        def finished(index: int, completion: Completion) -> None:
            if on_done is not None:
                on_done(index, self._text(completion))

        return [self._text(c) for c in self.decoder.generate(requests, on_done=finished, progress=progress)]

    def _text(self, completion: Completion) -> Generation:
        stopped = completion.finish_reason == "stop"
        ids = completion.token_ids[:-1] if stopped else completion.token_ids
        return Generation(self.tokenizer.decode(ids, skip_special_tokens=True), len(completion.token_ids),
                          completion.finish_reason)


def load_backend(name: str, backend: str = "auto", device: str | None = None,
                 prefill_dtype: str | None = None) -> DecoderBackend:
    """A text backend on the decoder `qwen_tool.decode.load_decoder` picks for `backend` (auto, transformers,
    vllm). `prefill_dtype` applies to the transformers backend; "auto" prefills in bfloat16 only where bf16 is
    native (`qwen_tool.hardware`), else in the model's float32. The model id (part of the cache key) names the
    weights, and the backend and prefill dtype where they are not the defaults, so their generations never mix."""
    from qwen_tool.decode.loading import load_decoder
    from qwen_tool.hardware import prefill_dtype as resolve_prefill
    from qwen_tool.models import load_tokenizer, resolve

    prefill = resolve_prefill(prefill_dtype)
    decoder = load_decoder(name, backend, device=device, prefill_dtype=prefill, purpose="evaluation")
    model_id = f"{name}@{model_fingerprint(resolve(name).path)}"
    if decoder.backend == "vllm":
        model_id += "+vllm"
    elif prefill and prefill != "float32":
        model_id += f"+prefill-{prefill}"
    return DecoderBackend(decoder, load_tokenizer(name), model_id)


# ---------------------------------------------------------------- cache


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_hash(prompt: str) -> str:
    return _sha(prompt)[:16]


class GenerationCache:
    """JSON lines in `<dir>/<hash(model, settings)>.jsonl`, one generation per prompt hash, appended batch by batch
    (a line cut short by a kill is ignored on reading)."""

    def __init__(self, directory: str | os.PathLike[str], model_id: str, settings: GenerationSettings) -> None:
        tag = _sha(json.dumps({"model": model_id, **settings.key()}, sort_keys=True))[:16]
        self.path = Path(directory) / f"{tag}.jsonl"
        self.entries: dict[str, Generation] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self.entries[record["prompt"]] = Generation(record["text"], record["new_tokens"],
                                                                record["finish_reason"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def get(self, prompt: str) -> Generation | None:
        return self.entries.get(_sha(prompt))

    def add(self, items: list[tuple[str, Generation]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            for prompt, generation in items:
                key = _sha(prompt)
                self.entries[key] = generation
                fh.write(json.dumps({"prompt": key, **asdict(generation)}, ensure_ascii=False) + "\n")
            fh.flush()


def generate_all(backend: Backend, prompts: Sequence[str], settings: GenerationSettings,
                 cache_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                 description: str = "generating", guides: Sequence[str | None] | None = None) -> list[Generation]:
    """Generations for `prompts` (same order), from the cache where present; the rest is decoded in one call (the
    decoder batches continuously, longest prompt first), each generation written to the cache as it finishes. With
    `settings.guided`, `guides` holds each prompt's structural tag (None: that prompt decodes freely)."""
    if settings.guided != (guides is not None) or (guides is not None and len(guides) != len(prompts)):
        raise QwenToolError("guided generation needs one guide per prompt, and guides only with settings.guided; "
                            "fix: build them with qwen_tool.codec.guided.structural_tag")
    guide_of = dict(zip(prompts, guides, strict=True)) if guides is not None else {}
    cache = GenerationCache(cache_dir, backend.model_id, settings) if cache_dir is not None else None
    found: dict[str, Generation] = {}
    if cache is not None:
        for prompt in prompts:
            if (hit := cache.get(prompt)) is not None:
                found[prompt] = hit
    missing = sorted({p for p in prompts if p not in found}, key=backend.token_length, reverse=True)
    if found:
        logger.info("%s: %d of %d generations from the cache", description, len(prompts) - len(missing), len(prompts))
    if not missing:
        return [found[p] for p in prompts]

    def finished(index: int, generation: Generation) -> None:
        found[missing[index]] = generation
        if cache is not None:
            cache.add([(missing[index], generation)])

    missing_guides = [guide_of[p] for p in missing] if guides is not None else None
    generations = backend.generate(missing, settings, guides=missing_guides, on_done=finished,
                                   progress=description if progress else None)
    if len(generations) != len(missing):
        raise QwenToolError(f"backend {backend.model_id} returned {len(generations)} generations for "
                            f"{len(missing)} prompts; fix: the backend must return one per prompt")
    for index, generation in enumerate(generations):
        if missing[index] not in found:
            finished(index, generation)
    return [found[p] for p in prompts]
