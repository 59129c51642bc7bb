"""The job's cost projection: pure formulas checked against hand-derived values, the probe on a tiny model."""

from __future__ import annotations

import logging

import pytest

from qwen_tool.cost import (
    JobProjection,
    MachineRates,
    TrainingProgress,
    generation_seconds,
    measure_rates,
    remaining_training_s,
    rl_seconds,
    training_seconds,
)

RATES = MachineRates(prefill_tokens_per_s=100.0, decode_step_s=0.2, decode_batch=4, train_tokens_per_s=50.0,
                     optimizer_step_s=0.5)


def test_generation_seconds_by_hand() -> None:
    # 5 prompts of 100 tokens: prefill 500 / 100 = 5 s; batches of 2 → 3 batches × 10 tokens × 0.2 s × 2/4 = 3 s
    assert generation_seconds([100] * 5, 2, 10, RATES) == pytest.approx(8.0)
    assert generation_seconds([], 2, 10, RATES) == 0.0


def test_training_seconds_by_hand() -> None:
    # 1,000 tokens / 50 = 20 s, plus 4 optimiser steps × 0.5 s
    assert training_seconds(1000, 4, RATES) == pytest.approx(22.0)


def test_rl_seconds_by_hand() -> None:
    # 2 steps of 4 episodes, prompts of 50 tokens, 2 rounds of at most 10 tokens, one pass, a reference model:
    # sampling 4·50 / 100 = 2 s prefill + 1 batch × 20 tokens × 0.2 s × 4/4 = 4 s decode → 6 s;
    # forward and backward 4 · (50 + 20) · (1 + 1/3) / 50 = 7.4667 s; one optimiser step 0.5 s → 13.9667 s a step
    assert rl_seconds(2, 4, 50, 10, 2, 1, True, RATES) == pytest.approx(2 * (6 + 280 * 4 / 3 / 50 + 0.5))
    # without the reference: 280 / 50 = 5.6 s → (6 + 5.6 + 0.5) × 2
    assert rl_seconds(2, 4, 50, 10, 2, 1, False, RATES) == pytest.approx(24.2)


def test_projection_logs_stage_and_job_then_reprojects(caplog) -> None:
    projection = JobProjection({"baseline_eval": 60.0, "sft": 600.0, "trained_eval": 300.0}, {"data": 6.0})
    with caplog.at_level(logging.INFO, logger="qwen_tool"):
        projection.log_start("baseline_eval")
        assert "projected 1.0 min" in caplog.text and "whole job 16.1 min" in caplog.text
        projection.finish("baseline_eval", 120.0)
        # SFT measured 100 s so far and projects 1,200 s: the job is 6 + 120 + 1,200 + 300 s = 27.1 min
        projection.reproject("sft", 100.0, 1200.0, "2.0 s a step")
    assert "whole job 27.1 min" in caplog.text and "(18.3 min left)" in caplog.text
    assert projection.as_dict()["projected_at_start"]["sft"] == 600.0
    assert projection.as_dict()["projected_last"]["sft"] == 1200.0


def test_probe_measures_a_tiny_model_and_leaves_its_weights() -> None:
    import torch

    from qwen_tool.testing import tiny_model

    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    rates = measure_rates(model, "fp32", None, decode_batch=2)
    assert rates.prefill_tokens_per_s > 0 and rates.decode_step_s > 0 and rates.train_tokens_per_s > 0
    assert rates.decode_batch == 2
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_remaining_training_time_goes_by_tokens_not_steps() -> None:
    # step 1 at 20 s with 1,000 tokens seen; step 3 at 40 s with 3,000: 100 tokens/s; 7,000 of 10,000 left → 70 s
    first = TrainingProgress(1, 10, 20.0, 1_000, 10_000)
    now = TrainingProgress(3, 10, 40.0, 3_000, 10_000)
    assert remaining_training_s(first, now) == pytest.approx(70.0)


def test_sft_reprojector_reprojects_after_its_steps_and_at_half(caplog) -> None:
    from qwen_tool.pipeline import sft_reprojector

    projection = JobProjection({"sft": 500.0, "trained_eval": 100.0}, {"data": 0.0})
    observe = sft_reprojector(projection, after_steps=3)
    with caplog.at_level(logging.INFO, logger="qwen_tool"):
        for step in range(1, 11):  # 10 s and 1,000 tokens a step after a 30 s first step
            observe(TrainingProgress(step, 10, 30.0 + 10 * (step - 1), 1_000 * step, 10_000))
    # after step 3: 2,000 tokens in 20 s → 100 tokens/s; 7,000 left → 70 s; stage 50 + 70 = 120 s
    assert "100 tokens/s over steps 2-3 of 10; projected 2.0 min for the stage" in caplog.text
    assert caplog.text.count("tokens/s over steps") == 2  # and once more at step 5
    assert projection.projected["sft"] == pytest.approx(120.0)
