"""The OpenAI-compatible HTTP server: `GET /v1/models`, `POST /v1/chat/completions` (JSON or SSE stream).

Errors follow OpenAI's shape `{"error": {"message", "type", "param", "code"}}`: 400 for invalid requests (and for
fields past the server's `RequestLimits`), 401 for a wrong API key, 404 for an unknown model, 413 for a body over the
size limit, 503 with Retry-After when the queue is full, 504 when a request times out, 500 when the model fails (the
server keeps serving). A client that disconnects mid-stream cancels its request, which
frees its slot in the batch at the next decoding step.

Responses and stream chunks carry one field beyond OpenAI's (clients ignore it): `"qwen_tool": {"guided": true}` when
tool calls were decoded under the offered schemas, else `{"guided": false, "unguided_reason": "..."}`. When the parser
recovered malformed output (docs/codec-parsing.md), the response, or a stream's last chunk, adds `"parse_warnings"`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen_tool import QwenToolError
from qwen_tool.codec import CodecError
from qwen_tool.log import logger
from qwen_tool.serve.chat import CompletionRun, RequestTimeout, fold_deltas, plan_chat, submit
from qwen_tool.serve.engine import Engine, EngineBusy, PromptTooLong
from qwen_tool.serve.protocol import ChatCompletionRequest, RequestLimits

RETRY_AFTER_S = 1


@dataclass
class ServeSettings:
    """What the app serves and how it guards itself."""

    model_name: str
    """The id clients put in `model` (requests naming another model get 404)."""
    tool_format: str
    """Codec name of the model's tool-call wire format."""
    tool_rendering: str = "json"
    """How prompts list the tool declarations (json or compact): the model's own, as it was trained
    (`models.tool_rendering_for`)."""
    api_key: str | None = None
    """When set, requests need `Authorization: Bearer <key>`."""
    request_timeout_s: float = 300.0
    """Queue wait plus generation, per request."""
    default_max_tokens: int = 512
    """max_tokens when the request gives none."""
    limits: RequestLimits = field(default_factory=RequestLimits)
    """How big a request may be (body bytes, max_tokens, messages, tools)."""
    guided: bool = True
    """Decode tool calls under the offered tools' schemas (each response says whether its calls were guided, and if
    not, why, in a top-level `qwen_tool` field)."""


class ApiError(Exception):
    """An error answered with OpenAI's error JSON."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.param, self.code, self.headers = param, code, headers


def error_response(status: int, message: str, error_type: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class BodyTooLarge(StarletteHTTPException):
    """A request body past the size limit (HTTP 413); raised while the body is read, so FastAPI passes it on."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over this server's limit of {limit} bytes; fix: send a smaller "
                              "request (fewer or shorter messages and tools)")


class BodyLimit:
    """ASGI middleware refusing request bodies over `max_bytes` without reading them whole: at once by a declared
    Content-Length, else as the chunks arrive (413 with OpenAI's error JSON either way)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(BodyTooLarge(self.max_bytes))(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def _too_large(err: StarletteHTTPException) -> JSONResponse:
    return error_response(413, str(err.detail), code="request_too_large")


def _validation_message(err: RequestValidationError) -> tuple[str, str | None]:
    parts, first_param = [], None
    for issue in err.errors():
        location = [str(p) for p in issue.get("loc", ()) if p != "body"]
        param = ".".join(location) or None
        first_param = first_param or param
        parts.append(f"{param or 'body'}: {issue.get('msg')}")
    return "invalid request: " + "; ".join(parts[:5]), first_param


def create_app(engine: Engine, tokenizer: Any, settings: ServeSettings) -> FastAPI:
    """The FastAPI app around one engine (the caller owns the engine's lifetime)."""
    created = int(time.time())
    unguided = ("guided decoding is off on this server (--no-guided)" if not settings.guided else
                None if engine.guides else "this backend does not guide tool calls")

    async def check_key(request: Request) -> None:
        if settings.api_key:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode()):
                raise ApiError(401, "invalid or missing API key; fix: send `Authorization: Bearer <key>`",
                               code="invalid_api_key")

    app = FastAPI(title="qwen-tool OpenAI-compatible server")
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    guarded = [Depends(check_key)]

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.message, err.error_type, err.param, err.code, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(err)
        return error_response(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if isinstance(err, BodyTooLarge):
            return _too_large(err)
        return error_response(err.status_code, str(err.detail), "not_found_error" if err.status_code == 404
                              else "invalid_request_error")

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception) -> JSONResponse:
        logger.exception("request failed")
        return error_response(500, f"internal error: {type(err).__name__}: {err}", "server_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **engine.stats()}

    @app.get("/v1/models", dependencies=guarded)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "created": created,
                                            "owned_by": "qwen-tool"}]}

    @app.post("/v1/chat/completions", response_model=None, dependencies=guarded)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
        if body.model != settings.model_name:
            return error_response(404, f"model {body.model!r} is not served here; fix: use {settings.model_name!r}",
                                  "not_found_error", "model", "model_not_found")
        if over := body.over_limit(settings.limits):
            return error_response(400, over[1], param=over[0], code="over_limit")
        try:
            plan = plan_chat(body, tokenizer, settings.tool_format, settings.default_max_tokens,
                             settings.tool_rendering, unguided)
            run = submit(engine, plan, settings.request_timeout_s)
        except EngineBusy as err:
            return error_response(503, str(err), "server_overloaded", code="queue_full",
                                  headers={"Retry-After": str(RETRY_AFTER_S)})
        except (CodecError, PromptTooLong) as err:
            return error_response(400, str(err))
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        head = {"id": completion_id, "created": int(time.time()), "model": settings.model_name,
                "qwen_tool": plan.metadata()}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_sse(run, head, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await _complete(run, head, request)

    return app


async def _complete(run: CompletionRun, head: dict[str, Any], request: Request) -> JSONResponse:
    """Collect the whole answer; cancel it when the client goes away while waiting."""
    async def collect() -> list[dict]:
        return [delta async for delta in run.deltas()]

    task = asyncio.create_task(collect())
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if not done and await request.is_disconnected():
            task.cancel()
            run.handle.cancel()
            return error_response(499, "client closed the request", code="client_closed")
    try:
        deltas = task.result()
    except RequestTimeout as err:
        return error_response(504, str(err), "timeout", code="request_timeout")
    if run.finish_reason == "error":
        return error_response(500, f"generation failed: {run.error}", "server_error")
    body = {**_with_warnings(head, run), "object": "chat.completion",
            "choices": [{"index": 0, "message": fold_deltas(deltas), "finish_reason": run.finish_reason,
                         "logprobs": None}],
            "usage": run.usage()}
    return JSONResponse(body)


def _with_warnings(head: dict[str, Any], run: CompletionRun) -> dict[str, Any]:
    """`head` with the run's parse warnings in its `qwen_tool` field, when there are any."""
    if not run.warnings:
        return head
    return {**head, "qwen_tool": {**head["qwen_tool"], "parse_warnings": run.warnings}}


def _event(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _chunk(head: dict[str, Any], delta: dict, finish_reason: str | None = None) -> str:
    body = {**head, "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}
    return _event(body)


async def _sse(run: CompletionRun, head: dict[str, Any], include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events; a failure mid-stream becomes an error event (the status line has already gone)."""
    try:
        yield _chunk(head, {"role": "assistant", "content": ""})
        async for delta in run.deltas():
            yield _chunk(head, delta)
        if run.finish_reason == "error":
            yield _event({"error": {"message": f"generation failed: {run.error}", "type": "server_error"}})
            return
        yield _chunk(_with_warnings(head, run), {}, run.finish_reason)
        if include_usage:
            yield _event({**head, "object": "chat.completion.chunk", "choices": [], "usage": run.usage()})
        yield "data: [DONE]\n\n"
    except RequestTimeout as err:
        yield _event({"error": {"message": str(err), "type": "timeout", "code": "request_timeout"}})
    finally:
        run.handle.cancel()


class BackgroundServer:
    """uvicorn in a daemon thread (tests, benchmarks): `with BackgroundServer(app) as url: ...`."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="qwen-tool-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise QwenToolError("the server did not start; fix: check that the host and port are free")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, api_key_env: str | None = None,
          backend: str = "auto", max_batch: int = 8, max_queue: int = 64, request_timeout_s: float = 300.0,
          device: str | None = None, threads: int | None = None, precision: str = "auto",
          limits: RequestLimits | None = None, tool_rendering: str | None = None, guided: bool = True) -> None:
    """Load `model` and serve it until interrupted (what `qwen-tool serve` runs).

    `threads` caps torch's CPU threads (on a shared or small machine, fewer threads than cores is often faster).
    `precision` is the transformers backend's weights (`auto`: bf16 only where the hardware runs it natively).
    `limits`: how big a request may be (default `RequestLimits()`: 4 MiB body, 32,768 tokens, 2,048 messages, 128
    tools). `tool_rendering`: how prompts list the tools (default: as the model was trained, its qwen_tool.json).
    `guided`: decode tool calls under the offered tools' schemas.
    """
    import os

    import torch
    import uvicorn

    from qwen_tool.codec.base import check_tool_rendering
    from qwen_tool.hardware import resolve_precision, torch_dtype_name
    from qwen_tool.models import load_tokenizer, tool_format_for, tool_rendering_for
    from qwen_tool.serve.engine import load_engine

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise QwenToolError(f"--api-key-env names ${api_key_env}, which is unset or empty; fix: export it")
    if tool_rendering is not None:
        check_tool_rendering(tool_rendering)  # before the model loads
    rendering = tool_rendering_for(model, tool_rendering)
    if threads:
        torch.set_num_threads(threads)
    dtype = torch_dtype_name(resolve_precision(precision, "Serving").precision)
    engine = load_engine(model, backend, device=device, dtype=dtype, max_batch=max_batch, max_queue=max_queue)
    settings = ServeSettings(model_name=model, tool_format=tool_format_for(model), tool_rendering=rendering,
                             api_key=api_key, request_timeout_s=request_timeout_s, limits=limits or RequestLimits(),
                             guided=guided)
    app = create_app(engine, load_tokenizer(model), settings)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        logger.warning("serving on %s without an API key: anyone who can reach this port can use the model", host)
    logger.info("serving %s (%s format, tools as %s) on http://%s:%d/v1", model, settings.tool_format,
                settings.tool_rendering, host, port)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        engine.close()
