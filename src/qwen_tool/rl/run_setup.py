"""What an RL run is set up with before its first step: the checks of a multi-process launch, the models and their
optimisers, the rollouts' decoder, and the supervised term's gold rollouts."""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from qwen_tool import QwenToolError
from qwen_tool.codec import Codec
from qwen_tool.codec.base import normalise_calls
from qwen_tool.config import RLTrainingConfig
from qwen_tool.decode import Decoder
from qwen_tool.hardware import resolve_precision
from qwen_tool.log import logger
from qwen_tool.rl.policy import SeparateCritic, ValueHead
from qwen_tool.rl.rollout import Rollout, gold_rollout
from qwen_tool.rl.updates import RLModels, unwrap


def check_multi_process(cfg: RLTrainingConfig, accelerator: Any) -> None:
    """Refuse what a multi-process run cannot do; quiet the info log of every process but the main one."""
    from accelerate.utils import DistributedType

    sharded = {DistributedType.DEEPSPEED: "DeepSpeed", DistributedType.FSDP: "FSDP"}.get(accelerator.distributed_type)
    if sharded:  # the update itself is FSDP2-safe (tests/distributed); rollouts and the weight sync are not yet
        raise QwenToolError(f"train rl does not run under {sharded} yet: rollouts decode with the policy, each process "
                            "in a different number of forwards that would each gather weights from every process, and "
                            "vLLM's weight sync needs whole weights; fix: launch with "
                            "configs/accelerate/multi-gpu.yaml (the DeepSpeed and FSDP configs serve train sft)")
    if accelerator.num_processes == 1:
        return
    if cfg.algo == "grpo" and cfg.grpo.drop_uniform_groups:
        raise QwenToolError(f"grpo.drop_uniform_groups gives each of the {accelerator.num_processes} processes a "
                            "different number of forward passes, so they would wait on each other forever; fix: set "
                            "grpo.drop_uniform_groups=false for a multi-process run")
    if not accelerator.is_main_process:
        logger.setLevel(max(logger.level, logging.WARNING))


def build_models(cfg: RLTrainingConfig, accelerator: Any, policy: Any | None = None,
                 reference: Any | None = None) -> RLModels:
    """Policy (optionally with LoRA), frozen reference (when β ≠ 0), critic (PPO), their AdamW optimisers, prepared
    by `accelerator`. Models may be passed in (tests)."""
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
        reference = reference.to(accelerator.device)
    else:
        reference = None
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    if cfg.algo == "grpo":
        policy, optimizer = accelerator.prepare(policy, optimizer)
        return RLModels(policy, optimizer, reference)
    if cfg.ppo.critic == "value_head":
        critic: torch.nn.Module = ValueHead(unwrap(policy).config.hidden_size)
    else:
        critic = SeparateCritic(load_model(cfg.ppo.critic_model or cfg.model)).train()
    critic_optimizer = torch.optim.AdamW(critic.parameters(), lr=cfg.ppo.critic_learning_rate)
    policy, optimizer, critic, critic_optimizer = accelerator.prepare(policy, optimizer, critic, critic_optimizer)
    return RLModels(policy, optimizer, reference, critic, critic_optimizer, shared_trunk=cfg.ppo.critic == "value_head")


def build_decoder(cfg: RLTrainingConfig, policy: Any, tokenizer: Any, process_index: int = 0,
                  mixed_precision: str = "no") -> Decoder:
    """The rollouts' decoder, one per process (each samples its own episodes on its own policy replica, seeded
    `cfg.seed + process_index` like the rest of that process). The transformers backend decodes with the policy module
    itself in full precision, and with `sampling_copy` under accelerate's `mixed_precision` (bf16 or fp16); vLLM loads
    `cfg.model`'s weights. Either way the trainer calls `update_weights` after every optimiser step."""
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

    if mixed_precision == "no":
        return TransformersDecoder(unwrap(policy), tokenizer, max_batch=max_batch, seed=seed)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]
    return TransformersDecoder(sampling_copy(unwrap(policy), half), tokenizer, max_batch=max_batch, seed=seed,
                               kv_dtype=half)


def sampling_copy(policy: Any, dtype: torch.dtype) -> Any:
    """A copy of the policy for the transformers backend to sample with, its Linear weights stored in `dtype`.

    Under mixed precision accelerate runs the policy's forward in autocast, which casts every float32 Linear weight
    to `dtype` at every call, and the decoder calls forward once per generated token: a cast of all the weights per
    token. With the cache in `dtype` too (`build_decoder`), sampling ran 1.7x as fast on the dev box (BENCHMARKS.md,
    "RL sampling under mixed precision"). The copy is cast once per update (`update_weights` loads the policy into it).
    Autocast leaves a weight already in `dtype` as it is, and casts the same way, so the copy's logits are bitwise
    the policy's. Embeddings and norms stay float32 as autocast leaves them; a tied output head gets a weight of its
    own, since the embedding's stays float32. The copy keeps accelerate's autocast forward, rebound to itself.
    """
    sampler = copy.deepcopy(policy).requires_grad_(False)
    head, embedding = sampler.get_output_embeddings(), sampler.get_input_embeddings()
    if head is not None and head.weight is embedding.weight:
        head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    for module in sampler.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)
    return sampler


def gold_rollouts(cfg: RLTrainingConfig, trajectories: Sequence[dict[str, Any]], tokenizer: Any,
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


def check_turn_cap(cfg: RLTrainingConfig, trajectories: Sequence[dict[str, Any]], tokenizer: Any, codec: Codec) -> int:
    """Warn when the data's own answers do not fit `max_new_tokens`, and return how many do not.

    A sampled turn is cut at the cap. An answer longer than the cap is then never written whole; it is scored as a
    broken call. So every try at the full answer loses reward, and shorter answers win. For example, parallel calls
    drop to fewer calls. The count covers every trained assistant turn, with the end-of-turn token.
    """
    over: Counter[str] = Counter()
    total: Counter[str] = Counter()
    longest = 0
    for record in trajectories:
        category = str(record.get("meta", {}).get("category", "uncategorised"))
        for message in record["messages"]:
            if message["role"] != "assistant" or message.get("erroneous"):
                continue
            text = codec.render_assistant(message.get("content"), normalise_calls(message.get("tool_calls"))).text
            length = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
            total[category] += 1
            if length > cfg.max_new_tokens:
                over[category] += 1
                longest = max(longest, length)
    if over:
        shares = ", ".join(f"{name} {over[name]}/{total[name]}" for name, _ in over.most_common())
        logger.warning("%d of %d answers in data= need more than max_new_tokens=%d tokens (%s; the longest %d): "
                       "sampled turns are cut at the cap, so these answers are never written whole and the policy "
                       "learns shorter ones; fix: set max_new_tokens=%d or more",
                       sum(over.values()), sum(total.values()), cfg.max_new_tokens, shares, longest, longest)
    return sum(over.values())
