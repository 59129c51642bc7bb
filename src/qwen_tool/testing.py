"""Fixtures for fast tests: a random-weight model of the built-in model's real architecture, with its real tokenizer;
a scripted decoder that replays given texts through the decoders' step API; and a scripted evaluation backend.

Tests that exercise tokenisation, masking, generation plumbing or a training step use these (seconds), and keep the
real 135M weights for tests marked `slow`.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen_tool import QwenToolError
from qwen_tool.decode import Request
from qwen_tool.eval.generation import Generation, GenerationSettings
from qwen_tool.models import DEFAULT_MODEL, load_tokenizer, pull, stop_token_ids

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

    from qwen_tool.decode.transformers_decoder import Token

TINY_LAYERS = 2
TINY_HIDDEN = 64


@functools.lru_cache(maxsize=1)
def _real_config_dict() -> dict:
    import json

    return json.loads((pull(DEFAULT_MODEL, full_check=False) / "config.json").read_text())


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """The real SmolLM2 tokenizer (a fresh object each call, so tests may change it freely)."""
    return load_tokenizer(DEFAULT_MODEL)


def tiny_model(seed: int = 0, head_dim: int | None = None) -> LlamaForCausalLM:
    """A 2-layer, hidden-64 Llama with the real vocabulary and special-token ids, random weights from `seed`.
    `head_dim` None: 16 (hidden / heads); vLLM's CPU attention needs 32 or more."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    real = _real_config_dict()
    cfg = LlamaConfig(
        vocab_size=real["vocab_size"],
        hidden_size=TINY_HIDDEN,
        intermediate_size=4 * TINY_HIDDEN,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim or TINY_HIDDEN // 4,
        max_position_embeddings=real.get("max_position_embeddings", 8192),
        rope_theta=real.get("rope_theta", 100000.0),
        rms_norm_eps=real.get("rms_norm_eps", 1e-5),
        tie_word_embeddings=real.get("tie_word_embeddings", True),
        bos_token_id=real.get("bos_token_id"),
        eos_token_id=real.get("eos_token_id"),
        pad_token_id=real.get("pad_token_id"),
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def save_tiny_model(directory: str | Path, seed: int = 0, head_dim: int | None = None) -> Path:
    """Write a tiny model and the real tokenizer as a local HF directory, so code that takes a model name can use it."""
    directory = Path(directory)
    tiny_model(seed, head_dim).save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


def cli_user_error(capsys: Any, *args: str) -> str:
    """Run the CLI as the console script does and return its error line, asserting what issue 26 asks of every error
    a user can cause: exit code 1, one line on stderr that says the fix, and no traceback."""
    import pytest

    from qwen_tool.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert exit_info.value.code == 1, captured
    assert "Traceback" not in captured.err + captured.out, captured
    assert len(lines) == 1 and lines[0].startswith("error: ") and "fix:" in lines[0], captured
    return lines[0]


@dataclass
class _Script:
    id: int
    tokens: deque[int]
    """What is left to replay."""
    left: int
    """Tokens the request may still generate (its max_tokens at first)."""


class ScriptedDecoder:
    """A fake decoder with `TransformersDecoder`'s step API, for the server's tests: each row replays
    `respond(prompt text)` token by token and then an end-of-turn token (finish "stop"), unless max_tokens comes first
    ("length"). Nothing is sampled and guides are ignored.

    `token_delay_s` makes each step take time (to test timeouts, disconnects and backpressure).
    """

    max_context: int | None = None

    def __init__(self, tokenizer: PreTrainedTokenizerBase, respond: Callable[[str], str], *,
                 token_delay_s: float = 0.0, max_batch: int = 8) -> None:
        self.tokenizer, self.respond = tokenizer, respond
        self.token_delay_s, self.max_batch = token_delay_s, max_batch
        self.end_of_turn = stop_token_ids(tokenizer)[0]
        self.rows: dict[int, _Script] = {}
        self.prompts: list[str] = []
        """Every prompt seen, in order (tests assert what the server rendered)."""
        self.requests: list[Request] = []
        """Every request seen, in order (tests assert the settings the server passed on)."""
        self._ids = itertools.count()

    def add(self, requests: Sequence[Request]) -> list[Token]:
        if len(self.rows) + len(requests) > self.max_batch:
            raise QwenToolError(f"{len(self.rows)} running rows plus {len(requests)} new exceed max_batch "
                                f"{self.max_batch}; fix: add rows as slots free up")
        rows = []
        for request in requests:
            prompt = self.tokenizer.decode(request.prompt_ids, skip_special_tokens=False)
            self.prompts.append(prompt)
            self.requests.append(request)
            script = self.tokenizer(self.respond(prompt), add_special_tokens=False)["input_ids"]
            row = _Script(next(self._ids), deque([*script, self.end_of_turn]), request.params.max_tokens)
            self.rows[row.id] = row
            rows.append(row)
        return [self._next(row) for row in rows]

    def step(self) -> list[Token]:
        if self.token_delay_s:
            time.sleep(self.token_delay_s)
        return [self._next(row) for row in self.rows.values()]

    def remove(self, row_ids: Sequence[int]) -> None:
        for row_id in row_ids:
            self.rows.pop(row_id, None)

    def _next(self, row: _Script) -> Token:
        from qwen_tool.decode.transformers_decoder import Token

        token = row.tokens.popleft() if row.tokens else self.end_of_turn
        row.left -= 1
        finished = "stop" if token == self.end_of_turn else "length" if row.left == 0 else None
        return Token(row.id, token, None, finished)


class ScriptedBackend:
    """A fake evaluation backend (`eval.generation.Backend`) for the runners' tests: each prompt is answered with
    `answer(prompt)`, one at a time as a decoder finishes them; `decoded` records the prompts in order, and `guides`
    the structural tag each was given. With `fail_after`, the call after that many prompts raises KeyboardInterrupt
    (an interrupted run, to test resuming from the cache)."""

    def __init__(self, answer: Callable[[str], str], fail_after: int | None = None, model_id: str = "scripted") -> None:
        self.answer, self.fail_after, self.model_id = answer, fail_after, model_id
        self.decoded: list[str] = []
        self.guides: dict[str, str | None] = {}

    def token_length(self, prompt: str) -> int:
        return len(prompt)

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 guides: Sequence[str | None] | None = None,
                 on_done: Callable[[int, Generation], None] | None = None,
                 progress: str | None = None) -> list[Generation]:
        generations = []
        for index, prompt in enumerate(prompts):
            if self.fail_after is not None and len(self.decoded) >= self.fail_after:
                raise KeyboardInterrupt
            self.decoded.append(prompt)
            if guides is not None:
                self.guides[prompt] = guides[index]
            text = self.answer(prompt)
            generations.append(Generation(text, len(text.split()) + 1, "stop"))
            if on_done is not None:
                on_done(index, generations[-1])
        return generations
