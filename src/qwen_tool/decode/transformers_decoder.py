"""The transformers backend: continuous batching over a preallocated KV cache (`kv_cache.SlotKVCache`).

Per decoding step one forward feeds every running row its last token; nothing is concatenated, so a step costs the
model's compute and attention over the rows' own lengths. A request joins as soon as a slot is free: its prompt is
prefilled alone (no padding computed; on a CPU prefill dominates), starting after the longest prefix whose keys and
values are already known: a running row's (a GRPO group shares one prompt: prefilled once) or a finished request's
kept in a small store (the next turn of a conversation extends the previous one). A finished row's slot is refilled
by the last row, so the running batch always occupies the first slots.

The step API (`add`, `step`, `remove`) is what the server's request loop drives; `generate` runs a whole set of
requests to their ends for evaluation and RL.
"""

from __future__ import annotations

import copy
import inspect
import itertools
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from qwen_tool import QwenToolError
from qwen_tool.decode.attention import using_slot_attention
from qwen_tool.decode.guidance import Guidance
from qwen_tool.decode.kv_cache import SlotKVCache, decode_mask, prefill_mask
from qwen_tool.decode.progress import DecodeProgress
from qwen_tool.decode.request import Completion, CompletionCallback, Request, SamplingParams
from qwen_tool.decode.sampling import choose_tokens
from qwen_tool.log import logger
from qwen_tool.models import stop_token_ids

MIN_SHARED_PREFIX = 8
"""Shorter common prefixes are prefilled again (copying them saves less than it costs to look for them)."""


@dataclass
class Token:
    """One generated token of a row."""

    row: int
    """The row's id (from `add`)."""
    token_id: int
    logprob: float | None
    finished: str | None
    """"stop" or "length" when this token ends the row, else None."""


@dataclass
class _Row:
    id: int
    prompt_ids: list[int]
    params: SamplingParams
    stop_ids: frozenset[int]
    generator: torch.Generator | None
    matcher: Any
    cached_tokens: int = 0
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    length: int = 0
    """Tokens whose keys and values are in the cache (the last generated token is not, until the next step)."""

    def known_ids(self) -> list[int]:
        return (self.prompt_ids + self.generated)[:self.length]


class PrefixStore:
    """Keys and values of finished sequences, least recently used dropped first past `budget_bytes`."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.entries: OrderedDict[int, tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], int]] = \
            OrderedDict()
        self._ids = itertools.count()
        self.used = 0

    def add(self, ids: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in keys + values)
        if size > self.budget_bytes:
            return
        while self.entries and self.used + size > self.budget_bytes:
            *_, dropped = self.entries.popitem(last=False)[1]
            self.used -= dropped
        self.entries[next(self._ids)] = (torch.tensor(ids), keys, values, size)
        self.used += size

    def longest(self, prompt_T: torch.Tensor) -> tuple[int | None, int]:
        """(entry key, length) of the entry sharing the longest prefix with the prompt."""
        best: tuple[int | None, int] = (None, 0)
        for key, (ids_T, *_rest) in self.entries.items():
            shared = common_prefix(ids_T, prompt_T)
            if shared > best[1]:
                best = (key, shared)
        if best[0] is not None:
            self.entries.move_to_end(best[0])
        return best

    def clear(self) -> None:
        self.entries.clear()
        self.used = 0


def common_prefix(a_T: torch.Tensor, b_T: torch.Tensor) -> int:
    """Length of the longest common prefix of two 1-D id tensors."""
    width = min(a_T.shape[0], b_T.shape[0])
    return int((a_T[:width] == b_T[:width]).long().cumprod(0).sum())


def check_full_attention(config: Any) -> None:
    """The cache assumes every layer attends to every earlier token; refuse sliding-window and hybrid models."""
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    if layer_types != {"full_attention"} or sliding:
        raise QwenToolError(f"the transformers decoder handles full-attention models, and {config.model_type} has "
                            f"{sorted(layer_types)} layers (sliding window {getattr(config, 'sliding_window', None)});"
                            " fix: decode with the vLLM backend (--backend vllm)")


def kv_shape(config: Any) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of a model's KV cache."""
    heads = config.num_attention_heads
    return (config.num_hidden_layers, getattr(config, "num_key_value_heads", None) or heads,
            getattr(config, "head_dim", None) or config.hidden_size // heads)


@torch.inference_mode()
def time_decode_step(model: Any, rows: int, context: int, steps: int) -> float:
    """Mean seconds of one decode step of this backend for `rows` rows over `context` cached tokens each (what cost
    projections need). The cache holds random keys and values: what they are does not change the cost, so no prefill
    is paid for them. The first step is not timed."""
    import time

    check_full_attention(model.config)
    layers, heads, head_dim = kv_shape(model.config)
    kv = SlotKVCache(layers, rows, heads, head_dim, context + steps + 1, model.dtype, model.device)
    for tensor in kv.keys + kv.values:
        tensor[:, :, :context].normal_()
    length_B = torch.full((rows,), context, device=model.device)
    input_ids_B1 = torch.randint(0, int(model.config.vocab_size), (rows, 1), device=model.device)
    keyword = cache_keyword(model)
    started = 0.0
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()
        decode_forward(model, kv, keyword, input_ids_B1, length_B)
        length_B = length_B + 1
    return (time.perf_counter() - started) / steps


def decode_forward(model: Any, kv: SlotKVCache, keyword: str, input_ids_B1: torch.Tensor,
                   length_B: torch.Tensor) -> torch.Tensor:
    """One decode step of the B running rows: row b's token goes to column length_b of its slot; next-token logits
    (B, V)."""
    kv.plan_decode(length_B)
    with using_slot_attention(model):
        return model(input_ids=input_ids_B1, position_ids=length_B[:, None],
                     attention_mask=decode_mask(length_B, model.dtype), **{keyword: kv}, use_cache=True,
                     logits_to_keep=1).logits[:, -1]


def cache_keyword(model: Any) -> str:
    """The forward keyword that takes a cache: `cache` in newer transformers, `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class TransformersDecoder:
    """Continuous batching with a transformers causal LM (the dependency-light backend; CPU default where vLLM is
    not faster).

    `prefill_model`: a copy of the model in another dtype that prefills prompts (a bf16 prefill on CPUs with native
    bf16 is ~2.6x faster; the keys and values it writes are cast to the cache's dtype). `prefix_cache_mb`: memory for
    the keys and values of finished requests, reused by later prompts that extend them (0: none). `kv_dtype`: the
    cache's dtype (default the model's); a model whose forward runs in autocast reads keys and values in the autocast
    dtype anyway, so a cache in that dtype gives the same logits without casting the whole cache at every step.
    """

    backend = "transformers"

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 16, prefill_dtype: str | None = None,
                 prefix_cache_mb: int = 512, seed: int | None = None, kv_dtype: torch.dtype | None = None) -> None:
        if max_batch < 1 or prefix_cache_mb < 0:
            raise QwenToolError(f"max_batch {max_batch} / prefix_cache_mb {prefix_cache_mb}; fix: max_batch >= 1, "
                                "prefix_cache_mb >= 0")
        config = model.config
        check_full_attention(config)
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        self.prefill_model = model
        if prefill_dtype:
            from qwen_tool.models import torch_dtype

            dtype = torch_dtype(prefill_dtype)  # an unknown name stops here with the valid choices
            if dtype != model.dtype:
                self.prefill_model = copy.deepcopy(model).to(dtype)
        self.cache_keyword = cache_keyword(model)
        self.stop_ids = stop_token_ids(tokenizer)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.max_context: int | None = getattr(config, "max_position_embeddings", None)
        self._kv_shape = kv_shape(config)
        self.kv_dtype = kv_dtype or model.dtype
        self.kv: SlotKVCache | None = None
        self.rows: list[_Row] = []
        self.prefixes = PrefixStore(prefix_cache_mb * 2**20)
        self.shared_generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._guidance: Guidance | None = None
        self._ids = itertools.count()
        self.prefilled_tokens = self.reused_tokens = 0

    # ---- weights ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update_weights(self, model: Any) -> None:
        """Decode with `model`'s weights from now on; stored prefixes (computed by the old weights) are dropped."""
        if model is not self.model:
            self.model.load_state_dict(model.state_dict())
        if self.prefill_model is not self.model:
            self.prefill_model.load_state_dict(self.model.state_dict())
        self.prefixes.clear()

    def close(self) -> None:
        self.kv, self.rows = None, []
        self.prefixes.clear()

    # ---- step API -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def add(self, requests: Sequence[Request]) -> list[Token]:
        """Prefill new rows and join them to the running batch; their first tokens (ids in `Token.row`)."""
        self._reserve(max(len(r.prompt_ids) + r.params.max_tokens for r in requests))
        assert self.kv is not None
        if len(self.rows) + len(requests) > self.kv.slots:
            raise QwenToolError(f"{len(self.rows)} running rows plus {len(requests)} new exceed the {self.kv.slots} "
                                "slots of the cache; fix: add rows as slots free up")
        joined, logits = [], []
        first_slot = len(self.rows)
        try:
            for request in requests:
                row = self._new_row(request)
                slot = len(self.rows)
                self.rows.append(row)
                logits.append(self._prefill(row, slot))
                joined.append(row)
            return self._choose(joined, torch.stack(logits))
        except BaseException:
            # All or none: the caller never learnt these rows' ids, so it could not remove them.
            del self.rows[first_slot:]
            raise

    @torch.inference_mode()
    def step(self) -> list[Token]:
        """Feed every running row its last token; the next token of each row, in row order."""
        if not self.rows:
            return []
        assert self.kv is not None
        device = self.model.device
        length_B = torch.tensor([row.length for row in self.rows], device=device)
        input_ids_B1 = torch.tensor([[row.generated[-1]] for row in self.rows], device=device)
        logits_BV = decode_forward(self.model, self.kv, self.cache_keyword, input_ids_B1, length_B)
        for row in self.rows:
            row.length += 1
        return self._choose(self.rows, logits_BV)

    @torch.inference_mode()  # the cache holds inference tensors: moving a row writes into them
    def remove(self, row_ids: Sequence[int]) -> None:
        """Rows leave the batch (finished or cancelled); each vacated slot takes the last row, whose keys and values
        are copied over. A finished row's keys and values go to the prefix store."""
        gone = set(row_ids)
        for slot in sorted((s for s, row in enumerate(self.rows) if row.id in gone), reverse=True):
            row = self.rows[slot]
            if self.kv is not None and self.prefixes.budget_bytes and row.length >= MIN_SHARED_PREFIX:
                self.prefixes.add(row.known_ids(), *self.kv.read_slot(slot, row.length))
            last = len(self.rows) - 1
            if slot != last and self.kv is not None:
                self.kv.copy_slot(last, slot, self.rows[last].length)
            self.rows[slot] = self.rows[last]
            self.rows.pop()

    # ---- whole requests -----------------------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request], *, on_done: CompletionCallback | None = None,
                 progress: str | None = None) -> list[Completion]:
        """Every request to its end, longest prompt first, a finished row's slot refilled at once."""
        if self.rows:
            raise QwenToolError("generate() needs an idle decoder, and rows from the step API are running; fix: "
                                "finish or remove them first")
        results: list[Completion | None] = [None] * len(requests)
        waiting = deque(sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_ids)))
        index_of: dict[int, int] = {}
        was_training = self.model.training
        self.model.eval()
        try:
            with DecodeProgress(progress, len(requests)) as bar:
                while waiting or self.rows:
                    free = self.max_batch - len(self.rows)
                    if waiting and free:
                        joining = [waiting.popleft() for _ in range(min(free, len(waiting)))]
                        tokens = self.add([requests[i] for i in joining])
                        index_of.update({token.row: i for token, i in zip(tokens, joining, strict=True)})
                    else:
                        tokens = self.step()
                    bar.tokens(len(tokens))
                    reasons = {token.row: token.finished for token in tokens if token.finished}
                    for row in (r for r in self.rows if r.id in reasons):
                        index = index_of.pop(row.id)
                        results[index] = self._completion(row, reasons[row.id])
                        if on_done is not None:
                            on_done(index, results[index])
                        bar.done()
                    self.remove(list(reasons))
        finally:
            # The cache is freed between calls (an RL step trains in between; it is reallocated in well under a
            # second); the prefix store stays, so the next turn of an episode still starts from its known part.
            self.rows, self.kv = [], None
            self.model.train(was_training)
        return [r for r in results if r is not None]

    # ---- internals ----------------------------------------------------------------------------------------------
    def _new_row(self, request: Request) -> _Row:
        params = request.params
        if not request.prompt_ids:
            raise QwenToolError("a request has an empty prompt; fix: give at least one prompt token")
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        matcher = None
        if params.guide is not None:
            if self._guidance is None:
                self._guidance = Guidance(self.tokenizer, self.vocab_size, self.stop_ids)
            matcher = self._guidance.matcher(params.guide)
        stops = frozenset(params.stop_token_ids if params.stop_token_ids is not None else self.stop_ids)
        return _Row(next(self._ids), list(request.prompt_ids), params, stops, generator, matcher)

    def _reserve(self, tokens: int) -> None:
        """A cache of `max_batch` slots of at least `tokens` positions: allocated on first use, reallocated when idle
        and `max_batch` grew, its capacity doubled when a longer request comes."""
        if self.kv is None or (self.kv.slots < self.max_batch and not self.rows):
            layers, heads, head_dim = self._kv_shape
            capacity = max(256, -(-tokens // 256) * 256, self.kv.capacity if self.kv is not None else 0)
            self.kv = None  # the old one's memory goes first
            self.kv = SlotKVCache(layers, self.max_batch, heads, head_dim, capacity, self.kv_dtype, self.model.device)
            logger.debug("KV cache: %d slots x %d tokens, %.0f MB", self.max_batch, capacity, self.kv.bytes() / 2**20)
        elif tokens > self.kv.capacity:
            self.kv.grow(max(tokens, 2 * self.kv.capacity))

    def _prefill(self, row: _Row, slot: int) -> torch.Tensor:
        """Fill the slot with the row's prompt, reusing the longest known prefix; the last position's logits (V,)."""
        assert self.kv is not None
        prompt_T = torch.tensor(row.prompt_ids)
        start = 0
        source, shared = None, 0
        for other_slot, other in enumerate(self.rows[:slot]):
            common = common_prefix(torch.tensor(other.known_ids()), prompt_T)
            if common > shared:
                source, shared = other_slot, common
        entry, stored = self.prefixes.longest(prompt_T)
        usable = len(row.prompt_ids) - 1  # the last prompt token is always fed: its logits pick the first token
        if max(shared, stored) >= MIN_SHARED_PREFIX:
            if shared >= stored:
                start = min(shared, usable)
                self.kv.copy_slot(source, slot, start)  # type: ignore[arg-type]
            else:
                start = min(stored, usable)
                _, keys, values, _ = self.prefixes.entries[entry]  # type: ignore[index]
                self.kv.load_slot(slot, [k[:, :start] for k in keys], [v[:, :start] for v in values])
        count = len(row.prompt_ids) - start
        device = self.model.device
        self.kv.plan_prefill(slot, start, count)
        with using_slot_attention(self.prefill_model):
            logits = self.prefill_model(
                input_ids=prompt_T[None, start:].to(device),
                position_ids=torch.arange(start, start + count, device=device)[None],
                attention_mask=prefill_mask(start, count, self.prefill_model.dtype, device),
                **{self.cache_keyword: self.kv}, use_cache=True, logits_to_keep=1).logits[0, -1]
        row.length, row.cached_tokens = len(row.prompt_ids), start
        self.prefilled_tokens += count
        self.reused_tokens += start
        return logits.float()

    def _choose(self, rows: list[_Row], logits_BV: torch.Tensor) -> list[Token]:
        matchers = [row.matcher for row in rows]
        guided = any(m is not None for m in matchers)
        if guided:
            assert self._guidance is not None
            logits_BV = self._guidance.mask(logits_BV, matchers)
        tokens, logprobs = choose_tokens(logits_BV, [row.params for row in rows], [row.generator for row in rows],
                                         self.shared_generator)
        if guided:
            Guidance.accept(matchers, tokens)
        out = []
        for b, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            row.generated.append(token)
            if row.params.logprobs and logprobs is not None:
                row.logprobs.append(logprobs[b])
            finished = ("stop" if token in row.stop_ids else
                        "length" if len(row.generated) >= row.params.max_tokens else None)
            out.append(Token(row.id, token, logprobs[b] if logprobs is not None else None, finished))
        return out

    @staticmethod
    def _completion(row: _Row, finish_reason: str) -> Completion:
        return Completion(list(row.generated), finish_reason, list(row.logprobs) if row.params.logprobs else None,
                          prompt_tokens=len(row.prompt_ids), cached_tokens=row.cached_tokens)
