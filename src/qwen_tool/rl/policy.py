"""The policy and critic forward passes on a rollout batch: per-token log-probs, entropy and values.

Entropy is taken from the same logits as the log-probs, so it is read at the same positions (left padding and shared
prompts included) and, when the bonus trains, carries its gradient through the same graph.

Layout (as TRL's): prompts left-padded to P columns, completions right-padded to C columns, so every completion token
sits at the same column in every row and the LM head runs only on the C + 1 last positions (`logits_to_keep`).
Completion tokens include environment-inserted ones (tool results); the action mask says which the policy sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def token_logprobs(logits_BTV: torch.Tensor, tokens_BT: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(z / τ)[token] per position, via logsumexp so the (B, T, V) log-softmax is never materialised."""
    logits_BTV = logits_BTV / temperature if temperature != 1.0 else logits_BTV
    picked_BT = logits_BTV.gather(-1, tokens_BT.unsqueeze(-1)).squeeze(-1)
    return picked_BT - torch.logsumexp(logits_BTV, dim=-1)


def entropy_from_logits(logits_BTV: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """H_t = −Σ_v p_v log p_v with p = softmax(z / τ)."""
    logits_BTV = logits_BTV / temperature if temperature != 1.0 else logits_BTV
    logp_BTV = torch.log_softmax(logits_BTV, dim=-1)
    return -(logp_BTV.exp() * logp_BTV).sum(-1)


@dataclass
class ForwardOut:
    logprobs_BC: torch.Tensor
    entropy_BC: torch.Tensor | None = None
    hidden_BCH: torch.Tensor | None = None
    """Last hidden state at the position that predicts each completion token (the state a value is estimated in)."""


def positions(mask_BT: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding: 0 at each row's first real token (the same as at sampling time)."""
    return (mask_BT.cumsum(-1) - 1).clamp(min=0)


def completion_forward(model: Any, prompt_ids_BP: torch.Tensor, prompt_mask_BP: torch.Tensor,
                       completion_ids_BC: torch.Tensor, completion_mask_BC: torch.Tensor, *,
                       temperature: float = 1.0, with_entropy: bool = False, entropy_grad: bool = False,
                       with_hidden: bool = False, share_prompts: bool = True) -> ForwardOut:
    """log π(c_t | prompt, c_<t) / τ-tempered, for every completion column (padding columns hold junk; mask them).

    with_entropy: also H_t of the same tempered distribution; entropy_grad: keep its gradient (an entropy bonus
    trains), else it is computed without one (for the logs, at no memory cost).

    Rows that share a prompt (a GRPO group) run that prompt once: its KV cache, gradient graph included, is copied to
    each row and only the completions are computed per row. Causal attention makes this exact, and with ~350-token
    tool prompts and ~64-token completions a group of 4 costs ~2.7x fewer token-forwards. That calls the model twice
    per distinct prompt, a number the batch decides; `share_prompts=False` calls it exactly once, as a multi-process
    run must (each call of a DDP/FSDP/DeepSpeed-wrapped model is a collective every process has to reach).
    """
    distinct: dict[tuple[int, ...], list[int]] = {}
    for b in range(prompt_ids_BP.shape[0]):
        distinct.setdefault(tuple(prompt_ids_BP[b][prompt_mask_BP[b].bool()].tolist()), []).append(b)
    if share_prompts and len(distinct) < prompt_ids_BP.shape[0]:
        parts = [_shared_prompt_forward(model, torch.tensor(prompt, dtype=torch.long, device=prompt_ids_BP.device),
                                        completion_ids_BC[rows], completion_mask_BC[rows], with_hidden)
                 for prompt, rows in distinct.items()]
        order_B = torch.tensor([b for rows in distinct.values() for b in rows], device=prompt_ids_BP.device)
        inverse_B = torch.empty_like(order_B)
        inverse_B[order_B] = torch.arange(len(order_B), device=order_B.device)
        logits_BCV = torch.cat([logits for logits, _ in parts])[inverse_B]
        hidden_BCH = torch.cat([hidden for _, hidden in parts])[inverse_B] if with_hidden else None
    else:
        input_ids_BT = torch.cat([prompt_ids_BP, completion_ids_BC], dim=1)
        mask_BT = torch.cat([prompt_mask_BP, completion_mask_BC], dim=1)
        width_C = completion_ids_BC.shape[1]
        out = model(input_ids=input_ids_BT, attention_mask=mask_BT, position_ids=positions(mask_BT),
                    logits_to_keep=width_C + 1, output_hidden_states=with_hidden, use_cache=False)
        logits_BCV = out.logits[:, :-1].float()
        hidden_BCH = out.hidden_states[-1][:, -width_C - 1:-1] if with_hidden else None
    logprobs_BC = token_logprobs(logits_BCV, completion_ids_BC, temperature)
    entropy_BC = None
    if with_entropy and entropy_grad:
        entropy_BC = entropy_from_logits(logits_BCV, temperature)
    elif with_entropy:
        with torch.no_grad():
            entropy_BC = entropy_from_logits(logits_BCV.detach(), temperature)
    return ForwardOut(logprobs_BC, entropy_BC, hidden_BCH)


def _shared_prompt_forward(model: Any, prompt_P: torch.Tensor, completion_ids_GC: torch.Tensor,
                           completion_mask_GC: torch.Tensor, with_hidden: bool
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits (G, C, V) predicting each completion column, last hidden states (G, C, H) or None) for G completions
    of one unpadded prompt: the prompt is computed once and its cache copied to the G rows."""
    from transformers import DynamicCache

    from qwen_tool.decode.transformers_decoder import cache_keyword

    rows_G, width_P = completion_ids_GC.shape[0], prompt_P.shape[0]
    cache = DynamicCache()
    keyword = cache_keyword(model)  # `cache` in newer transformers (`past_key_values` warns there), else the old name
    head = model(input_ids=prompt_P[None], **{keyword: cache}, use_cache=True, logits_to_keep=1,
                 output_hidden_states=with_hidden)
    cache.batch_select_indices(torch.zeros(rows_G, dtype=torch.long, device=prompt_P.device))
    mask_GT = torch.cat([completion_mask_GC.new_ones((rows_G, width_P)), completion_mask_GC], dim=1)
    position_GC = width_P + torch.arange(completion_ids_GC.shape[1], device=prompt_P.device).expand(rows_G, -1)
    tail = model(input_ids=completion_ids_GC, attention_mask=mask_GT, position_ids=position_GC, **{keyword: cache},
                 use_cache=True, output_hidden_states=with_hidden)
    logits_GCV = torch.cat([head.logits[:, -1:].expand(rows_G, -1, -1), tail.logits[:, :-1]], dim=1).float()
    if not with_hidden:
        return logits_GCV, None
    last = head.hidden_states[-1][:, -1:].expand(rows_G, -1, -1)
    return logits_GCV, torch.cat([last, tail.hidden_states[-1][:, :-1]], dim=1)


class ValueHead(nn.Module):
    """V(s_t) = w · h_t + b on a transformer's last hidden state (on the policy's trunk, or a separate critic's)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden_BCH: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden_BCH.float()).squeeze(-1)


class SeparateCritic(nn.Module):
    """A critic with its own (usually smaller) transformer: values from its last hidden state through a value head."""

    def __init__(self, backbone: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ValueHead(backbone.config.hidden_size)

    def forward(self, prompt_ids_BP: torch.Tensor, prompt_mask_BP: torch.Tensor, completion_ids_BC: torch.Tensor,
                completion_mask_BC: torch.Tensor) -> torch.Tensor:
        input_ids_BT = torch.cat([prompt_ids_BP, completion_ids_BC], dim=1)
        mask_BT = torch.cat([prompt_mask_BP, completion_mask_BC], dim=1)
        out = self.backbone(input_ids=input_ids_BT, attention_mask=mask_BT, position_ids=positions(mask_BT),
                            output_hidden_states=True, logits_to_keep=1, use_cache=False)
        width_C = completion_ids_BC.shape[1]
        return self.head(out.hidden_states[-1][:, -width_C - 1:-1])
