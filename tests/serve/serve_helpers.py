"""Servers for the serve tests: uvicorn in a thread on 127.0.0.1 (free port), driven by a scripted decoder.

(A uniquely named module rather than conftest.py, so that it never collides with another room's conftest.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from qwen_tool.serve.engine import BatchingEngine
from qwen_tool.serve.server import BackgroundServer, ServeSettings, create_app
from qwen_tool.testing import ScriptedDecoder, tiny_tokenizer

MODEL = "scripted-model"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def hermes_call(name: str, city: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {{"city": "{city}"}}}}\n</tool_call>'


SCRIPTS = {
    "single": "Let me check.\n" + hermes_call("get_weather", "Paris"),
    "parallel": hermes_call("get_weather", "Paris") + "\n" + hermes_call("get_time", "Tokyo"),
    "chat": "Hello! How can I help you today?",
    "think": "<think>\nThe user wants the weather, so I call the tool.\n</think>\n\n"
             + hermes_call("get_weather", "Rome"),
    "stops": "alpha beta END gamma",
    "long": "word " * 3000,
}


def respond(prompt: str) -> str:
    """The scripted model: forced prefixes are continued; a tool result is answered; else the keyword's script."""
    if prompt.endswith('"arguments": '):
        return '{"city": "Oslo"}}\n</tool_call>'
    if prompt.endswith('{"name": "'):
        return 'get_time", "arguments": {"city": "Lima"}}\n</tool_call>'
    last_turn = prompt.rsplit("<|im_start|>", 2)[-2]
    if "<tool_response>" in last_turn:
        return "It is sunny in Paris."
    for keyword, script in SCRIPTS.items():
        if f"[{keyword}]" in last_turn:
            return script
    return SCRIPTS["chat"]


@functools.lru_cache(maxsize=1)
def shared_tokenizer() -> object:
    """One tokenizer for every test server (loading it costs about a second)."""
    return tiny_tokenizer()


@dataclass
class Served:
    url: str
    engine: BatchingEngine
    decoder: ScriptedDecoder

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


@contextmanager
def scripted_server(respond_fn: Callable[[str], str] = respond, *, token_delay_s: float = 0.0, max_batch: int = 8,
                    max_queue: int = 64, tool_format: str = "hermes", tokenizer: object = None,
                    **settings: object) -> Iterator[Served]:
    """`tokenizer`: one with another chat template (default: the shared tiny tokenizer)."""
    tokenizer = tokenizer or shared_tokenizer()
    decoder = ScriptedDecoder(tokenizer, respond_fn, token_delay_s=token_delay_s, max_batch=max_batch)
    engine = BatchingEngine(decoder, tokenizer, max_queue=max_queue)
    app = create_app(engine, tokenizer, ServeSettings(MODEL, tool_format, **settings))  # type: ignore[arg-type]
    with BackgroundServer(app) as url:
        yield Served(url, engine, decoder)
    engine.close()
