"""The policy forward: rows that share a prompt run it once, with the same log-probs, hidden states and gradients
as running every row whole."""

from __future__ import annotations

import torch

from qwen_tool.rl.policy import completion_forward
from qwen_tool.testing import tiny_model


def _batch() -> tuple[torch.Tensor, ...]:
    """Rows 0, 1 and 3 share a 6-token prompt, row 2 has a 4-token one (left-padded); completions right-padded."""
    generator = torch.Generator().manual_seed(0)
    shared, short = torch.randint(5, 500, (6,), generator=generator), torch.randint(5, 500, (4,), generator=generator)
    prompt_ids = torch.stack([shared, shared, torch.cat([torch.zeros(2, dtype=torch.long), short]), shared])
    prompt_mask = torch.ones_like(prompt_ids)
    prompt_mask[2, :2] = 0
    completion_ids = torch.randint(5, 500, (4, 5), generator=generator)
    completion_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    return prompt_ids, prompt_mask, completion_ids * completion_mask, completion_mask


def _row_by_row(model, prompt_ids, prompt_mask, completion_ids, completion_mask):
    """Every row alone, its prompt unpadded: nothing is shared."""
    outs = []
    for b in range(prompt_ids.shape[0]):
        keep = prompt_mask[b].bool()
        outs.append(completion_forward(model, prompt_ids[b:b + 1, keep], prompt_mask[b:b + 1, keep],
                                       completion_ids[b:b + 1], completion_mask[b:b + 1], temperature=0.7,
                                       with_hidden=True))
    return torch.cat([o.logprobs_BC for o in outs]), torch.cat([o.hidden_BCH for o in outs])


def test_shared_prompt_forward_equals_row_by_row_values_and_gradients() -> None:
    model = tiny_model()
    batch = _batch()
    mask = batch[3].bool()

    shared = completion_forward(model, *batch, temperature=0.7, with_hidden=True)
    shared.logprobs_BC[mask].sum().backward()
    shared_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    logprobs, hidden = _row_by_row(model, *batch)
    logprobs[mask].sum().backward()
    torch.testing.assert_close(shared.logprobs_BC[mask], logprobs[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared.hidden_BCH[mask], hidden[mask], rtol=1e-5, atol=1e-5)
    for got, want in zip(shared_grads, (p.grad for p in model.parameters()), strict=True):
        # float32 sums in another order: equal to a ten-thousandth of the tensor's largest gradient
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4 * float(want.abs().max()))
    assert any(g.abs().sum() > 0 for g in shared_grads)


def test_prompt_runs_once_per_distinct_prompt() -> None:
    model = tiny_model()
    seen = []
    hook = model.register_forward_pre_hook(lambda _m, _a, kwargs: seen.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)
    with torch.no_grad():
        completion_forward(model, *_batch())
    hook.remove()
    # two distinct prompts: each runs once (1 row), then its completions (3 rows, 1 row)
    assert sorted(seen) == sorted([(1, 6), (3, 5), (1, 4), (1, 5)])


def test_without_sharing_the_model_runs_once_on_the_whole_batch_with_the_same_values() -> None:
    # several processes need the same number of model calls whatever their prompts (issue 29)
    model = tiny_model()
    seen = []
    hook = model.register_forward_pre_hook(lambda _m, _a, kwargs: seen.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)
    batch = _batch()
    with torch.no_grad():
        whole = completion_forward(model, *batch, temperature=0.7, share_prompts=False)
        calls_without_sharing = list(seen)
        shared = completion_forward(model, *batch, temperature=0.7)
    hook.remove()
    assert calls_without_sharing == [(4, 6 + 5)]  # one call: 4 rows of the padded prompt and the completion
    mask = batch[3].bool()
    torch.testing.assert_close(whole.logprobs_BC[mask], shared.logprobs_BC[mask], rtol=1e-5, atol=1e-5)
