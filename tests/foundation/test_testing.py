"""The tiny random-weight model matches the real architecture and tokenizer."""

from __future__ import annotations

import pytest
import torch

from qwen_tool.testing import save_tiny_model, tiny_model, tiny_tokenizer


def test_tiny_model_is_a_small_llama_with_the_real_vocabulary():
    model = tiny_model()
    tokenizer = tiny_tokenizer()
    assert model.config.model_type == "llama"
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == model.config.eos_token_id

    ids = tokenizer("<|im_start|>user\nhi<|im_end|>", return_tensors="pt")["input_ids"]
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)


def test_tiny_model_is_seeded():
    a, b, c = tiny_model(seed=1), tiny_model(seed=1), tiny_model(seed=2)
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])


def test_saved_tiny_model_loads_by_directory_name(tmp_path):
    from qwen_tool.models import load_model, load_tokenizer, resolve

    directory = save_tiny_model(tmp_path / "tiny")
    assert resolve(str(directory)).kind == "local"
    model = load_model(str(directory))
    assert model.config.num_hidden_layers == 2
    assert load_tokenizer(str(directory)).pad_token is not None


@pytest.mark.slow
def test_main_job_answers_a_tool_free_prompt_with_the_real_model():
    from qwen_tool.config import GenerateConfig
    from qwen_tool.pipeline import answer_prompt

    answer = answer_prompt(GenerateConfig(prompt="What is the capital of France?", max_new_tokens=16))
    assert "Paris" in answer
