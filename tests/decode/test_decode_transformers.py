"""The transformers backend of the decoding engine, on a tiny random Llama with the real tokenizer."""

from __future__ import annotations

import pytest
import torch

from qwen_tool import QwenToolError
from qwen_tool.decode import Request, SamplingParams
from qwen_tool.decode.kv_cache import decode_mask, prefill_mask
from qwen_tool.decode.transformers_decoder import TransformersDecoder, common_prefix
from qwen_tool.testing import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _ids(tokenizer, words: int) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": "word " * words}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _reference(model, prompt: list[int], new_tokens: int) -> list[int]:
    """Plain unbatched `model.generate` without a stop token: the ground-truth greedy continuation."""
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_masks_let_each_query_see_its_own_row_up_to_itself() -> None:
    # lengths 2 and 0: row 0's new token sits at column 2 and sees columns 0..2; row 1's at column 0 sees column 0.
    low = torch.finfo(torch.float32).min
    assert decode_mask(torch.tensor([2, 0]), torch.float32).squeeze(1).squeeze(1).tolist() == [
        [0.0, 0.0, 0.0], [0.0, low, low]]
    # two new tokens after one cached: the first (column 1) sees 0..1, the second (column 2) sees 0..2.
    assert prefill_mask(1, 2, torch.float32, "cpu")[0, 0].tolist() == [[0.0, 0.0, low], [0.0, 0.0, 0.0]]
    assert common_prefix(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 9])) == 2
    assert common_prefix(torch.tensor([1, 2]), torch.tensor([1, 2, 3])) == 2


def test_greedy_rows_that_join_and_leave_equal_unbatched_generate(model, tokenizer) -> None:
    prompts = [_ids(tokenizer, n) for n in (1, 9, 3, 30, 5)]
    references = [_reference(model, p, 12) for p in prompts]
    # A token some rows emit early and others never becomes the stop token: rows finish at different steps, leave,
    # and waiting rows take their slots (max_batch 2 < 5 requests), which must not disturb the rows that stay.
    stop = references[0][2]
    decoder = TransformersDecoder(model, tokenizer, max_batch=2, prefix_cache_mb=0)
    completions = decoder.generate([Request(p, SamplingParams(max_tokens=12, stop_token_ids=(stop,)))
                                    for p in prompts])
    finished_early = 0
    for reference, completion in zip(references, completions, strict=True):
        expected = reference[: reference.index(stop) + 1] if stop in reference else reference
        assert completion.token_ids == expected
        assert completion.finish_reason == ("stop" if stop in reference else "length")
        finished_early += len(expected) < 12
    assert finished_early >= 1


def test_shared_prefixes_are_reused_and_change_nothing(model, tokenizer) -> None:
    """A repeated prompt is prefilled once; a prompt extending a finished request starts after its known part; the
    tokens are the same as with no reuse at all."""
    prompt = _ids(tokenizer, 20)
    fresh = TransformersDecoder(model, tokenizer, max_batch=4, prefix_cache_mb=0)
    shared = TransformersDecoder(model, tokenizer, max_batch=4)
    group = [Request(prompt, SamplingParams(max_tokens=6)) for _ in range(3)]
    first = shared.generate(group)
    assert [c.cached_tokens for c in first] == [0, len(prompt) - 1, len(prompt) - 1]
    assert shared.prefilled_tokens == len(prompt) + 2
    assert first == fresh.generate(group)
    follow_up = prompt + first[0].token_ids + _ids(tokenizer, 4)
    (second,) = shared.generate([Request(follow_up, SamplingParams(max_tokens=6))])
    assert second.cached_tokens == len(prompt) + len(first[0].token_ids) - 1  # all but the last sampled token
    assert second.token_ids == fresh.generate([Request(follow_up, SamplingParams(max_tokens=6))])[0].token_ids


def test_logprobs_are_those_of_the_tempered_distribution_and_seeds_reproduce(model, tokenizer) -> None:
    prompt = _ids(tokenizer, 6)
    decoder = TransformersDecoder(model, tokenizer, max_batch=4, seed=0)
    params = SamplingParams(max_tokens=5, temperature=2.0, logprobs=True, seed=7)
    alone = decoder.generate([Request(prompt, params)])[0]
    crowded = decoder.generate([Request(_ids(tokenizer, 3), SamplingParams(max_tokens=5, temperature=1.0)),
                                Request(prompt, params)])[1]
    assert crowded.token_ids == alone.token_ids  # its own seed, whatever else shares the batch
    with torch.no_grad():
        logits = model(torch.tensor([prompt + alone.token_ids])).logits[0, len(prompt) - 1:-1]
    expected = torch.log_softmax(logits / 2.0, -1).gather(-1, torch.tensor(alone.token_ids)[:, None]).squeeze(-1)
    torch.testing.assert_close(torch.tensor(alone.logprobs), expected, rtol=1e-4, atol=1e-4)
    # A greedy member of a sampled group takes the argmax, its log-probs still tempered.
    (greedy,) = decoder.generate([Request(prompt, SamplingParams(max_tokens=5, temperature=2.0, greedy=True,
                                                                  logprobs=True))])
    assert greedy.token_ids == _reference(model, prompt, 5)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + greedy.token_ids])).logits[0, len(prompt) - 1:-1]
    expected = torch.log_softmax(logits / 2.0, -1).gather(-1, torch.tensor(greedy.token_ids)[:, None]).squeeze(-1)
    torch.testing.assert_close(torch.tensor(greedy.logprobs), expected, rtol=1e-4, atol=1e-4)


def test_bf16_prefill_writes_a_float32_cache_close_to_the_exact_one(model, tokenizer) -> None:
    exact = TransformersDecoder(model, tokenizer, max_batch=2)
    mixed = TransformersDecoder(model, tokenizer, max_batch=2, prefill_dtype="bfloat16")
    assert mixed.model is model and mixed.prefill_model.dtype == torch.bfloat16
    requests = [Request(_ids(tokenizer, n), SamplingParams(max_tokens=1)) for n in (2, 7)]
    for decoder in (exact, mixed):
        decoder.add(requests)
    assert mixed.kv is not None and exact.kv is not None
    for mixed_keys, exact_keys in zip(mixed.kv.keys, exact.kv.keys, strict=True):
        assert mixed_keys.dtype == torch.float32
        torch.testing.assert_close(mixed_keys, exact_keys, rtol=0.05, atol=0.05)
        assert not torch.equal(mixed_keys, exact_keys)  # it really was computed in bf16


def test_guided_rows_write_schema_valid_calls_and_free_rows_decode_as_before(model, tokenizer) -> None:
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
    decoder = TransformersDecoder(model, tokenizer, max_batch=3)
    prompts = [_ids(tokenizer, n) for n in (3, 7, 12)]
    free = decoder.generate([Request(p, SamplingParams(max_tokens=160)) for p in prompts])
    guided = decoder.generate([Request(p, SamplingParams(max_tokens=160, guide=guide))
                               for p, guide in zip(prompts, [forced, None, forced], strict=True)])
    assert guided[1].token_ids == free[1].token_ids
    codec = get_codec("hermes")
    texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in free + guided]
    assert not any(codec.parse(text, tools).tool_calls for text in texts[:3])
    for text in (texts[3], texts[5]):
        parsed = codec.parse(text, tools)
        assert parsed.error is None and parsed.tool_calls[0].name == "geo.distance", text
        jsonschema.validate(parsed.tool_calls[0].arguments, parameters)


def test_update_weights_decodes_with_the_new_weights_and_forgets_old_prefixes(tokenizer) -> None:
    policy = tiny_model(seed=0)
    decoder = TransformersDecoder(policy, tokenizer, max_batch=2)
    prompt = _ids(tokenizer, 12)
    before = decoder.generate([Request(prompt, SamplingParams(max_tokens=6))])[0].token_ids
    assert decoder.prefixes.entries
    with torch.no_grad():  # a large optimiser step
        for parameter in policy.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    decoder.update_weights(policy)
    assert not decoder.prefixes.entries
    after = decoder.generate([Request(prompt, SamplingParams(max_tokens=6))])[0].token_ids
    assert after == _reference(policy, prompt, 6) and after != before


def test_step_api_rows_join_mid_flight_and_leave_by_id(model, tokenizer) -> None:
    decoder = TransformersDecoder(model, tokenizer, max_batch=3)
    long_prompt, short_prompt = _ids(tokenizer, 10), _ids(tokenizer, 2)
    (first,) = decoder.add([Request(long_prompt, SamplingParams(max_tokens=8))])
    generated = {first.row: [first.token_id]}
    for token in decoder.step():
        generated[token.row].append(token.token_id)
    (second,) = decoder.add([Request(short_prompt, SamplingParams(max_tokens=8))])
    generated[second.row] = [second.token_id]
    for _ in range(3):
        for token in decoder.step():
            generated[token.row].append(token.token_id)
    decoder.remove([first.row])  # the remaining row moves into the freed slot and carries on
    for _ in range(2):
        for token in decoder.step():
            generated[token.row].append(token.token_id)
    assert generated[first.row] == _reference(model, long_prompt, 5)
    assert generated[second.row] == _reference(model, short_prompt, 6)
    with pytest.raises(QwenToolError, match="slots"):
        decoder.add([Request(short_prompt, SamplingParams(max_tokens=2))] * 3)


def test_sliding_window_models_are_refused_with_the_fix(tokenizer) -> None:
    model = tiny_model()
    model.config.sliding_window, model.config.use_sliding_window = 4, True
    with pytest.raises(QwenToolError, match="fix: decode with the vLLM backend"):
        TransformersDecoder(model, tokenizer)
