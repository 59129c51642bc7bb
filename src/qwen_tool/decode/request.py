"""What a caller asks the decoder for, and what it gets back: token ids in, token ids and log-probs out.

Evaluation, RL rollouts and the server all speak these types; the backends (`transformers_decoder`, `vllm_decoder`)
turn them into their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from qwen_tool import QwenToolError


@dataclass(frozen=True)
class SamplingParams:
    """How one request decodes."""

    max_tokens: int
    """New tokens at most; the stop token counts. A request that reaches it ends with finish_reason "length"."""
    temperature: float = 0.0
    """0: greedy. Otherwise logits are divided by it before sampling, and log-probs come from that distribution."""
    top_p: float = 1.0
    """Nucleus sampling: draw among the most likely tokens holding this much probability."""
    greedy: bool = False
    """Take the most likely token although `temperature` > 0: the log-probs still come from the tempered
    distribution (GRPO's greedy group member is trained with the loss's own temperature)."""
    seed: int | None = None
    """Makes this request's draws reproducible whatever else shares the batch."""
    logprobs: bool = False
    """Return log π(token) of every generated token."""
    guide: str | None = None
    """A structural tag (JSON text, `qwen_tool.codec.guided.structural_tag`): tool calls decode under the offered
    schemas while free text stays free."""
    stop_token_ids: tuple[int, ...] | None = None
    """Tokens that end the request (kept as its last token); None: the model's end-of-turn tokens."""

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise QwenToolError(f"max_tokens must be at least 1 (got {self.max_tokens}); fix: ask for 1 or more")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise QwenToolError(f"temperature {self.temperature} / top_p {self.top_p} out of range; fix: "
                                "temperature >= 0 and 0 < top_p <= 1")

    @property
    def argmax(self) -> bool:
        """The next token is always the most likely one (allowed by the guide)."""
        return self.greedy or self.temperature == 0


@dataclass(frozen=True)
class Request:
    prompt_ids: Sequence[int]
    params: SamplingParams


@dataclass
class Completion:
    token_ids: list[int]
    """Generated ids, the stop token included when the request ended on one."""
    finish_reason: str
    """"stop" (a stop token) or "length" (max_tokens reached)."""
    logprobs: list[float] | None = None
    """log π of each generated id, when the request asked for them."""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens whose keys and values came from the prefix cache instead of a prefill."""
    extra: dict[str, Any] = field(default_factory=dict)


CompletionCallback = Callable[[int, Completion], None]
"""Called with (request index, completion) as each request finishes, in finishing order."""


class Decoder(Protocol):
    """A model that continues token-id prompts: the one interface evaluation, RL and the server decode through."""

    backend: str
    """"transformers" or "vllm"."""

    def generate(self, requests: Sequence[Request], *, on_done: CompletionCallback | None = None,
                 progress: str | None = None) -> list[Completion]:
        """Every request to its end, batched continuously (a finished row's slot takes the next waiting request).
        `progress`: a description to show a bar with tokens/s (and log the rate), None for none."""
        ...

    def update_weights(self, model: Any) -> None:
        """Decode with `model`'s current weights from now on (after an RL optimiser step)."""
        ...

    def close(self) -> None: ...
