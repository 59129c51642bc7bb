"""The main job, `qwen-tool run`: synthesize data → baseline eval → SFT → eval → report.

Each stage writes its outputs into the run directory and a marker `stages/<name>.json` when it is complete, with the
settings it depended on; a rerun skips completed stages (and stops with an error if the settings changed), and an
interrupted stage resumes from what it left (cached generations, SFT checkpoints), so `make run` can be stopped and
started again without losing work.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen_tool import QwenToolError
from qwen_tool.config import GenerateConfig, PipelineConfig, to_dict
from qwen_tool.cost import (
    JobProjection,
    TrainingProgress,
    generation_seconds,
    measure_rates,
    remaining_training_s,
    training_seconds,
)
from qwen_tool.files import write_json, write_lines
from qwen_tool.log import console, logger
from qwen_tool.models import load_model, load_tokenizer

if TYPE_CHECKING:
    from qwen_tool.codec import Codec


def answer_prompt(cfg: GenerateConfig) -> str:
    """Greedy answer of the model to `cfg.prompt`, rendered with the model's own chat template (a smoke test)."""
    from qwen_tool.decode import Request, SamplingParams
    from qwen_tool.decode.transformers_decoder import TransformersDecoder

    started = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model)
    decoder = TransformersDecoder(load_model(cfg.model, dtype=cfg.dtype, device=cfg.device), tokenizer, max_batch=1)
    logger.info("Loaded %s in %.1f s", cfg.model, time.perf_counter() - started)
    prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": cfg.prompt}], add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
    (completion,) = decoder.generate([Request(prompt_ids, SamplingParams(max_tokens=cfg.max_new_tokens))])
    logger.info("Generated %d tokens in %.1f s", len(completion.token_ids), time.perf_counter() - started)
    return tokenizer.decode(completion.token_ids, skip_special_tokens=True).strip()


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


RETIRED_SETTINGS = ("data.n_eval", "data.n_eval_tasks", "data.eval_mix")
"""Settings that markers written by earlier versions recorded for stages that no longer depend on them (the held-out
sizes, recorded by the data and SFT stages until the held-out sets got a stage of their own): ignored where the
stage's current settings leave them out, so a finished run's training data and SFT model stay usable."""


def _retired(key: str, current: dict[str, Any]) -> bool:
    """Whether recorded setting `key` (dotted) is a retired one that the current settings no longer hold."""
    for retired in RETIRED_SETTINGS:
        if key == retired or key.startswith(retired + "."):
            return not any(k == retired or k.startswith(retired + ".") for k in current)
    return False


class Run:
    """A run directory with completed-stage markers, each recording the settings its stage was computed with."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "stages").mkdir(parents=True, exist_ok=True)
        self.projection: JobProjection | None = None
        """Projected stage times, logged as stages start and finish (set by `project_job`)."""

    def marker(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    def stage(self, name: str, work: Callable[[], dict[str, Any]],
              settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run `work` unless the stage is already complete; record its result, wall time and `settings`.

        A completed stage is reused only under the settings it was made with: reusing, say, an SFT checkpoint
        trained on other data would silently mislabel every number after it, so a mismatch stops the run instead.
        """
        marker = self.marker(name)
        settings = json.loads(json.dumps(settings)) if settings is not None else None  # tuples → lists, as stored
        if marker.is_file():
            recorded = json.loads(marker.read_text())
            if recorded.get("settings") is not None:  # markers written before settings were recorded are trusted
                self._check_settings(name, recorded["settings"], settings or {})
            logger.info("Stage %s: already complete (delete %s to redo it)", name, marker)
            return recorded["result"]
        console.rule(f"[bold]{name}")
        if self.projection is not None:
            self.projection.log_start(name)
        started = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - started
        record = {"result": result, "seconds": round(seconds, 1), "settings": settings}
        write_json(marker, record)
        logger.info("Stage %s done in %.1f min", name, seconds / 60)
        if self.projection is not None:
            self.projection.finish(name, seconds)
            write_json(self.root / "projection.json", self.projection.as_dict())
        return result

    def completed(self, name: str, settings: dict[str, Any] | None = None) -> bool:
        """Whether stage `name` is complete; one completed under other `settings` stops with `stage`'s error, so a long
        job can check every stage it would reuse before it starts rather than hours in."""
        marker = self.marker(name)
        if not marker.is_file():
            return False
        recorded = json.loads(marker.read_text()).get("settings")
        if recorded is not None:
            self._check_settings(name, recorded, json.loads(json.dumps(settings or {})))
        return True

    def _check_settings(self, name: str, recorded: dict[str, Any], current: dict[str, Any]) -> None:
        before, now = _flatten(recorded), _flatten(current)
        before = {k: v for k, v in before.items() if not _retired(k, now)}
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if changed:
            shown = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
            raise QwenToolError(f"stage {name} in {self.root} was completed with other settings ({shown}); fix: "
                                f"delete {self.root} to start over, or point run_dir at a new directory")

    def seconds(self) -> dict[str, float]:
        return {p.stem: json.loads(p.read_text())["seconds"] for p in sorted((self.root / "stages").glob("*.json"))}


HELD_OUT_SETTINGS = ("n_eval", "n_eval_decisions", "n_eval_tasks", "eval_mix")
"""Data settings only the held-out sets read: the training data, and so a finished SFT stage, do not depend on them."""


def synthesize_training(cfg: PipelineConfig, run: Run) -> dict[str, Any]:
    """Training trajectories in `data/train.jsonl` (tools and suites of the held-out split left out)."""
    from qwen_tool.data.prepare import synthesize_training_data
    from qwen_tool.data.schema import write_jsonl
    from qwen_tool.data.synth import held_out_split, mix_of

    held_out = held_out_split(cfg.data.held_out_fraction, cfg.data.seed)
    train, filters = synthesize_training_data(cfg.data.n_train, seed=cfg.data.seed, mix=cfg.data.mix,
                                              held_out=held_out, split="train", suite_share=cfg.data.suite_share)
    logger.info("Training data %s", filters.summary())
    path = run.root / "data" / "train.jsonl"
    write_jsonl(train, path)
    return {"train": str(path), "n_train": len(train), "mix": mix_of(train), "filters": {"train": filters.summary()}}


def synthesize_held_out(cfg: PipelineConfig, root: Path) -> dict[str, Any]:
    """A held-out single-turn set (`data/internal_eval.jsonl`, at least n_eval_decisions decisions when set) and
    held-out multi-turn tasks (`data/internal_tasks.jsonl`) under `root`, on tools and suites never seen in training.
    Seeds seed+1 and seed+2 keep them apart from the training data's seed."""
    from qwen_tool.data.prepare import decision_count, synthesize_held_out_data
    from qwen_tool.data.schema import write_jsonl
    from qwen_tool.data.suite_synth import synthesize_eval_tasks
    from qwen_tool.data.synth import held_out_split

    held_out = held_out_split(cfg.data.held_out_fraction, cfg.data.seed)
    held, filters = synthesize_held_out_data(cfg.data.n_eval, min_decisions=cfg.data.n_eval_decisions,
                                             seed=cfg.data.seed + 1, mix=cfg.data.eval_mix, held_out=held_out,
                                             suite_share=cfg.data.suite_share)
    decisions = sum(decision_count(record) for record in held)
    tasks = synthesize_eval_tasks(cfg.data.n_eval_tasks, seed=cfg.data.seed + 2, held_out=held_out)
    logger.info("Held-out data: %d records with %d decisions (%s), %d multi-turn tasks", len(held), decisions,
                filters.summary(), len(tasks))
    data_dir = root / "data"
    write_jsonl(held, data_dir / "internal_eval.jsonl")
    tasks_path = data_dir / "internal_tasks.jsonl"
    write_lines(tasks_path, (json.dumps(task, ensure_ascii=False) for task in tasks))
    return {"internal_eval": str(data_dir / "internal_eval.jsonl"), "internal_tasks": str(tasks_path),
            "n_eval": len(held), "decisions": decisions, "n_tasks": len(tasks),
            "filters": {"internal_eval": filters.summary()}}


def synthesize_data(cfg: PipelineConfig, run: Run) -> dict[str, Any]:
    """Training trajectories, a held-out single-turn set and held-out multi-turn tasks (tools and suites never seen in
    training), all in the run's `data/`: one stage for callers that need both (the ablation)."""
    training, held = synthesize_training(cfg, run), synthesize_held_out(cfg, run.root)
    return {**training, **held, "filters": {**training["filters"], **held["filters"]}}


def answer_cap(cfg: PipelineConfig, scored: str) -> int:
    """Cap on generated tokens for a BFCL category or the internal suite (`internal`): its entry in
    eval.max_new_tokens_by_category, else eval.parallel_max_new_tokens for a parallel category, else
    eval.max_new_tokens."""
    default = cfg.eval.parallel_max_new_tokens if "parallel" in scored else cfg.eval.max_new_tokens
    return cfg.eval.max_new_tokens_by_category.get(scored, default)


def evaluate(model: str, out_dir: Path, cfg: PipelineConfig, limits: dict[str, int | None],
             internal_eval: str | None, internal_limit: int | None = None,
             internal_tasks: str | None = None, *, guided: bool = False,
             cache_dir: Path | None = None) -> dict[str, Any]:
    """BFCL categories (each with its own limit), the internal held-out suite and its multi-turn tasks, in one
    metrics dict. `guided` decodes tool calls under the offered schemas (BFCL single-turn and the internal suite;
    multi-turn tasks decode freely). Generations are cached in `cache_dir` (default: beside `out_dir`)."""
    from qwen_tool.eval.bfcl_single_turn import CATEGORIES
    from qwen_tool.eval.generation import load_backend
    from qwen_tool.eval.runner import run_bfcl

    backend = load_backend(model, prefill_dtype=cfg.eval.prefill_dtype)
    cache = cache_dir if cache_dir is not None else out_dir.parent / ".generation-cache"
    caps = {category: answer_cap(cfg, category) for category in CATEGORIES}
    merged = run_bfcl(model, cfg.eval.categories, dict(limits), out_dir / "bfcl", backend=backend,
                      batch_size=cfg.eval.batch_size, max_new_tokens=caps, cache_dir=cache, guided=guided)
    if internal_eval and cfg.eval.internal:
        from qwen_tool.eval.runner import run_internal

        merged["internal"] = run_internal(model, internal_eval, out_dir / "internal", backend=backend,
                                          batch_size=cfg.eval.batch_size,
                                          max_new_tokens=answer_cap(cfg, "internal"),
                                          limit=internal_limit, cache_dir=cache, guided=guided)
    if internal_tasks and cfg.eval.internal_tasks:
        from qwen_tool.eval.runner import run_internal_tasks

        merged["internal_tasks"] = run_internal_tasks(
            model, internal_tasks, out_dir / "internal_tasks", backend=backend, batch_size=cfg.eval.batch_size,
            max_new_tokens=cfg.eval.max_new_tokens, limit=internal_limit, cache_dir=cache)
    write_json(out_dir / "metrics.json", merged)
    return merged


def evaluate_decodings(model: str, out_dir: Path, cfg: PipelineConfig, limits: dict[str, int | None],
                       held: dict[str, Any], internal_limit: int | None = None,
                       cache_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """`evaluate` once per decoding of `cfg.eval.decoding`: {decoding: metrics}. One decoding writes into `out_dir`,
    several each into `out_dir/<decoding>` (a run of its own, so `qwen-tool eval compare` pairs their items). The
    multi-turn tasks decode freely, so they are played in one of them only: the free one, else the first."""
    decodings = cfg.eval.decoding
    plays_tasks = "free" if "free" in decodings else decodings[0]
    return {decoding: evaluate(model, out_dir if len(decodings) == 1 else out_dir / decoding, cfg, limits,
                               held["internal_eval"], internal_limit,
                               held["internal_tasks"] if decoding == plays_tasks else None,
                               guided=decoding == "guided", cache_dir=cache_dir)
            for decoding in decodings}


def evaluate_like(job: Path, model: str, out_dir: Path, overrides: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Evaluate `model` as the job's trained model was evaluated: the eval section of the recipe the job (or its named
    evaluation) recorded in `job/config.json`, on the held-out sets it synthesized into `job/data/`, so that
    `qwen-tool eval compare` pairs every item. `overrides` (`key=value`) may change eval settings only: data, SFT
    and RL settings made the compared model and its held-out sets, and are fixed here. Writes what `evaluate_decodings`
    writes into `out_dir`, plus `config.json` naming the model and the job."""
    from qwen_tool.config import load_config

    foreign = [o for o in overrides if not o.startswith("eval.")]
    if foreign:
        raise QwenToolError(f"{foreign[0]}: eval like takes the job's data, SFT and RL settings as they were; fix: "
                            "override eval.* settings only (e.g. eval.decoding=[guided])")
    recipe = job / "config.json"
    if not recipe.is_file():
        raise QwenToolError(f"{job} holds no config.json; fix: pass a folder `qwen-tool run` wrote (its run_dir, or "
                            "<run_dir>/evaluations/<eval.name>)")
    cfg = load_config(PipelineConfig, recipe, list(overrides))
    held: dict[str, str | None] = {}
    for key, setting, wanted in (("internal_eval", "internal", cfg.eval.internal),
                                 ("internal_tasks", "internal_tasks", cfg.eval.internal_tasks)):
        path = job / "data" / f"{key}.jsonl"
        if wanted and not path.is_file():
            raise QwenToolError(f"{path}: the held-out set eval.{setting} asks for is missing; fix: pass the job's own "
                                f"folder, or set eval.{setting}=false")
        held[key] = str(path) if wanted else None
    write_json(out_dir / "config.json", {"model": model, "like": str(job), "eval": to_dict(cfg.eval)})
    return evaluate_decodings(model, out_dir, cfg, dict(cfg.eval.limits), held,
                              cache_dir=out_dir / ".generation-cache")


def report_columns(label: str, by_decoding: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Report columns of one evaluated model: `label` alone for one decoding, `label, <decoding>` for each of
    several."""
    if len(by_decoding) == 1:
        return {label: next(iter(by_decoding.values()))}
    return {f"{label}, {decoding}": metrics for decoding, metrics in by_decoding.items()}


def evaluation_prompt_lengths(cfg: PipelineConfig, tokenizer: Any, trained_codec: Codec, internal_eval: str | None
                              ) -> tuple[list[int], list[int]]:
    """Prompt token lengths of the job's two evaluations, (baseline, trained), each listed once per decoding of
    `cfg.eval.decoding`: the baseline on `eval.baseline_limit` entries with the base model's codec, the trained model
    on `eval.limits` with `trained_codec` (it is prompted as it was taught)."""
    from qwen_tool.eval.runner import model_codec

    baseline_limits = {c: cfg.eval.baseline_limit for c in cfg.eval.categories}
    baseline = _eval_prompt_lengths(cfg, tokenizer, model_codec(cfg.model), baseline_limits, internal_eval,
                                    cfg.eval.baseline_limit)
    trained = _eval_prompt_lengths(cfg, tokenizer, trained_codec, dict(cfg.eval.limits), internal_eval, None)
    return baseline * len(cfg.eval.decoding), trained * len(cfg.eval.decoding)


def _eval_prompt_lengths(cfg: PipelineConfig, tokenizer: Any, codec: Codec, limits: dict[str, int | None],
                         internal_eval: str | None, internal_limit: int | None) -> list[int]:
    """Token lengths of the prompts an evaluation stage will decode (BFCL categories, then the internal suite) with
    the evaluated model's `codec`, each estimated as the mean of a spread sample."""
    from qwen_tool.codec.chat import render_prompt
    from qwen_tool.eval import bfcl_single_turn
    from qwen_tool.eval.runner import decision_points, read_held_out

    conversations = []
    for category in cfg.eval.categories:
        if category not in bfcl_single_turn.SINGLE_TURN_CATEGORIES:
            continue  # multi-turn categories are played step by step; not projected
        for example in bfcl_single_turn.load_category(category, limits.get(category)):
            conversations.append((example.messages, bfcl_single_turn.functions_to_tools(example.functions)))
    if internal_eval and cfg.eval.internal:
        for record in read_held_out(internal_eval, internal_limit):
            conversations.extend((history, record.get("tools")) for history, _ in decision_points(record))
    lengths = []
    for messages, tools in _spread_sample(conversations):
        try:
            lengths.append(len(tokenizer(render_prompt(tokenizer, messages, tools, codec),
                                         add_special_tokens=False)["input_ids"]))
        except QwenToolError:
            continue  # an unrenderable prompt is scored as an error without decoding
    mean = sum(lengths) / len(lengths) if lengths else 0.0
    return [round(mean)] * len(conversations)


PROJECTION_SAMPLE = 64
"""Items rendered and tokenised to estimate a stage's token counts (all of them would cost half a minute)."""


def _spread_sample(items: list[Any]) -> list[Any]:
    """At most PROJECTION_SAMPLE items spread evenly over the list (categories differ in prompt length)."""
    step = max(1, math.ceil(len(items) / PROJECTION_SAMPLE))
    return items[::step]


TRAINED_ANSWER_QUANTILE = 0.9
"""A trained model's answers are about as long as its training targets; a batch lasts as long as its longest
answer, so the evaluation projection takes this quantile of the targets' lengths."""


def project_job(cfg: PipelineConfig, run: Run, data: dict[str, Any],
                done: dict[str, float] | None = None) -> JobProjection:
    """Probe this machine on the job's model (about 20 s on the dev box) and project every stage still to run from
    the work it holds: prompt tokens and answer lengths for evaluations (once per decoding), tokens and optimiser
    steps for SFT (token counts from a spread sample of the items). `done`: seconds of the stages already complete
    (default: `run`'s)."""
    from dataclasses import replace

    from qwen_tool.hardware import prefill_dtype, resolve_precision
    from qwen_tool.sft.tokenize import IGNORE_INDEX
    from qwen_tool.sft.trainer import encode_dataset, sft_codec, training_trajectories

    started = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model)
    train_precision = resolve_precision(cfg.sft.precision, "SFT").precision
    rates = measure_rates(load_model(cfg.model), train_precision, prefill_dtype(cfg.eval.prefill_dtype),
                          cfg.eval.batch_size, train_rows=cfg.sft.examples_per_device)
    trajectories = training_trajectories(replace(cfg.sft, model=cfg.model, data=data["train"]))
    trained_codec = sft_codec(replace(cfg.sft, model=cfg.model))  # the trained model is prompted as it was taught
    sample = encode_dataset(_spread_sample(trajectories), tokenizer, trained_codec, cfg.sft)
    tokens = sum(len(e["input_ids"]) for e in sample) * len(trajectories) / max(1, len(sample))
    per_step = cfg.sft.examples_per_device * cfg.sft.gradient_accumulation
    steps = math.ceil(len(trajectories) / per_step) * cfg.sft.epochs
    targets = sorted(sum(label != IGNORE_INDEX for label in e["labels"]) for e in sample)
    answer = min(cfg.eval.max_new_tokens, targets[int(TRAINED_ANSWER_QUANTILE * (len(targets) - 1))])
    baseline_prompts, trained_prompts = evaluation_prompt_lengths(cfg, tokenizer, trained_codec, data["internal_eval"])
    # The untrained model answers in prose until the cap; the trained one about as long as its training targets.
    projected = {
        "baseline_eval": generation_seconds(baseline_prompts, cfg.eval.batch_size, cfg.eval.max_new_tokens, rates),
        "sft": training_seconds(int(tokens * cfg.sft.epochs), int(steps), rates),
        "trained_eval": generation_seconds(trained_prompts, cfg.eval.batch_size, answer, rates),
    }
    if cfg.rl_enabled:
        logger.info("The RL stage is not projected (its cost depends on the episodes the policy plays)")
    logger.info("Probed this machine in %.1f s: prefill %.0f tokens/s, a decode step of %d rows %.0f ms, training "
                "%.0f tokens/s, an optimiser step %.2f s", time.perf_counter() - started, rates.prefill_tokens_per_s,
                rates.decode_batch, 1000 * rates.decode_step_s, rates.train_tokens_per_s, rates.optimizer_step_s)
    done = run.seconds() if done is None else done
    projection = JobProjection({k: v for k, v in projected.items() if k not in done}, done, rates)
    write_json(run.root / "projection.json", projection.as_dict())
    return projection


def sft_reprojector(projection: JobProjection, after_steps: int = 3) -> Callable[[TrainingProgress], None]:
    """A step observer that replaces SFT's projection by its measured pace per token after `after_steps` steps (the
    first, with its warm-up, is left out of the pace) and again at the halfway point."""
    first: list[TrainingProgress] = []

    def observe(now: TrainingProgress) -> None:
        if not first:
            first.append(now)
            return
        if now.step - first[0].step == after_steps - 1 or now.step == now.total_steps // 2:
            left = remaining_training_s(first[0], now)
            rate = (now.tokens_seen - first[0].tokens_seen) / max(1e-9, now.seconds - first[0].seconds)
            projection.reproject("sft", now.seconds, now.seconds + left, f"{rate:.0f} tokens/s over steps "
                                 f"{first[0].step + 1}-{now.step} of {now.total_steps}")

    return observe


def training_suites(cfg: PipelineConfig) -> list[str]:
    """The RL recipe's ToolEnv suites minus those held out for the multi-turn evaluation, which RL must not see."""
    from qwen_tool.data.synth import held_out_split

    held_out = held_out_split(cfg.data.held_out_fraction, cfg.data.seed)
    suites = [name for name in cfg.rl.suites if name not in held_out]
    if not suites:
        raise QwenToolError(f"every RL suite ({', '.join(cfg.rl.suites)}) is held out for evaluation; fix: add a "
                            "suite to rl.suites or lower data.held_out_fraction")
    return suites


def stage_settings(cfg: PipelineConfig) -> dict[str, dict[str, Any]]:
    """What each stage's output depends on: its own config section plus everything upstream of it. The training data
    (and so SFT and RL) leave out the held-out sizes (`HELD_OUT_SETTINGS`), which only the held-out sets and the
    evaluations read. Evaluation's batch size is left out (greedy answers do not depend on it), so it can be changed
    when a run is resumed."""
    evaluation = {k: v for k, v in to_dict(cfg.eval).items() if k != "batch_size"}
    every_data_setting = to_dict(cfg.data)
    training = {k: v for k, v in every_data_setting.items() if k not in HELD_OUT_SETTINGS}
    data = {"model": cfg.model, "data": training}
    held_out = {"model": cfg.model, "data": every_data_setting}
    sft = {**data, "sft": to_dict(cfg.sft)}
    rl = {**sft, "rl": to_dict(cfg.rl)}
    return {"data": data, "held_out": held_out, "baseline_eval": {**held_out, "eval": evaluation}, "sft": sft,
            "trained_eval": {**sft, **held_out, "eval": evaluation}, "rl": rl,
            "rl_eval": {**rl, **held_out, "eval": evaluation}}


def run_pipeline(cfg: PipelineConfig) -> Path:
    """The main job; returns the report path.

    A named evaluation (`eval.name`) keeps its held-out data, evaluation stages and report in its own run directory,
    `<run_dir>/evaluations/<name>/`, and takes the training data and SFT (and RL) stages from `run_dir`: pointed at a
    finished job with the same data and SFT settings, it only synthesizes its held-out sets and evaluates."""
    from dataclasses import replace

    from qwen_tool.eval.report import write_report
    from qwen_tool.hardware import cpu_capability, resolve_precision
    from qwen_tool.sft.trainer import train_sft

    run = Run(cfg.run_dir)
    evaluation = Run(run.root / "evaluations" / cfg.eval.name) if cfg.eval.name else run
    write_json(evaluation.root / "config.json", to_dict(cfg))
    made = stage_settings(cfg)
    cache = run.root / "eval" / ".generation-cache"  # shared by every evaluation of the run: same prompt, same answer

    def seconds() -> dict[str, float]:
        """Wall times of this job's stages: a named evaluation's own, and those it takes from the run."""
        taken = {k: v for k, v in run.seconds().items() if evaluation is run or k in ("data", "sft", "rl")}
        return {**taken, **evaluation.seconds()}

    data = run.stage("data", lambda: synthesize_training(cfg, run), made["data"])
    held = evaluation.stage("held_out", lambda: synthesize_held_out(cfg, evaluation.root), made["held_out"])
    if not {"baseline_eval", "sft", "trained_eval"} <= set(seconds()):
        run.projection = evaluation.projection = project_job(cfg, evaluation, {**data, **held}, seconds())
    baseline_limits = {c: cfg.eval.baseline_limit for c in cfg.eval.categories}
    baseline = evaluation.stage("baseline_eval", lambda: evaluate_decodings(
        cfg.model, evaluation.root / "eval" / "baseline", cfg, baseline_limits, held, cfg.eval.baseline_limit, cache),
        made["baseline_eval"])
    sft_cfg = replace(cfg.sft, model=cfg.model, data=data["train"], output_dir=str(run.root / "sft"))
    observer = sft_reprojector(run.projection) if run.projection is not None else None
    sft = run.stage("sft", lambda: {"model": str(train_sft(sft_cfg, resume=True, step_observer=observer)),
                                    "precision": resolve_precision(sft_cfg.precision, "SFT").describe()},
                    made["sft"])
    trained = evaluation.stage("trained_eval", lambda: evaluate_decodings(
        sft["model"], evaluation.root / "eval" / "trained", cfg, dict(cfg.eval.limits), held, cache_dir=cache),
        made["trained_eval"])
    results = {**report_columns("baseline", baseline), **report_columns("trained (SFT)", trained)}
    if cfg.rl_enabled:
        from qwen_tool.data.schema import read_any
        from qwen_tool.rl.trainer import train_rl

        rl_cfg = replace(cfg.rl, model=sft["model"], data=data["train"], output_dir=str(run.root / "rl"),
                         suites=training_suites(cfg))
        rl = run.stage("rl", lambda: {"model": str(train_rl(rl_cfg, read_any(rl_cfg.data)[0], resume=True))},
                       made["rl"])
        results.update(report_columns("trained (SFT+RL)", evaluation.stage("rl_eval", lambda: evaluate_decodings(
            rl["model"], evaluation.root / "eval" / "rl", cfg, dict(cfg.eval.limits), held, cache_dir=cache),
            made["rl_eval"])))
    machine = {"CPU capability": cpu_capability(), "SFT precision": sft.get("precision", "not recorded"),
               "evaluation prefill": cfg.eval.prefill_dtype}
    projected = run.projection.first_projection if run.projection is not None else None
    report = write_report(evaluation.root, results, stage_seconds=seconds(), stage_projection=projected,
                          machine=machine)
    logger.info("Report: %s", report)
    return Path(report)
