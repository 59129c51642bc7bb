"""Parsing does work linear in the output's length, whole and streamed, for every format, without timing anything.

The codec is made to count the characters it reads: each `find`/`rfind`/`count` and slice on the text, each JSON
decode, and the unsettled text each scan starts from. Four times the calls must cost about four times the reads; a
parser that re-reads the rest of the text per call (the bug of issue 26: 100,000 Hermes calls took minutes) costs
sixteen times.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from codec_cases import CODECS

import qwen_tool.codec.auto as auto_module
import qwen_tool.codec.base as base
from qwen_tool.codec import ToolCall, get_codec
from qwen_tool.codec.base import Codec

LINEAR_BOUND = 6
"""Reads for 4x the input may be at most this many times the reads for 1x. Linear: ~4 (up to ~5 where a stream
re-reads one growing region in steps of an eighth); quadratic: ~16."""


class Counted(str):
    """A str that adds the characters each search or slice reads to `Counted.reads`."""

    reads = 0

    def find(self, sub: str, start: int | None = None, end: int | None = None) -> int:  # type: ignore[override]
        begin, stop = start or 0, len(self) if end is None else min(end, len(self))
        found = super().find(sub, begin, stop)
        Counted.reads += max(0, (found + len(sub) if found >= 0 else stop) - begin)
        return found

    def rfind(self, sub: str, start: int | None = None, end: int | None = None) -> int:  # type: ignore[override]
        begin, stop = start or 0, len(self) if end is None else min(end, len(self))
        found = super().rfind(sub, begin, stop)
        Counted.reads += max(0, stop - (found if found >= 0 else begin))
        return found

    def count(self, sub: str, start: int | None = None, end: int | None = None) -> int:  # type: ignore[override]
        begin, stop = start or 0, len(self) if end is None else min(end, len(self))
        Counted.reads += max(0, stop - begin)
        return super().count(sub, begin, stop)

    def __getitem__(self, key):  # noqa: ANN001, ANN204 - str's own signature
        piece = super().__getitem__(key)
        Counted.reads += len(piece)
        return piece


class CountingDecoder:
    """`json.JSONDecoder` that counts the characters each `raw_decode` read (up to the value's end or the error)."""

    def __init__(self, decoder: json.JSONDecoder) -> None:
        self.decoder = decoder

    def raw_decode(self, text: str, pos: int = 0) -> tuple[object, int]:
        try:
            value, end = self.decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            Counted.reads += err.pos - pos
            raise
        Counted.reads += end - pos
        return value, end


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[], object]], int]]:
    """`reads(fn)`: characters the codec read while `fn` ran."""
    real_scan, real_detect = Codec.scan, auto_module.detect

    def scan(self: Codec, text: str, pos: int, final: bool, state: base.ScanState, out: base._Sink) -> int:
        Counted.reads += len(text) - pos  # the unsettled text handed to the scanner again
        return real_scan(self, Counted(text), pos, final, state, out)

    def detect(text: str, final: bool = True) -> str | None:
        Counted.reads += len(text)  # auto reads the whole undecided buffer
        return real_detect(text, final)

    monkeypatch.setattr(Codec, "scan", scan)
    monkeypatch.setattr(auto_module, "detect", detect)
    monkeypatch.setattr(base, "JSON", CountingDecoder(base.JSON))

    def reads(fn: Callable[[], object]) -> int:
        Counted.reads = 0
        fn()
        return Counted.reads

    yield reads


FORMATS = [*CODECS, ("auto", None)]


def many_calls(fmt: str, variant: str | None, count: int) -> str:
    """One output of `count` calls as the format writes them (auto reads Hermes text)."""
    calls = [ToolCall(f"tool_{i % 3}", {"city": "Paris", "days": i, "tags": ["a", "b"]}) for i in range(count)]
    codec = get_codec("hermes") if fmt == "auto" else get_codec(fmt, variant)
    return codec.render_assistant("Checking.", calls).text


def one_long_call(fmt: str, variant: str | None, size: int) -> str:
    """One call whose string argument is `size` characters long."""
    codec = get_codec("hermes") if fmt == "auto" else get_codec(fmt, variant)
    return codec.render_assistant(None, [ToolCall("write", {"text": "lorem ipsum " * (size // 12)})]).text


def parse_whole(fmt: str, variant: str | None, text: str, calls: int) -> None:
    parsed = get_codec(fmt, variant).parse(text)
    assert len(parsed.tool_calls) == calls and parsed.error is None, parsed.error


def parse_streamed(fmt: str, variant: str | None, text: str, calls: int, chunk: int = 5) -> None:
    stream = get_codec(fmt, variant).stream()
    for start in range(0, len(text), chunk):
        stream.feed(text[start:start + chunk])
    stream.finish()
    parsed = stream.result()
    assert len(parsed.tool_calls) == calls and parsed.error is None, parsed.error


@pytest.mark.parametrize(("fmt", "variant"), FORMATS)
@pytest.mark.parametrize("parse", [parse_whole, parse_streamed], ids=["whole", "streamed"])
def test_reads_grow_linearly_with_the_number_of_calls(fmt: str, variant: str | None, parse: Callable,
                                                      counting: Callable) -> None:
    small, large = many_calls(fmt, variant, 40), many_calls(fmt, variant, 160)
    reads_small = counting(lambda: parse(fmt, variant, small, 40))
    reads_large = counting(lambda: parse(fmt, variant, large, 160))
    assert reads_small >= len(small)
    assert reads_large < LINEAR_BOUND * reads_small, (reads_small, reads_large)


@pytest.mark.parametrize(("fmt", "variant"), FORMATS)
def test_reads_grow_linearly_with_the_length_of_one_streamed_call(fmt: str, variant: str | None,
                                                                  counting: Callable) -> None:
    small, large = one_long_call(fmt, variant, 3000), one_long_call(fmt, variant, 12000)
    reads_small = counting(lambda: parse_streamed(fmt, variant, small, 1))
    reads_large = counting(lambda: parse_streamed(fmt, variant, large, 1))
    assert reads_large < LINEAR_BOUND * reads_small, (reads_small, reads_large)


def test_reads_grow_linearly_for_xml_values_without_the_newline_glue(counting: Callable) -> None:
    def text(count: int) -> str:
        return "".join(f"<tool_call>\n<function=f>\n<parameter=a>\n{i}</parameter></function>\n</tool_call>\n"
                       for i in range(count))

    small, large = text(40), text(160)
    reads_small = counting(lambda: parse_whole("qwen3_xml", None, small, 40))
    reads_large = counting(lambda: parse_whole("qwen3_xml", None, large, 160))
    assert reads_large < LINEAR_BOUND * reads_small, (reads_small, reads_large)


def test_counting_sees_a_quadratic_scan(counting: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard works: with marker positions forgotten between regions (the old scanner), reads grow ~16x."""
    monkeypatch.setattr(base.MarkerFinder, "find", lambda self, text, marker, pos: text.find(marker, pos))
    small, large = many_calls("hermes", None, 40), many_calls("hermes", None, 160)
    reads_small = counting(lambda: parse_whole("hermes", None, small, 40))
    reads_large = counting(lambda: parse_whole("hermes", None, large, 160))
    assert reads_large > 10 * reads_small, (reads_small, reads_large)


def many_malformed_calls(fmt: str, variant: str | None, count: int) -> str:
    """`many_calls` with every argument value replaced by text that is not JSON (nor a Python or Gemma literal), or
    (the XML-like formats) every argument tag broken."""
    calls = [ToolCall(f"tool_{i % 3}", {"city": "PLACEHOLDER"}) for i in range(count)]
    codec = get_codec("hermes") if fmt == "auto" else get_codec(fmt, variant)
    text = codec.render_assistant("Checking.", calls).text
    for quoted in ('"PLACEHOLDER"', "'PLACEHOLDER'", '<|"|>PLACEHOLDER<|"|>', "<escape>PLACEHOLDER<escape>"):
        text = text.replace(quoted, "@bad")
    for tag in ("<parameter=", "<arg_key>", "<｜DSML｜parameter", "<｜DSML｜ parameter", "<|open|>argument"):
        text = text.replace(tag, tag[:-1] + "@bad" + tag[-1])
    return text


def read_all(fmt: str, variant: str | None, text: str, streamed: bool) -> None:
    """Parse without expectations (what malformed text yields is the conformance tests' business)."""
    codec = get_codec(fmt, variant)
    if not streamed:
        codec.parse(text)
        return
    stream = codec.stream()
    for start in range(0, len(text), 5):
        stream.feed(text[start:start + 5])
    stream.finish()


@pytest.mark.parametrize(("fmt", "variant"), FORMATS)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_reads_grow_linearly_with_the_number_of_malformed_calls(fmt: str, variant: str | None, streamed: bool,
                                                                counting: Callable) -> None:
    small, large = many_malformed_calls(fmt, variant, 40), many_malformed_calls(fmt, variant, 160)
    assert "@bad" in small
    reads_small = counting(lambda: read_all(fmt, variant, small, streamed))
    reads_large = counting(lambda: read_all(fmt, variant, large, streamed))
    assert reads_large < LINEAR_BOUND * reads_small, (reads_small, reads_large)


@pytest.mark.parametrize(("fmt", "variant"), CODECS)
def test_no_marker_is_a_prefix_of_another(fmt: str, variant: str | None) -> None:
    """What lets a stream resume a pending region at its marker without searching again (see `Codec.markers`)."""
    codec = get_codec(fmt, variant)
    for mode in (base.CONTENT, base.REASONING):
        markers = list(codec.markers(mode))
        clashes = [(a, b) for a in markers for b in markers if a != b and b.startswith(a)]
        assert clashes == [], (mode, clashes)
