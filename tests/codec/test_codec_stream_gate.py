"""The stream's scan gate (`ScanState.awaiting`, set by `unclosed` and `awaiting_anew`): while a region waits for
a close tag, a stream scans again only once the tag has arrived. That must change how often it scans and never what it
emits; nothing may come later."""

from __future__ import annotations

import pytest
from codec_cases import CODECS, chunkings, fixture_dir

from qwen_tool.codec import get_codec
from qwen_tool.codec.base import ScanState


class Ungated(ScanState):
    """A scan state that never keeps an awaited close tag."""

    @property
    def awaiting(self) -> None:
        return None

    @awaiting.setter
    def awaiting(self, tag: str | None) -> None:
        pass


GATED = {"hermes", "qwen3_xml", "glm", "deepseek", "deepseek_dsml", "kimi_k2", "kimi_k3", "harmony", "gemma4",
         "functiongemma", "llama3_json", "pythonic", "mistral"}
"""Formats whose call regions note what they await (`unclosed`, `awaiting_anew`)."""




def emissions(fmt: str, variant: str | None, pieces: list[str], gated: bool) -> tuple[list, int]:
    """(chunk index and deltas of every feed that emitted something, ids left out; the number of scans). Ungated, no
    region ever records an awaited tag: the stream before the gate."""
    codec = get_codec(fmt, variant)
    stream = codec.stream()
    if not gated:
        stream.state = Ungated(mode=stream.state.mode, tools=stream.state.tools)
    scans = 0
    scan = codec.scan

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        nonlocal scans
        scans += 1
        return scan(*args, **kwargs)

    codec.scan = counted  # type: ignore[method-assign]
    out = []
    for index, piece in enumerate([*pieces, None]):
        deltas = stream.feed(piece) if piece is not None else stream.finish()
        if deltas:
            out.append((index, [_without_ids(delta) for delta in deltas]))
    return out, scans


def _without_ids(delta: dict) -> dict:
    calls = [{k: v for k, v in call.items() if k != "id"} for call in delta.get("tool_calls", [])]
    return {**delta, "tool_calls": calls} if calls else delta


@pytest.mark.parametrize(("fmt", "variant"), CODECS, ids=[f"{f}-{v}" if v else f for f, v in CODECS])
def test_the_gate_delays_no_emission_and_saves_scans(fmt: str, variant: str | None) -> None:
    saved = total = 0
    for path in sorted(fixture_dir(fmt, variant).glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        for pieces in chunkings(text, seeds=(0, 1), whole=False):
            gated, gated_scans = emissions(fmt, variant, pieces, gated=True)
            ungated, ungated_scans = emissions(fmt, variant, pieces, gated=False)
            assert [deltas for _, deltas in gated] == [deltas for _, deltas in ungated], (path.name, pieces)
            assert all(g <= u for (g, _), (u, _) in zip(gated, ungated, strict=True)), (path.name, pieces)
            saved += ungated_scans - gated_scans
            total += ungated_scans
    assert saved > 0.2 * total or fmt not in GATED, f"the gate saved only {saved} of {total} scans"
