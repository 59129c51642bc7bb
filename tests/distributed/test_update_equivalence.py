"""Two processes with half the episodes each compute the same update as one process with all of them: the same
averaged gradients and the same logged loss and token means, for GRPO (each loss aggregation) and PPO (whitened
advantages, value head). The two-process run also starts each process on a batch that gives it a different number of
distinct prompts, the situation that hung `torchrun ... train rl` (issue 29): the test fails by timeout if that comes
back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rl_update_worker import GROUPS, SAMPLES, update

WORKER = Path(__file__).with_name("rl_update_worker.py")
LOSS_KEYS = {
    "grpo": ("loss", "clip_fraction", "entropy", "advantage_abs"),
    "ppo": ("policy_loss", "value_loss", "clip_fraction", "entropy"),
}


@pytest.mark.parametrize(
    ("algo", "aggregation", "wrapper"),
    [
        ("grpo", "token", "ddp"),
        ("grpo", "sequence", "ddp"),
        ("grpo", "constant", "ddp"),
        ("ppo", "token", "ddp"),
        ("grpo", "token", "fsdp2"),
    ],
)
def test_two_processes_with_half_the_batch_each_equal_one_with_all(
    tmp_path, two_processes, fresh_accelerator, algo, aggregation, wrapper
):
    out = tmp_path / "two.pt"
    result = two_processes([str(WORKER), algo, aggregation, wrapper, str(out)])
    assert result.returncode == 0, result.stdout[-4000:]
    two = torch.load(out)
    grads, metrics = update(algo, aggregation, list(range(GROUPS * SAMPLES)), fresh_accelerator)
    assert grads.keys() == two["grads"].keys() and any(g.abs().sum() > 0 for g in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    for key in LOSS_KEYS[algo]:
        assert two["metrics"][key] == pytest.approx(metrics[key], rel=1e-4, abs=1e-7), key
