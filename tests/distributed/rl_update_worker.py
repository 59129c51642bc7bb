"""One RL update on a fixed batch, run by every process of `torchrun` (or in one process, by the tests directly).

`python rl_update_worker.py ALGO AGGREGATION WRAPPER OUT`: each of the W processes takes its 1/W of the groups of
`batch()` and runs `grpo_update` or `ppo_update` on the tiny model wrapped by accelerate (WRAPPER ddp: DDP) or by FSDP2
(fsdp2), at learning rate 0 so the weights stay and the averaged gradients are left in `.grad`; process 0 saves the
gradients and the update's metrics (over every process's episodes) to OUT.

The batch is built so that the first half of the groups all share one prompt and the second half have a prompt each:
process 0's micro-batches then hold one distinct prompt and process 1's two, which is what made the trainer call the
model a different number of times on each process and hang (issue 29).
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from qwen_tool.config import RLTrainingConfig, load_config
from qwen_tool.rl.batch import RolloutBatch, collate
from qwen_tool.rl.distributed import world_size
from qwen_tool.rl.policy import ValueHead
from qwen_tool.rl.rollout import Rollout
from qwen_tool.rl.updates import RLModels, grpo_update, ppo_update
from qwen_tool.testing import TINY_HIDDEN, tiny_model

PROMPTS = [[5, 6, 7], [5, 6, 7], [5, 6, 7, 10], [9, 11]]
"""One prompt per group: the first two groups share theirs, the last two differ in text and length."""
GROUPS, SAMPLES = len(PROMPTS), 2


def batch() -> RolloutBatch:
    """GROUPS groups of SAMPLES episodes with varied prompts, completion lengths, rewards and sampling log-probs."""
    rollouts = []
    for group, prompt in enumerate(PROMPTS):
        for sample in range(SAMPLES):
            length = 2 + (3 * group + sample) % 5
            completion = [20 + 7 * group + 3 * sample + t for t in range(length)]
            rollouts.append(
                Rollout(
                    f"task-{group}",
                    prompt_ids=prompt,
                    completion_ids=completion,
                    action_mask=[1] * length,
                    old_logprobs=[-9.0 - 0.1 * t for t in range(length)],
                    turn_ends=[length - 1],
                    turn_rewards=[float((group + sample) % 3)],
                )
            )
    return collate(rollouts, 0)


def config(algo: str, aggregation: str) -> RLTrainingConfig:
    extra = [f"grpo.loss_aggregation={aggregation}"] if algo == "grpo" else []
    return load_config(
        RLTrainingConfig,
        None,
        [
            f"algo={algo}",
            f"samples_per_prompt={SAMPLES}",
            "kl_coef=0",
            "episodes_per_forward=4",
            "max_grad_norm=1e9",
            *extra,
        ],
    )


def fully_sharded(model: Any) -> Any:
    """`model` under FSDP2 (each decoder layer its own unit, then the root), as accelerate's FSDP config wraps it."""
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer)
    return fully_shard(model)


def update(
    algo: str, aggregation: str, rows: list[int], accelerator: Any, wrapper: str = "ddp"
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """(gradient of every parameter by name, the update's metrics) after one update on `rows`, with the policy
    wrapped by accelerate (DDP) or by FSDP2 (GRPO only)."""
    cfg = config(algo, aggregation)
    policy = tiny_model(seed=1).train()
    part = batch().select(rows)
    if wrapper == "fsdp2":
        policy = fully_sharded(policy)
        optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)
        metrics = grpo_update(RLModels(policy, optimizer), part, cfg, accelerator)
        named = {f"policy.{n}": p for n, p in policy.named_parameters()}
    elif algo == "grpo":
        optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)
        policy, optimizer = accelerator.prepare(policy, optimizer)
        metrics = grpo_update(RLModels(policy, optimizer), part, cfg, accelerator)
        named = {f"policy.{n}": p for n, p in accelerator.unwrap_model(policy).named_parameters()}
    else:
        optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)
        critic = ValueHead(TINY_HIDDEN)
        critic_optimizer = torch.optim.SGD(critic.parameters(), lr=0.0)
        policy, optimizer, critic, critic_optimizer = accelerator.prepare(policy, optimizer, critic, critic_optimizer)
        models = RLModels(policy, optimizer, critic=critic, critic_optimizer=critic_optimizer, shared_trunk=True)
        metrics = ppo_update(models, part, cfg, accelerator)
        named = {f"policy.{n}": p for n, p in accelerator.unwrap_model(policy).named_parameters()}
        named |= {f"critic.{n}": p for n, p in accelerator.unwrap_model(critic).named_parameters()}
    grads = {name: _full(p.grad).detach().clone() for name, p in named.items() if p.grad is not None}
    return grads, metrics.as_dict()


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP2 shard (a collective), else the tensor itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def main(algo: str, aggregation: str, wrapper: str, out: str) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    per_process = GROUPS * SAMPLES // world_size()
    rows = list(range(accelerator.process_index * per_process, (accelerator.process_index + 1) * per_process))
    grads, metrics = update(algo, aggregation, rows, accelerator, wrapper)
    if accelerator.is_main_process:
        torch.save({"grads": grads, "metrics": metrics}, out)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:])
