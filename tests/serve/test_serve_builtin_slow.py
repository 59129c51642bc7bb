"""End to end on the real built-in model (no trained model exists yet): a forced call through the openai client.

The base SmolLM2 was never taught tools, so only the forced prefix (`tool_choice` naming the function) makes it call;
what this checks is the whole path (prompt rendering, the transformers engine, parsing, both transports), not skill.
"""

from __future__ import annotations

import json

import pytest
from openai import OpenAI

from qwen_tool.models import DEFAULT_MODEL, load_tokenizer, tool_format_for
from qwen_tool.serve.engine import load_engine
from qwen_tool.serve.server import BackgroundServer, ServeSettings, create_app

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.mark.slow
def test_builtin_model_forced_call_stream_and_non_stream() -> None:
    engine = load_engine(DEFAULT_MODEL, "transformers")
    settings = ServeSettings(DEFAULT_MODEL, tool_format_for(DEFAULT_MODEL))
    app = create_app(engine, load_tokenizer(DEFAULT_MODEL), settings)
    request = {"model": DEFAULT_MODEL, "temperature": 0, "max_tokens": 64, "tools": [WEATHER_TOOL],
               "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
               "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
    with BackgroundServer(app) as url:
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
        response = client.chat.completions.create(**request)
        message = response.choices[0].message
        assert response.choices[0].finish_reason == "tool_calls"
        assert [call.function.name for call in message.tool_calls or []] == ["get_weather"]
        arguments = json.loads(message.tool_calls[0].function.arguments)
        assert isinstance(arguments, dict)
        assert 0 < response.usage.completion_tokens <= 64

        streamed_name, streamed_arguments, finish = "", "", None
        for chunk in client.chat.completions.create(stream=True, **request):
            for choice in chunk.choices:
                for fragment in choice.delta.tool_calls or []:
                    assert fragment.index == 0
                    streamed_name += fragment.function.name or ""
                    streamed_arguments += fragment.function.arguments or ""
                finish = choice.finish_reason or finish
        assert (streamed_name, json.loads(streamed_arguments), finish) == ("get_weather", arguments, "tool_calls")
    engine.close()
