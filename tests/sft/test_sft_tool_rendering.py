"""A model trained on compact tool declarations records it (qwen_tool.json), and evaluation and the server read the
record back, so they prompt it as it was taught; an explicit other choice is honoured with a warning."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from qwen_tool.codec.tool_signatures import render_signatures
from qwen_tool.config import SFTTrainingConfig, load_config
from qwen_tool.data.schema import write_jsonl
from qwen_tool.data.synth import synthesize
from qwen_tool.eval import bfcl_single_turn
from qwen_tool.eval.generation import Generation, GenerationSettings
from qwen_tool.eval.runner import run_bfcl
from qwen_tool.models import resolve, tool_rendering_for
from qwen_tool.sft.trainer import train_sft
from qwen_tool.testing import save_tiny_model, tiny_tokenizer


class PromptRecorder:
    """A backend that answers nothing and keeps the prompts it was given."""

    model_id = "recorder"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def token_length(self, prompt: str) -> int:
        return len(prompt)

    def generate(self, prompts: Sequence[str], settings: GenerationSettings, guides=None, on_done=None,
                 progress=None) -> list[Generation]:
        self.prompts.extend(prompts)
        return [Generation("No tool fits.", 4, "stop") for _ in prompts]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model after one SFT step on compact prompts."""
    root = tmp_path_factory.mktemp("compact")
    data = root / "train.jsonl"
    write_jsonl(synthesize(2, seed=0), data)
    cfg = load_config(SFTTrainingConfig, None, [
        f"model={save_tiny_model(root / 'base')}", f"data={data}", f"output_dir={root / 'sft'}",
        "tool_rendering=compact", "examples_per_device=2", "gradient_accumulation=1", "save_steps=100"])
    return train_sft(cfg)


def test_sft_records_the_rendering_next_to_the_weights(trained) -> None:
    meta = json.loads((trained / "qwen_tool.json").read_text())
    assert (meta["tool_format"], meta["tool_rendering"], meta["sft"]["tool_rendering"]) == ("hermes", "compact",
                                                                                            "compact")
    assert resolve(str(trained)).tool_rendering == "compact"


def test_evaluation_prompts_the_model_as_it_was_taught_unless_told_otherwise(trained, tmp_path, caplog) -> None:
    tools = bfcl_single_turn.functions_to_tools(bfcl_single_turn.load_category("simple_python", 1)[0].functions)
    backend = PromptRecorder()
    metrics = run_bfcl(str(trained), ["simple_python"], 1, tmp_path / "as-taught", backend=backend,
                       tokenizer=tiny_tokenizer(), cache_dir=tmp_path / "cache", progress=False)
    assert metrics["tool_rendering"] == "compact"
    assert render_signatures(tools) in backend.prompts[0] and '"properties"' not in backend.prompts[0]

    backend = PromptRecorder()
    with caplog.at_level("WARNING", logger="qwen_tool"):
        metrics = run_bfcl(str(trained), ["simple_python"], 1, tmp_path / "as-json", backend=backend,
                           tokenizer=tiny_tokenizer(), tool_rendering="json", cache_dir=tmp_path / "cache",
                           progress=False)
    assert metrics["tool_rendering"] == "json" and '"properties"' in backend.prompts[0]
    assert "was trained with tool_rendering compact, but json was asked for" in caplog.text


def test_the_server_renders_what_the_record_says(trained) -> None:
    from qwen_tool.serve.chat import plan_chat
    from qwen_tool.serve.protocol import ChatCompletionRequest

    tools = [{"type": "function", "function": {"name": "ping", "description": "Check the line."}}]
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                                                    "tools": tools})
    plan = plan_chat(request, tiny_tokenizer(), "hermes", 16, tool_rendering_for(str(trained)))
    assert "<tools>\nping()\n  Check the line.\n</tools>" in plan.prompt


def test_a_model_without_a_record_is_prompted_with_json(tmp_path) -> None:
    model = tmp_path / "plain"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert resolve(str(model)).tool_rendering is None
    assert tool_rendering_for(str(model)) == "json"
    assert tool_rendering_for(str(model), "compact") == "compact"  # nothing recorded: nothing to warn about
