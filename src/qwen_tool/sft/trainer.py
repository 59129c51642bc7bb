"""The SFT trainer: TRL's SFTTrainer with TL-Training's per-token weights, extended only through documented hooks.

`qwen-tool train sft` → `train_sft(cfg)` → `ToolSFTTrainer.train()` → `compute_loss` → `weighted_nll_sum / Σw`.

Hooks used: the data collator (pads `loss_weights` beside `labels`), `compute_loss` (the weighted loss, with the LM
head applied only at trained positions), and `get_batch_samples` (the normaliser Σw over the whole accumulated batch,
so 4×2 accumulation equals 8×1, as transformers already does for token counts). `loss_is_scaled_for_ga` says the loss
is already normalised.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from trl import SFTConfig, SFTTrainer

from qwen_tool import QwenToolError
from qwen_tool.checkpoints import complete_checkpoints
from qwen_tool.codec import Codec, get_codec
from qwen_tool.config import SFTTrainingConfig, to_dict
from qwen_tool.cost import TrainingProgress
from qwen_tool.files import write_json
from qwen_tool.hardware import mixed_precision, resolve_precision
from qwen_tool.log import console, logger
from qwen_tool.sft.tokenize import IGNORE_INDEX, EncodingError, encode_trajectory
from qwen_tool.sft.weights import predicted_positions, weight_normaliser, weighted_nll_sum, weighted_nll_sum_at


@dataclass
class WeightedCollator:
    """Right-pads `input_ids` (pad id), `labels` (−100) and `loss_weights` (0) to the longest example of the batch."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(e["input_ids"]) for e in examples)

        def pad(key: str, value: float | int, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor([list(e[key]) + [value] * (longest - len(e[key])) for e in examples], dtype=dtype)

        batch = {
            "input_ids": pad("input_ids", self.pad_token_id, torch.long),
            "labels": pad("labels", IGNORE_INDEX, torch.long),
            "loss_weights": pad("loss_weights", 0.0, torch.float32),
        }
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        batch["attention_mask"] = (torch.arange(longest)[None, :] < lengths[:, None]).long()
        return batch


class ToolSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss is Σ w·NLL / Σ w with MAE/PKT weights from the batch's `loss_weights`."""

    loss_is_scaled_for_ga = True

    def get_batch_samples(self, epoch_iterator, num_batches, device):  # type: ignore[override]
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batches and "loss_weights" in batches[0]:
            total = sum(weight_normaliser(b["labels"], b["loss_weights"]) for b in batches)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                total = self.accelerator.gather(total.to(device)).sum()
            num_items = total.to(device)
        return batches, num_items

    def _projects_only_kept_logits(self, model: Any) -> bool:
        """Whether the model's forward takes `logits_to_keep` (most transformers causal LMs do), so the LM head runs
        only where a token is trained (~10% of a tool trajectory)."""
        import inspect

        base = self.accelerator.unwrap_model(model)
        base = base.get_base_model() if hasattr(base, "get_base_model") else base
        return "logits_to_keep" in inspect.signature(base.forward).parameters

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[override]
        inputs = dict(inputs)
        labels_BT = inputs.pop("labels")
        weights_BT = inputs.pop("loss_weights")
        if self._projects_only_kept_logits(model):
            positions_P = predicted_positions(labels_BT)
            outputs = model(**inputs, use_cache=False, logits_to_keep=positions_P)
            nll_sum = weighted_nll_sum_at(outputs.logits, labels_BT, weights_BT, positions_P)
        else:
            outputs = model(**inputs, use_cache=False)
            nll_sum = weighted_nll_sum(outputs.logits, labels_BT, weights_BT)
        normaliser = num_items_in_batch if num_items_in_batch is not None else weight_normaliser(labels_BT, weights_BT)
        loss = nll_sum / torch.as_tensor(normaliser).clamp(min=1e-8)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None and self.args.world_size > 1:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; the normaliser was global
        return (loss, outputs) if return_outputs else loss


def sft_codec(cfg: SFTTrainingConfig) -> Codec:
    """The codec SFT renders with: the recipe's tool format and tool rendering, each by default the model's own (its
    registry entry, or the qwen_tool.json of a model trained here)."""
    from qwen_tool.models import resolve, tool_rendering_for

    return get_codec(cfg.tool_format or resolve(cfg.model).tool_format,
                     tool_rendering=tool_rendering_for(cfg.model, cfg.tool_rendering))


def encode_dataset(trajectories: list[dict], tokenizer: Any, fmt: str | Codec, cfg: SFTTrainingConfig
                   ) -> list[dict]:
    """Encode every trajectory; too-long or unrenderable ones are dropped with a count (never silently)."""
    from rich.progress import track

    encoded: list[dict] = []
    dropped: dict[str, int] = {}
    for trajectory in track(trajectories, description="Tokenising", console=console, transient=True):
        try:
            example = encode_trajectory(trajectory, tokenizer, fmt, mae=cfg.mae, pkt=cfg.pkt, w_max=cfg.w_max,
                                        decision_weight=cfg.decision_weight,
                                        max_length=cfg.max_length)
        except EncodingError as exc:
            reason = "too long" if "max_length" in str(exc) else "unencodable"
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        if not any(w > 0 for w in example.loss_weights):
            dropped["nothing to train"] = dropped.get("nothing to train", 0) + 1
            continue
        encoded.append(example.to_dict())
    if dropped:
        logger.warning("Dropped %d of %d examples: %s", sum(dropped.values()), len(trajectories),
                       ", ".join(f"{n} {why}" for why, n in dropped.items()))
    if not encoded:
        raise QwenToolError("no training example left after encoding; fix: check the data file and max_length")
    return encoded


def _report_to() -> list[str]:
    import importlib.util

    return [name for name, module in (("tensorboard", "tensorboard"), ("wandb", "wandb"))
            if importlib.util.find_spec(module) is not None]


def build_trainer(cfg: SFTTrainingConfig, model: Any, tokenizer: Any, train_examples: list[dict],
                  **overrides: Any) -> ToolSFTTrainer:
    """A ready-to-train ToolSFTTrainer for already-encoded examples; `overrides` go to TRL's SFTConfig."""
    from datasets import Dataset

    mixed = mixed_precision(cfg.precision, "SFT")
    settings: dict[str, Any] = dict(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.examples_per_device,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a share of the steps
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        gradient_checkpointing=cfg.gradient_checkpointing,
        report_to=_report_to(),
        remove_unused_columns=False,  # keep `loss_weights`
        dataset_kwargs={"skip_prepare_dataset": True},  # examples arrive encoded
        max_length=None,
        train_sampling_strategy="group_by_length",  # less padding on CPU
        use_cpu=not torch.cuda.is_available(),
        bf16=mixed == "bf16",
        fp16=mixed == "fp16",
    )
    args = SFTConfig(**{**settings, **overrides})
    peft_config = None
    if cfg.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                 target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    return ToolSFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_examples),
        processing_class=tokenizer,
        data_collator=WeightedCollator(tokenizer.pad_token_id),
        peft_config=peft_config,
    )


StepObserver = Callable[[TrainingProgress], None]
"""Called after every optimiser step with where training stands."""


class _ObserveSteps(TrainerCallback):
    """Hands each finished optimiser step to a `StepObserver` (the main job re-projects its time from them)."""

    def __init__(self, observer: StepObserver, total_tokens: int) -> None:
        self.observer = observer
        self.total_tokens = total_tokens
        self.started = time.perf_counter()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.observer(TrainingProgress(state.global_step, state.max_steps, time.perf_counter() - self.started,
                                       int(state.num_input_tokens_seen), self.total_tokens))


def training_trajectories(cfg: SFTTrainingConfig) -> list[dict]:
    """The trajectories SFT trains on, in its order: `cfg.data` read (invalid lines skipped with a warning when
    `cfg.skip_invalid`, else refused), shuffled by `cfg.seed`, the first `cfg.max_examples` kept. Projections count
    the same examples the run will train on."""
    from qwen_tool.data.schema import read_any

    trajectories, report = read_any(cfg.data, skip_invalid=cfg.skip_invalid)
    if report.skipped:
        logger.warning("Skipped %d invalid lines of %s (first: %s)", report.skipped, cfg.data, report.errors[0])
    random.Random(cfg.seed).shuffle(trajectories)
    return trajectories if cfg.max_examples is None else trajectories[: cfg.max_examples]


def train_sft(cfg: SFTTrainingConfig, resume: bool = False, step_observer: StepObserver | None = None) -> Path:
    """Train, save `<output_dir>/final` (LoRA merged) with its tokenizer, tool format and tool rendering (in
    qwen_tool.json, so evaluation, RL and serving prompt the model as it was taught), and return that path.
    `step_observer` sees where training stands after every optimiser step."""
    from qwen_tool.models import TRAINED_META, load_model, load_tokenizer

    if not cfg.data:
        raise QwenToolError("no training data given; fix: set data=PATH (e.g. from `qwen-tool data synth`)")
    codec = sft_codec(cfg)
    trajectories = training_trajectories(cfg)
    tokenizer = load_tokenizer(cfg.model)
    examples = encode_dataset(trajectories, tokenizer, codec, cfg)
    tokens = sum(len(e["input_ids"]) for e in examples)
    logger.info("SFT on %d examples (%d tokens), format %s (tools as %s), MAE %s, PKT %s (w_max %g)", len(examples),
                tokens, codec.name, codec.tool_rendering, "on" if cfg.mae else "off", "on" if cfg.pkt else "off",
                cfg.w_max)
    model = load_model(cfg.model)
    trainer = build_trainer(cfg, model, tokenizer, examples,
                            include_num_input_tokens_seen="all" if step_observer is not None else "no")
    if step_observer is not None:
        trainer.add_callback(_ObserveSteps(step_observer, int(tokens * cfg.epochs)))
    saved = complete_checkpoints(cfg.output_dir, TRAINER_STATE_NAME, warn_partial=True) if resume else []
    checkpoint = str(saved[-1]) if saved else None
    if resume and checkpoint is None:
        logger.warning("--resume given but %s has no checkpoint; starting from the beginning", cfg.output_dir)
    trainer.train(resume_from_checkpoint=checkpoint)
    final = Path(cfg.output_dir) / "final"
    trained = trainer.model
    if cfg.lora.enabled:
        trained = trained.merge_and_unload()
    if not trainer.is_world_process_zero():  # several processes (torchrun, accelerate launch): the main one writes
        return final
    trained.save_pretrained(final)
    tokenizer.save_pretrained(final)
    write_json(final / TRAINED_META, {"tool_format": codec.name, "tool_rendering": codec.tool_rendering,
                                      "base_model": cfg.model, "sft": to_dict(cfg),
                                      "precision": resolve_precision(cfg.precision, "SFT").describe()})
    logger.info("Saved the trained model to %s", final)
    return final
