"""What the processes of a multi-process RL run (`torchrun` / `accelerate launch`, one per device) must agree on.

Each process rolls out its own episodes and computes its own loss; the wrapper accelerate puts around the policy (DDP,
FSDP, DeepSpeed) averages the gradients. Two things follow:

- Every call of the wrapped model is a collective (DDP broadcasts buffers, FSDP and ZeRO-3 gather parameters) and
  every backward an all-reduce, so each process must call the model the same number of times per step, whatever its
  episodes hold. A process that calls it once more waits forever for the others.
- Statistics a process computes over its own episodes (the token count a loss is divided by, the mean and spread
  advantages are whitened with, the logged metrics) are combined here, so that N processes with 1/N of the episodes
  each optimise and log what one process with all of them would.

Without an initialised process group of more than one process every function here is the identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def world_size() -> int:
    """The number of processes in the default process group (1 when there is none)."""
    available = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if available else 1


def is_distributed() -> bool:
    """Whether more than one process trains together."""
    return world_size() > 1


def sum_over_processes(value: torch.Tensor) -> torch.Tensor:
    """Σ_r value_r over the W processes (a new tensor; `value` is left as it was)."""
    total = value.detach().clone()
    if is_distributed():
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total


def normalizer_over_processes(count: torch.Tensor) -> torch.Tensor:
    """The divisor n of a loss S_r / n that makes averaged gradients equal one process's over every process's items,
    given this process's count N_r (its action tokens, its episodes, its episodes × L).

    The gradient wrapper averages over the W processes: (1/W) Σ_r ∇(S_r / n) = ∇(Σ_r S_r) / (W·n), which is the
    gradient of Σ_r S_r / N with N = Σ_r N_r when n = N / W. One process: n = N, its own count.
    """
    return sum_over_processes(count.to(torch.float32)) / world_size()


def token_normalizer(mask_BT: torch.Tensor) -> torch.Tensor:
    """`normalizer_over_processes` of the action tokens in `mask_BT`: a token mean over every process's tokens."""
    return normalizer_over_processes(mask_BT.sum())


def mean_and_std_over_processes(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased standard deviation of the values of every process together (std 1 with fewer than two).

    mean = Σx / N, then std = sqrt(Σ(x − mean)² / (N − 1)), each sum and N taken over all processes (two passes, so
    no Σx² − N·mean² cancellation).
    """
    flat = values.detach().to(torch.float32).flatten()
    total, count = sum_over_processes(torch.stack([flat.sum(), flat.new_tensor(float(flat.numel()))])).unbind()
    mean = total / count.clamp(min=1.0)
    if count < 2:
        return mean, flat.new_ones(())
    squares = sum_over_processes(((flat - mean) ** 2).sum())
    return mean, (squares / (count - 1)).sqrt().clamp(min=1e-8)


def gather_objects(item: T) -> list[T]:
    """Every process's `item` (picklable), in process order: [item] in one process."""
    if not is_distributed():
        return [item]
    gathered: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, item)
    return gathered


def flatten(lists: Sequence[Sequence[T]]) -> list[T]:
    """The items of the gathered lists, in process order."""
    return [item for part in lists for item in part]


def mean_over_processes(metrics: Mapping[str, float]) -> dict[str, float]:
    """Each metric averaged over the processes. The processes hold equally many episodes, so for a per-episode mean
    this is the mean over all episodes; a metric one process did not report counts as 0 there."""
    every = gather_objects(dict(metrics))
    keys = dict.fromkeys(key for part in every for key in part)  # first seen first, as one process logs them
    return {key: sum(part.get(key, 0.0) for part in every) / len(every) for key in keys}
