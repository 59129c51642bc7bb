"""Grammar-guided token choice for the transformers backend: one xgrammar matcher per guided row.

A request's guide is a structural tag (`qwen_tool.codec.guided.structural_tag`); compiled grammars are cached by their
text, so a prompt set that offers the same tools compiles once. The vLLM backend hands the same tag to vLLM's
structured outputs instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from qwen_tool import QwenToolError


class Guidance:
    """Builds matchers and applies them to a batch of logits."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> None:
        try:
            import xgrammar
        except ImportError as err:
            raise QwenToolError("guided decoding needs xgrammar; fix: `make setup` (or `pip install xgrammar`)"
                                ) from err
        self._xgrammar = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids))
        self._compiler = xgrammar.GrammarCompiler(info)
        self._grammars: dict[str, Any] = {}

    def matcher(self, guide: str) -> Any:
        if guide not in self._grammars:
            self._grammars[guide] = self._compiler.compile_structural_tag(guide)
        return self._xgrammar.GrammarMatcher(self._grammars[guide])

    def mask(self, logits_BV: torch.Tensor, matchers: Sequence[Any]) -> torch.Tensor:
        """Float logits with every token a row's grammar forbids set to -inf (rows without a matcher untouched)."""
        logits_BV = logits_BV.float()
        bitmask = self._xgrammar.allocate_token_bitmask(len(matchers), logits_BV.shape[-1])
        for b, matcher in enumerate(matchers):
            if matcher is not None and not matcher.is_terminated():
                matcher.fill_next_token_bitmask(bitmask, b)
        self._xgrammar.apply_token_bitmask_inplace(logits_BV, bitmask.to(logits_BV.device))
        return logits_BV

    @staticmethod
    def accept(matchers: Sequence[Any], tokens: Sequence[int]) -> None:
        for matcher, token in zip(matchers, tokens, strict=True):
            if matcher is not None and not matcher.is_terminated():
                matcher.accept_token(token)
