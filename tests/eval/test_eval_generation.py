from __future__ import annotations

import pytest

from qwen_tool import QwenToolError
from qwen_tool.decode import Request, SamplingParams
from qwen_tool.decode.transformers_decoder import TransformersDecoder
from qwen_tool.eval.generation import DecoderBackend, Generation, GenerationSettings, generate_all
from qwen_tool.models import stop_token_ids
from qwen_tool.testing import ScriptedBackend, tiny_model, tiny_tokenizer


def _backend() -> DecoderBackend:
    tokenizer = tiny_tokenizer()
    return DecoderBackend(TransformersDecoder(tiny_model(), tokenizer), tokenizer, "tiny")


def test_stop_tokens_include_chatml_end_of_turn() -> None:
    tokenizer = tiny_tokenizer()
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tokenizer)


def test_text_is_the_decoded_tokens_without_the_stop_token_and_each_reaches_on_done() -> None:
    backend = _backend()
    tokenizer = backend.tokenizer
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": "word " * n}], tokenize=False,
                                             add_generation_prompt=True) for n in (1, 9, 30)]
    done: dict[int, Generation] = {}
    generations = backend.generate(prompts, GenerationSettings(max_new_tokens=7, batch_size=2),
                                   on_done=lambda index, generation: done.__setitem__(index, generation))
    assert done == dict(enumerate(generations))
    completions = backend.decoder.generate([Request(tokenizer(p, add_special_tokens=False)["input_ids"],
                                                    SamplingParams(max_tokens=7)) for p in prompts])
    for generation, completion in zip(generations, completions, strict=True):
        ids = completion.token_ids[:-1] if completion.finish_reason == "stop" else completion.token_ids
        assert generation.text == tokenizer.decode(ids, skip_special_tokens=True)
        assert generation.new_tokens == len(completion.token_ids)
        assert generation.finish_reason == completion.finish_reason


def test_cache_makes_rescoring_free_and_resumes_after_interrupt(tmp_path) -> None:
    texts = {f"prompt {i}" + "x" * i: f"answer {i}" for i in range(7)}
    prompts = list(texts)
    settings = GenerationSettings(max_new_tokens=8, batch_size=2)
    interrupted = ScriptedBackend(texts.__getitem__, fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        generate_all(interrupted, prompts, settings, cache_dir=tmp_path, progress=False)
    assert len(interrupted.decoded) == 4  # each reached the cache as it finished, before the interrupt
    resumed = ScriptedBackend(texts.__getitem__)
    results = generate_all(resumed, prompts, settings, cache_dir=tmp_path, progress=False)
    assert [r.text for r in results] == [texts[p] for p in prompts]
    assert sorted(resumed.decoded) == sorted(set(prompts) - set(interrupted.decoded))
    again = ScriptedBackend(texts.__getitem__)
    generate_all(again, prompts, settings, cache_dir=tmp_path, progress=False)
    assert again.decoded == []
    # Different settings are a different cache.
    other = ScriptedBackend(texts.__getitem__)
    generate_all(other, prompts[:1], GenerationSettings(max_new_tokens=9, batch_size=2), cache_dir=tmp_path,
                 progress=False)
    assert other.decoded == prompts[:1]


def test_cache_ignores_a_line_cut_short(tmp_path) -> None:
    texts = {"a": "1", "bb": "2"}
    settings = GenerationSettings(max_new_tokens=4, batch_size=1)
    generate_all(ScriptedBackend(texts.__getitem__), ["a"], settings, cache_dir=tmp_path, progress=False)
    cache_file = next(tmp_path.glob("*.jsonl"))
    cache_file.write_text(cache_file.read_text() + '{"prompt": "trunc')
    backend = ScriptedBackend(texts.__getitem__)
    assert [g.text for g in generate_all(backend, ["a", "bb"], settings, cache_dir=tmp_path, progress=False)] == [
        "1", "2"]
    assert backend.decoded == ["bb"]


def test_longest_prompts_are_decoded_first() -> None:
    texts = {"x" * n: str(n) for n in (3, 1, 4, 2)}
    backend = ScriptedBackend(texts.__getitem__)
    generate_all(backend, list(texts), GenerationSettings(batch_size=2), progress=False)
    assert backend.decoded == ["xxxx", "xxx", "xx", "x"]


def test_guided_settings_need_one_guide_per_prompt_and_change_the_cache_key() -> None:
    settings = GenerationSettings(guided=True)
    assert settings.key() != GenerationSettings().key()
    with pytest.raises(QwenToolError, match="one guide per prompt"):
        generate_all(ScriptedBackend({"a": "1"}.__getitem__), ["a"], settings)
