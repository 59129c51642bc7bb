"""Value kinds for procedurally generated tools: each samples a gold value and says it in varied surface forms.

The gold argument is always exactly what the query states (after reading "five" as 5, "$1,200" as 1200, "3.5%" as
3.5 or 0.035 when the parameter's description asks for a decimal fraction), so a model learns to copy and convert
values, never to invent them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen twenty").split()


def number_words(value: int) -> str:
    """English words for 0..20 (the only range queries spell out)."""
    return _WORDS[value]


def _plain(value: float | int) -> str:
    return str(value)


def _grouped(value: float | int) -> str:
    return f"{value:,}"


@dataclass
class Kind:
    """Base: a JSON type, a sampler, and surface forms; subclasses override `sample` and `say`."""

    json_type: ClassVar[str] = "string"

    def sample(self, rng: random.Random) -> Any:
        raise NotImplementedError

    def say(self, rng: random.Random, value: Any) -> str:
        return str(value)

    def schema(self) -> dict[str, Any]:
        return {"type": self.json_type}

    def hint(self) -> str:
        """A fragment appended to a parameter description (units, format)."""
        return ""

    @property
    def hint_optional(self) -> bool:
        """True when the value's convention is the default reading, so a description may leave the hint out."""
        return False


@dataclass
class Int(Kind):
    lo: int = 1
    hi: int = 100
    unit: str | None = None
    json_type: ClassVar[str] = "integer"

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.lo, self.hi)

    def say(self, rng: random.Random, value: int) -> str:
        forms = [_plain(value)]
        if 0 <= value <= 20:
            forms.append(number_words(value))
        if value >= 10000:
            forms.append(_grouped(value))
        text = rng.choice(forms)
        if self.unit and rng.random() < 0.6:
            text += f" {self.unit}"
        return text


@dataclass
class Year(Int):
    lo: int = 1950
    hi: int = 2030

    def say(self, rng: random.Random, value: int) -> str:
        return rng.choice([str(value), str(value), f"the year {value}"])


@dataclass
class Num(Kind):
    lo: float = 0.5
    hi: float = 100.0
    decimals: int = 1
    unit: str | None = None
    unit_short: str | None = None
    json_type: ClassVar[str] = "number"

    def sample(self, rng: random.Random) -> float | int:
        if self.lo >= 1 and self.hi - self.lo >= 5 and rng.random() < 0.4:
            return rng.randint(int(self.lo) + 1, int(self.hi))
        return round(rng.uniform(self.lo, self.hi), self.decimals)

    def say(self, rng: random.Random, value: float | int) -> str:
        text = _grouped(value) if abs(value) >= 10000 and rng.random() < 0.5 else _plain(value)
        units = [u for u in (self.unit, self.unit_short) if u]
        if units and rng.random() < 0.7:
            unit = rng.choice(units)
            glued = unit in ("%", "°C", "°F") or (unit == self.unit_short and rng.random() < 0.5)
            text += unit if glued else f" {unit}"  # "5m", "300K": the number still goes into the JSON bare
        return text

    def hint(self) -> str:
        return f" in {self.unit}" if self.unit else ""


@dataclass
class Money(Kind):
    lo: int = 10
    hi: int = 5000
    cents: bool = False
    json_type: ClassVar[str] = "number"

    def sample(self, rng: random.Random) -> float | int:
        whole = rng.randint(self.lo, self.hi)
        if self.cents and rng.random() < 0.5:
            return round(whole + rng.randint(1, 99) / 100, 2)
        return whole

    def say(self, rng: random.Random, value: float | int) -> str:
        number = f"{value:,}" if rng.random() < 0.6 else str(value)
        if isinstance(value, float):
            number = f"{value:,.2f}" if "," in number else f"{value:.2f}"
        return rng.choice([f"${number}", f"${number}", f"{number} dollars", f"{number} USD", f"USD {number}"])

    def hint(self) -> str:
        return " in US dollars"


@dataclass
class Percent(Kind):
    """A percentage; `as_fraction` makes the gold value the decimal fraction (3.5% -> 0.035).

    A whole percentage is an int (5% -> 5, never 5.0), so the data never teaches a trailing ".0" that an integer
    parameter would reject. Fraction is the convention for rates whose description does not say (finance APIs and
    BFCL's gold answers: "an interest rate of 5%" -> 0.05); a percent-valued parameter always says so in its
    description (`hint`), while a fraction-valued one says so only sometimes (`hint_optional`).
    """

    lo: float = 0.5
    hi: float = 15.0
    as_fraction: bool = False
    json_type: ClassVar[str] = "number"

    def sample(self, rng: random.Random) -> float:
        whole = rng.randint(int(self.lo) + 1, int(self.hi))
        drawn = round(rng.uniform(self.lo, self.hi), 1)
        percent = rng.choice([int(drawn) if drawn.is_integer() else drawn, whole])
        return round(percent / 100, 6) if self.as_fraction else percent

    def say(self, rng: random.Random, value: float) -> str:
        percent = round(value * 100, 4) if self.as_fraction else value
        text = str(int(percent)) if float(percent).is_integer() else str(percent)
        if self.as_fraction and rng.random() < 0.2:
            return str(value)
        return rng.choice([f"{text}%", f"{text}%", f"{text} percent"])

    def hint(self) -> str:
        return " as a decimal fraction (e.g. 0.05 for 5%)" if self.as_fraction else " in percent (e.g. 5 for 5%)"

    @property
    def hint_optional(self) -> bool:
        return self.as_fraction


@dataclass
class Pick(Kind):
    """A string drawn from a pool; `quote` sometimes wraps it in quotes in the query (the gold value has none)."""

    pool: tuple[str, ...] = ()
    quote: bool = False

    def sample(self, rng: random.Random) -> str:
        return rng.choice(self.pool)

    def say(self, rng: random.Random, value: str) -> str:
        if self.quote and rng.random() < 0.6:
            return rng.choice([f'"{value}"', f"'{value}'"])
        return value


@dataclass
class Enum(Kind):
    values: tuple[str, ...] = ()

    def sample(self, rng: random.Random) -> str:
        return rng.choice(self.values)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


@dataclass
class Bool(Kind):
    """A flag; the query states it through the parameter's yes/no phrases."""

    json_type: ClassVar[str] = "boolean"

    def sample(self, rng: random.Random) -> bool:
        return rng.random() < 0.6


@dataclass
class Date(Kind):
    """A calendar date, said and gold in ISO form. Natural forms ("March 11, 2022") with ISO gold were tried: the model
    then wrote ISO dates into every date-like parameter, whatever format its description asked for (BENCHMARKS.md,
    "Main job", sixth run)."""

    lo_year: int = 2024
    hi_year: int = 2027

    def sample(self, rng: random.Random) -> str:
        return f"{rng.randint(self.lo_year, self.hi_year)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"

    def hint(self) -> str:
        return " (YYYY-MM-DD)"


def _join(items: list[str], rng: random.Random) -> str:
    if len(items) == 1:
        return items[0]
    last = rng.choice([" and ", ", and ", " and "])
    return ", ".join(items[:-1]) + last + items[-1]


@dataclass
class NumList(Kind):
    lo: float = 1
    hi: float = 100
    decimals: int = 0
    min_len: int = 3
    max_len: int = 6
    json_type: ClassVar[str] = "array"

    def sample(self, rng: random.Random) -> list[float | int]:
        size = rng.randint(self.min_len, self.max_len)
        if self.decimals == 0:
            return [rng.randint(int(self.lo), int(self.hi)) for _ in range(size)]
        return [round(rng.uniform(self.lo, self.hi), self.decimals) for _ in range(size)]

    def say(self, rng: random.Random, value: list) -> str:
        texts = [str(v) for v in value]
        return rng.choice([_join(texts, rng), "[" + ", ".join(texts) + "]", ", ".join(texts)])

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "integer" if self.decimals == 0 else "number"}}


@dataclass
class StrList(Kind):
    pool: tuple[str, ...] = ()
    min_len: int = 2
    max_len: int = 4
    json_type: ClassVar[str] = "array"

    def sample(self, rng: random.Random) -> list[str]:
        return rng.sample(self.pool, rng.randint(self.min_len, min(self.max_len, len(self.pool))))

    def say(self, rng: random.Random, value: list) -> str:
        return _join(list(value), rng)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}}


@dataclass
class Obj(Kind):
    """A nested object: every field required, said as 'label value' pairs."""

    fields: tuple[tuple[str, str, Kind], ...] = ()
    """(key, label, kind) per field."""
    json_type: ClassVar[str] = "object"

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {key: kind.sample(rng) for key, _, kind in self.fields}

    def say(self, rng: random.Random, value: dict) -> str:
        parts = [f"{label} {kind.say(rng, value[key])}" for key, label, kind in self.fields]
        return _join(parts, rng)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {key: {**kind.schema(), "description": label.capitalize() + kind.hint() + "."}
                           for key, label, kind in self.fields},
            "required": [key for key, _, _ in self.fields],
        }


@dataclass
class NumDict(Kind):
    """A free-form mapping of names to integers (scores by subject, counts by category): schema type `object` with
    no fixed properties, said as a literal dict or as "math 90, art 75", so the model practises closing nested
    braces."""

    keys: tuple[str, ...] = ()
    lo: int = 1
    hi: int = 100
    min_len: int = 2
    max_len: int = 4
    json_type: ClassVar[str] = "object"

    def sample(self, rng: random.Random) -> dict[str, int]:
        chosen = rng.sample(self.keys, rng.randint(self.min_len, min(self.max_len, len(self.keys))))
        return {key: rng.randint(self.lo, self.hi) for key in chosen}

    def say(self, rng: random.Random, value: dict) -> str:
        style = rng.random()
        if style < 0.35:
            return "{" + ", ".join(f"'{k}': {v}" for k, v in value.items()) + "}"
        if style < 0.5:
            return "{" + ", ".join(f'"{k}": {v}' for k, v in value.items()) + "}"
        return _join([f"{k} {v}" if rng.random() < 0.5 else f"{v} for {k}" for k, v in value.items()], rng)

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": {"type": "integer"}}


@dataclass
class Param:
    """One parameter of a concept: name variants, description, kind, and how the query says it."""

    names: tuple[str, ...]
    description: str
    kind: Kind
    required: bool = True
    default: Any = None
    label: str | None = None
    phrases: tuple[str, ...] = ()
    """Custom clause templates with `{v}` (e.g. "in {v}"); empty: generic 'label of value' clauses."""
    yes: tuple[str, ...] = ()
    no: tuple[str, ...] = ()
    """Boolean parameters: phrases that state True / False."""
    extra: dict[str, Any] = field(default_factory=dict)


__all__ = [
    "Bool", "Date", "Enum", "Int", "Kind", "Money", "Num", "NumDict", "NumList", "Obj", "Param", "Percent",
    "Pick", "StrList", "Year", "number_words",
]
