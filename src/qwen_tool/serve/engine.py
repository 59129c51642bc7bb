"""The server's request loop: a queue feeding a decoder's running batch, one decoding step at a time.

`BatchingEngine` owns what is about requests rather than decoding: the queue and its backpressure, detokenisation,
stop strings (text that may be the start of one is held back), cancellation and failures. It runs in one background
thread and drives a decoder's step API (`StepDecoder`: `qwen_tool.decode.transformers_decoder.TransformersDecoder`, or
`qwen_tool.testing.ScriptedDecoder` in tests), which decides everything about tokens: sampling, guidance, end-of-turn
tokens and max_tokens. `VLLMEngine` hands the same interface to vLLM's async engine when vLLM is installed (GPU).

Requests talk to the engine through a `GenerationHandle`: an async iterator of `Piece`s; `cancel()` frees the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from qwen_tool import QwenToolError
from qwen_tool.decode import Request, SamplingParams
from qwen_tool.log import logger

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from qwen_tool.decode.transformers_decoder import Token


class EngineBusy(QwenToolError):
    """The queue is full: the client should retry later (HTTP 503 with Retry-After)."""


class PromptTooLong(QwenToolError):
    """Prompt plus max_tokens exceed the model's context (HTTP 400)."""


@dataclass(frozen=True)
class ServeParams:
    """How one request is served: the decoder's settings, plus stop strings, which the engine applies to the text
    (the decoder sees only tokens, and one stop string may span several)."""

    sampling: SamplingParams
    stop: tuple[str, ...] = ()
    """Strings that end generation; the text is cut before the first one."""


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

    guides: bool
    """Whether `SamplingParams.guide` is honoured (tool calls held to the offered schemas); False: it is ignored."""

    def submit(self, prompt: str, params: ServeParams) -> GenerationHandle:
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


class StepDecoder(Protocol):
    """A decoder's step API (`TransformersDecoder`): rows join with `add`, advance together with `step` and leave with
    `remove`, each known by the row id its tokens carry."""

    max_batch: int
    """Running rows at most (`add` refuses more)."""
    max_context: int | None
    """Prompt plus generated tokens at most (None: unbounded)."""

    def add(self, requests: Sequence[Request]) -> list[Token]:
        """Prefill new rows; the first token of each, in request order."""
        ...

    def step(self) -> list[Token]:
        """The next token of every running row."""
        ...

    def remove(self, row_ids: Sequence[int]) -> None: ...


@dataclass
class _Row:
    handle: GenerationHandle
    params: ServeParams
    prompt_ids: list[int]
    generated: list[int] = field(default_factory=list)
    emitted: int = 0
    """Characters of the decoded text already sent."""
    finished: bool = False


class BatchingEngine:
    """A queue and a background thread that decodes every running request one token per step.

    Waiting requests join the decoder's batch at the next step while it has free slots (its `max_batch`); more than
    `max_queue` waiting requests are refused with EngineBusy. A finished or cancelled request leaves the batch at the
    next step.
    """

    guides = True  # the step decoders take `SamplingParams.guide`

    def __init__(self, decoder: StepDecoder, tokenizer: PreTrainedTokenizerBase, *, max_queue: int = 64) -> None:
        if max_queue < 0:
            raise QwenToolError(f"engine needs max_queue >= 0 (got {max_queue}); fix: pass a sensible size")
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.max_queue = max_queue
        self._waiting: deque[_Row] = deque()
        self._running: dict[int, _Row] = {}
        """Rows in the decoder's batch, by row id."""
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.max_rows_seen = 0
        """Largest batch decoded in one step (shows that requests were batched)."""

    # ---- event-loop side -------------------------------------------------------------------------------------
    def submit(self, prompt: str, params: ServeParams) -> GenerationHandle:
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        limit, max_tokens = self.decoder.max_context, params.sampling.max_tokens
        if limit is not None and len(prompt_ids) + max_tokens > limit:
            raise PromptTooLong(f"the prompt has {len(prompt_ids)} tokens and max_tokens is {max_tokens}, more than "
                                f"the model's context of {limit}; fix: shorten the conversation or lower max_tokens")
        handle = GenerationHandle(asyncio.get_running_loop(), len(prompt_ids))
        with self._wake:
            if self._closed:
                raise EngineBusy("the engine is shut down; fix: restart the server")
            if len(self._waiting) + len(self._running) >= self.decoder.max_batch + self.max_queue:
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
                    rows, self._running = self._running, {}
                self.decoder.remove(list(rows))
                for row in rows.values():
                    self._finish(row, "error", error=f"{type(err).__name__}: {err}")
        with self._wake:
            rows = [*self._running.values(), *self._waiting]
            self._running, self._waiting = {}, deque()
        for row in rows:
            self._finish(row, "error", error="the server shut down")

    def _one_step(self) -> None:
        self._drop_done()
        if self._running:
            tokens = self.decoder.step()
            self.steps += 1
            self.max_rows_seen = max(self.max_rows_seen, len(tokens))
            for token in tokens:
                self._accept(self._running[token.row], token)
            self._drop_done()
        with self._wake:
            free = self.decoder.max_batch - len(self._running)
            joining: list[_Row] = []
            while self._waiting and len(joining) < free:
                row = self._waiting.popleft()
                if not row.handle.cancelled:
                    joining.append(row)
        if joining:
            try:
                tokens = self.decoder.add([Request(row.prompt_ids, row.params.sampling) for row in joining])
            except Exception as err:  # noqa: BLE001 - the joining requests fail; the running ones go on
                logger.exception("prefill failed")
                for row in joining:
                    self._finish(row, "error", error=f"{type(err).__name__}: {err}")
                return
            with self._wake:
                self._running.update({token.row: row for token, row in zip(tokens, joining, strict=True)})
            for token, row in zip(tokens, joining, strict=True):
                self._accept(row, token)
            self._drop_done()

    def _drop_done(self) -> None:
        """Finished and cancelled rows leave the decoder's batch."""
        done = [row_id for row_id, row in self._running.items() if row.finished or row.handle.cancelled]
        if done:
            self.decoder.remove(done)
            with self._wake:
                for row_id in done:
                    del self._running[row_id]

    def _accept(self, row: _Row, token: Token) -> None:
        """Append a token; emit the text that is certain; finish where the decoder says (an end-of-turn token,
        max_tokens) or at a stop string."""
        if row.finished or row.handle.cancelled:
            return
        row.generated.append(token.token_id)
        if token.finished == "stop":  # an end-of-turn token: never part of the text
            self._finish(row, "stop", self._text(row.generated[:-1]))
            return
        text = self._text(row.generated)
        if text.endswith("\ufffd"):  # a multi-byte character is still incomplete
            if token.finished == "length":
                self._finish(row, "length", text)
            return
        for stop in row.params.stop:
            at = text.find(stop, max(0, row.emitted - len(stop)))
            if at >= 0:
                self._finish(row, "stop", text[:at])
                return
        if token.finished == "length":
            self._finish(row, "length", text)
            return
        safe = len(text) - stop_holdback(text, row.params.stop)
        if safe > row.emitted:
            row.handle.push(Piece(text[row.emitted:safe], completion_tokens=len(row.generated)))
            row.emitted = safe

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _finish(self, row: _Row, reason: str, text: str = "", error: str | None = None) -> None:
        row.finished = True
        tail = text[row.emitted:] if len(text) > row.emitted else ""
        row.handle.push(Piece(tail, reason, len(row.generated), error))


# ---- vLLM --------------------------------------------------------------------------------------------------------


class VLLMEngine:
    """vLLM's async engine (`qwen_tool.decode.vllm_decoder.AsyncVLLMDecoder`) behind the same interface.

    vLLM batches continuously on its own; here we only bound the number of requests in flight and translate its
    cumulative text into pieces (vLLM applies the stop strings itself). Tool calls are guided through its structured
    outputs.
    """

    guides = True

    def __init__(self, decoder: Any, tokenizer: PreTrainedTokenizerBase, *, max_in_flight: int = 256) -> None:
        self.decoder, self.tokenizer, self.max_in_flight = decoder, tokenizer, max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count()

    def submit(self, prompt: str, params: ServeParams) -> GenerationHandle:
        if len(self._tasks) >= self.max_in_flight:
            raise EngineBusy(f"{len(self._tasks)} requests are in flight; fix: retry after a moment")
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        handle = GenerationHandle(asyncio.get_running_loop(), len(prompt_ids))
        task = asyncio.get_running_loop().create_task(self._run(handle, prompt_ids, params, f"req-{next(self._ids)}"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return handle

    async def _run(self, handle: GenerationHandle, prompt_ids: list[int], params: ServeParams,
                   request_id: str) -> None:
        sent, tokens = 0, 0
        try:
            async for text, tokens, reason in self.decoder.stream(prompt_ids, params.sampling, params.stop,
                                                                  request_id):
                if handle.cancelled:
                    await self.decoder.abort(request_id)
                    return
                handle.push(Piece(text[sent:], reason, tokens))
                sent = len(text)
                if reason is not None:
                    return
        except Exception as err:  # noqa: BLE001 - one failed request never takes the server down
            logger.exception("vLLM request failed")
            handle.push(Piece("", "error", tokens, f"{type(err).__name__}: {err}"))

    def stats(self) -> dict[str, int]:
        return {"running": len(self._tasks), "waiting": 0}

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.decoder.close()


def load_engine(name: str, backend: str = "auto", *, device: str | None = None, dtype: str = "float32",
                max_batch: int = 8, max_queue: int = 64) -> Engine:
    """An engine for a model name (built-in, local directory or hub id), on the backend `qwen_tool.decode.loading`
    picks for `backend` (auto, transformers or vllm)."""
    from qwen_tool.decode.loading import pick_backend
    from qwen_tool.models import load_model, load_tokenizer, resolve

    chosen = pick_backend(backend)
    tokenizer = load_tokenizer(name)
    if chosen == "vllm":
        from qwen_tool.decode.vllm_decoder import AsyncVLLMDecoder

        decoder = AsyncVLLMDecoder(str(resolve(name).path), tokenizer, dtype=dtype, max_batch=max_batch)
        return VLLMEngine(decoder, tokenizer, max_in_flight=max_batch + max_queue)
    from qwen_tool.decode.transformers_decoder import TransformersDecoder

    decoder = TransformersDecoder(load_model(name, dtype=dtype, device=device or "cpu"), tokenizer,
                                  max_batch=max_batch)
    return BatchingEngine(decoder, tokenizer, max_queue=max_queue)
