"""The multi-process helpers in one process (where each is the identity), and the trainer's multi-process guards."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from qwen_tool import QwenToolError
from qwen_tool.config import RLTrainingConfig, load_config
from qwen_tool.rl.checkpoints import own_rng_state
from qwen_tool.rl.distributed import (
    gather_objects,
    is_distributed,
    mean_and_std_over_processes,
    mean_over_processes,
    normalizer_over_processes,
    token_normalizer,
)
from qwen_tool.rl.run_setup import check_multi_process


def test_one_process_normalises_by_its_own_token_count():
    mask_BT = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert not is_distributed() and token_normalizer(mask_BT).item() == 3.0


def test_one_process_normalises_by_its_own_count():
    # Dr. GRPO's constant: 4 episodes × L = 16
    assert normalizer_over_processes(torch.tensor(4 * 16)).item() == 64.0


def test_mean_and_std_of_one_process_are_its_own():
    # values 1, 2, 6: mean 3, Σ(x − 3)² = 4 + 1 + 9 = 14, std = sqrt(14 / 2) = sqrt(7)
    mean, std = mean_and_std_over_processes(torch.tensor([1.0, 2.0, 6.0]))
    assert mean.item() == pytest.approx(3.0) and std.item() == pytest.approx(7**0.5)
    assert mean_and_std_over_processes(torch.tensor([4.0]))[1].item() == 1.0  # one value has no spread


def test_metrics_and_objects_of_one_process_pass_through_in_order():
    assert list(mean_over_processes({"b": 2.0, "a": 1.0})) == ["b", "a"]
    assert gather_objects({"x": 1}) == [{"x": 1}]


def _accelerator(processes: int, kind: str = "MULTI_GPU") -> SimpleNamespace:
    from accelerate.utils import DistributedType

    return SimpleNamespace(num_processes=processes, is_main_process=True, distributed_type=DistributedType[kind])


def test_dropping_uniform_groups_is_refused_with_several_processes():
    cfg = load_config(RLTrainingConfig, None, ["grpo.drop_uniform_groups=true"])
    with pytest.raises(QwenToolError, match="grpo.drop_uniform_groups=false for a multi-process run"):
        check_multi_process(cfg, _accelerator(2))
    check_multi_process(cfg, _accelerator(1, "NO"))  # one process may


@pytest.mark.parametrize("kind", ["DEEPSPEED", "FSDP"])
def test_sharded_training_is_refused_for_rl_with_the_config_to_use_instead(kind):
    with pytest.raises(QwenToolError, match="fix: launch with configs/accelerate/multi-gpu.yaml"):
        check_multi_process(load_config(RLTrainingConfig, None, []), _accelerator(2, kind))


def test_each_process_resumes_its_own_task_draws():
    states = [random.Random(seed).getstate() for seed in (1, 2)]
    assert own_rng_state({"rng_by_process": states}, 1) == states[1]
    assert own_rng_state({"rng": states[0]}, 0) == states[0]  # a checkpoint from before multi-process runs
    with pytest.raises(QwenToolError, match="resume with the number of processes that wrote it"):
        own_rng_state({"rng_by_process": states}, 2)
