"""The real Qwen-Agent Assistant against a stub OpenAI-compatible server on 127.0.0.1 that answers with `tool_calls`.

With our LLM class the tool runs and the final answer arrives in no-stream, stream and delta-stream modes; with
Qwen-Agent's stock `oai` class the same agent stalls in no-stream mode (the call is never made) and cannot run
delta-stream with tools at all.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("qwen_agent", reason="qwen-agent is a dev dependency: pip install -e '.[dev]'")

from qwen_agent.agents import Assistant  # noqa: E402
from qwen_agent.tools.base import BaseTool, register_tool  # noqa: E402

import qwen_tool.serve.qwen_agent_llm  # noqa: E402,F401 - registers model_type "qwen_tool_oai"

FINAL = "It is sunny in Paris."
CALLS: list[dict] = []


@register_tool("stub_weather")
class StubWeather(BaseTool):
    description = "Current weather of a city."
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

    def call(self, params: str | dict, **kwargs: object) -> str:
        CALLS.append(json.loads(params) if isinstance(params, str) else params)
        return "sunny, 24 C"


def _chunks_for_call() -> list[dict]:
    """A call streamed as vLLM does: id and name first, then argument fragments carrying only the index."""
    arguments = json.dumps({"city": "Paris"})
    pieces = [arguments[:5], arguments[5:11], arguments[11:]]
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "stub_weather", "arguments": ""}}
    return [{"tool_calls": [first]}] + [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answered = any("sunny, 24 C" in json.dumps(m.get("content")) for m in body["messages"])
        if body.get("stream"):
            deltas = [{"content": FINAL}] if answered else _chunks_for_call()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for delta in deltas:
                chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "stub",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        message = {"role": "assistant", "content": FINAL} if answered else {
            "role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "stub_weather", "arguments": json.dumps({"city": "Paris"})}}]}
        data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "stub",
                           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server_url() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


class _ModeAssistant(Assistant):
    """Assistant whose LLM calls use one Qwen-Agent mode; delta-stream deltas are accumulated like a client would."""

    def __init__(self, mode: str, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def _call_llm(self, messages, functions=None, stream=True, extra_generate_cfg=None):  # noqa: ANN001, ANN202
        if self.mode == "stream":
            return super()._call_llm(messages, functions, True, extra_generate_cfg)
        if self.mode == "no_stream":
            return iter([self.llm.chat(messages=messages, functions=functions, stream=False)])
        return self._accumulate(self.llm.chat(messages=messages, functions=functions, stream=True, delta_stream=True))

    @staticmethod
    def _accumulate(deltas):  # noqa: ANN001, ANN205
        text, calls = "", []
        for delta in deltas:
            for message in delta:
                if message.function_call:
                    calls.append(message)
                else:
                    text += message.content if isinstance(message.content, str) else ""
        from qwen_agent.llm.schema import ASSISTANT, Message

        yield ([Message(role=ASSISTANT, content=text)] if text else []) + calls


def _run(server_url: str, model_type: str, mode: str) -> list:
    CALLS.clear()
    llm = {"model": "stub", "model_server": server_url, "api_key": "EMPTY", "model_type": model_type,
           "generate_cfg": {"max_retries": 0}}
    bot = _ModeAssistant(mode, llm=llm, function_list=["stub_weather"])
    responses = list(bot.run([{"role": "user", "content": "Weather in Paris?"}]))
    return responses[-1] if responses else []


@pytest.mark.parametrize("mode", ["no_stream", "stream", "delta_stream"])
def test_our_llm_calls_the_tool_and_answers(server_url: str, mode: str) -> None:
    response = _run(server_url, "qwen_tool_oai", mode)
    assert CALLS == [{"city": "Paris"}]
    assert any(m.get("function_call", {}) and m["function_call"]["name"] == "stub_weather" for m in response)
    assert response[-1]["role"] == "assistant" and FINAL in response[-1]["content"]


def test_stock_oai_class_stalls(server_url: str) -> None:
    response = _run(server_url, "oai", "no_stream")
    assert CALLS == []  # the call in `tool_calls` is ignored: the agent stops without calling the tool
    assert not any(FINAL in str(m.get("content")) for m in response)


def test_stock_oai_class_refuses_delta_stream_with_tools(server_url: str) -> None:
    with pytest.raises(NotImplementedError):
        _run(server_url, "oai", "delta_stream")
    assert CALLS == []
