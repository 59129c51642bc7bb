from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from qwen_tool import QwenToolError
from qwen_tool.eval.generation import (
    Generation,
    GenerationSettings,
    TransformersBackend,
    generate_all,
)
from qwen_tool.models import stop_token_ids
from qwen_tool.testing import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    return TransformersBackend(tiny_model(), tiny_tokenizer(), "tiny")


def _prompts(tokenizer, sizes=(1, 9, 3, 30, 5)) -> list[str]:
    return [tokenizer.apply_chat_template([{"role": "user", "content": "word " * n}], tokenize=False,
                                          add_generation_prompt=True) for n in sizes]


def _reference(backend: TransformersBackend, prompt: str, max_new_tokens: int) -> list[int]:
    """Plain unbatched `model.generate` with no stop token: the ground truth greedy continuation."""
    ids = backend.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = backend.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=None, pad_token_id=backend.pad_id)
    return out[0, ids.shape[1]:].tolist()


def test_stop_tokens_include_chatml_end_of_turn() -> None:
    tokenizer = tiny_tokenizer()
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tokenizer)


@pytest.mark.parametrize("per_row_prefill", [True, False])
def test_batched_greedy_with_dropped_rows_equals_unbatched_generate(backend: TransformersBackend,
                                                                    per_row_prefill: bool) -> None:
    prompts = _prompts(backend.tokenizer)
    references = [_reference(backend, p, 12) for p in prompts]
    # Make a token that some rows emit early, and others never, the stop token: rows then finish at different steps
    # and leave the batch, which must not disturb the rows that stay.
    stop = references[0][2]
    original = backend.stop_ids
    backend.stop_ids = [stop]
    backend.per_row_prefill = per_row_prefill
    try:
        generations = backend.generate(prompts, GenerationSettings(max_new_tokens=12, batch_size=3))
    finally:
        backend.stop_ids = original
        backend.per_row_prefill = True
    finished_early = 0
    for reference, generation in zip(references, generations, strict=True):
        if stop in reference:
            expected = reference[: reference.index(stop) + 1]
            assert generation.finish_reason == "stop"
            finished_early += len(expected) < 12
        else:
            expected = reference
            assert generation.finish_reason == "length"
        assert generation.new_tokens == len(expected)
        text_ids = expected[:-1] if generation.finish_reason == "stop" else expected
        assert generation.text == backend.tokenizer.decode(text_ids, skip_special_tokens=True)
    assert finished_early >= 1


def test_bf16_prefill_hands_a_float32_cache_to_the_float32_decoder() -> None:
    model, tokenizer = tiny_model(), tiny_tokenizer()
    exact = TransformersBackend(model, tokenizer, "tiny")
    mixed = TransformersBackend(model, tokenizer, "tiny", prefill_dtype="bfloat16")
    assert mixed.model is model and mixed.model.dtype == torch.float32
    assert mixed.prefill_model.dtype == torch.bfloat16
    assert mixed.model_id == "tiny+prefill-bfloat16"  # cached generations of the two settings never mix
    rows = [mixed._encode(p) for p in _prompts(tokenizer, sizes=(2, 7))]
    with torch.inference_mode():
        cache, mask_BT, _, logits_BV = mixed._prefill(rows)
        exact_cache, exact_mask_BT, _, _ = exact._prefill(rows)
        bf16_logits = [mixed.prefill_model(input_ids=torch.tensor([row])).logits[0, -1] for row in rows]
    assert torch.equal(mask_BT, exact_mask_BT)
    for layer, exact_layer in zip(cache.layers, exact_cache.layers, strict=True):
        assert layer.keys.dtype == torch.float32 and layer.values.dtype == torch.float32
        torch.testing.assert_close(layer.keys, exact_layer.keys, rtol=0.05, atol=0.05)
        assert not torch.equal(layer.keys, exact_layer.keys)  # it really was computed in bf16
    assert logits_BV.argmax(-1).tolist() == [int(logits.argmax()) for logits in bf16_logits]
    generations = mixed.generate([tokenizer.decode(r) for r in rows], GenerationSettings(max_new_tokens=6))
    assert len(generations) == 2
    assert all(g.new_tokens == 6 or (g.finish_reason == "stop" and g.new_tokens < 6) for g in generations)


class ScriptedBackend:
    """Returns fixed texts; counts the prompts it was asked to decode; may fail after some batches."""

    def __init__(self, texts: dict[str, str], fail_after_batches: int | None = None) -> None:
        self.model_id = "scripted"
        self.texts = texts
        self.decoded: list[str] = []
        self.fail_after_batches = fail_after_batches
        self.batches = 0

    def token_length(self, prompt: str) -> int:
        return len(prompt)

    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[Generation]:
        if self.fail_after_batches is not None and self.batches >= self.fail_after_batches:
            raise KeyboardInterrupt
        self.batches += 1
        self.decoded.extend(prompts)
        return [Generation(self.texts[p], len(self.texts[p]), "stop") for p in prompts]


def test_cache_makes_rescoring_free_and_resumes_after_interrupt(tmp_path) -> None:
    texts = {f"prompt {i}" + "x" * i: f"answer {i}" for i in range(7)}
    prompts = list(texts)
    settings = GenerationSettings(max_new_tokens=8, batch_size=2)
    interrupted = ScriptedBackend(texts, fail_after_batches=2)
    with pytest.raises(KeyboardInterrupt):
        generate_all(interrupted, prompts, settings, cache_dir=tmp_path, progress=False)
    assert len(interrupted.decoded) == 4  # two batches of two reached the cache before the interrupt
    resumed = ScriptedBackend(texts)
    results = generate_all(resumed, prompts, settings, cache_dir=tmp_path, progress=False)
    assert [r.text for r in results] == [texts[p] for p in prompts]
    assert sorted(resumed.decoded) == sorted(set(prompts) - set(interrupted.decoded))
    again = ScriptedBackend(texts)
    generate_all(again, prompts, settings, cache_dir=tmp_path, progress=False)
    assert again.decoded == []
    # Different settings are a different cache.
    other = ScriptedBackend(texts)
    generate_all(other, prompts[:1], GenerationSettings(max_new_tokens=9, batch_size=2), cache_dir=tmp_path,
                 progress=False)
    assert other.decoded == prompts[:1]


def test_cache_ignores_a_line_cut_short(tmp_path) -> None:
    texts = {"a": "1", "bb": "2"}
    settings = GenerationSettings(max_new_tokens=4, batch_size=1)
    generate_all(ScriptedBackend(texts), ["a"], settings, cache_dir=tmp_path, progress=False)
    cache_file = next(tmp_path.glob("*.jsonl"))
    cache_file.write_text(cache_file.read_text() + '{"prompt": "trunc')
    backend = ScriptedBackend(texts)
    assert [g.text for g in generate_all(backend, ["a", "bb"], settings, cache_dir=tmp_path, progress=False)] == [
        "1", "2"]
    assert backend.decoded == ["bb"]


def test_longest_prompts_are_decoded_first_in_batches() -> None:
    texts = {"x" * n: str(n) for n in (3, 1, 4, 2)}
    backend = ScriptedBackend(texts)
    generate_all(backend, list(texts), GenerationSettings(batch_size=2), progress=False)
    assert backend.decoded == ["xxxx", "xxx", "xx", "x"]


def test_guided_rows_write_schema_valid_calls_and_free_rows_decode_as_before(backend: TransformersBackend) -> None:
    """A random model writes no valid call by itself; under a grammar that requires one (xgrammar's `required`
    tool choice) every guided row does, while a free row in the same batch decodes exactly as without guidance."""
    import jsonschema
    import xgrammar

    from qwen_tool.codec import get_codec

    parameters = {"type": "object", "properties": {"unit": {"type": "string", "enum": ["km", "miles"]},
                                                   "exact": {"type": "boolean"}}, "required": ["unit", "exact"]}
    tools = [{"type": "function", "function": {"name": "geo.distance", "parameters": parameters}}]
    forced = xgrammar.get_builtin_structural_tag("qwen_3", tools=tools, tool_choice="required", reasoning=False,
                                                 max_whitespace_cnt=1).model_dump_json()
    prompts = _prompts(backend.tokenizer, sizes=(3, 7, 12))
    free = backend.generate(prompts, GenerationSettings(max_new_tokens=160, batch_size=3))
    guided = backend.generate(prompts, GenerationSettings(max_new_tokens=160, batch_size=3, guided=True),
                              guides=[forced, None, forced])
    assert guided[1] == free[1]
    codec = get_codec("hermes")
    assert not any(codec.parse(g.text, tools).tool_calls for g in free)
    for generation in (guided[0], guided[2]):
        parsed = codec.parse(generation.text, tools)
        assert parsed.error is None and parsed.tool_calls[0].name == "geo.distance", generation.text
        jsonschema.validate(parsed.tool_calls[0].arguments, parameters)


def test_guided_settings_need_one_guide_per_prompt_and_change_the_cache_key() -> None:
    settings = GenerationSettings(guided=True)
    assert settings.key() != GenerationSettings().key()
    with pytest.raises(QwenToolError, match="one guide per prompt"):
        generate_all(TransformersBackend(tiny_model(), tiny_tokenizer(), "tiny"), ["a"], settings)
