"""The server through the official `openai` client, stream and non-stream, driven by the scripted model."""

from __future__ import annotations

import json

import pytest
from openai import OpenAI
from serve_helpers import MODEL, TIME_TOOL, WEATHER_TOOL, Served, scripted_server

TOOLS = [WEATHER_TOOL, TIME_TOOL]


@pytest.fixture(scope="module")
def client(served: Served) -> OpenAI:
    return OpenAI(base_url=served.base_url, api_key="unused", max_retries=0)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def streamed(client: OpenAI, **kwargs: object) -> dict:
    """Run a streamed request and fold its chunks the way a client must: calls merged by their integer index."""
    content, reasoning, calls, finish, usage = "", "", {}, None, None
    for chunk in client.chat.completions.create(model=MODEL, stream=True, stream_options={"include_usage": True},
                                                **kwargs):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            content += delta.content or ""
            reasoning += getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get(
                "reasoning_content", "") or ""
            for fragment in delta.tool_calls or []:
                assert isinstance(fragment.index, int)
                entry = calls.setdefault(fragment.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = fragment.id or entry["id"]
                entry["name"] += (fragment.function.name or "") if fragment.function else ""
                entry["arguments"] += (fragment.function.arguments or "") if fragment.function else ""
            finish = choice.finish_reason or finish
    return {"content": content, "reasoning": reasoning, "calls": [calls[i] for i in sorted(calls)],
            "finish_reason": finish, "usage": usage}


def non_streamed(client: OpenAI, **kwargs: object) -> dict:
    response = client.chat.completions.create(model=MODEL, **kwargs)
    message = response.choices[0].message
    calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in message.tool_calls or []]
    return {"content": message.content or "", "reasoning": (message.model_extra or {}).get("reasoning_content") or "",
            "calls": calls, "finish_reason": response.choices[0].finish_reason, "usage": response.usage}


def both(client: OpenAI, **kwargs: object) -> dict:
    """Non-stream and stream answers, checked equal apart from call ids (fresh per response)."""
    plain, stream = non_streamed(client, **kwargs), streamed(client, **kwargs)
    for answer in (plain, stream):
        assert all(call["id"].startswith("call_") for call in answer["calls"])
    strip = [{k: v for k, v in call.items() if k != "id"} for call in plain["calls"]]
    assert strip == [{k: v for k, v in call.items() if k != "id"} for call in stream["calls"]]
    assert (plain["content"], plain["reasoning"], plain["finish_reason"]) == (
        stream["content"], stream["reasoning"], stream["finish_reason"])
    assert plain["usage"].completion_tokens == stream["usage"].completion_tokens > 0
    assert plain["usage"].prompt_tokens == stream["usage"].prompt_tokens > 0
    return plain


def test_models_lists_the_served_model(client: OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]


def test_single_call(client: OpenAI) -> None:
    answer = both(client, messages=user("[single] weather in Paris?"), tools=TOOLS)
    assert answer["content"] == "Let me check."
    assert [(c["name"], json.loads(c["arguments"])) for c in answer["calls"]] == [("get_weather", {"city": "Paris"})]
    assert answer["finish_reason"] == "tool_calls"


def test_parallel_calls_get_indexes_0_and_1(client: OpenAI) -> None:
    answer = both(client, messages=user("[parallel] weather in Paris and time in Tokyo"), tools=TOOLS)
    assert [(c["name"], json.loads(c["arguments"])) for c in answer["calls"]] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"city": "Tokyo"})]
    assert answer["content"] == "" and answer["finish_reason"] == "tool_calls"


def test_parallel_tool_calls_false_keeps_the_first_call_only(client: OpenAI) -> None:
    answer = both(client, messages=user("[parallel] both please"), tools=TOOLS, parallel_tool_calls=False)
    assert [c["name"] for c in answer["calls"]] == ["get_weather"]
    assert answer["finish_reason"] == "tool_calls"


def test_no_call(client: OpenAI) -> None:
    answer = both(client, messages=user("[chat] hi"), tools=TOOLS)
    assert answer["content"] == "Hello! How can I help you today?"
    assert answer["calls"] == [] and answer["finish_reason"] == "stop"


def test_forced_named_call_starts_the_generation_with_the_name(client: OpenAI, served: Served) -> None:
    answer = both(client, messages=user("[chat] anything"), tools=TOOLS,
                  tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert served.decoder.prompts[-1].endswith('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", '
                                             '"arguments": ')
    assert [(c["name"], json.loads(c["arguments"])) for c in answer["calls"]] == [("get_weather", {"city": "Oslo"})]
    assert answer["finish_reason"] == "tool_calls"


def test_required_forces_a_call_opener(client: OpenAI, served: Served) -> None:
    answer = both(client, messages=user("[chat] anything"), tools=TOOLS, tool_choice="required")
    assert served.decoder.prompts[-1].endswith('<|im_start|>assistant\n<tool_call>\n{"name": "')
    assert [(c["name"], json.loads(c["arguments"])) for c in answer["calls"]] == [("get_time", {"city": "Lima"})]


def test_tool_choice_none_leaves_tools_out_and_returns_text(client: OpenAI, served: Served) -> None:
    answer = both(client, messages=user("[single] weather?"), tools=TOOLS, tool_choice="none")
    assert "<tools>" not in served.decoder.prompts[-1]
    assert answer["calls"] == [] and answer["finish_reason"] == "stop"
    assert '<tool_call>\n{"name": "get_weather"' in answer["content"]  # visible text, never a call


def test_follow_up_turn_after_a_tool_result(client: OpenAI, served: Served) -> None:
    first = non_streamed(client, messages=user("[single] weather in Paris?"), tools=TOOLS)
    call = first["calls"][0]
    function = {"name": call["name"], "arguments": call["arguments"]}
    messages = user("[single] weather in Paris?") + [
        {"role": "assistant", "content": first["content"],
         "tool_calls": [{"id": call["id"], "type": "function", "function": function}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 24 C"},
    ]
    answer = both(client, messages=messages, tools=TOOLS)
    assert answer["content"] == "It is sunny in Paris." and answer["calls"] == []
    prompt = served.decoder.prompts[-1]
    # The earlier call went back in the model's own format, and the result as a Hermes tool response.
    assert 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert "<tool_response>\nsunny, 24 C\n</tool_response>" in prompt


def test_reasoning_content_is_split_from_content(client: OpenAI) -> None:
    answer = both(client, messages=user("[think] weather in Rome"), tools=TOOLS)
    assert answer["reasoning"] == "The user wants the weather, so I call the tool."
    assert answer["content"] == "" and [c["name"] for c in answer["calls"]] == ["get_weather"]


def test_stop_strings_and_max_tokens(client: OpenAI) -> None:
    cut = both(client, messages=user("[stops] go"), stop=["END"])
    # byte-exact: the space before the stop string is the model's (OpenAI keeps it too)
    assert cut["content"] == "alpha beta " and cut["finish_reason"] == "stop"
    short = both(client, messages=user("[long] go"), max_tokens=5)
    assert short["finish_reason"] == "length" and short["usage"].completion_tokens == 5
    assert short["content"].split() == ["word"] * 5


def test_calls_are_guided_by_default_and_every_response_says_whether(client: OpenAI, served: Served) -> None:
    response = client.chat.completions.create(model=MODEL, messages=user("[single] weather?"), tools=TOOLS)
    assert response.model_extra["qwen_tool"] == {"guided": True}
    guide = served.decoder.requests[-1].params.guide
    assert guide is not None and "get_weather" in guide and "get_time" in guide
    chunks = list(client.chat.completions.create(model=MODEL, messages=user("[single] weather?"), tools=TOOLS,
                                                 stream=True))
    assert chunks and all(chunk.model_extra["qwen_tool"] == {"guided": True} for chunk in chunks)
    for request, reason in [({"tools": TOOLS, "tool_choice": "none"}, "tool_choice is none"),
                            ({}, "no tools were offered")]:
        response = client.chat.completions.create(model=MODEL, messages=user("[chat] hi"), **request)
        assert response.model_extra["qwen_tool"] == {"guided": False, "unguided_reason": reason}
        assert served.decoder.requests[-1].params.guide is None


@pytest.mark.parametrize(("settings", "reason"), [({"guided": False}, "guided decoding is off on this server"),
                                                  ({"tool_format": "pythonic"}, "no template for format 'pythonic'")])
def test_a_server_that_cannot_guide_serves_unguided_and_says_why(settings: dict, reason: str) -> None:
    with scripted_server(**settings) as served:
        client = OpenAI(base_url=served.base_url, api_key="unused", max_retries=0)
        response = client.chat.completions.create(model=MODEL, messages=user("[chat] hi"), tools=TOOLS)
    assert response.choices[0].message.content == "Hello! How can I help you today?"
    metadata = response.model_extra["qwen_tool"]
    assert metadata["guided"] is False and reason in metadata["unguided_reason"]
    assert served.decoder.requests[-1].params.guide is None
