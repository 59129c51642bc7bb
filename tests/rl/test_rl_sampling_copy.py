"""The transformers backend's sampling copy under mixed precision: Linear weights cast once and keys and values cached
in bf16, yet logits and sampled tokens bitwise the policy's (whose forward accelerate runs in autocast), and in step
with the policy after `update_weights`."""

from __future__ import annotations

import pytest
import torch

from qwen_tool.config import RLTrainingConfig
from qwen_tool.decode import Request, SamplingParams
from qwen_tool.decode.transformers_decoder import TransformersDecoder
from qwen_tool.rl.run_setup import build_decoder, sampling_copy
from qwen_tool.testing import tiny_model, tiny_tokenizer

IDS = torch.tensor([[1, 200, 300, 400, 500, 600], [1, 700, 800, 900, 1000, 1100]])


@pytest.fixture
def bf16_policy():
    """The tiny model prepared by accelerate with bf16 mixed precision, as `train rl` prepares the policy."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    policy = Accelerator(cpu=True, mixed_precision="bf16").prepare(tiny_model())
    yield policy
    AcceleratorState._reset_state(reset_partial_state=True)


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_the_copy_casts_linear_weights_once_and_leaves_the_policy_alone(bf16_policy) -> None:
    sampler = sampling_copy(bf16_policy, torch.bfloat16)
    linear_dtypes = {m.weight.dtype for m in sampler.modules() if isinstance(m, torch.nn.Linear)}
    assert linear_dtypes == {torch.bfloat16}
    assert sampler.get_input_embeddings().weight.dtype == torch.float32
    assert sampler.get_output_embeddings().weight is not sampler.get_input_embeddings().weight
    assert {p.dtype for p in bf16_policy.parameters()} == {torch.float32}
    assert bf16_policy.get_output_embeddings().weight is bf16_policy.get_input_embeddings().weight
    assert all(p.requires_grad for p in bf16_policy.parameters())
    assert not any(p.requires_grad for p in sampler.parameters())


def test_the_copy_gives_the_policys_logits_bit_for_bit(bf16_policy) -> None:
    policy_logits = _logits(bf16_policy)
    assert torch.equal(_logits(sampling_copy(bf16_policy, torch.bfloat16)), policy_logits)
    # and the policy did compute in bf16: the same weights in plain float32 give other logits
    assert not torch.equal(_logits(tiny_model()), policy_logits)


def test_update_weights_brings_the_copy_back_in_step(bf16_policy) -> None:
    decoder = TransformersDecoder(sampling_copy(bf16_policy, torch.bfloat16), tiny_tokenizer())
    with torch.no_grad():
        for parameter in bf16_policy.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    assert not torch.equal(_logits(decoder.model), _logits(bf16_policy))  # the copy is not the policy's weights
    decoder.update_weights(bf16_policy)
    assert torch.equal(_logits(decoder.model), _logits(bf16_policy))
    assert decoder.model.get_output_embeddings().weight.dtype == torch.bfloat16


def test_sampled_tokens_are_the_same_as_with_the_policy_itself(bf16_policy) -> None:
    requests = [Request(IDS[i].tolist(), SamplingParams(max_tokens=12, temperature=1.0, seed=i, logprobs=True))
                for i in range(2)]
    own = TransformersDecoder(bf16_policy, tiny_tokenizer()).generate(requests)
    rl_decoder = build_decoder(RLTrainingConfig(), bf16_policy, tiny_tokenizer(), mixed_precision="bf16")
    copied = rl_decoder.generate(requests)  # its keys and values cached in bf16, as autocast's attention reads them
    assert [c.token_ids for c in copied] == [c.token_ids for c in own]
    assert [c.logprobs for c in copied] == [c.logprobs for c in own]


@pytest.mark.parametrize(("mixed", "copied"), [("no", False), ("bf16", True)])
def test_build_decoder_copies_only_under_mixed_precision(bf16_policy, mixed: str, copied: bool) -> None:
    decoder = build_decoder(RLTrainingConfig(), bf16_policy, tiny_tokenizer(), mixed_precision=mixed)
    assert (decoder.model is not bf16_policy) == copied
    assert (decoder.model.get_output_embeddings().weight.dtype == torch.bfloat16) == copied
    assert decoder.kv_dtype == (torch.bfloat16 if copied else torch.float32)
