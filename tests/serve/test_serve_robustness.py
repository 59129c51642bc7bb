"""Robustness: malformed requests, auth, backpressure, timeouts, vanishing clients, 50 concurrent streams."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from openai import AsyncOpenAI
from serve_helpers import MODEL, WEATHER_TOOL, Served, scripted_server

CHAT = "/v1/chat/completions"


def ok_body(**extra: object) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "[chat] hi"}], **extra}


@pytest.mark.parametrize(("body", "needle"), [
    ({"model": MODEL}, "messages"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "role"),
    (ok_body(temperature=5), "temperature"),
    (ok_body(max_tokens=0), "max_tokens"),
    (ok_body(n=3), "n"),
    (ok_body(tool_choice="required"), "no `tools`"),
    (ok_body(tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}), "nope"),
    (ok_body(tools=[{"type": "function", "function": {"name": "bad name!"}}]), "name"),
    ({"model": MODEL, "messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
    ({"model": MODEL, "messages": [{"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}, "arguments"),
])
def test_malformed_requests_get_400_with_a_message(served: Served, body: dict, needle: str) -> None:
    response = httpx.post(served.url + CHAT, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and needle in error["message"]


def test_body_that_is_not_json_gets_400(served: Served) -> None:
    response = httpx.post(served.url + CHAT, content=b"{oops", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "error" in response.json()


def test_unknown_model_gets_404(served: Served) -> None:
    response = httpx.post(served.url + CHAT, json={**ok_body(), "model": "gpt-7"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


def test_api_key_is_required_when_set() -> None:
    with scripted_server(api_key="s3cret") as server:
        assert httpx.get(server.url + "/v1/models").status_code == 401
        wrong = httpx.post(server.url + CHAT, json=ok_body(), headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        right = httpx.post(server.url + CHAT, json=ok_body(), headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200 and right.json()["choices"][0]["message"]["content"]


def test_full_queue_answers_503_with_retry_after() -> None:
    # One slot, one queue place, a slow model: two long requests fill the engine, the third is refused.
    with scripted_server(token_delay_s=0.01, max_batch=1, max_queue=1) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            streams = [client.stream("POST", CHAT, json=ok_body(messages=[{"role": "user", "content": "[long] go"}],
                                                                stream=True)) for _ in range(2)]
            responses = [stream.__enter__() for stream in streams]
            try:
                refused = client.post(CHAT, json=ok_body())
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "1"
                assert refused.json()["error"]["code"] == "queue_full"
            finally:
                for stream in streams:
                    stream.__exit__(None, None, None)
            assert all(r.status_code == 200 for r in responses)
            _wait_idle(server)
            assert client.post(CHAT, json=ok_body()).status_code == 200  # capacity is back


def test_request_timeout_gives_504_and_frees_the_slot() -> None:
    with scripted_server(token_delay_s=0.01, request_timeout_s=0.3) as server:
        slow = httpx.post(server.url + CHAT, json=ok_body(messages=[{"role": "user", "content": "[long] go"}]),
                          timeout=30)
        assert slow.status_code == 504 and slow.json()["error"]["code"] == "request_timeout"
        _wait_idle(server)
        streamed = httpx.post(server.url + CHAT, timeout=30, json=ok_body(
            messages=[{"role": "user", "content": "[long] go"}], stream=True))
        events = [line for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert json.loads(events[-1][len("data: "):])["error"]["code"] == "request_timeout"
        _wait_idle(server)


def _wait_idle(server: Served, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while server.engine.stats() != {"running": 0, "waiting": 0}:
        assert time.monotonic() < deadline, f"requests still held: {server.engine.stats()}"
        time.sleep(0.02)


def test_client_killed_mid_stream_frees_its_slot_and_the_server_keeps_serving() -> None:
    with scripted_server(token_delay_s=0.005, max_batch=2) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body = ok_body(messages=[{"role": "user", "content": "[long] go"}], stream=True)
            with client.stream("POST", CHAT, json=body) as response:
                lines = response.iter_lines()
                received = [next(lines) for _ in range(6)]
                assert any('"content"' in line for line in received)
                assert server.engine.stats()["running"] == 1
            # 3000 words at 5 ms per token would take 15 s; the slot must be free long before.
            _wait_idle(server, timeout_s=3.0)
            after = client.post(CHAT, json=ok_body())
            assert after.status_code == 200 and after.json()["choices"][0]["finish_reason"] == "stop"


def test_fifty_concurrent_streams_complete_without_error() -> None:
    async def one(client: AsyncOpenAI, i: int) -> tuple[str, str, str]:
        stream = await client.chat.completions.create(
            model=MODEL, stream=True, tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": f"[single] request {i}"}])
        content, arguments, finish = "", "", ""
        async for chunk in stream:
            for choice in chunk.choices:
                content += choice.delta.content or ""
                for fragment in choice.delta.tool_calls or []:
                    assert fragment.index == 0
                    arguments += fragment.function.arguments or ""
                finish = choice.finish_reason or finish
        return content, arguments, finish

    async def main(served: Served) -> list[tuple[str, str, str]]:
        async with AsyncOpenAI(base_url=served.base_url, api_key="unused", max_retries=0) as client:
            return await asyncio.gather(*(one(client, i) for i in range(50)))

    # 2 ms per decoding step, so that requests overlap and share steps as they would with a real model.
    with scripted_server(token_delay_s=0.002, max_batch=8, max_queue=64) as served:
        results = asyncio.run(main(served))
        assert results == [("Let me check.", '{"city": "Paris"}', "tool_calls")] * 50
        assert served.engine.max_rows_seen == 8  # requests were decoded together, up to the batch size
        _wait_idle(served)
