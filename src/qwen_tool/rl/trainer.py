"""The RL loop on accelerate: draw tasks → roll out episodes → one GRPO or PPO update → log → checkpoint.

One process by default; `accelerate launch --config_file configs/accelerate/<zero2|zero3|fsdp>.yaml` runs the same code
on several GPUs (each process rolls out its own episodes; gradients are averaged). Read `train_rl` top to bottom: one
step is `_rollout` then `grpo_update` or `ppo_update`, each a few calls into `algorithms`.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qwen_tool import QwenToolError
from qwen_tool.codec import Codec, get_codec
from qwen_tool.config import RLTrainingConfig, to_dict
from qwen_tool.decode import Decoder
from qwen_tool.env import ToolEnv
from qwen_tool.env.task import Task
from qwen_tool.files import read_text, write_json
from qwen_tool.hardware import resolve_precision
from qwen_tool.log import console, logger
from qwen_tool.rl.algorithms import (
    aggregate,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    group_advantages,
    grpo_loss,
    informative_rows,
    kl_estimate,
    kl_shaped_rewards,
    masked_mean,
    sft_nll,
)
from qwen_tool.rl.curriculum import STAGE_NAMES, Curriculum, stage_of_trajectory
from qwen_tool.rl.policy import SeparateCritic, ValueHead, completion_forward
from qwen_tool.rl.rollout import (
    Episode,
    Rollout,
    RolloutBatch,
    SingleTurnEpisode,
    ToolEnvEpisode,
    collate,
    gold_rollout,
    rollout_stats,
    run_episodes,
)

STATE_FILE = "rl_state.json"


@dataclass
class Models:
    """What a run trains and consults: the policy, the KL reference (None without KL), the critic (PPO only)."""

    policy: Any
    reference: Any | None
    critic: torch.nn.Module | None
    shared_trunk: bool
    """The critic is a value head on the policy's last hidden state."""


# ---------------------------------------------------------------- updates


def _micro_batches(size: int, per_forward: int) -> list[list[int]]:
    return [list(range(s, min(s + per_forward, size))) for s in range(0, size, per_forward)]


def _reference_logprobs(models: Models, mb: RolloutBatch, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        if models.reference is None:  # LoRA: the reference is the policy with its adapters switched off
            with _unwrap(models.policy).disable_adapter():
                return _forward(models.policy, mb, temperature).logprobs_BC
        return _forward(models.reference, mb, temperature).logprobs_BC


def _forward(model: Any, mb: RolloutBatch, temperature: float, **kwargs: Any) -> Any:
    return completion_forward(model, mb.prompt_ids_BP, mb.prompt_mask_BP, mb.completion_ids_BC, mb.completion_mask_BC,
                              temperature=temperature, **kwargs)


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)


def _add_supervised_term(sums: dict[str, float], models: Models, gold: RolloutBatch | None, cfg: RLTrainingConfig,
                         accelerator: Any) -> None:
    """Accumulate the gradient of γ · NLL of the gold batch's assistant tokens (untempered), and add this epoch's
    share of the NLL to `sums["sft_nll"]`; nothing without a gold batch."""
    if gold is None:
        return
    total_tokens, size, nll = gold.action_mask_BC.sum(), gold.returns_B.shape[0], 0.0
    for rows in _micro_batches(size, cfg.episodes_per_forward):
        mb = gold.select(rows)
        loss = sft_nll(_forward(models.policy, mb, 1.0).logprobs_BC, mb.action_mask_BC, normalizer=total_tokens)
        accelerator.backward(cfg.sft_coef * loss)
        nll += loss.item()
    sums["sft_nll"] = sums.get("sft_nll", 0.0) + nll / cfg.epochs_per_step


def grpo_update(models: Models, optimizer: torch.optim.Optimizer, batch: RolloutBatch, cfg: RLTrainingConfig,
                accelerator: Any, gold: RolloutBatch | None = None) -> dict[str, float]:
    """Group-normalised advantages, then `epochs_per_step` passes of the clipped loss (+ β·k3 to the reference,
    + γ·NLL of the `gold` trajectories when given). With `drop_uniform_groups`, groups whose episodes all scored alike
    are left out first; if all are, only the supervised term (if any) moves the policy."""
    advantages_B = group_advantages(batch.returns_B, cfg.samples_per_prompt, cfg.advantage_scale)
    share_kept = 1.0
    if cfg.drop_uniform_groups:
        rows_B = informative_rows(batch.returns_B, cfg.samples_per_prompt)
        share_kept = rows_B.numel() / batch.returns_B.shape[0]
        if not rows_B.numel():
            return _supervised_only_update(models, optimizer, cfg, accelerator, gold)
        batch, advantages_B = batch.select(rows_B), advantages_B[rows_B]
    size = batch.returns_B.shape[0]
    micro = _micro_batches(size, cfg.episodes_per_forward)
    total_tokens = batch.action_mask_BC.sum()
    width = batch.completion_ids_BC.shape[1]
    use_kl = cfg.kl_coef != 0.0
    references = [_reference_logprobs(models, batch.select(rows), cfg.temperature) if use_kl else None
                  for rows in micro]
    sums = {"loss": 0.0, "clip_fraction": 0.0, "kl": 0.0, "entropy": 0.0}
    for _ in range(cfg.epochs_per_step):
        optimizer.zero_grad()
        for rows, ref_BC in zip(micro, references, strict=True):
            mb = batch.select(rows)
            out = _forward(models.policy, mb, cfg.temperature, with_entropy=True)
            # each micro-batch's share of the whole step's aggregate, so accumulated gradients equal one big batch
            loss, stats = grpo_loss(out.logprobs_BC, mb.old_logprobs_BC, advantages_B[rows], mb.action_mask_BC,
                                    ref_logprobs_BT=ref_BC, kl_coef=cfg.kl_coef, clip_low=cfg.clip_low,
                                    clip_high=cfg.clip_high, aggregation=cfg.loss_aggregation,
                                    normalizer=total_tokens, max_length=width)
            if cfg.loss_aggregation != "token":
                loss = loss * len(rows) / size
            if cfg.entropy_coef:
                loss = loss - cfg.entropy_coef * _entropy_with_grad(models.policy, mb, cfg) * len(rows) / size
            accelerator.backward(loss)
            share = len(rows) / size / cfg.epochs_per_step
            sums["loss"] += loss.item() / cfg.epochs_per_step
            sums["clip_fraction"] += stats["clip_fraction"].item() * share
            sums["kl"] += stats.get("kl", torch.tensor(0.0)).item() * share
            sums["entropy"] += masked_mean(out.entropy_BC, mb.action_mask_BC).item() * share
        _add_supervised_term(sums, models, gold, cfg, accelerator)
        sums["grad_norm"] = float(accelerator.clip_grad_norm_(models.policy.parameters(), cfg.max_grad_norm))
        optimizer.step()
    sums["advantage_abs"] = advantages_B.abs().mean().item()
    sums["updated_share"] = share_kept
    return sums


def _supervised_only_update(models: Models, optimizer: torch.optim.Optimizer, cfg: RLTrainingConfig, accelerator: Any,
                            gold: RolloutBatch | None) -> dict[str, float]:
    """A GRPO step with no group to learn from: `epochs_per_step` steps on γ·NLL of `gold` alone (none without it)."""
    metrics = {"loss": 0.0, "clip_fraction": 0.0, "kl": 0.0, "entropy": 0.0, "grad_norm": 0.0,
               "advantage_abs": 0.0, "updated_share": 0.0}
    if gold is None:
        return metrics
    for _ in range(cfg.epochs_per_step):
        optimizer.zero_grad()
        _add_supervised_term(metrics, models, gold, cfg, accelerator)
        metrics["grad_norm"] = float(accelerator.clip_grad_norm_(models.policy.parameters(), cfg.max_grad_norm))
        optimizer.step()
    return metrics


def _entropy_with_grad(policy: Any, mb: RolloutBatch, cfg: RLTrainingConfig) -> torch.Tensor:
    from qwen_tool.rl.algorithms import entropy_from_logits

    input_ids = torch.cat([mb.prompt_ids_BP, mb.completion_ids_BC], 1)
    mask = torch.cat([mb.prompt_mask_BP, mb.completion_mask_BC], 1)
    logits = policy(input_ids=input_ids, attention_mask=mask, logits_to_keep=mb.completion_ids_BC.shape[1] + 1,
                    use_cache=False).logits[:, :-1].float()
    return masked_mean(entropy_from_logits(logits, cfg.temperature), mb.action_mask_BC)


def _values(models: Models, mb: RolloutBatch, hidden_BCH: torch.Tensor | None) -> torch.Tensor:
    if models.shared_trunk:
        assert models.critic is not None and hidden_BCH is not None
        return models.critic(hidden_BCH)
    assert isinstance(_unwrap(models.critic), SeparateCritic)
    return models.critic(mb.prompt_ids_BP, mb.prompt_mask_BP, mb.completion_ids_BC, mb.completion_mask_BC)


def ppo_update(models: Models, optimizer: torch.optim.Optimizer, critic_optimizer: torch.optim.Optimizer,
               batch: RolloutBatch, cfg: RLTrainingConfig, accelerator: Any, critic_only: bool = False,
               gold: RolloutBatch | None = None) -> dict[str, float]:
    """Token rewards (turn scores at turn ends, −β·KL per token when the KL is in the reward), GAE over the action
    tokens, then clipped policy + clipped value losses (+ γ·NLL of the `gold` trajectories when given).
    `critic_only` fits the value function alone (pre-training)."""
    size = batch.returns_B.shape[0]
    micro = _micro_batches(size, cfg.episodes_per_forward)
    prepared = []
    with torch.no_grad():
        for rows in micro:
            mb = batch.select(rows)
            out = _forward(models.policy, mb, cfg.temperature, with_hidden=models.shared_trunk)
            values_BC = _values(models, mb, out.hidden_BCH)
            ref_BC = _reference_logprobs(models, mb, cfg.temperature) if cfg.kl_coef else None
            kl_BC = kl_estimate(mb.old_logprobs_BC, ref_BC, cfg.kl_estimator) if ref_BC is not None else None
            in_reward = cfg.kl_coef if cfg.kl_in_reward and kl_BC is not None else 0.0
            rewards_BC = kl_shaped_rewards(mb.scores_BC, kl_BC if kl_BC is not None else torch.zeros_like(values_BC),
                                           mb.action_mask_BC, in_reward, cfg.reward_clip)
            advantages_BC, returns_BC = gae(rewards_BC, values_BC, mb.action_mask_BC, cfg.gamma, cfg.lam)
            prepared.append((rows, mb, values_BC, returns_BC, advantages_BC, ref_BC))
    if cfg.whiten_advantages:  # over the whole step's action tokens
        # (Â − mean) / std over every action token of the step, not per micro-batch
        flat = torch.cat([p[4][p[1].action_mask_BC.bool()] for p in prepared])
        mean = flat.mean()
        std = flat.std().clamp(min=1e-8) if flat.numel() > 1 else torch.ones(())
        prepared = [(r, mb, v, ret, (a - mean) / std * mb.action_mask_BC, ref) for r, mb, v, ret, a, ref in prepared]
    total_tokens = batch.action_mask_BC.sum()
    sums = {"policy_loss": 0.0, "value_loss": 0.0, "clip_fraction": 0.0, "kl": 0.0, "entropy": 0.0}
    for _ in range(cfg.epochs_per_step):
        optimizer.zero_grad()
        critic_optimizer.zero_grad()
        for rows, mb, old_values_BC, returns_BC, advantages_BC, ref_BC in prepared:
            share = len(rows) / size / cfg.epochs_per_step
            context = torch.no_grad() if critic_only and models.shared_trunk else nullcontext()
            with context:
                out = _forward(models.policy, mb, cfg.temperature, with_hidden=models.shared_trunk,
                               with_entropy=not critic_only)
            values_BC = _values(models, mb, out.hidden_BCH)
            value_loss = clipped_value_loss(values_BC, old_values_BC, returns_BC, mb.action_mask_BC, cfg.value_clip)
            loss = cfg.value_coef * value_loss * len(rows) / size
            if not critic_only:
                per_token_BC, clipped_BC = clipped_policy_loss(out.logprobs_BC, mb.old_logprobs_BC, advantages_BC,
                                                               mb.action_mask_BC, cfg.clip_low, cfg.clip_high)
                if ref_BC is not None and not cfg.kl_in_reward:
                    kl_BC = kl_estimate(out.logprobs_BC, ref_BC, "k3")
                    per_token_BC = per_token_BC + cfg.kl_coef * kl_BC
                    sums["kl"] += masked_mean(kl_BC, mb.action_mask_BC).item() * share
                elif ref_BC is not None:
                    sums["kl"] += masked_mean(kl_estimate(mb.old_logprobs_BC, ref_BC, cfg.kl_estimator),
                                              mb.action_mask_BC).item() * share
                policy_loss = aggregate(per_token_BC, mb.action_mask_BC, "token", normalizer=total_tokens)
                loss = loss + policy_loss
                sums["policy_loss"] += policy_loss.item() / cfg.epochs_per_step
                sums["clip_fraction"] += masked_mean(clipped_BC.float(), mb.action_mask_BC).item() * share
                sums["entropy"] += masked_mean(out.entropy_BC, mb.action_mask_BC).item() * share
            sums["value_loss"] += value_loss.item() * share
            accelerator.backward(loss)
        accelerator.clip_grad_norm_(models.critic.parameters(), cfg.max_grad_norm)
        critic_optimizer.step()
        if not critic_only:
            _add_supervised_term(sums, models, gold, cfg, accelerator)
            sums["grad_norm"] = float(accelerator.clip_grad_norm_(models.policy.parameters(), cfg.max_grad_norm))
            optimizer.step()
    return sums


# ---------------------------------------------------------------- set-up


def _precision(cfg: RLTrainingConfig) -> str:
    """accelerate's mixed_precision for `cfg.precision` (`auto`: bf16 only where it is native)."""
    precision = resolve_precision(cfg.precision, "RL").precision
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def build_models(cfg: RLTrainingConfig, policy: Any | None = None, reference: Any | None = None) -> Models:
    """Policy (optionally with LoRA), frozen reference (when β ≠ 0), critic (PPO). Models may be passed in (tests)."""
    from qwen_tool.models import load_model

    policy = policy if policy is not None else load_model(cfg.model)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
        policy.config.use_cache = False
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                                                   lora_dropout=cfg.lora.dropout, task_type="CAUSAL_LM",
                                                   target_modules=list(cfg.lora.target_modules)))
    policy.train()
    if cfg.kl_coef and not cfg.lora.enabled:
        reference = reference if reference is not None else load_model(cfg.reference_model or cfg.model)
        reference.eval().requires_grad_(False)
    else:
        reference = None
    critic: torch.nn.Module | None = None
    if cfg.algo == "ppo":
        if cfg.critic == "value_head":
            critic = ValueHead(_unwrap(policy).config.hidden_size)
        else:
            critic = SeparateCritic(load_model(cfg.critic_model or cfg.model)).train()
    return Models(policy, reference, critic, cfg.algo == "ppo" and cfg.critic == "value_head")


def build_decoder(cfg: RLTrainingConfig, policy: Any, tokenizer: Any, process_index: int = 0) -> Decoder:
    """The rollouts' decoder, one per process (each samples its own episodes on its own policy replica, seeded
    `cfg.seed + process_index` like the rest of that process). The transformers backend decodes with the policy module
    itself, so no weights are copied; vLLM loads `cfg.model`'s weights and takes the policy's at `update_weights`.
    Either way the trainer calls `update_weights` after every optimiser step."""
    seed = cfg.seed + process_index
    max_batch = min(64, cfg.prompts_per_step * cfg.samples_per_prompt)
    if cfg.backend == "vllm":
        # issue 27: `qwen_tool.decode.vllm_decoder` is being written; imported here so nothing else depends on it
        from qwen_tool.decode.vllm_decoder import VLLMDecoder
        from qwen_tool.models import resolve

        dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[
            resolve_precision(cfg.precision, "RL").precision]  # sample in the precision the loss computes in
        return VLLMDecoder(str(resolve(cfg.model).path), tokenizer, seed=seed, dtype=dtype, max_batch=max_batch)
    from qwen_tool.decode.transformers_decoder import TransformersDecoder

    return TransformersDecoder(_unwrap(policy), tokenizer, max_batch=max_batch, seed=seed)


def load_trajectories(path: str) -> list[dict[str, Any]]:
    """Trajectories from a JSONL file (one `{"tools", "messages", "meta"}` object per line)."""
    text = read_text(path, fix="point data= at a JSONL file of trajectories (e.g. from `qwen-tool data synth`)",
                     label="RL data")
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                message = f"{path}:{number}: not a JSON object ({err.msg}); fix: one trajectory per line"
                raise QwenToolError(message) from None
    return records


def env_tasks(suites: Sequence[str]) -> list[Task]:
    """The built-in suites' multi-turn tasks."""
    from qwen_tool.env.suites import get_suite

    return [task for name in suites for task in get_suite(name).tasks()]


class TaskPool:
    """The episodes a step can draw: single-turn tasks (from trajectories) and multi-turn ToolEnv tasks."""

    def __init__(self, cfg: RLTrainingConfig, trajectories: Sequence[dict[str, Any]], tasks: Sequence[Task]) -> None:
        self.cfg = cfg
        self.trajectories = [t for t in trajectories if any(m["role"] == "assistant" for m in t["messages"])]
        self.tasks = list(tasks)
        if not self.trajectories and not self.tasks:
            raise QwenToolError("no RL tasks: give data=PATH (trajectories) and/or suites=[...] (built-in suites)")
        stages: list[list[int]] = [[], [], []]
        for index, record in enumerate(self.trajectories):
            stages[stage_of_trajectory(record)].append(index)
        settings = cfg.curriculum
        self.curriculum = Curriculum(stages, list(range(len(self.tasks))), settings.promotion,
                                     settings.success_threshold, settings.window, settings.steps_per_stage,
                                     settings.enabled)

    def episodes(self, rng: random.Random) -> list[Episode]:
        """`prompts_per_step` tasks, each repeated `samples_per_prompt` times (consecutive: one GRPO group)."""
        weights = to_dict(self.cfg.rewards)
        out: list[Episode] = []
        for kind, index in self.curriculum.draw(self.cfg.prompts_per_step, self.cfg.multi_turn_share, rng):
            for _ in range(self.cfg.samples_per_prompt):
                if kind == "single":
                    out.append(SingleTurnEpisode.from_trajectory(self.trajectories[index], weights))
                else:
                    env = ToolEnv(noise=self.cfg.env_noise, instability_rate=self.cfg.instability_rate,
                                  max_turns=self.cfg.max_turns)
                    out.append(ToolEnvEpisode(self.tasks[index], weights, env, self.cfg.error_penalty,
                                              self.cfg.extra_call_penalty))
        return out


def _gold_rollouts(cfg: RLTrainingConfig, trajectories: Sequence[dict[str, Any]], tokenizer: Any,
                   fmt: str | Codec) -> list[Rollout]:
    """The supervised term's examples (none with sft_coef 0)."""
    if not cfg.sft_coef:
        return []
    gold = [r for r in (gold_rollout(t, tokenizer, fmt, cfg.max_total_tokens) for t in trajectories) if r is not None]
    if not gold:
        raise QwenToolError("sft_coef is set but data= holds no trajectory with a trained assistant turn; fix: point "
                            "data= at SFT trajectories, or set sft_coef=0")
    logger.info("Supervised term: γ = %g over %d trajectories, %d per update", cfg.sft_coef, len(gold),
                cfg.sft_examples_per_step)
    return gold


# ---------------------------------------------------------------- logging and checkpoints


class StepLogger:
    """A rich table line per logged step, `metrics.jsonl`, and TensorBoard when it is installed."""

    COLUMNS = {"reward": "reward", "success_rate": "success", "call_rate": "call", "failure_rate": "fail",
               "kl": "kl", "entropy": "entropy", "clip_fraction": "clip", "response_length": "length",
               "calls_per_episode": "calls/ep", "sft_nll": "sft", "seconds": "s"}

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.file = output_dir / "metrics.jsonl"
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(output_dir / "tensorboard"))
            except ImportError:
                logger.debug("tensorboard is not installed; logging to metrics.jsonl only")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.file.open("a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("step", "stage", *self.COLUMNS.values()):
            table.add_column(column, justify="right")
        table.add_row(str(step), str(int(metrics.get("stage", 0))),
                      *(f"{metrics[c]:.3g}" if c in metrics else "-" for c in self.COLUMNS))
        console.print(table)
        errors = {k.removeprefix("category/"): v for k, v in metrics.items() if k.startswith("category/")}
        parts = {k.removeprefix("reward/"): v for k, v in metrics.items() if k.startswith("reward/")}
        console.print(f"  categories {json.dumps({k: round(v, 3) for k, v in errors.items()})}", highlight=False)
        console.print(f"  reward parts {json.dumps({k: round(v, 3) for k, v in parts.items()})}", highlight=False)


def _checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first. The state file is written last, so a save cut short (a full disk, a kill)
    leaves a directory without it, which resuming must pass over."""
    found = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return [path for path in found if (path / STATE_FILE).is_file()]


def _save_checkpoint(accelerator: Any, output_dir: Path, step: int, state: dict[str, Any], keep: int) -> None:
    path = output_dir / f"checkpoint-{step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        write_json(path / STATE_FILE, state, indent=1)
        for old in _checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- the loop


def train_rl(cfg: RLTrainingConfig, resume: bool = False, trajectories: Sequence[dict[str, Any]] | None = None,
             tasks: Sequence[Task] | None = None, policy: Any | None = None, reference: Any | None = None,
             tokenizer: Any | None = None) -> Path:
    """Train and save `<output_dir>/final` (LoRA merged) with its tokenizer and tool format; return that path.

    trajectories: single-turn tasks (default: read from `cfg.data` when set); tasks: multi-turn tasks (default: the
    built-in suites named in `cfg.suites`); policy/reference/tokenizer: already loaded models (default: loaded from
    `cfg.model` / `cfg.reference_model`).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from qwen_tool.models import TRAINED_META, load_tokenizer, resolve, tool_rendering_for

    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=_precision(cfg))
    set_seed(cfg.seed + accelerator.process_index)
    rng = random.Random(f"{cfg.seed}:{accelerator.process_index}")
    fmt = cfg.tool_format or resolve(cfg.model).tool_format
    codec = get_codec(fmt, tool_rendering=tool_rendering_for(cfg.model, cfg.tool_rendering))
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model)
    if trajectories is None:
        trajectories = load_trajectories(cfg.data) if cfg.data else []
    pool = TaskPool(cfg, trajectories, env_tasks(cfg.suites) if tasks is None else tasks)
    gold = _gold_rollouts(cfg, pool.trajectories, tokenizer, codec)
    models = build_models(cfg, policy, reference)
    optimizer = torch.optim.AdamW([p for p in models.policy.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    if models.critic is not None:
        critic_optimizer = torch.optim.AdamW(models.critic.parameters(), lr=cfg.critic_learning_rate)
        models.policy, optimizer, models.critic, critic_optimizer = accelerator.prepare(
            models.policy, optimizer, models.critic, critic_optimizer)
    else:
        critic_optimizer = None
        models.policy, optimizer = accelerator.prepare(models.policy, optimizer)
    if models.reference is not None:
        models.reference = models.reference.to(accelerator.device)

    start, value_done = 0, 0
    checkpoints = _checkpoints(output_dir)
    if resume:
        for partial in sorted(set(output_dir.glob("checkpoint-*")) - set(checkpoints)):
            logger.warning("%s has no %s: its save was cut short, so --resume passes over it", partial, STATE_FILE)
    if resume and checkpoints:
        accelerator.load_state(str(checkpoints[-1]))
        saved = json.loads((checkpoints[-1] / STATE_FILE).read_text())
        start, value_done = saved["step"], saved["value_pretrain_done"]
        pool.curriculum.load(saved["curriculum"])
        rng.setstate(_tuple_state(saved["rng"]))
        logger.info("Resumed from %s (step %d)", checkpoints[-1], start)
    elif resume:
        logger.warning("--resume given but %s has no checkpoint; starting from the beginning", output_dir)

    decoder = build_decoder(cfg, models.policy, tokenizer, accelerator.process_index)
    if start:  # a resumed policy is not the weights a decoder loads from cfg.model
        decoder.update_weights(_unwrap(models.policy))
    step_logger = StepLogger(output_dir, accelerator.is_main_process)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    logger.info("RL (%s) on %d single-turn and %d multi-turn tasks, %d steps of %d×%d episodes, format %s (tools as "
                "%s)", cfg.algo, len(pool.trajectories), len(pool.tasks), cfg.steps, cfg.prompts_per_step,
                cfg.samples_per_prompt, fmt, codec.tool_rendering)

    def rollout() -> tuple[RolloutBatch, dict[str, float]]:
        episodes = pool.episodes(rng)
        greedy = [cfg.greedy_member and i % cfg.samples_per_prompt == 0 for i in range(len(episodes))]
        rollouts = run_episodes(decoder, tokenizer, codec, episodes, temperature=cfg.temperature,
                                max_new_tokens=cfg.max_new_tokens, max_total_tokens=cfg.max_total_tokens,
                                turn_return=cfg.turn_return, greedy=greedy, progress="rollouts")
        return collate(rollouts, pad_id).to(accelerator.device), rollout_stats(rollouts)

    def gold_batch() -> RolloutBatch | None:
        if not gold:
            return None
        return collate(rng.sample(gold, min(cfg.sft_examples_per_step, len(gold))), pad_id).to(accelerator.device)

    if cfg.algo == "ppo":  # value-function pre-training: fit the critic to the current policy's returns first
        for k in range(value_done, cfg.value_pretrain_steps):
            batch, stats = rollout()
            update = ppo_update(models, optimizer, critic_optimizer, batch, cfg, accelerator, critic_only=True)
            logger.info("value pre-training %d/%d: value loss %.4f, reward %.3f", k + 1, cfg.value_pretrain_steps,
                        update["value_loss"], stats["reward"])
            value_done = k + 1

    for step in range(start, cfg.steps):
        started = time.perf_counter()
        batch, stats = rollout()
        if cfg.algo == "grpo":
            update = grpo_update(models, optimizer, batch, cfg, accelerator, gold=gold_batch())
        else:
            update = ppo_update(models, optimizer, critic_optimizer, batch, cfg, accelerator, gold=gold_batch())
        decoder.update_weights(_unwrap(models.policy))  # the next rollouts sample the updated policy
        stage = pool.curriculum.stage
        if pool.curriculum.update(stats["success_rate"]):
            logger.info("curriculum: stage %d (%s) → %d (%s)", stage, STAGE_NAMES[stage], pool.curriculum.stage,
                        STAGE_NAMES[pool.curriculum.stage])
        metrics = {**stats, **update, "stage": stage, "seconds": time.perf_counter() - started}
        if (step + 1) % cfg.logging_steps == 0 or step + 1 == cfg.steps:
            step_logger.log(step + 1, metrics)
        if (step + 1) % cfg.save_steps == 0 and step + 1 < cfg.steps:
            _save_checkpoint(accelerator, output_dir, step + 1,
                             {"step": step + 1, "value_pretrain_done": value_done,
                              "curriculum": pool.curriculum.state(), "rng": rng.getstate()}, cfg.save_total_limit)

    decoder.close()
    final = output_dir / "final"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(models.policy)
        if cfg.lora.enabled:
            trained = trained.merge_and_unload()
        trained.save_pretrained(final)
        tokenizer.save_pretrained(final)
        write_json(final / TRAINED_META, {"tool_format": fmt, "tool_rendering": codec.tool_rendering,
                                          "base_model": cfg.model, "rl": to_dict(cfg)})
        logger.info("Saved the RL-trained model to %s", final)
    return final


def _tuple_state(state: Any) -> Any:
    """JSON turned random.getstate()'s tuples into lists; turn them back."""
    return tuple(_tuple_state(s) for s in state) if isinstance(state, list) else state
