"""What this machine computes fast: its CPU capability, whether bf16 is native, and the precision `auto` picks.

bf16 pays only where the hardware runs it natively: a CUDA device with bf16, or a CPU with AVX512-BF16 or AMX. On an
AVX2-only CPU a bf16 matmul emulates the format and runs about 40 times slower than fp32, so `auto` must not pick it
there. The decision is read from what torch reports about the CPU; where that is unclear (an AVX-512 CPU that torch
cannot query for its bf16 instructions, an Arm CPU), a probe of well under a second times one matmul in both dtypes.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Literal

from qwen_tool.log import logger

Precision = Literal["fp32", "bf16", "fp16"]

CAPABILITIES_WITHOUT_BF16 = frozenset({"DEFAULT", "NO AVX", "AVX", "AVX2"})
"""`torch.backends.cpu.get_cpu_capability()` values of x86 CPUs with no bf16 instructions at all."""

PROBE_SHAPE = (256, 576, 1536)
"""(m, k, n) of the probe matmul: the built-in model's MLP projection on 256 tokens, ~0.45 GFLOP."""


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a stage runs in and why, for the log and the report."""

    precision: Precision
    reason: str
    bf16_speedup: float | None = None
    """Measured bf16 / fp32 matmul throughput on this CPU, when a probe ran."""

    def describe(self) -> str:
        return f"{self.precision} ({self.reason})"


def cpu_capability() -> str:
    """The vector instruction set torch dispatches to on this CPU (e.g. AVX2, AVX512, SVE256, DEFAULT)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def cpu_bf16_instructions() -> bool | None:
    """True when torch reports AVX512-BF16 or AMX on this CPU, False when it reports neither, None when it cannot say
    (torch builds without these queries, non-x86 CPUs)."""
    import torch

    queries = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(query is None for query in queries):
        return None
    try:
        return any(bool(query()) for query in queries)
    except (RuntimeError, AttributeError):
        return None


@functools.cache
def probe_bf16_speedup(seconds_per_dtype: float = 0.15) -> float:
    """bf16 over fp32 matmul throughput on this CPU, timed on `PROBE_SHAPE` for `seconds_per_dtype` each (after one
    untimed warm-up). Above 1: bf16 is native; an emulating CPU gives about 0.03."""
    import torch

    m, k, n = PROBE_SHAPE
    left, right = torch.randn(m, k), torch.randn(k, n)
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = left.to(dtype), right.to(dtype)
        a @ b
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds_per_dtype:
            a @ b
            count += 1
        rates[dtype] = count / elapsed
    return rates[torch.bfloat16] / rates[torch.float32]


def cuda_bf16() -> bool | None:
    """Whether the CUDA device runs bf16; None when there is no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return None
    return bool(torch.cuda.is_bf16_supported())


def auto_precision(cuda: bool | None, capability: str, bf16_instructions: bool | None,
                   speedup: float | None = None) -> PrecisionChoice:
    """The precision `auto` means on this hardware, as a pure function of what was detected.

    CUDA: bf16 where the device supports it, else fp32. CPU: bf16 when torch reports AVX512-BF16 or AMX; fp32 when
    the capability has no bf16 at all (AVX2 and below) or torch reports neither; otherwise (unclear) bf16 only when
    the probe's `speedup` is above 1.
    """
    if cuda is not None:
        return PrecisionChoice("bf16", "CUDA device with bf16") if cuda else PrecisionChoice(
            "fp32", "CUDA device without bf16")
    if capability in CAPABILITIES_WITHOUT_BF16 or bf16_instructions is False:
        # first: torch dispatching AVX2 kernels (ATEN_CPU_CAPABILITY=avx2) runs bf16 slowly on any chip
        return PrecisionChoice("fp32", f"CPU {capability} without native bf16 (no AVX512-BF16, no AMX)")
    if bf16_instructions:
        return PrecisionChoice("bf16", f"CPU {capability} with native bf16 (AVX512-BF16 or AMX)")
    if speedup is None:
        raise ValueError("an unclear CPU needs the probe's bf16 speed-up")
    native = speedup > 1.0
    return PrecisionChoice("bf16" if native else "fp32",
                           f"CPU {capability}: probe timed bf16 at {speedup:.2f}x fp32", speedup)


def needs_probe(cuda: bool | None, capability: str, bf16_instructions: bool | None) -> bool:
    return cuda is None and bf16_instructions is None and capability not in CAPABILITIES_WITHOUT_BF16


@functools.cache
def detect_auto_precision() -> PrecisionChoice:
    """`auto_precision` for this machine, probing only when the reported capability leaves it unclear."""
    cuda, capability, instructions = cuda_bf16(), cpu_capability(), cpu_bf16_instructions()
    speedup = probe_bf16_speedup() if needs_probe(cuda, capability, instructions) else None
    return auto_precision(cuda, capability, instructions, speedup)


_ANNOUNCED: set[tuple[str, PrecisionChoice]] = set()
"""(stage, choice) pairs already logged: a stage that asks again does not say it twice."""


def resolve_precision(requested: str, stage: str) -> PrecisionChoice:
    """The precision a stage runs in: `auto` decided for this machine, an explicit value kept. An explicit bf16 on a
    CPU without native bf16 still runs, with a warning that gives the measured slowdown."""
    if requested == "auto":
        choice = detect_auto_precision()
        if (stage, choice) not in _ANNOUNCED:
            _ANNOUNCED.add((stage, choice))
            logger.info("%s precision: %s", stage, choice.describe())
        return choice
    choice = PrecisionChoice(requested, "set in the config")  # type: ignore[arg-type]
    if requested == "bf16" and cuda_bf16() is None and detect_auto_precision().precision != "bf16":
        speedup = probe_bf16_speedup()
        logger.warning("%s precision bf16 was requested, but this CPU (%s) has no native bf16: a bf16 matmul ran at "
                       "%.2fx fp32 here, so expect it to be about %.0fx slower; fix: precision=auto (or fp32)",
                       stage, cpu_capability(), speedup, 1 / max(speedup, 1e-6))
        choice = PrecisionChoice("bf16", "set in the config; not native on this CPU", speedup)
    return choice


def mixed_precision(requested: str, stage: str) -> Literal["no", "bf16", "fp16"]:
    """accelerate's `mixed_precision` for a stage's precision (`resolve_precision`; `auto`: bf16 only where it is
    native): fp32 runs unmixed, "no"."""
    precision = resolve_precision(requested, stage).precision
    return "no" if precision == "fp32" else precision


def prefill_dtype(requested: str | None) -> str | None:
    """The evaluation prefill dtype for a setting: "auto" is bfloat16 where bf16 is native, else None (the model's
    own float32); any other value is kept."""
    if requested != "auto":
        return requested
    return "bfloat16" if resolve_precision("auto", "Evaluation prefill").precision == "bf16" else None


def torch_dtype_name(precision: str) -> str:
    """The weights dtype name of a precision (`fp32` → float32)."""
    return {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[precision]
