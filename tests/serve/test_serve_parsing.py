"""The server parses from where the rendered prompt left off, and reports the malformed output it recovered."""

from __future__ import annotations

import copy
import logging

from openai import OpenAI
from serve_helpers import MODEL, TIME_TOOL, WEATHER_TOOL, hermes_call, scripted_server, shared_tokenizer

# Like Qwen3 Thinking-2507's template: the generation prompt opens the think block (and the template takes tools).
THINKING_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
                     "{# tools are declared by the system message in the real template #}")
OUTPUT = ("The user wants the weather and the time.\n</think>\n\n"
          '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'  # its </tool_call> left out
          + hermes_call("get_time", "Tokyo"))


def test_reasoning_the_prompt_opened_and_a_recovered_call_are_served(caplog, monkeypatch) -> None:  # noqa: ANN001
    tokenizer = copy.deepcopy(shared_tokenizer())
    tokenizer.chat_template = THINKING_TEMPLATE
    monkeypatch.setattr(logging.getLogger("qwen_tool"), "propagate", True)  # caplog listens at the root
    with caplog.at_level(logging.WARNING, logger="qwen_tool"), \
            scripted_server(lambda prompt: OUTPUT, tokenizer=tokenizer) as served:
        client = OpenAI(base_url=served.base_url, api_key="unused", max_retries=0)
        request = {"model": MODEL, "messages": [{"role": "user", "content": "Weather and time?"}],
                   "tools": [WEATHER_TOOL, TIME_TOOL]}
        response = client.chat.completions.create(**request)
        chunks = list(client.chat.completions.create(stream=True, **request))
    assert served.decoder.prompts[-1].endswith("<|im_start|>assistant\n<think>\n")
    message = response.choices[0].message
    assert message.model_extra["reasoning_content"] == "The user wants the weather and the time."
    assert not message.content and [c.function.name for c in message.tool_calls] == ["get_weather", "get_time"]
    warnings = response.model_extra["qwen_tool"]["parse_warnings"]
    assert len(warnings) == 1 and "had no </tool_call>" in warnings[0]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].model_extra["qwen_tool"]["parse_warnings"] == warnings
    assert "parse_warnings" not in chunks[0].model_extra["qwen_tool"]
    logged = {record.getMessage() for record in caplog.records if "recovered" in record.getMessage()}
    assert logged == {f"recovered malformed model output: {warnings[0]}"}
