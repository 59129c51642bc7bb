"""`auto`: pick the format from the earliest distinctive marker outside `<think>`, then parse with that codec.

Deciding by the *earliest* marker makes the choice stable as text grows, so the streaming parser can buffer until it
is sure, then hand everything to the chosen codec and stay equal to the whole-text parse. Text with no marker is read
as Hermes (content and `<think>` only). Rendering uses Hermes.
"""

from __future__ import annotations

import re

from qwen_tool.codec.base import (
    Codec,
    CodecError,
    StartState,
    StreamParser,
    resolve_start,
    skip_ws,
    worth_rescanning,
)
from qwen_tool.codec.hermes import HermesCodec
from qwen_tool.codec.types import ParsedOutput

DISTINCT = [
    ("<|channel|>", "harmony"), ("<|start|>assistant", "harmony"),
    ("<｜tool▁call", "deepseek"), ("<｜DSML｜", "deepseek_dsml"), ("</｜DSML｜", "deepseek_dsml"),
    ("<|tool_call_begin|>", "kimi_k2"), ("<|tool_calls_section_begin|>", "kimi_k2"),
    ("<|tool_call_argument_begin|>", "kimi_k2"),
    ("<|open|>", "kimi_k3"), ("<|close|>", "kimi_k3"),
    ("<|tool_call>", "gemma4"), ("<|channel>", "gemma4"), ("<start_function_call>", "functiongemma"),
    ("[TOOL_CALLS]", "mistral"),
    ("<|python_tag|>", "llama3_json"), ('{"name"', "llama3_json"),
    ("✿FUNCTION✿", "react"), ("Action:", "react"),
    ("<tool_call>", "?"), ("<function=", "qwen3_xml"),  # a Qwen3-Coder call whose <tool_call> opener was dropped
]
PYTHONIC = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(")
LONGEST = max(len(marker) for marker, _ in DISTINCT) + 12
THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S)


def detect(text: str, final: bool = True) -> str | None:
    """Format name of the earliest marker; None while streaming and not yet sure; "hermes" for plain text."""
    visible = THINK.sub(lambda m: " " * len(m.group(0)), text)
    best: tuple[int, str] | None = None
    for marker, fmt in DISTINCT:
        idx = visible.find(marker)
        if idx >= 0 and (best is None or idx < best[0]):
            best = (idx, fmt)
    match = PYTHONIC.search(visible, 0, best[0] if best else len(visible))
    if match:
        best = (match.start(), "pythonic")
    if best is None or (not final and best[0] + LONGEST > len(text)):
        return "hermes" if final else None
    idx, fmt = best
    if fmt == "?":  # <tool_call> is shared by Hermes, Qwen3 XML and GLM: the next character decides
        body = skip_ws(text, idx + len("<tool_call>"))
        if body >= len(text):
            return "hermes" if final else None
        if text.startswith("<function=", body):
            return "qwen3_xml"
        return "hermes" if text[body] == "{" else "glm"
    return fmt


class AutoCodec(Codec):
    name = "auto"
    call_markers = tuple(marker for marker, _ in DISTINCT) + ("[",)

    def __init__(self, variant: str | None = None, tool_rendering: str = "json") -> None:
        super().__init__(variant, tool_rendering)
        self._hermes = HermesCodec(tool_rendering=tool_rendering)

    def start_state(self, prompt: str) -> StartState:
        """Harmony's open message when the prompt ends in one, else an open think block."""
        from qwen_tool.codec.harmony import HarmonyCodec

        harmony = HarmonyCodec().start_state(prompt)
        return harmony if harmony.lead else super().start_state(prompt)

    def parse(self, text: str, tools: list[dict] | None = None, *, in_reasoning: bool = False,
              keep_malformed: bool = False, start: StartState | None = None) -> ParsedOutput:
        from qwen_tool.codec import get_codec

        begin = resolve_start(in_reasoning, start)
        return get_codec(detect(begin.lead + text) or "hermes").parse(text, tools, keep_malformed=keep_malformed,
                                                                      start=begin)

    def stream(self, tools: list[dict] | None = None, *, in_reasoning: bool = False,
               start: StartState | None = None) -> StreamParser:
        return _AutoStream(self, tools, resolve_start(in_reasoning, start))

    def declarations(self, tools: list[dict]) -> str:
        return self._hermes.declarations(tools)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        return self._hermes.tools_prompt(tools, declarations)

    def render_calls(self, calls):  # noqa: ANN001, ANN201 - delegates with the same signature
        return self._hermes.render_calls(calls)

    def render_tool_result(self, result: dict) -> str:
        return self._hermes.render_tool_result(result)


class _AutoStream(StreamParser):
    """Buffers until `detect` is sure, then delegates to the chosen codec's stream."""

    def __init__(self, codec: Codec, tools: list[dict] | None, start: StartState) -> None:
        super().__init__(codec, tools, start=start)
        self._tools, self._start = tools, start
        self._inner: StreamParser | None = None

    def _start_inner(self, fmt: str) -> list[dict]:
        from qwen_tool.codec import get_codec

        self._inner = get_codec(fmt).stream(self._tools, start=self._start)
        return self._inner.feed(self.buffer[len(self._start.lead):])  # the buffer starts with the lead

    def feed(self, delta_text: str) -> list[dict]:
        if self.finished:
            raise CodecError("feed() after finish(); fix: start a new stream for a new output")
        if self._inner is not None:
            return self._inner.feed(delta_text)
        self.arrived.append(delta_text)
        self.arrived_size += len(delta_text)
        if not worth_rescanning(len(self.buffer), self.arrived_size):
            return []  # `detect` reads the whole buffer: on long undecided text, only as it grows by an eighth
        self.take_arrived()
        fmt = detect(self.buffer, final=False)
        return self._start_inner(fmt) if fmt else []

    def finish(self) -> list[dict]:
        self.take_arrived()
        deltas = [] if self._inner is not None else self._start_inner(detect(self.buffer) or "hermes")
        self.finished = True
        return deltas + self._inner.finish()  # type: ignore[union-attr]

    def result(self) -> ParsedOutput:
        return self._inner.result() if self._inner is not None else ParsedOutput()
