"""Math and units: statistics, unit conversion, rounding, interest, a small memory (stateful memory only)."""

from __future__ import annotations

import statistics
from typing import Any, Literal, TypedDict

from qwen_tool.env.suite import Suite, tool_method
from qwen_tool.env.suites._common import call, make_task
from qwen_tool.env.task import Task

# unit -> (dimension, factor to the dimension's base unit); temperatures are handled separately
UNITS: dict[str, tuple[str, float]] = {
    "m": ("length", 1.0), "km": ("length", 1000.0), "cm": ("length", 0.01), "mi": ("length", 1609.344),
    "ft": ("length", 0.3048), "in": ("length", 0.0254), "kg": ("mass", 1.0), "g": ("mass", 0.001),
    "lb": ("mass", 0.45359237), "oz": ("mass", 0.028349523125), "l": ("volume", 1.0), "ml": ("volume", 0.001),
    "gal": ("volume", 3.785411784), "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0),
}
TEMPERATURES = ("C", "F", "K")
Measure = Literal["mean", "median", "stdev", "min", "max", "sum"]


class Conversion(TypedDict):
    value: float
    from_unit: str
    to_unit: str


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """value in from_unit expressed in to_unit: value · f_from / f_to; temperatures via kelvin
    (K = C + 273.15, K = (F − 32)·5/9 + 273.15)."""
    if from_unit in TEMPERATURES and to_unit in TEMPERATURES:
        kelvin = {"C": value + 273.15, "F": (value - 32) * 5 / 9 + 273.15, "K": value}[from_unit]
        return {"C": kelvin - 273.15, "F": (kelvin - 273.15) * 9 / 5 + 32, "K": kelvin}[to_unit]
    if from_unit not in UNITS or to_unit not in UNITS:
        raise ValueError(f"unknown unit in '{from_unit}' -> '{to_unit}'; known: {sorted(UNITS)} and {TEMPERATURES}")
    (dim_from, f_from), (dim_to, f_to) = UNITS[from_unit], UNITS[to_unit]
    if dim_from != dim_to:
        raise ValueError(f"cannot convert {dim_from} ({from_unit}) to {dim_to} ({to_unit})")
    return value * f_from / f_to


class MathUnitsSuite(Suite):
    name = "math_units"
    domain = "math/units"
    description = "Calculator and unit converter with a small key-value memory."

    def setup(self) -> None:
        self.data["memory"] = {}

    @tool_method
    def describe_numbers(self, values: list[float], measures: list[Measure]) -> dict[str, float]:
        """Summary statistics of a list of numbers.

        Args:
            values: The numbers (at least one; stdev needs two).
            measures: Which statistics to compute.
        """
        if not values:
            raise ValueError("values must not be empty")
        funcs = {"mean": statistics.fmean, "median": statistics.median, "stdev": statistics.stdev, "min": min,
                 "max": max, "sum": sum}
        return {m: round(float(funcs[m](values)), 6) for m in measures}

    @tool_method
    def convert_measurement(self, value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
        """Convert one quantity between units (length, mass, volume, time, temperature C/F/K).

        Args:
            value: The quantity.
            from_unit: Unit of value, e.g. "km".
            to_unit: Target unit, e.g. "mi".
        """
        return {"value": round(convert(value, from_unit, to_unit), 6), "unit": to_unit}

    @tool_method
    def convert_measurements(self, conversions: list[Conversion]) -> list[dict[str, Any]]:
        """Convert several quantities in one request.

        Args:
            conversions: One entry per quantity.
        """
        return [self.convert_measurement(c["value"], c["from_unit"], c["to_unit"]) for c in conversions]

    @tool_method
    def round_to_places(self, value: float, places: int = 0) -> float:
        """Round half away from zero to a number of decimal places.

        Args:
            value: The number.
            places: Decimal places (0-10).
        """
        from decimal import ROUND_HALF_UP, Decimal

        return float(Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))

    @tool_method
    def percent_of(self, part: float, whole: float) -> float:
        """What percentage part is of whole: 100 · part / whole.

        Args:
            part: The part.
            whole: The whole (non-zero).
        """
        return round(100 * part / whole, 6)

    @tool_method
    def solve_linear(self, a: float, b: float) -> float:
        """Solve a·x + b = 0 for x (a must be non-zero): x = −b / a.

        Args:
            a: Coefficient of x.
            b: Constant term.
        """
        if a == 0:
            raise ValueError("a must be non-zero")
        return -b / a

    @tool_method
    def compound_interest_value(self, principal: float, annual_rate: float, years: float,
                                compounds_per_year: int = 12) -> float:
        """Future value with compound interest: P · (1 + r/n)^(n·t).

        Args:
            principal: Starting amount P.
            annual_rate: Yearly rate r as a fraction (0.05 for 5 %).
            years: Duration t in years.
            compounds_per_year: Compounding periods n per year.
        """
        return round(principal * (1 + annual_rate / compounds_per_year) ** (compounds_per_year * years), 2)

    @tool_method
    def memory_store(self, key: str, value: float) -> dict[str, Any]:
        """Remember a number under a key.

        Args:
            key: Name to store it under.
            value: The number.
        """
        self.data["memory"][key] = value
        return {"stored": key}

    @tool_method
    def memory_recall(self, key: str) -> float:
        """A number stored earlier.

        Args:
            key: Its name.
        """
        if key not in self.data["memory"]:
            raise KeyError(f"nothing stored under '{key}'")
        return self.data["memory"][key]

    def argument_pool(self) -> dict[str, list[Any]]:
        return {"values": [[1, 2, 3, 4], [2.5, 7.5]], "measures": [["mean", "max"], ["median"]],
                "from_unit": ["km", "lb", "C"], "to_unit": ["mi", "kg", "F"], "key": ["total", "x"],
                "conversions": [[{"value": 5, "from_unit": "km", "to_unit": "mi"}]]}

    @classmethod
    def tasks(cls) -> list[Task]:
        return [
            make_task("math_units", 0, "Convert 10 km to miles and 70 F to Celsius.",
                      [[call("convert_measurements", conversions=[{"value": 10, "from_unit": "km", "to_unit": "mi"},
                                                                  {"value": 70, "from_unit": "F", "to_unit": "C"}])]],
                      "10 km is about 6.21 mi; 70 F is about 21.1 C."),
            make_task("math_units", 1, "Mean and max of 3, 9, 4, then remember the mean as 'avg'.",
                      [[call("describe_numbers", values=[3, 9, 4], measures=["mean", "max"])],
                       [call("memory_store", key="avg", value=5.333333)]], "Mean 5.33, max 9; stored."),
            make_task("math_units", 2, "What is 1000 at 5% for 10 years compounded monthly?",
                      [[call("compound_interest_value", principal=1000, annual_rate=0.05, years=10)]], "About 1647."),
        ]
