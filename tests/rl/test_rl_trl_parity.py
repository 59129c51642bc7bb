"""Our GRPO loss equals TRL 1.16's `GRPOTrainer._compute_loss` on the same batch (same model, same log-prob inputs),
for its default aggregation (DAPO, token level) and the GRPO / Dr. GRPO variants, with and without the KL term."""

from __future__ import annotations

import tempfile

import pytest
import torch

from qwen_tool.rl.losses import grpo_loss
from qwen_tool.rl.policy import completion_forward
from qwen_tool.testing import tiny_model, tiny_tokenizer

MAX_COMPLETION = 12


@pytest.fixture(scope="module")
def trainer_and_batch():
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = tiny_tokenizer()
    model = tiny_model(seed=3)
    args = GRPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=MAX_COMPLETION,
                      report_to=[], use_cpu=True, save_strategy="no", bf16=False)
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions), args=args,
                          train_dataset=Dataset.from_dict({"prompt": ["hi"] * 4}), processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; one micro-batch here
    generator = torch.Generator().manual_seed(0)
    B, P, C = 4, 7, MAX_COMPLETION
    prompt_lengths, completion_lengths = [7, 5, 3, 6], [12, 9, 4, 10]
    prompt_ids = torch.randint(10, 1000, (B, P), generator=generator)
    prompt_mask = torch.zeros(B, P, dtype=torch.long)
    completion_ids = torch.randint(10, 1000, (B, C), generator=generator)
    completion_mask = torch.zeros(B, C, dtype=torch.long)
    for b in range(B):
        prompt_mask[b, P - prompt_lengths[b]:] = 1
        completion_mask[b, :completion_lengths[b]] = 1
    tool_mask = torch.ones(B, C, dtype=torch.long)
    tool_mask[0, 3:6] = 0  # a tool result inside the first completion
    tool_mask[3, 2:4] = 0
    with torch.no_grad():
        logprobs = completion_forward(model, prompt_ids, prompt_mask, completion_ids, completion_mask).logprobs_BC
    old = logprobs + 0.3 * torch.randn(B, C, generator=generator)  # ratios on both sides of the clip range
    ref = logprobs + 0.2 * torch.randn(B, C, generator=generator)
    advantages = torch.tensor([0.9, -0.9, 1.3, -0.4])
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
              "completion_mask": completion_mask, "tool_mask": tool_mask, "advantages": advantages,
              "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": (completion_mask * tool_mask).sum()}
    return trainer, model, inputs


@pytest.mark.parametrize(("loss_type", "aggregation"), [("dapo", "token"), ("grpo", "sequence"),
                                                         ("dr_grpo", "constant")])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_equals_trl(trainer_and_batch, loss_type, aggregation, beta):
    trainer, model, inputs = trainer_and_batch
    trainer.loss_type, trainer.beta = loss_type, beta
    model.train()
    model.zero_grad()
    theirs = trainer._compute_loss(model, inputs)
    theirs.backward()
    their_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out = completion_forward(model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
                             inputs["completion_mask"])
    action_mask = inputs["completion_mask"] * inputs["tool_mask"]
    ours, _ = grpo_loss(out.logprobs_BC, inputs["old_per_token_logps"], inputs["advantages"], action_mask,
                        ref_logprobs_BT=inputs["ref_per_token_logps"], kl_coef=beta, aggregation=aggregation,
                        max_length=MAX_COMPLETION)
    ours.backward()
    assert abs(ours.item() - theirs.item()) < 1e-5, (ours.item(), theirs.item())
    for mine, theirs_grad in zip((p.grad for p in model.parameters()), their_grads, strict=True):
        assert torch.allclose(mine, theirs_grad, atol=1e-5)
