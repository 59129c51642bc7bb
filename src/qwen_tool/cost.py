"""What a job will cost on this machine: a few seconds of probing, then each stage's time from the work it holds.

A user on a slow machine should learn within a minute that the job will take two hours, not after the first hour.
The probe times the three operations the main job spends its time in (a prompt prefill, a batched decode step, a
training forward and backward with its optimiser step) on the job's own model, in the dtypes the job will use; the
stages' projections multiply those rates by the tokens each stage holds. Once a stage runs, its own pace replaces the
probe's (SFT re-projects itself after its first steps).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from qwen_tool.log import logger

PROBE_PROMPT_TOKENS = 256
"""Length of the probe's prefill and training sequences (the main job's prompts average about 470 tokens)."""
PROBE_CONTEXT_TOKENS = 512
"""Context each row of the probe's decode batch holds (an evaluation prompt plus part of its answer)."""
PROBE_DECODE_STEPS = 3
"""Timed decode steps (the mean is taken)."""


@dataclass(frozen=True)
class MachineRates:
    """This machine's measured pace on one model."""

    prefill_tokens_per_s: float
    """Prompt tokens prefilled per second (inference, the evaluation's prefill dtype)."""
    decode_step_s: float
    """Seconds of one decode step with `decode_batch` rows."""
    decode_batch: int
    train_tokens_per_s: float
    """Tokens per second through forward and backward in the training precision."""
    optimizer_step_s: float
    """Seconds of one AdamW step over every trainable weight."""

    def as_dict(self) -> dict[str, Any]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def generation_seconds(prompt_tokens: list[int], batch_size: int, new_tokens: int, rates: MachineRates) -> float:
    """Projected seconds to answer prompts in batches, greedy:

        T = Σ_i p_i / r_prefill + ⌈n / B⌉ · L · t_step · (B / B_probe)

    with p_i the prompt lengths, r_prefill the prefill rate, n prompts in batches of B, L the new tokens of each
    batch's longest answer, t_step the probe's decode step at B_probe rows. The decode term scales with the batch
    (on a CPU a decode step is compute-bound once the batch is a few rows wide)."""
    if not prompt_tokens:
        return 0.0
    batches = math.ceil(len(prompt_tokens) / batch_size)
    step_s = rates.decode_step_s * batch_size / rates.decode_batch
    return sum(prompt_tokens) / rates.prefill_tokens_per_s + batches * new_tokens * step_s


def training_seconds(tokens: int, steps: int, rates: MachineRates) -> float:
    """Projected seconds of a training run: T = N / r_train + S · t_opt, N tokens through forward and backward in S
    optimiser steps."""
    return tokens / rates.train_tokens_per_s + steps * rates.optimizer_step_s


def rl_seconds(steps: int, episodes: int, prompt_tokens: float, turn_tokens: int, rounds: int, passes: int,
               reference: bool, rates: MachineRates) -> float:
    """Projected seconds of an RL run, at most: every sampled turn runs to its cap and every episode plays all its
    rounds.

        T = S · [ G(E prompts of p tokens, batch E, r · n new tokens)
                  + E · (p + r · n) · (μ + ρ / 3) / r_train + μ · t_opt ]

    S steps of E episodes (prompts × samples per prompt, sampled together), p tokens per prompt, n the cap per turn, r
    rounds of turns, μ passes over each step's episodes (one optimiser step each), ρ = 1 when a reference model scores
    the episodes for the KL (a forward alone costs about a third of a forward and backward), G `generation_seconds`.
    The prefill of tool results between rounds is left out (a few tokens against a prompt)."""
    sampled = rounds * turn_tokens
    sampling = generation_seconds([round(prompt_tokens)] * episodes, episodes, sampled, rates)
    forward_backward = episodes * (prompt_tokens + sampled) * (passes + (1 / 3 if reference else 0.0))
    return steps * (sampling + forward_backward / rates.train_tokens_per_s + passes * rates.optimizer_step_s)


def measure_rates(model: Any, train_precision: str, prefill_dtype: str | None, decode_batch: int,
                  train_rows: int = 4) -> MachineRates:
    """Time the three operations on `model` (float32 weights; bf16 through autocast where asked), each once at its
    full shape untimed first (the first call of a shape selects kernels), then timed. Training runs `train_rows`
    sequences at once, as the recipe's micro-batch does (a smaller batch trains fewer tokens a second). The weights
    are left as they were."""
    import torch

    def autocast(dtype_name: str | None) -> Any:
        wanted = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16}.get(dtype_name or "")
        device = "cuda" if next(model.parameters()).is_cuda else "cpu"
        return torch.autocast(device, dtype=wanted) if wanted is not None else torch.autocast(device, enabled=False)

    def timed(work: Any, repeats: int = 1) -> float:
        """Fastest of `repeats` timed calls after an untimed one."""
        work()
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - started)
        return best

    device = next(model.parameters()).device
    ids = torch.randint(0, int(model.config.vocab_size), (1, PROBE_PROMPT_TOKENS), device=device)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(prefill_dtype):
        prefill_s = timed(lambda: model(ids))
    with torch.inference_mode():
        decode_s = decode_step_seconds(model, decode_batch)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    batch = ids.repeat(train_rows, 1)

    def forward_backward() -> None:
        with autocast(train_precision):
            loss = model(batch, labels=batch).loss
        loss.backward()

    train_s = timed(forward_backward)
    optimizer = torch.optim.AdamW(trainable, lr=0.0)  # lr 0: the step costs what a real one costs, changes nothing
    optimizer_s = timed(optimizer.step, repeats=2)  # the untimed first step allocates the moments
    optimizer.zero_grad(set_to_none=True)
    del optimizer
    model.train(was_training)
    return MachineRates(prefill_tokens_per_s=PROBE_PROMPT_TOKENS / prefill_s, decode_step_s=decode_s,
                        decode_batch=decode_batch, train_tokens_per_s=train_rows * PROBE_PROMPT_TOKENS / train_s,
                        optimizer_step_s=optimizer_s)


def decode_step_seconds(model: Any, rows: int) -> float:
    """Mean seconds of a decode step of `rows` rows over PROBE_CONTEXT_TOKENS cached tokens each, by the decoding
    engine's transformers backend (`qwen_tool.decode`)."""
    from qwen_tool.decode.transformers_decoder import time_decode_step

    return time_decode_step(model, rows, PROBE_CONTEXT_TOKENS, PROBE_DECODE_STEPS)


@dataclass(frozen=True)
class TrainingProgress:
    """Where a training run stands after an optimiser step."""

    step: int
    total_steps: int
    seconds: float
    """Since training began."""
    tokens_seen: int
    """Input tokens through the model so far (padding included)."""
    total_tokens: int
    """Input tokens of the whole run (without padding)."""


def remaining_training_s(first: TrainingProgress, now: TrainingProgress) -> float:
    """Seconds still to train, at the pace per token measured between two points of the run:

        T_left = (N_total − N_now) · (t_now − t_first) / (N_now − N_first)

    Per token, not per step: the Trainer's length-grouped sampler runs the longest batch first, so a pace per step
    taken from the first steps overstates the rest of the run."""
    pace = (now.seconds - first.seconds) / max(1, now.tokens_seen - first.tokens_seen)
    return max(0, now.total_tokens - now.tokens_seen) * pace


class JobProjection:
    """Projected and measured seconds of a job's stages, logged at the start of each stage and whenever a stage
    re-projects itself, so the whole job's projected end is always in the log."""

    def __init__(self, projected: dict[str, float], done: dict[str, float] | None = None,
                 rates: MachineRates | None = None) -> None:
        self.rates = rates
        """The probe's measurements the projection came from."""
        self.projected = dict(projected)
        """Seconds each stage is projected to take (updated as stages measure themselves)."""
        self.first_projection = dict(projected)
        """What the probe projected, kept for the comparison with what the stages took."""
        self.took = dict(done or {})
        """Seconds each completed stage took."""

    def remaining_s(self, running: str | None = None, running_left_s: float | None = None) -> float:
        left = sum(s for name, s in self.projected.items() if name not in self.took and name != running)
        if running is not None:
            left += self.projected.get(running, 0.0) if running_left_s is None else running_left_s
        return left

    def log_start(self, stage: str) -> None:
        """Log the stage's projection and the job's, at the stage's start."""
        if stage not in self.projected:
            return
        total = sum(self.took.values()) + self.remaining_s()
        logger.info("Stage %s: projected %s on this machine; whole job %s (%s still to go)", stage,
                    _minutes(self.projected[stage]), _minutes(total), _minutes(self.remaining_s()))

    def reproject(self, stage: str, elapsed_s: float, stage_total_s: float, why: str) -> None:
        """A running stage measured itself: replace its projection and log the stage's and the job's."""
        self.projected[stage] = stage_total_s
        left = max(0.0, stage_total_s - elapsed_s)
        total = sum(self.took.values()) + elapsed_s + self.remaining_s(stage, left)
        logger.info("Stage %s: %s; projected %s for the stage (%s left), whole job %s", stage, why,
                    _minutes(stage_total_s), _minutes(left), _minutes(total))

    def finish(self, stage: str, seconds: float) -> None:
        self.took[stage] = seconds

    def as_dict(self) -> dict[str, Any]:
        return {"projected_at_start": {k: round(v, 1) for k, v in self.first_projection.items()},
                "projected_last": {k: round(v, 1) for k, v in self.projected.items()},
                "took": {k: round(v, 1) for k, v in self.took.items()},
                "rates": self.rates.as_dict() if self.rates is not None else None}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"
