"""The RL loop on accelerate: draw tasks → roll out episodes → one GRPO or PPO update → log → checkpoint.

One process by default; `accelerate launch --config_file configs/accelerate/multi-gpu.yaml` (or `torchrun`) runs the
same code in several processes (each rolls out its own episodes; `rl.distributed` says what they must agree on, and
every call into it runs on every process, in the same order). `train_rl` reads top to bottom; a step is `play_step`
(rollout.py), then `grpo_update` or `ppo_update` (updates.py), which call `grpo_loss` or `ppo_loss` (losses.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qwen_tool.codec import Codec, get_codec
from qwen_tool.config import RLTrainingConfig, to_dict
from qwen_tool.decode import Decoder
from qwen_tool.env.task import Task
from qwen_tool.files import write_json
from qwen_tool.hardware import mixed_precision
from qwen_tool.log import logger
from qwen_tool.rl.batch import collate
from qwen_tool.rl.checkpoints import LoopState, resume_from_last, save_checkpoint
from qwen_tool.rl.distributed import flatten, gather_objects
from qwen_tool.rl.rollout import Rollout, rollout_stats, run_episodes
from qwen_tool.rl.run_setup import build_decoder, build_models, check_multi_process, check_turn_cap, gold_rollouts
from qwen_tool.rl.step_log import StepLogger
from qwen_tool.rl.task_pool import STAGE_NAMES, TaskPool, env_tasks
from qwen_tool.rl.updates import RLModels, draw_gold_batch, fit_critic, grpo_update, ppo_update, unwrap


def train_rl(cfg: RLTrainingConfig, trajectories: Sequence[dict[str, Any]], *, tasks: Sequence[Task] | None = None,
             resume: bool = False, policy: Any | None = None, reference: Any | None = None,
             tokenizer: Any | None = None) -> Path:
    """Train and save `<output_dir>/final` (LoRA merged) with its tokenizer and tool format; return that path.

    trajectories: the single-turn tasks (and the supervised term's examples), already read and validated (see
    `qwen_tool.data.prepare.read_training_data`); tasks: multi-turn tasks (default: the built-in suites named in
    `cfg.suites`); policy/reference/tokenizer: already loaded models (default: loaded from `cfg.model` /
    `cfg.reference_model`).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from qwen_tool.models import load_tokenizer, resolve, tool_rendering_for

    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=mixed_precision(cfg.precision, "RL"))
    check_multi_process(cfg, accelerator)
    set_seed(cfg.seed + accelerator.process_index)
    rng = random.Random(f"{cfg.seed}:{accelerator.process_index}")
    fmt = cfg.tool_format or resolve(cfg.model).tool_format
    codec = get_codec(fmt, tool_rendering=tool_rendering_for(cfg.model, cfg.tool_rendering))
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pool = TaskPool(cfg, trajectories, env_tasks(cfg.suites) if tasks is None else tasks)
    check_turn_cap(cfg, pool.trajectories, tokenizer, codec)
    gold = gold_rollouts(cfg, pool.trajectories, tokenizer, codec)
    models = build_models(cfg, accelerator, policy, reference)
    state = resume_from_last(accelerator, output_dir, pool.curriculum, rng) if resume else LoopState()
    decoder = build_decoder(cfg, models.policy, tokenizer, accelerator.process_index, accelerator.mixed_precision)
    if state.step:  # a resumed policy is not the weights a decoder loads from cfg.model
        decoder.update_weights(unwrap(models.policy))
    step_logger = StepLogger(output_dir, accelerator.is_main_process, state.step)
    logger.info("RL (%s) on %d single-turn (%d with parallel calls, drawn %s) and %d multi-turn tasks, %d steps of "
                "%d×%d episodes, format %s (tools as %s)", cfg.algo, pool.single_turn_count, len(pool.parallel),
                "like the rest" if cfg.parallel_share is None else f"at share {cfg.parallel_share:g}",
                pool.multi_turn_count, cfg.steps, cfg.prompts_per_step, cfg.samples_per_prompt, fmt,
                codec.tool_rendering)

    if cfg.algo == "ppo":  # value-function pre-training: fit the critic to the current policy's returns first
        while state.value_pretrain_done < cfg.ppo.value_pretrain_steps:
            rollouts = play_step(pool, decoder, tokenizer, codec, cfg, rng)
            value_loss = fit_critic(models, collate(rollouts, pad_id).to(accelerator.device), cfg, accelerator)
            state.value_pretrain_done += 1
            logger.info("value pre-training %d/%d: value loss %.4f, reward %.3f", state.value_pretrain_done,
                        cfg.ppo.value_pretrain_steps, value_loss, every_process_stats(rollouts)["reward"])

    while state.step < cfg.steps:
        started = time.perf_counter()
        rollouts = play_step(pool, decoder, tokenizer, codec, cfg, rng)
        sampled = time.perf_counter()
        batch = collate(rollouts, pad_id).to(accelerator.device)
        gold_batch = draw_gold_batch(gold, cfg, pad_id, rng, accelerator.device)
        if cfg.algo == "grpo":
            update = grpo_update(models, batch, cfg, accelerator, gold=gold_batch)
        else:
            update = ppo_update(models, batch, cfg, accelerator, gold=gold_batch)
        decoder.update_weights(unwrap(models.policy))  # the next rollouts sample the updated policy
        state.step += 1
        stats = every_process_stats(rollouts)  # so the logs and the curriculum are the same on every process
        stage = pool.curriculum.stage
        if pool.curriculum.update(stats["success_rate"]):
            logger.info("curriculum: stage %d (%s) → %d (%s)", stage, STAGE_NAMES[stage], pool.curriculum.stage,
                        STAGE_NAMES[pool.curriculum.stage])
        if state.step % cfg.logging_steps == 0 or state.step == cfg.steps:
            now = time.perf_counter()  # the step's cost, and its two parts: rollouts, then update and weight sync
            step_logger.log(state.step, {**stats, **update.as_dict(), "stage": stage, "seconds": now - started,
                                         "seconds/rollouts": sampled - started, "seconds/update": now - sampled})
        if state.step % cfg.save_steps == 0 and state.step < cfg.steps:
            save_checkpoint(accelerator, output_dir, state, pool.curriculum, rng, cfg.save_total_limit)

    decoder.close()
    return save_final_model(cfg, accelerator, models, tokenizer, fmt, codec, output_dir / "final")


def play_step(pool: TaskPool, decoder: Decoder, tokenizer: Any, codec: Codec, cfg: RLTrainingConfig,
              rng: random.Random) -> list[Rollout]:
    """One step's episodes, drawn from the pool and played to their ends (with `grpo.greedy_member`, the first episode
    of every group greedily)."""
    episodes = pool.episodes(rng)
    greedy_first = cfg.algo == "grpo" and cfg.grpo.greedy_member
    greedy = [greedy_first and i % cfg.samples_per_prompt == 0 for i in range(len(episodes))]
    return run_episodes(decoder, tokenizer, codec, episodes, temperature=cfg.temperature,
                        max_new_tokens=cfg.max_new_tokens, max_total_tokens=cfg.max_total_tokens,
                        turn_return=cfg.turn_return, greedy=greedy, progress="rollouts")


def every_process_stats(rollouts: list[Rollout]) -> dict[str, float]:
    """`rollout_stats` over the episodes of every process."""
    return rollout_stats(flatten(gather_objects(rollouts)))


def save_final_model(cfg: RLTrainingConfig, accelerator: Any, models: RLModels, tokenizer: Any, fmt: str,
                     codec: Codec, final: Path) -> Path:
    """The trained policy (LoRA merged), its tokenizer and the tool format it was trained with, written by the main
    process once every process is done."""
    from qwen_tool.models import TRAINED_META

    accelerator.wait_for_everyone()
    # every process takes part: FSDP and ZeRO-3 gather the sharded weights here
    state_dict = None if cfg.lora.enabled else accelerator.get_state_dict(models.policy)
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(models.policy)
        if cfg.lora.enabled:
            trained = trained.merge_and_unload()
        trained.save_pretrained(final, state_dict=state_dict)
        tokenizer.save_pretrained(final)
        write_json(final / TRAINED_META, {"tool_format": fmt, "tool_rendering": codec.tool_rendering,
                                          "base_model": cfg.model, "rl": to_dict(cfg)})
        logger.info("Saved the RL-trained model to %s", final)
    return final
