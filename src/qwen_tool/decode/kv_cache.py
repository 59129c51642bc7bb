"""A preallocated key/value cache whose rows are decoding slots: no tensor is concatenated or copied per step.

Layout, per layer: keys and values of shape (S, H, L, D): S slots, H key/value heads, L positions of capacity, D head
size. The running batch occupies slots 0..B-1 (a row that leaves is replaced by the last one, so the batch stays a
prefix and attention reads a view); row b holds its `length_b` tokens in columns 0..length_b-1, right-ragged.

A transformers attention layer calls `update(keys, values, layer)` with the new tokens' keys and values; the cache
writes them where the current plan says (`plan_decode`: one token per running row, each at its own column;
`plan_prefill`: a run of tokens of one slot) and returns the keys and values attention must read. The matching
additive masks come from `decode_mask` and `prefill_mask` (passed to the model as a 4-D mask, which transformers uses
as given). Plain full attention only (every layer sees every earlier token).
"""

from __future__ import annotations

from typing import Any

import torch


class SlotKVCache:
    """Keys and values of up to `slots` sequences of up to `capacity` tokens each, preallocated."""

    def __init__(self, layers: int, slots: int, heads: int, head_dim: int, capacity: int, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        shape = (slots, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self._plan: tuple[Any, ...] = ()

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    @property
    def slots(self) -> int:
        return self.keys[0].shape[0]

    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def grow(self, capacity: int) -> None:
        """Room for `capacity` tokens per slot (capacity only grows; the contents are kept)."""
        if capacity <= self.capacity:
            return
        for tensors in (self.keys, self.values):
            for i, old in enumerate(tensors):
                new = old.new_zeros((old.shape[0], old.shape[1], capacity, old.shape[3]))
                new[:, :, :old.shape[2]] = old
                tensors[i] = new

    def plan_decode(self, length_B: torch.Tensor) -> None:
        """The next forward feeds one token to each of the B running rows; row b's goes to column length_b."""
        rows_B = torch.arange(length_B.shape[0], device=length_B.device)
        self._plan = ("decode", rows_B, length_B, int(length_B.max()) + 1)

    def plan_prefill(self, slot: int, start: int, count: int) -> None:
        """The next forward feeds `count` tokens of `slot`, at columns start..start+count-1."""
        self._plan = ("prefill", slot, start, count)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys/values (B, H, Q, D) as planned; return what attention reads: (B, H, T, D) views."""
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self._plan[0] == "decode":
            _, rows_B, length_B, width = self._plan
            keys[rows_B, :, length_B] = key_states[:, :, 0].to(keys.dtype)
            values[rows_B, :, length_B] = value_states[:, :, 0].to(values.dtype)
            batch = rows_B.shape[0]
            return keys[:batch, :, :width], values[:batch, :, :width]
        _, slot, start, count = self._plan
        keys[slot, :, start:start + count] = key_states[0].to(keys.dtype)
        values[slot, :, start:start + count] = value_states[0].to(values.dtype)
        # a prefill by a model of another dtype (a bf16 copy) reads the cache in its own dtype
        return (keys[slot:slot + 1, :, :start + count].to(key_states.dtype),
                values[slot:slot + 1, :, :start + count].to(value_states.dtype))

    def copy_slot(self, source: int, target: int, length: int) -> None:
        """Slot `target` gets the first `length` positions of slot `source` (a shared prompt, a moved row)."""
        if source == target or length == 0:
            return
        for tensors in (self.keys, self.values):
            for t in tensors:
                t[target, :, :length] = t[source, :, :length]

    def load_slot(self, target: int, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Write stored per-layer (H, T, D) keys and values into the first T positions of a slot."""
        for layer, (k, v) in enumerate(zip(keys, values, strict=True)):
            self.keys[layer][target, :, :k.shape[1]] = k
            self.values[layer][target, :, :v.shape[1]] = v

    def read_slot(self, slot: int, length: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Copies of the first `length` positions of a slot, per layer (H, T, D)."""
        return ([k[slot, :, :length].clone() for k in self.keys], [v[slot, :, :length].clone() for v in self.values])


def decode_mask(length_B: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (B, 1, 1, T), T = max_b length_b + 1: row b's new token (at column length_b) sees columns
    0..length_b, M[b, 0, 0, t] = 0 if t <= length_b else the dtype's lowest value."""
    width = int(length_B.max()) + 1
    columns_T = torch.arange(width, device=length_B.device)
    allowed_BT = columns_T[None, :] <= length_B[:, None]
    return _additive(allowed_BT[:, None, None, :], dtype)


def prefill_mask(start: int, count: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Additive causal mask (1, 1, Q, start+Q) for Q = `count` new tokens after `start` cached ones: query q (at
    column start+q) sees columns 0..start+q."""
    queries_Q = torch.arange(count, device=device) + start
    columns_T = torch.arange(start + count, device=device)
    return _additive((columns_T[None, :] <= queries_Q[:, None])[None, None], dtype)


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    zeros = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zeros, torch.finfo(dtype).min)
