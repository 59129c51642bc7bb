"""Built-in simulated tool suites, one module per domain; `get_suite(name)` and `SUITES` list them."""

from __future__ import annotations

from qwen_tool import QwenToolError
from qwen_tool.env.suite import Suite
from qwen_tool.env.suites.calendar_suite import CalendarSuite
from qwen_tool.env.suites.filesystem import FileSystemSuite
from qwen_tool.env.suites.finance import FinanceSuite
from qwen_tool.env.suites.math_units import MathUnitsSuite
from qwen_tool.env.suites.messaging import MessagingSuite
from qwen_tool.env.suites.shopping import ShoppingSuite
from qwen_tool.env.suites.travel import TravelSuite
from qwen_tool.env.suites.weather import WeatherSuite

SUITES: dict[str, type[Suite]] = {cls.name: cls for cls in (
    WeatherSuite, FinanceSuite, CalendarSuite, MessagingSuite, FileSystemSuite, MathUnitsSuite, ShoppingSuite,
    TravelSuite)}


def get_suite(name: str) -> type[Suite]:
    if name not in SUITES:
        raise QwenToolError(f"unknown suite '{name}'; fix: use a built-in suite, {sorted(SUITES)} (or 'bfcl')")
    return SUITES[name]


__all__ = ["SUITES", "get_suite"]
