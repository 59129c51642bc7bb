"""Suite-wide fixtures."""

from __future__ import annotations

import pytest

from qwen_tool import hardware


@pytest.fixture(autouse=True)
def _fp32_for_precision_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    """`precision: auto` picks bf16 on CPUs with native bf16 and fp32 elsewhere; pin it to fp32 so every test sees the
    same numbers on every CI machine. The choice itself is tested with the capability stubbed (test_hardware.py)."""
    monkeypatch.setattr(hardware, "detect_auto_precision",
                        lambda: hardware.PrecisionChoice("fp32", "pinned to fp32 by the test suite"))
