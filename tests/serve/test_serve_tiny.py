"""The real transformers decoder behind the server, on a tiny random model saved as a model directory; and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from qwen_tool.cli import main
from qwen_tool.models import load_tokenizer, tool_format_for
from qwen_tool.serve.engine import load_engine
from qwen_tool.serve.server import BackgroundServer, ServeSettings, create_app
from qwen_tool.testing import save_tiny_model


@pytest.mark.usefixtures("one_thread")
def test_tiny_model_directory_served_end_to_end(tmp_path: Path) -> None:
    name = str(save_tiny_model(tmp_path / "tiny"))
    engine = load_engine(name, "transformers", max_batch=4)
    app = create_app(engine, load_tokenizer(name), ServeSettings(name, tool_format_for(name)))
    with BackgroundServer(app) as url:
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        request = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "seed": 1,
                   "temperature": 0.7}
        plain = client.chat.completions.create(**request)
        chunks = list(client.chat.completions.create(stream=True, **request))
    engine.close()
    # Random weights never say end-of-turn this early: both transports stop at max_tokens with the same text.
    assert plain.choices[0].finish_reason == "length" and plain.usage.completion_tokens == 6
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_serve_refuses_an_unset_api_key_variable(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("QWEN_TOOL_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", "smollm2-135m-instruct", "--api-key-env", "QWEN_TOOL_TEST_NO_SUCH_KEY"])
    assert exit_info.value.code == 1
    assert "QWEN_TOOL_TEST_NO_SUCH_KEY" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_a_guided_call_fits_its_tools_schema_nested_objects_included(tmp_path: Path) -> None:
    """A random model writes no valid call by itself; with `tool_choice` forcing the call open, the guide holds what
    it writes to the schema: an object where the schema says object, values from the enum, and the call closes.

    One key per object: the guide lets a key repeat (see test_codec_guided.py's xfail), which JSON parsing folds
    into one; with a single key the result still fits the schema.
    """
    import jsonschema

    name = str(save_tiny_model(tmp_path / "tiny"))
    parameters = {"type": "object", "properties": {"route": {
        "type": "object", "properties": {"unit": {"type": "string", "enum": ["km", "miles"]}}, "required": ["unit"]}},
        "required": ["route"]}
    tools = [{"type": "function", "function": {"name": "geo.distance", "parameters": parameters}}]
    engine = load_engine(name, "transformers", max_batch=4)
    app = create_app(engine, load_tokenizer(name), ServeSettings(name, tool_format_for(name)))
    with BackgroundServer(app) as url:
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        responses = [client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "How far is it?"}], tools=tools, tool_choice=choice,
            parallel_tool_calls=False, max_tokens=400, temperature=1.0, seed=seed)
            for seed, choice in enumerate(["required", {"type": "function", "function": {"name": "geo.distance"}}])]
    engine.close()
    for response in responses:
        assert response.model_extra["qwen_tool"] == {"guided": True}
        assert response.choices[0].finish_reason == "tool_calls", response.choices[0].message
        (call,) = response.choices[0].message.tool_calls
        assert call.function.name == "geo.distance"
        jsonschema.validate(json.loads(call.function.arguments), parameters)


def test_serve_passes_no_guided_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("qwen_tool.serve.server.serve", lambda model, **kwargs: seen.update(kwargs))
    for flags, guided in [([], True), (["--no-guided"], False)]:
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--model", "m", *flags])
        assert exit_info.value.code == 0 and seen["guided"] is guided
