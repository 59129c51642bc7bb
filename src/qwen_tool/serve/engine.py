"""Generation engines behind the server: a request queue feeding a batch that is refilled at every decoding step.

`BatchingEngine` owns the queue, the slots, stop conditions (end-of-turn token, stop strings, max_tokens) and
detokenisation; it runs in one background thread and drives a `StepModel`, which only turns rows into next tokens:
- `TransformersStepModel`: a causal LM with one shared KV cache; new requests are prefilled and joined to the running
  batch (left padding), finished or cancelled rows leave it, each row samples with its own settings;
- `ScriptedStepModel`: a fake model that replays given texts token by token (tests drive the whole server with it).
`VLLMEngine` hands the same interface to vLLM's async engine when vLLM is installed (GPU).

Requests talk to the engine through a `GenerationHandle`: an async iterator of `Piece`s; `cancel()` frees the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from qwen_tool import QwenToolError
from qwen_tool.log import logger
from qwen_tool.models import stop_token_ids

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class EngineBusy(QwenToolError):
    """The queue is full: the client should retry later (HTTP 503 with Retry-After)."""


class PromptTooLong(QwenToolError):
    """Prompt plus max_tokens exceed the model's context (HTTP 400)."""


class EngineError(QwenToolError):
    """The model failed while generating a request (HTTP 500); the engine keeps serving others."""


@dataclass(frozen=True)
class SamplingParams:
    """How one request decodes."""

    max_tokens: int
    """Generated tokens at most (the end-of-turn token counts)."""
    temperature: float = 1.0
    """0 is greedy; otherwise logits are divided by it before sampling."""
    top_p: float = 1.0
    """Nucleus sampling: sample among the most likely tokens holding this much probability."""
    stop: tuple[str, ...] = ()
    """Strings that end generation; the text is cut before the first one."""
    seed: int | None = None
    """Makes sampling reproducible for this request."""


@dataclass
class Piece:
    """New text of one request; the last piece carries `finish_reason` ("stop", "length", "error").

    `completion_tokens` counts the tokens generated so far, this piece's included.
    """

    text: str
    finish_reason: str | None = None
    completion_tokens: int = 0
    error: str | None = None


class GenerationHandle:
    """One request in flight: iterate its pieces (async); `cancel()` ends it and frees its slot at the next step."""

    def __init__(self, loop: asyncio.AbstractEventLoop, prompt_tokens: int) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Piece] = asyncio.Queue()
        self._cancelled = threading.Event()
        self.prompt_tokens = prompt_tokens
        self.done = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def push(self, piece: Piece) -> None:
        """Thread-safe: called from the engine thread."""
        with contextlib.suppress(RuntimeError):  # the event loop is gone (server shut down): nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, piece)

    def __aiter__(self) -> GenerationHandle:
        return self

    async def __anext__(self) -> Piece:
        if self.done:
            raise StopAsyncIteration
        piece = await self._queue.get()
        if piece.finish_reason is not None:
            self.done = True
        return piece


class Engine(Protocol):
    """What the server needs from a generation backend."""

    def submit(self, prompt: str, params: SamplingParams) -> GenerationHandle:
        """Queue a prompt (call from the event loop); raises EngineBusy when full, PromptTooLong when it cannot fit."""
        ...

    def stats(self) -> dict[str, int]:
        """`running` and `waiting` request counts."""
        ...

    def close(self) -> None: ...




def stop_holdback(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop string (not safe to emit yet)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class StepModel(Protocol):
    """Rows in, one next token per row per step out. Rows keep the order in which they were added."""

    max_context: int | None
    """Prompt plus generated tokens at most (None: unbounded)."""

    def add(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[int]:
        """Prefill new rows, append them to the batch, return each one's first token."""
        ...

    def step(self) -> list[int]:
        """Feed every row its last token; return each row's next token."""
        ...

    def keep(self, positions: list[int]) -> None:
        """Keep only these rows (positions in the current batch, ascending)."""
        ...


@dataclass
class _Row:
    handle: GenerationHandle
    params: SamplingParams
    prompt_ids: list[int]
    generated: list[int] = field(default_factory=list)
    emitted: int = 0
    """Characters of the decoded text already sent."""
    finished: bool = False


class BatchingEngine:
    """A queue and a background thread that decodes every running request one token per step.

    Waiting requests join the running batch at the next step while there are free slots (`max_batch`); more than
    `max_queue` waiting requests are refused with EngineBusy. A cancelled request leaves the batch at the next step.
    """

    def __init__(self, model: StepModel, tokenizer: PreTrainedTokenizerBase, *, max_batch: int = 8,
                 max_queue: int = 64) -> None:
        if max_batch < 1 or max_queue < 0:
            raise QwenToolError(f"engine needs max_batch >= 1 and max_queue >= 0 (got {max_batch}, {max_queue}); "
                                "fix: pass sensible sizes")
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_token_ids(tokenizer))
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._waiting: deque[_Row] = deque()
        self._running: list[_Row] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.max_rows_seen = 0
        """Largest batch decoded in one step (shows that requests were batched)."""

    # ---- event-loop side -------------------------------------------------------------------------------------
    def submit(self, prompt: str, params: SamplingParams) -> GenerationHandle:
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        limit = self.model.max_context
        if limit is not None and len(prompt_ids) + params.max_tokens > limit:
            raise PromptTooLong(f"the prompt has {len(prompt_ids)} tokens and max_tokens is {params.max_tokens}, "
                                f"more than the model's context of {limit}; fix: shorten the conversation or lower "
                                "max_tokens")
        handle = GenerationHandle(asyncio.get_running_loop(), len(prompt_ids))
        with self._wake:
            if self._closed:
                raise EngineBusy("the engine is shut down; fix: restart the server")
            if len(self._waiting) + len(self._running) >= self.max_batch + self.max_queue:
                raise EngineBusy(f"{len(self._running)} requests are running and {len(self._waiting)} waiting; "
                                 "fix: retry after a moment")
            self._waiting.append(_Row(handle, params, prompt_ids))
            self._start()
            self._wake.notify()
        return handle

    def stats(self) -> dict[str, int]:
        with self._wake:
            return {"running": len(self._running), "waiting": len(self._waiting)}

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="qwen-tool-engine", daemon=True)
            self._thread.start()

    # ---- engine thread ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._waiting and not self._running:
                    self._wake.wait()
                if self._closed:
                    break
            try:
                self._one_step()
            except Exception as err:  # noqa: BLE001 - a model failure ends its requests, never the server
                logger.exception("generation step failed")
                with self._wake:
                    rows, self._running = self._running, []
                for row in rows:
                    self._finish(row, "error", error=f"{type(err).__name__}: {err}")
                self.model.keep([])
        with self._wake:
            rows = self._running + list(self._waiting)
            self._running, self._waiting = [], deque()
        for row in rows:
            self._finish(row, "error", error="the server shut down")

    def _one_step(self) -> None:
        self._drop_done()
        if self._running:
            tokens = self.model.step()
            self.steps += 1
            self.max_rows_seen = max(self.max_rows_seen, len(tokens))
            for row, token in zip(self._running, tokens, strict=True):
                self._accept(row, token)
            self._drop_done()
        with self._wake:
            free = self.max_batch - len(self._running)
            joining: list[_Row] = []
            while self._waiting and len(joining) < free:
                row = self._waiting.popleft()
                if not row.handle.cancelled:
                    joining.append(row)
        if joining:
            try:
                tokens = self.model.add([row.prompt_ids for row in joining], [row.params for row in joining])
            except Exception as err:  # noqa: BLE001 - the joining requests fail; the running ones go on
                logger.exception("prefill failed")
                for row in joining:
                    self._finish(row, "error", error=f"{type(err).__name__}: {err}")
                return
            with self._wake:
                self._running.extend(joining)
            for row, token in zip(joining, tokens, strict=True):
                self._accept(row, token)
            self._drop_done()

    def _drop_done(self) -> None:
        keep = [i for i, row in enumerate(self._running) if not row.finished and not row.handle.cancelled]
        if len(keep) < len(self._running):
            self.model.keep(keep)
            with self._wake:
                self._running = [self._running[i] for i in keep]

    def _accept(self, row: _Row, token: int) -> None:
        """Append a token; emit the text that is certain; finish at end of turn, a stop string or max_tokens."""
        if row.finished or row.handle.cancelled:
            return
        row.generated.append(token)
        if token in self.stop_ids:
            self._finish(row, "stop", self._text(row, row.generated[:-1]))
            return
        text = self._text(row, row.generated)
        if text.endswith("\ufffd"):  # a multi-byte character is still incomplete
            if len(row.generated) >= row.params.max_tokens:
                self._finish(row, "length", text)
            return
        for stop in row.params.stop:
            at = text.find(stop, max(0, row.emitted - len(stop)))
            if at >= 0:
                self._finish(row, "stop", text[:at])
                return
        if len(row.generated) >= row.params.max_tokens:
            self._finish(row, "length", text)
            return
        safe = len(text) - stop_holdback(text, row.params.stop)
        if safe > row.emitted:
            row.handle.push(Piece(text[row.emitted:safe], completion_tokens=len(row.generated)))
            row.emitted = safe

    def _text(self, row: _Row, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _finish(self, row: _Row, reason: str, text: str = "", error: str | None = None) -> None:
        row.finished = True
        tail = text[row.emitted:] if len(text) > row.emitted else ""
        row.handle.push(Piece(tail, reason, len(row.generated), error))


# ---- step models -------------------------------------------------------------------------------------------------


class ScriptedStepModel:
    """A fake model for tests: each new row replays `respond(prompt_text)` token by token, then an end-of-turn token.

    `token_delay_s` makes each step take time (to test timeouts, disconnects and backpressure).
    """

    max_context: int | None = None

    def __init__(self, tokenizer: PreTrainedTokenizerBase, respond: Callable[[str], str],
                 token_delay_s: float = 0.0) -> None:
        self.tokenizer = tokenizer
        self.respond = respond
        self.token_delay_s = token_delay_s
        self.end_of_turn = stop_token_ids(tokenizer)[0]
        self.rows: list[deque[int]] = []
        self.prompts: list[str] = []
        """Every prompt seen, in order (tests assert what the server rendered)."""

    def add(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[int]:
        for ids in prompts:
            prompt = self.tokenizer.decode(ids, skip_special_tokens=False)
            self.prompts.append(prompt)
            script = self.tokenizer(self.respond(prompt), add_special_tokens=False)["input_ids"]
            self.rows.append(deque([*script, self.end_of_turn]))
        return [self._next(row) for row in self.rows[-len(prompts):]]

    def step(self) -> list[int]:
        if self.token_delay_s:
            time.sleep(self.token_delay_s)
        return [self._next(row) for row in self.rows]

    def keep(self, positions: list[int]) -> None:
        self.rows = [self.rows[i] for i in positions]

    def _next(self, row: deque[int]) -> int:
        return row.popleft() if row else self.end_of_turn


class TransformersStepModel:
    """A transformers causal LM decoding a batch with one KV cache; rows join and leave between steps.

    All padding is on the left: a joining group is prefilled alone, then both caches are left-padded to the same
    length and concatenated along the batch; columns no row needs any more are trimmed.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        import torch

        self.model = model
        self.torch = torch
        self.device = model.device
        pad = tokenizer.pad_token_id
        self.pad_id = pad if isinstance(pad, int) else stop_token_ids(tokenizer)[0]
        self.max_context: int | None = getattr(model.config, "max_position_embeddings", None)
        self._reset()

    def _reset(self) -> None:
        self.cache: Any = None
        self.mask_BT: torch.Tensor | None = None  # (B, T) 1 where a real token sits
        self.last_B: torch.Tensor | None = None  # (B,) last sampled token
        self.position_B: torch.Tensor | None = None  # (B,) position of the last sampled token
        self.params: list[SamplingParams] = []
        self.generators: list[torch.Generator | None] = []

    def add(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[int]:
        from transformers import DynamicCache

        torch = self.torch
        width = max(len(p) for p in prompts)
        ids_BT = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask_BT = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, prompt in enumerate(prompts):
            ids_BT[b, width - len(prompt):] = torch.tensor(prompt)
            mask_BT[b, width - len(prompt):] = 1
        ids_BT, mask_BT = ids_BT.to(self.device), mask_BT.to(self.device)
        positions_BT = (mask_BT.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        with torch.inference_mode():
            logits_BV = self.model(input_ids=ids_BT, attention_mask=mask_BT, position_ids=positions_BT,
                                   past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        generators = [self._generator(p) for p in params]
        tokens = self._sample(logits_BV, params, generators)
        new_last_B = torch.tensor(tokens, device=self.device)
        if self.cache is None:
            self.cache, self.mask_BT, self.last_B, self.position_B = cache, mask_BT, new_last_B, positions_BT[:, -1]
        else:
            self.cache, self.mask_BT = self._concat(self.cache, self.mask_BT, cache, mask_BT)
            self.last_B = torch.cat([self.last_B, new_last_B])
            self.position_B = torch.cat([self.position_B, positions_BT[:, -1]])
        self.params += params
        self.generators += generators
        return tokens

    def step(self) -> list[int]:
        torch = self.torch
        self.mask_BT = torch.cat([self.mask_BT, self.mask_BT.new_ones((self.mask_BT.shape[0], 1))], dim=1)
        self.position_B = self.position_B + 1
        with torch.inference_mode():
            logits_BV = self.model(input_ids=self.last_B[:, None], attention_mask=self.mask_BT,
                                   position_ids=self.position_B[:, None], past_key_values=self.cache,
                                   use_cache=True).logits[:, -1]
        tokens = self._sample(logits_BV, self.params, self.generators)
        self.last_B = torch.tensor(tokens, device=self.device)
        return tokens

    def keep(self, positions: list[int]) -> None:
        if not positions:
            self._reset()
            return
        if self.cache is None or positions == list(range(len(self.params))):
            return
        index = self.torch.tensor(positions, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask_BT, self.last_B, self.position_B = self.mask_BT[index], self.last_B[index], self.position_B[index]
        self.params = [self.params[i] for i in positions]
        self.generators = [self.generators[i] for i in positions]
        unused = int((self.mask_BT.sum(0) == 0).long().cumprod(0).sum())  # leading columns no row attends to
        if unused:
            self.cache = self._rebuild(self.cache, lambda t: t[:, :, unused:])
            self.mask_BT = self.mask_BT[:, unused:]

    def _generator(self, params: SamplingParams) -> torch.Generator | None:
        if params.seed is None:
            return None
        return self.torch.Generator().manual_seed(params.seed)

    @staticmethod
    def _sample(logits_BV: torch.Tensor, params: list[SamplingParams],
                generators: list[torch.Generator | None]) -> list[int]:
        from qwen_tool.serve.sampling import sample_next

        return sample_next(logits_BV, [p.temperature for p in params], [p.top_p for p in params], generators)

    @staticmethod
    def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _rebuild(self, cache: Any, change: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        from transformers import DynamicCache

        return DynamicCache([(change(k), change(v)) for k, v in self._layers(cache)])

    def _concat(self, cache_a: Any, mask_a: torch.Tensor, cache_b: Any, mask_b: torch.Tensor) -> tuple[Any, Any]:
        """Stack two batches (caches (B, H, T, D) and masks (B, T)) after left-padding the shorter one."""
        from transformers import DynamicCache

        torch = self.torch
        width = max(mask_a.shape[1], mask_b.shape[1])

        def pad(t: torch.Tensor, dim: int) -> torch.Tensor:
            missing = width - t.shape[dim]
            if not missing:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        layers = [(torch.cat([pad(ka, 2), pad(kb, 2)]), torch.cat([pad(va, 2), pad(vb, 2)]))
                  for (ka, va), (kb, vb) in zip(self._layers(cache_a), self._layers(cache_b), strict=True)]
        return DynamicCache(layers), torch.cat([pad(mask_a, 1), pad(mask_b, 1)])


# ---- vLLM --------------------------------------------------------------------------------------------------------


class VLLMEngine:
    """vLLM's async engine behind the same interface (GPU; imported only when constructed).

    vLLM batches continuously on its own; here we only bound the number of requests in flight and translate its
    cumulative outputs into pieces, stop strings included (vLLM applies them itself).
    """

    def __init__(self, model_path: str, tokenizer: PreTrainedTokenizerBase, *, max_in_flight: int = 256,
                 **engine_kwargs: Any) -> None:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as err:
            raise QwenToolError("vLLM is not installed; fix: `pip install vllm` on a GPU machine, or use "
                                "--backend transformers") from err
        self.tokenizer = tokenizer
        self.stop_ids = stop_token_ids(tokenizer)
        self.max_in_flight = max_in_flight
        self.engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(model=model_path, **engine_kwargs))
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count()

    def submit(self, prompt: str, params: SamplingParams) -> GenerationHandle:
        from vllm import SamplingParams as VLLMSamplingParams

        if len(self._tasks) >= self.max_in_flight:
            raise EngineBusy(f"{len(self._tasks)} requests are in flight; fix: retry after a moment")
        prompt_tokens = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        handle = GenerationHandle(asyncio.get_running_loop(), prompt_tokens)
        sampling = VLLMSamplingParams(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                                      stop=list(params.stop), stop_token_ids=self.stop_ids, seed=params.seed,
                                      skip_special_tokens=False)
        task = asyncio.get_running_loop().create_task(self._run(handle, prompt, sampling, f"req-{next(self._ids)}"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return handle

    async def _run(self, handle: GenerationHandle, prompt: str, sampling: Any, request_id: str) -> None:
        sent, tokens = 0, 0
        try:
            async for output in self.engine.generate(prompt, sampling, request_id):
                if handle.cancelled:
                    await self.engine.abort(request_id)
                    return
                completion = output.outputs[0]
                tokens = len(completion.token_ids)
                if completion.finish_reason is not None:
                    reason = "length" if completion.finish_reason == "length" else "stop"
                    handle.push(Piece(completion.text[sent:], reason, tokens))
                    return
                handle.push(Piece(completion.text[sent:], completion_tokens=tokens))
                sent = len(completion.text)
        except Exception as err:  # noqa: BLE001 - one failed request never takes the server down
            logger.exception("vLLM request failed")
            handle.push(Piece("", "error", tokens, f"{type(err).__name__}: {err}"))

    def stats(self) -> dict[str, int]:
        return {"running": len(self._tasks), "waiting": 0}

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        shutdown = getattr(self.engine, "shutdown", None)
        if callable(shutdown):
            shutdown()


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def load_engine(name: str, backend: str = "auto", *, device: str | None = None, dtype: str = "float32",
                max_batch: int = 8, max_queue: int = 64) -> Engine:
    """An engine for a model name (built-in, local directory or hub id).

    `auto`: vLLM when installed and a GPU is visible, else transformers (CPU unless `device` says otherwise).
    """
    from qwen_tool.models import load_model, load_tokenizer, resolve

    if backend == "auto":
        import torch

        backend = "vllm" if vllm_available() and torch.cuda.is_available() else "transformers"
    tokenizer = load_tokenizer(name)
    if backend == "vllm":
        return VLLMEngine(str(resolve(name).path), tokenizer, max_in_flight=max_batch + max_queue)
    if backend == "transformers":
        model = load_model(name, dtype=dtype, device=device or "cpu")
        return BatchingEngine(TransformersStepModel(model, tokenizer), tokenizer, max_batch=max_batch,
                              max_queue=max_queue)
    raise QwenToolError(f"unknown serving backend {backend!r}; fix: use auto, transformers or vllm")
