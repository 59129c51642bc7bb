"""Turn a trajectory into `input_ids`, `labels` and per-token `loss_weights` for any model format.

The conversation is rendered by the codec (`render_conversation`), which says exactly which characters each message
produced, which are trainable (assistant-authored text and its end-of-turn marker), and where each tool name and
argument sits. Pieces of different trainability are tokenised separately and concatenated, the way inference sees them
(a prompt tokenised alone, then generated tokens), so no token straddles a prompt/answer boundary.

Tool results, user and system text are never trained. MAE zeroes the weight of erroneous assistant turns (they stay
in the context). PKT up-weights the key tokens of each trained turn (see `weights.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.codec import Codec
from qwen_tool.codec.chat import RenderedChat, Segment, render_conversation
from qwen_tool.sft.weights import name_key_offsets, pkt_turn_weight, token_containing, token_ranges_overlapping

IGNORE_INDEX = -100
_ARGUMENT_KINDS = ("arg_key", "arg_value")


class EncodingError(QwenToolError):
    """A trajectory that cannot be turned into a training example."""


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    """Token id where trained, −100 elsewhere."""
    loss_weights: list[float]
    """0 where not trained (incl. MAE-masked turns), PKT weight on key tokens, 1 on other trained tokens."""
    key_mask: list[bool]
    """True on PKT key tokens (whether or not PKT is on), for inspection and tests."""

    def to_dict(self) -> dict[str, Any]:
        return {"input_ids": self.input_ids, "labels": self.labels, "loss_weights": self.loss_weights}


def _pieces(rendered: RenderedChat) -> list[tuple[int, int, Segment | None]]:
    """Split the text into consecutive pieces: each trainable segment alone, everything between them as one piece."""
    pieces: list[tuple[int, int, Segment | None]] = []
    cursor = 0
    for segment in sorted((s for s in rendered.segments if s.trainable), key=lambda s: s.start):
        if segment.start > cursor:
            pieces.append((cursor, segment.start, None))
        pieces.append((segment.start, segment.end, segment))
        cursor = segment.end
    if cursor < len(rendered.text):
        pieces.append((cursor, len(rendered.text), None))
    return pieces


def _key_tokens(segment: Segment, text: str, offsets: list[tuple[int, int]], tool_names: list[str]) -> set[int]:
    """Key token indexes (into `offsets`, absolute character offsets) of one trained assistant segment."""
    keys: set[int] = set()
    for span in segment.spans:
        if span.kind == "name":
            name = text[span.start:span.end]
            for offset in name_key_offsets(name, tool_names):
                index = token_containing(offsets, span.start + offset)
                if index is not None:
                    keys.add(index)
        elif span.kind in _ARGUMENT_KINDS:
            keys.update(token_ranges_overlapping(offsets, span.start, span.end))
    return keys


def encode_trajectory(
    trajectory: dict[str, Any],
    tokenizer: Any,
    fmt: str | Codec,
    *,
    mae: bool = True,
    pkt: bool = True,
    w_max: float = 9.0,
    decision_weight: float = 1.0,
    max_length: int | None = None,
) -> EncodedExample:
    """Tokenise one trajectory with exact labels and MAE/PKT weights (see the module docstring)."""
    messages = trajectory.get("messages")
    if not isinstance(messages, list) or not messages:
        raise EncodingError("trajectory has no messages; fix: give an OpenAI chat `messages` list")
    tools = trajectory.get("tools") or []
    tool_names = [t.get("function", t).get("name", "") for t in tools]
    rendered = render_conversation(tokenizer, messages, tools, fmt)

    input_ids: list[int] = []
    labels: list[int] = []
    weights: list[float] = []
    key_mask: list[bool] = []
    for start, end, segment in _pieces(rendered):
        encoded = tokenizer(rendered.text[start:end], add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        offsets = [(a + start, b + start) for a, b in encoded["offset_mapping"]]
        masked = segment is None or (mae and bool(messages[segment.message_index].get("erroneous")))
        keys = set() if segment is None else _key_tokens(segment, rendered.text, offsets, tool_names)
        key_weight = pkt_turn_weight(len(keys), len(ids) - len(keys), w_max) if pkt else 1.0
        for index, token_id in enumerate(ids):
            is_key = index in keys
            input_ids.append(token_id)
            key_mask.append(is_key)
            if masked:
                labels.append(IGNORE_INDEX)
                weights.append(0.0)
            else:
                labels.append(token_id)
                weights.append(decision_weight if index == 0 else key_weight if is_key else 1.0)
    if max_length is not None and len(input_ids) > max_length:
        raise EncodingError(f"trajectory is {len(input_ids)} tokens, over max_length {max_length}; "
                            "fix: raise max_length or drop long examples")
    return EncodedExample(input_ids, labels, weights, key_mask)
