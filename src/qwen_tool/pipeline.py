"""The main job, `qwen-tool run`.

Stage 0 of the pipeline (until data synthesis, evaluation and training land): load the configured model and answer
one tool-free prompt, proving the set-up end to end.
"""

from __future__ import annotations

import time

from qwen_tool.config import GenerateConfig
from qwen_tool.log import logger
from qwen_tool.models import load_model, load_tokenizer


def answer_prompt(cfg: GenerateConfig) -> str:
    """Greedy answer of the model to `cfg.prompt`, rendered with the model's own chat template."""
    import torch

    started = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    logger.info("Loaded %s in %.1f s", cfg.model, time.perf_counter() - started)
    messages = [{"role": "user", "content": cfg.prompt}]
    input_ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"].to(cfg.device)
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=cfg.max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    new_tokens = output[0, input_ids.shape[1]:]
    logger.info("Generated %d tokens in %.1f s", len(new_tokens), time.perf_counter() - started)
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
