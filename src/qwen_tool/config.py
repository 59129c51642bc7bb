"""Typed configs: dataclasses with a docstring per field, read from YAML plus `key=value` overrides, validated once.

Every config class is a plain dataclass decorated with `@config`. Validation is pydantic's (types, `Literal` choices,
unknown keys forbidden); a class may add cross-field checks in `__post_init__` by raising `ValueError`. Any problem
becomes one `ConfigError` line naming the file, the dotted key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from qwen_tool import QwenToolError

T = TypeVar("T")


class ConfigError(QwenToolError):
    """A config file or override that cannot be used; the message says where and how to fix it."""


def config(cls: type[T]) -> type[T]:
    """Make `cls` a config dataclass: unknown keys rejected, attribute docstrings kept as field descriptions."""
    cls.__pydantic_config__ = ConfigDict(extra="forbid", use_attribute_docstrings=True)  # type: ignore[attr-defined]
    return dataclass(cls)


def field_docs(cls: type) -> dict[str, str]:
    """Field name → description, from the attribute docstrings (for `--help` output and docs)."""
    schema = TypeAdapter(cls).json_schema()
    return {name: prop.get("description", "") for name, prop in schema.get("properties", {}).items()}


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value; fix: write e.g. model=smollm2-135m-instruct")
    key, raw = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {item!r} has an empty key; fix: write e.g. sft.lr=1e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def _apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _fields_at(cls: type, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) dataclass reached by following `loc` from `cls`."""
    current: Any = cls
    for part in loc:
        if not dataclasses.is_dataclass(current):
            return []
        hints = typing.get_type_hints(current)
        current = hints.get(str(part))
        if typing.get_origin(current) is not None:  # Optional[Sub] and friends: take the dataclass inside
            current = next((a for a in typing.get_args(current) if dataclasses.is_dataclass(a)), current)
    return [f.name for f in dataclasses.fields(current)] if dataclasses.is_dataclass(current) else []


def _describe(err: dict[str, Any], cls: type) -> str:
    loc = tuple(p for p in err["loc"] if p != "__post_init__")
    key = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _fields_at(cls, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key {key!r}; fix: {hint}allowed keys here are {', '.join(allowed)}"
    if err["type"] in ("literal_error", "enum"):
        return f"key {key!r} has value {err.get('input')!r}; fix: {err['msg'].replace('Input should be', 'use')}"
    if err["type"] == "value_error":
        return f"key {key!r}: {err['msg'].removeprefix('Value error, ')}"
    return f"key {key!r} has value {err.get('input')!r}: {err['msg']}; fix: give a value of the right type"


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Validate a plain dict into `cls`; the first problem becomes a one-line `ConfigError` prefixed by `source`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values; fix: write `key: value` lines")
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_describe(errors[0], cls)}{more}") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Read YAML at `path` (optional), apply `key=value` overrides in order, and validate into `cls`."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file; fix: pass an existing YAML file (see configs/)")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{where}: malformed YAML ({problem}); fix: check indentation and quoting") from None
        if loaded is None:
            loaded = {}
        data = loaded
    for item in overrides:
        keys, value = _parse_override(item)
        _apply_override(data, keys, value)
    if overrides:
        source += " + overrides"
    return from_dict(cls, data, source)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain data (for saving next to a run's outputs)."""
    return dataclasses.asdict(cfg)


@config
class GenerateConfig:
    """How the main job's smoke prompt is answered (until the full pipeline replaces it)."""

    model: str = "smollm2-135m-instruct"
    """Built-in model name, local model directory or hub id."""
    prompt: str = "What is the capital of France? Answer in one sentence."
    """A tool-free user message."""
    max_new_tokens: int = 64
    """Upper bound on generated tokens."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype; float32 on CPU."""
    device: str = "cpu"
    """Torch device, e.g. cpu or cuda."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")


@config
class LoraSettings:
    """Low-rank adapters (peft) instead of full fine-tuning; merged into the weights when training ends."""

    enabled: bool = False
    """Train LoRA adapters instead of all weights."""
    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Scaling numerator (effective scale alpha / r)."""
    dropout: float = 0.05
    """Dropout on the adapter input."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Module names that get adapters."""


@config
class SFTTrainingConfig:
    """Supervised fine-tuning with TL-Training's MAE and PKT (`qwen-tool train sft`)."""

    model: str = "smollm2-135m-instruct"
    """Built-in model name, local model directory or hub id to start from."""
    data: str = ""
    """Training trajectories: JSONL or Parquet in the project's trajectory schema."""
    output_dir: str = "runs/sft"
    """Checkpoints, logs and the final model (`<output_dir>/final`)."""
    tool_format: str | None = None
    """Wire format taught to the model; default: the one the model registry records for `model`."""
    mae: bool = True
    """Zero the loss of erroneous assistant turns (they stay in the context)."""
    pkt: bool = True
    """Up-weight key tokens (diverging tool-name tokens, argument tokens) by clip(|NK|/|K|, 1, w_max)."""
    w_max: float = 9.0
    """Upper clip of the PKT weight (the paper uses 9)."""
    epochs: float = 1.0
    """Passes over the data."""
    learning_rate: float = 1e-4
    """Peak learning rate (AdamW)."""
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warm-up."""
    warmup_ratio: float = 0.03
    """Share of the optimisation steps spent warming up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    examples_per_device: int = 4
    """Examples in one forward pass per device (micro-batch)."""
    gradient_accumulation: int = 2
    """Micro-batches per optimiser step; examples per step = examples_per_device × this × devices."""
    max_length: int = 1024
    """Longest tokenised example kept; longer ones are dropped and counted (never silently truncated)."""
    max_examples: int | None = None
    """Use only the first N examples (after shuffling by `seed`); None for all."""
    skip_invalid: bool = False
    """Skip data lines that fail validation (counted and reported) instead of stopping."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on a GPU that supports it, else fp32."""
    gradient_checkpointing: bool = False
    """Trade compute for memory."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA settings."""
    logging_steps: int = 5
    """Optimiser steps between log lines."""
    save_steps: int = 50
    """Optimiser steps between checkpoints (resume with --resume)."""
    save_total_limit: int = 2
    """Checkpoints kept."""
    seed: int = 0
    """Seed of shuffling, dropout and initialisation."""

    def __post_init__(self) -> None:
        if not 1.0 <= self.w_max:
            raise ValueError(f"w_max must be at least 1 (it is the upper clip of a weight ≥ 1), got {self.w_max}")
        for name in ("examples_per_device", "gradient_accumulation", "max_length", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError("epochs and learning_rate must be positive")


__all__ = [
    "ConfigError", "GenerateConfig", "LoraSettings", "SFTTrainingConfig",
    "config", "field", "field_docs", "from_dict", "load_config", "to_dict",
]
