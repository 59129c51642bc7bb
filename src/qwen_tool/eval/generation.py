"""Greedy generation for evaluation: backends (transformers on CPU by default, vLLM when installed) behind one
interface, and an on-disk cache so re-scoring is free and an interrupted run resumes where it stopped.

The transformers backend runs its own greedy loop instead of `model.generate`, for speed on small machines: prompts
are sorted by token length, each prompt is prefilled alone (no padding computed; prefill dominates on CPU) and the
caches are merged into one left-padded batch, each row stops at its end-of-turn token, and finished rows leave the
batch (their KV cache rows are dropped), so no compute is spent on padding or on text nobody reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from qwen_tool import QwenToolError
from qwen_tool.codec.guided import GUIDE_KIND
from qwen_tool.log import console, logger
from qwen_tool.models import stop_token_ids

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

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
                 guides: Sequence[str | None] | None = None) -> list[Generation]:
        """`guides`: one structural tag (JSON text) or None per prompt, given when `settings.guided`."""
        ...


def model_fingerprint(path: str | os.PathLike[str]) -> str:
    """Size and mtime of the weight files of a local model directory (changes when the model is re-saved)."""
    directory = Path(path)
    if not directory.is_dir():
        return "hub"
    parts = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in sorted(directory.iterdir())
             if p.suffix in (".safetensors", ".bin", ".json") and p.is_file()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class TransformersBackend:
    """Greedy decoding with a transformers causal LM: length-sorted batches, finished rows dropped from the batch."""

    per_row_prefill = True
    """Prefill prompts one by one and merge their caches (False: one padded batch, as `model.generate` does)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, model_id: str,
                 prefill_dtype: str | None = None) -> None:
        """`prefill_dtype` "bfloat16": prompts are prefilled by a bfloat16 copy of the model and decoded in the
        model's own dtype. On CPUs with native bf16 (AVX512-BF16, AMX) that prefill is ~1.7x faster while bf16
        decoding of small batches is slower, so the split keeps the fast half of each; the KV cache it hands over
        carries bf16 rounding, as a bf16 server's would. The model id records it, so cached generations of the
        two settings never mix."""
        self.model = model
        self.tokenizer = tokenizer
        self.prefill_model = model
        if prefill_dtype:
            from qwen_tool.models import torch_dtype

            dtype = torch_dtype(prefill_dtype)  # an unknown name stops here with the valid choices
            if dtype != model.dtype:
                import copy

                self.prefill_model = copy.deepcopy(model).to(dtype)
                model_id = f"{model_id}+prefill-{str(dtype).removeprefix('torch.')}"
        self.model_id = model_id
        self.stop_ids = stop_token_ids(tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if isinstance(pad, int) else self.stop_ids[0]
        self._grammar_compiler: Any = None  # built on the first guided batch
        self._grammars: dict[str, Any] = {}

    @classmethod
    def from_name(cls, name: str, dtype: str = "float32", device: str = "cpu",
                  prefill_dtype: str | None = None) -> TransformersBackend:
        from qwen_tool.models import load_model, load_tokenizer, resolve

        resolved = resolve(name)
        return cls(load_model(name, dtype=dtype, device=device), load_tokenizer(name),
                   f"{name}@{model_fingerprint(resolved.path)}", prefill_dtype=prefill_dtype)

    def _encode(self, prompt: str) -> list[int]:
        # The rendered prompt already holds every special token the chat markup needs.
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def token_length(self, prompt: str) -> int:
        return len(self._encode(prompt))

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 guides: Sequence[str | None] | None = None) -> list[Generation]:
        encoded = [self._encode(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        results: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            matchers = [self._matcher(guides[i]) for i in batch] if guides is not None else None
            for index, (tokens, stopped) in zip(batch, self._greedy([encoded[i] for i in batch],
                                                                    settings.max_new_tokens, matchers), strict=True):
                text_tokens = tokens[:-1] if stopped else tokens
                results[index] = Generation(self.tokenizer.decode(text_tokens, skip_special_tokens=True),
                                            len(tokens), "stop" if stopped else "length")
        return [r for r in results if r is not None]

    def _matcher(self, guide: str | None) -> Any:
        """An xgrammar matcher for one prompt's structural tag (compiled grammars are cached); None: unguided."""
        if guide is None:
            return None
        import xgrammar

        if self._grammar_compiler is None:
            vocab_size = self.model.get_output_embeddings().weight.shape[0]
            info = xgrammar.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab_size,
                                                           stop_token_ids=self.stop_ids)
            self._grammar_compiler = xgrammar.GrammarCompiler(info)
        if guide not in self._grammars:
            self._grammars[guide] = self._grammar_compiler.compile_structural_tag(guide)
        return xgrammar.GrammarMatcher(self._grammars[guide])

    @staticmethod
    def _pick(logits_BV: Any, matchers: list[Any] | None) -> Any:
        """Greedy tokens (B,); rows with a matcher choose among the tokens their grammar allows, then advance it."""
        if not matchers or all(m is None for m in matchers):
            return logits_BV.argmax(-1)
        import xgrammar

        logits_BV = logits_BV.float()
        bitmask = xgrammar.allocate_token_bitmask(len(matchers), logits_BV.shape[-1])
        for b, matcher in enumerate(matchers):
            if matcher is not None and not matcher.is_terminated():
                matcher.fill_next_token_bitmask(bitmask, b)
        xgrammar.apply_token_bitmask_inplace(logits_BV, bitmask.to(logits_BV.device))
        next_B = logits_BV.argmax(-1)
        for matcher, token in zip(matchers, next_B.tolist(), strict=True):
            if matcher is not None and not matcher.is_terminated():
                matcher.accept_token(token)
        return next_B

    def _prefill(self, rows: list[list[int]]) -> tuple[Any, Any, Any, Any]:
        """KV cache, attention mask (B, T), last position (B,) and next-token logits (B, V) of left-padded rows.

        Each row is prefilled alone (no padding tokens computed, causal attention without a mask), then the caches
        are left-padded with zeros into one batch; the padding is masked out during decoding. Models whose cache
        is not plain full attention (sliding windows, recurrent state) are prefilled as one padded batch instead.
        """
        import torch
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        device = self.model.device
        width = max(len(r) for r in rows)
        mask_BT = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        for b, row in enumerate(rows):
            mask_BT[b, width - len(row):] = 1
        last_position_B = torch.tensor([len(r) - 1 for r in rows], device=device)
        per_row_kv, first_tokens = [], []
        for row in rows if self.per_row_prefill else []:
            cache = DynamicCache()
            logits = self.prefill_model(input_ids=torch.tensor([row], device=device), past_key_values=cache,
                                        use_cache=True, logits_to_keep=1).logits
            if not all(type(layer) is DynamicLayer for layer in cache.layers):
                break
            per_row_kv.append([(layer.keys, layer.values) for layer in cache.layers])
            first_tokens.append(logits[0, -1])
        if len(per_row_kv) == len(rows):
            merged = []
            for layer_kv in zip(*per_row_kv, strict=True):
                heads, dim = layer_kv[0][0].shape[1], layer_kv[0][0].shape[3]
                keys_BHTD = torch.zeros((len(rows), heads, width, dim), dtype=self.model.dtype, device=device)
                values_BHTD = torch.zeros_like(keys_BHTD)
                for b, (keys, values) in enumerate(layer_kv):
                    keys_BHTD[b, :, width - keys.shape[2]:] = keys[0]
                    values_BHTD[b, :, width - values.shape[2]:] = values[0]
                merged.append((keys_BHTD, values_BHTD))
            return DynamicCache(ddp_cache_data=merged), mask_BT, last_position_B, torch.stack(first_tokens)
        input_ids_BT = torch.full((len(rows), width), self.pad_id, dtype=torch.long, device=device)
        for b, row in enumerate(rows):
            input_ids_BT[b, width - len(row):] = torch.tensor(row, device=device)
        positions_BT = (mask_BT.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(input_ids=input_ids_BT, attention_mask=mask_BT, position_ids=positions_BT,
                            past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        return cache, mask_BT, last_position_B, logits[:, -1]

    def _greedy(self, rows: list[list[int]], max_new_tokens: int,
                matchers: list[Any] | None = None) -> list[tuple[list[int], bool]]:
        """Greedy continuation of each row; returns (new token ids, ended at an end-of-turn token) per row.
        `matchers` (one per row, None for a free row) restrict each row's choices to its grammar."""
        import torch

        stop_ids = torch.tensor(self.stop_ids, device=self.model.device)
        outputs: list[list[int]] = [[] for _ in rows]
        stopped = [False] * len(rows)
        active = list(range(len(rows)))  # original row index of each batch row
        with torch.inference_mode():
            cache, mask_BT, last_position_B, logits_BV = self._prefill(rows)
            next_B = self._pick(logits_BV, matchers)
            for step in range(max_new_tokens):
                done_B = torch.isin(next_B, stop_ids)
                for b, token in enumerate(next_B.tolist()):
                    outputs[active[b]].append(token)
                for b in done_B.nonzero().flatten().tolist():
                    stopped[active[b]] = True
                if step == max_new_tokens - 1 or bool(done_B.all()):
                    break
                if bool(done_B.any()):  # drop finished rows from the batch, KV cache included
                    keep_B = (~done_B).nonzero().flatten()
                    cache.batch_select_indices(keep_B)
                    mask_BT, next_B, last_position_B = mask_BT[keep_B], next_B[keep_B], last_position_B[keep_B]
                    active = [active[b] for b in keep_B.tolist()]
                    matchers = [matchers[b] for b in keep_B.tolist()] if matchers else matchers
                mask_BT = torch.cat([mask_BT, mask_BT.new_ones((mask_BT.shape[0], 1))], dim=1)
                last_position_B = last_position_B + 1
                logits = self.model(input_ids=next_B[:, None], attention_mask=mask_BT,
                                    position_ids=last_position_B[:, None], past_key_values=cache,
                                    use_cache=True).logits
                next_B = self._pick(logits[:, -1], matchers)
        return list(zip(outputs, stopped, strict=True))


class VLLMBackend:
    """Greedy decoding with vLLM (GPU); imported only when constructed."""

    def __init__(self, name: str, **llm_kwargs: Any) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise QwenToolError("vLLM is not installed; fix: `pip install vllm` on a GPU machine, "
                                "or use the transformers backend") from err
        from qwen_tool.models import load_tokenizer, resolve

        resolved = resolve(name)
        self.tokenizer = load_tokenizer(name)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.model_id = f"{name}@{model_fingerprint(resolved.path)}"
        self.llm = LLM(model=resolved.path, **llm_kwargs)

    def token_length(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 guides: Sequence[str | None] | None = None) -> list[Generation]:
        from vllm import SamplingParams

        if guides is not None and any(g is not None for g in guides):
            raise QwenToolError("guided tool-call decoding runs on the transformers backend for now; fix: pass "
                                "--backend transformers, or evaluate without --guided")
        params = SamplingParams(temperature=0.0, max_tokens=settings.max_new_tokens, stop_token_ids=self.stop_ids,
                                skip_special_tokens=True)
        results = []
        for request in self.llm.generate(list(prompts), params, use_tqdm=False):
            completion = request.outputs[0]
            reason = "stop" if completion.finish_reason == "stop" else "length"
            results.append(Generation(completion.text, len(completion.token_ids), reason))
        return results


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def load_backend(name: str, backend: str = "auto", device: str | None = None,
                 prefill_dtype: str | None = None) -> Backend:
    """`auto`: vLLM when installed and a GPU is visible, else transformers (CPU unless `device` says otherwise).
    `prefill_dtype` applies to the transformers backend (see `TransformersBackend`); "auto" prefills in bfloat16 only
    where bf16 is native (`qwen_tool.hardware`), else in the model's float32."""
    from qwen_tool.hardware import prefill_dtype as resolve_prefill

    prefill_dtype = resolve_prefill(prefill_dtype)
    if backend == "auto":
        import torch

        backend = "vllm" if vllm_available() and torch.cuda.is_available() else "transformers"
    if backend == "vllm":
        return VLLMBackend(name)
    if backend == "transformers":
        return TransformersBackend.from_name(name, device=device or "cpu", prefill_dtype=prefill_dtype)
    raise QwenToolError(f"unknown generation backend {backend!r}; fix: use auto, transformers or vllm")


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
    """Generations for `prompts` (same order), from the cache where present; the rest is decoded longest first in
    batches of `settings.batch_size`, each batch written to the cache as soon as it is done. With `settings.guided`,
    `guides` holds each prompt's structural tag (None: that prompt decodes freely)."""
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
    if missing:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, disable=not progress, transient=True) as bar:
            task = bar.add_task(description, total=len(missing))
            for start in range(0, len(missing), settings.batch_size):
                chunk = missing[start:start + settings.batch_size]
                generations = (backend.generate(chunk, settings, guides=[guide_of[p] for p in chunk])
                               if guides is not None else backend.generate(chunk, settings))
                if len(generations) != len(chunk):
                    raise QwenToolError(f"backend {backend.model_id} returned {len(generations)} generations for "
                                        f"{len(chunk)} prompts; fix: the backend must return one per prompt")
                found.update(zip(chunk, generations, strict=True))
                if cache is not None:
                    cache.add(list(zip(chunk, generations, strict=True)))
                bar.advance(task, len(chunk))
    return [found[p] for p in prompts]
