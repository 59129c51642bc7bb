"""Qwen-Agent's Assistant runs a two-step tool task (weather, then clock, then the answer) against our server.

The model is scripted: it calls the weather tool, then the clock tool once the weather result is in its prompt, then
answers once both results are. The agent must execute both tools, in order, and return the final answer.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("qwen_agent", reason="qwen-agent is a dev dependency: pip install -e '.[dev]'")

from qwen_agent.agents import Assistant  # noqa: E402
from qwen_agent.tools.base import BaseTool, register_tool  # noqa: E402
from serve_helpers import MODEL, hermes_call, scripted_server  # noqa: E402

import qwen_tool.serve.qwen_agent_llm  # noqa: E402,F401 - registers model_type "qwen_tool_oai"

WEATHER_RESULT, CLOCK_RESULT = "sunny, 24 C", "14:05"
FINAL = "In Paris it is sunny, 24 C, and the local time is 14:05."
EXECUTED: list[tuple[str, dict]] = []


@register_tool("serve_test_weather")
class Weather(BaseTool):
    description = "Current weather of a city."
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

    def call(self, params: str | dict, **kwargs: object) -> str:
        EXECUTED.append(("serve_test_weather", json.loads(params) if isinstance(params, str) else params))
        return WEATHER_RESULT


@register_tool("serve_test_clock")
class Clock(BaseTool):
    description = "Local time in a city."
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

    def call(self, params: str | dict, **kwargs: object) -> str:
        EXECUTED.append(("serve_test_clock", json.loads(params) if isinstance(params, str) else params))
        return CLOCK_RESULT


def two_step(prompt: str) -> str:
    if CLOCK_RESULT in prompt:
        return FINAL
    if WEATHER_RESULT in prompt:
        return "Now the time.\n" + hermes_call("serve_test_clock", "Paris")
    return hermes_call("serve_test_weather", "Paris")


@pytest.fixture(scope="module")
def base_url() -> str:
    with scripted_server(two_step) as server:
        yield server.base_url


@pytest.mark.parametrize(("model_type", "mode"), [
    ("qwen_tool_oai", "no_stream"),  # the codec bridge; Qwen-Agent's prompt, calls as text in `content`
    ("qwen_tool_oai", "stream"),
    # Qwen-Agent's raw-API mode (stock class): tools in `tools`, calls back in `tool_calls`, results as tool messages.
    ("oai", "raw_api"),
])
def test_two_step_tool_task(base_url: str, model_type: str, mode: str) -> None:
    EXECUTED.clear()
    generate_cfg: dict = {"max_retries": 0}
    if mode == "raw_api":
        generate_cfg["use_raw_api"] = True
    llm = {"model": MODEL, "model_server": base_url, "api_key": "EMPTY", "model_type": model_type,
           "generate_cfg": generate_cfg}
    bot = Assistant(llm=llm, function_list=["serve_test_weather", "serve_test_clock"])
    messages = [{"role": "user", "content": "What's the weather and the time in Paris?"}]
    if mode == "no_stream":
        responses = bot.run_nonstream(messages)
    else:
        responses = list(bot.run(messages))[-1]
    assert EXECUTED == [("serve_test_weather", {"city": "Paris"}), ("serve_test_clock", {"city": "Paris"})]
    calls = [m["function_call"]["name"] for m in responses if m.get("function_call")]
    assert calls == ["serve_test_weather", "serve_test_clock"]
    assert responses[-1]["role"] == "assistant" and FINAL in responses[-1]["content"]
