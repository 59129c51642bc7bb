"""The server streams every format the codec reads: the model's output, written as each format writes a call, comes
back as OpenAI tool calls, whole and streamed."""

from __future__ import annotations

import json

import pytest
from openai import OpenAI
from serve_helpers import MODEL, WEATHER_TOOL, scripted_server

from qwen_tool.codec import ToolCall, available_formats, get_codec

FORMATS = sorted(set(available_formats()) - {"auto"})


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_call_in_each_format_is_served_whole_and_streamed(fmt: str) -> None:
    output = get_codec(fmt).render_assistant("Let me check. ", [ToolCall("get_weather", {"city": "Paris"})]).text
    with scripted_server(lambda prompt: output, tool_format=fmt) as served:
        client = OpenAI(base_url=served.base_url, api_key="unused", max_retries=0)
        request = {"model": MODEL, "messages": [{"role": "user", "content": "Weather in Paris?"}],
                   "tools": [WEATHER_TOOL]}
        message = client.chat.completions.create(**request).choices[0].message
        chunks = list(client.chat.completions.create(stream=True, **request))
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris"})]
    assert message.content == "Let me check. "
    streamed = [call for chunk in chunks for call in (chunk.choices[0].delta.tool_calls or [])]
    assert [call.function.name for call in streamed if call.function.name] == ["get_weather"]
    assert json.loads("".join(call.function.arguments or "" for call in streamed)) == {"city": "Paris"}
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Let me check. "
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
