"""Precision `auto`: bf16 only where the hardware runs it natively, decided from the capability (stubbed both ways)."""

from __future__ import annotations

import logging

import pytest

from qwen_tool import hardware
from qwen_tool.config import PipelineConfig, RLTrainingConfig, SFTTrainingConfig, load_config

REAL_DETECT = hardware.detect_auto_precision  # captured before the suite-wide fixture pins it to fp32


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Stub what torch reports about the hardware; returns a setter."""
    monkeypatch.setattr(hardware, "detect_auto_precision", REAL_DETECT)
    REAL_DETECT.cache_clear()
    probes: list[float] = []

    def stub(capability: str, instructions: bool | None, cuda: bool | None = None, speedup: float = 0.03) -> list:
        monkeypatch.setattr(hardware, "cpu_capability", lambda: capability)
        monkeypatch.setattr(hardware, "cpu_bf16_instructions", lambda: instructions)
        monkeypatch.setattr(hardware, "cuda_bf16", lambda: cuda)

        def probe() -> float:
            probes.append(speedup)
            return speedup

        monkeypatch.setattr(hardware, "probe_bf16_speedup", probe)
        REAL_DETECT.cache_clear()
        return probes

    yield stub
    REAL_DETECT.cache_clear()


def test_avx2_cpu_trains_in_fp32_without_probing(machine) -> None:
    probes = machine("AVX2", False)
    choice = hardware.resolve_precision("auto", "SFT")
    assert choice.precision == "fp32"
    assert "AVX2" in choice.reason and "without native bf16" in choice.reason
    assert probes == []


def test_amx_or_avx512_bf16_cpu_trains_in_bf16(machine) -> None:
    probes = machine("AVX512", True)
    choice = hardware.resolve_precision("auto", "SFT")
    assert (choice.precision, probes) == ("bf16", [])
    assert "native bf16" in choice.reason


def test_avx512_cpu_without_bf16_instructions_is_fp32(machine) -> None:
    machine("AVX512", False)
    assert hardware.resolve_precision("auto", "SFT").precision == "fp32"


@pytest.mark.parametrize(("speedup", "expected"), [(1.4, "bf16"), (0.03, "fp32")])
def test_unclear_cpu_is_decided_by_the_probe(machine, speedup: float, expected: str) -> None:
    probes = machine("SVE256", None, speedup=speedup)
    choice = hardware.resolve_precision("auto", "SFT")
    assert choice.precision == expected
    assert probes == [speedup] and choice.bf16_speedup == speedup
    assert f"{speedup:.2f}x" in choice.reason


@pytest.mark.parametrize(("cuda", "expected"), [(True, "bf16"), (False, "fp32")])
def test_cuda_decides_by_its_bf16_support(machine, cuda: bool, expected: str) -> None:
    machine("AVX2", False, cuda=cuda)
    assert hardware.resolve_precision("auto", "RL").precision == expected


def test_explicit_bf16_on_a_cpu_without_it_runs_with_the_measured_slowdown(machine, caplog) -> None:
    probes = machine("AVX2", False, speedup=0.025)
    with caplog.at_level(logging.WARNING, logger="qwen_tool"):
        choice = hardware.resolve_precision("bf16", "SFT")
    assert choice.precision == "bf16" and probes == [0.025]
    assert "0.03x fp32" in caplog.text and "40x slower" in caplog.text and "precision=auto" in caplog.text


def test_explicit_fp32_is_kept_without_a_probe(machine) -> None:
    probes = machine("AVX512", True)
    assert hardware.resolve_precision("fp32", "SFT").precision == "fp32" and probes == []


def test_the_trainers_mixed_precision_follows_the_choice(machine) -> None:
    machine("AVX2", False)
    assert hardware.mixed_precision(SFTTrainingConfig().precision, "SFT") == "no"
    assert hardware.mixed_precision(RLTrainingConfig().precision, "RL") == "no"
    machine("AVX512", True)
    assert hardware.mixed_precision(SFTTrainingConfig().precision, "SFT") == "bf16"
    assert hardware.mixed_precision(RLTrainingConfig().precision, "RL") == "bf16"
    assert hardware.mixed_precision("fp16", "RL") == "fp16"


def test_every_cpu_recipe_leaves_training_precision_to_auto() -> None:
    main = load_config(PipelineConfig, "configs/main-smollm2-cpu.yaml", [])
    assert main.sft.precision == "auto" and main.rl.precision == "auto"
    assert load_config(SFTTrainingConfig, "configs/sft-smollm2-cpu.yaml", []).precision == "auto"
    for recipe in ("configs/grpo-smollm2-cpu.yaml", "configs/ppo-smollm2-cpu.yaml"):
        assert load_config(RLTrainingConfig, recipe, []).precision == "auto"


def test_the_real_probe_returns_a_positive_ratio() -> None:
    hardware.probe_bf16_speedup.cache_clear()
    assert hardware.probe_bf16_speedup(seconds_per_dtype=0.01) > 0
