"""Request size limits: a body over the cap gets 413, a field over its cap gets 400 naming the field and the limit,
both in OpenAI's error shape and before any work; requests within the limits are served."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from serve_helpers import MODEL, TIME_TOOL, WEATHER_TOOL, Served, scripted_server

from qwen_tool.serve.protocol import RequestLimits
from qwen_tool.serve.server import ServeSettings

CHAT = "/v1/chat/completions"
LIMITS = RequestLimits(max_body_bytes=20_000, max_tokens=64, max_messages=3, max_tools=1)


@pytest.fixture(scope="module")
def limited() -> Iterator[Served]:
    with scripted_server(limits=LIMITS) as server:
        yield server


def ok_body(**extra: object) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "[chat] hi"}], **extra}


def test_defaults_are_sensible() -> None:
    limits = ServeSettings(MODEL, "hermes").limits
    assert (limits.max_body_bytes, limits.max_tokens, limits.max_messages, limits.max_tools) == (
        4 * 1024 * 1024, 32_768, 2_048, 128)


def test_within_the_limits_is_served(limited: Served) -> None:
    response = httpx.post(limited.url + CHAT, json=ok_body(max_tokens=64, tools=[WEATHER_TOOL]))
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]


def test_a_body_over_the_limit_gets_413(limited: Served) -> None:
    big = ok_body(messages=[{"role": "user", "content": "x" * 50_000}])
    response = httpx.post(limited.url + CHAT, json=big)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    assert "limit of 20000 bytes" in error["message"] and "fix: " in error["message"]


def test_a_chunked_body_over_the_limit_gets_413(limited: Served) -> None:
    body = json.dumps(ok_body(messages=[{"role": "user", "content": "x" * 50_000}])).encode()
    chunks = (body[start:start + 4096] for start in range(0, len(body), 4096))  # no Content-Length
    response = httpx.post(limited.url + CHAT, content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(("extra", "field", "message"), [
    ({"max_tokens": 65}, "max_tokens", "max_tokens is 65, over this server's limit of 64"),
    ({"max_completion_tokens": 10_000}, "max_completion_tokens", "max_completion_tokens is 10000, over this server's "
                                                                 "limit of 64"),
    ({"messages": [{"role": "user", "content": "[chat] hi"}] * 4}, "messages", "messages has 4 entries, over this "
                                                                               "server's limit of 3"),
    ({"tools": [WEATHER_TOOL, TIME_TOOL]}, "tools", "tools has 2 entries, over this server's limit of 1"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_a_field_over_its_limit_gets_400_naming_it(limited: Served, extra: dict, field: str, message: str,
                                                   stream: bool) -> None:
    response = httpx.post(limited.url + CHAT, json=ok_body(stream=stream, **extra))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field and error["message"].startswith(message) and "fix: " in error["message"]
    assert error["code"] == "over_limit"


@pytest.mark.parametrize("arguments", ['{"a": ' + "[" * 5_000 + "]" * 5_000 + "}", '{"a": "\\ud800"}'])
def test_call_arguments_the_codec_refuses_get_400(limited: Served, arguments: str) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    body = ok_body(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [call]}])
    response = httpx.post(limited.url + CHAT, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages.1.tool_calls.0.function.arguments" and "fix: " in error["message"]
