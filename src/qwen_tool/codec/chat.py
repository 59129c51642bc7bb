"""Render a whole conversation with tools for any tokenizer, with the offsets SFT needs to weight and mask tokens.

Two paths:
- the model's own template, when its chat template takes `tools` (`apply_chat_template(tools=...)`); turn offsets come
  from rendering growing prefixes of the conversation, so they are exact or we refuse;
- otherwise OUR template for the model's wire format, in the tokenizer's role markup (ChatML or Llama 3), written
  piece by piece so every offset is known. It is prefix-stable by construction: reasoning of earlier turns is kept
  and nothing is rewritten, so a prefix rendered with the generation prompt is a character prefix of the whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwen_tool.codec.base import Codec, CodecError, Span, TextBuilder, dumps, normalise_calls


@dataclass
class Segment:
    """Characters `[start, end)` of `RenderedChat.text` that one message produced.

    `trainable` is True exactly for the assistant-authored part of an assistant turn: its body and end-of-turn marker,
    not the role header. `spans` (absolute offsets into the text) point at each tool name, argument key, argument
    value (as rendered: JSON for JSON formats, raw text for XML-like ones) and whole arguments object.
    """

    message_index: int
    role: str
    start: int
    end: int
    trainable: bool
    spans: list[Span] = field(default_factory=list)


@dataclass
class RenderedChat:
    text: str
    segments: list[Segment]
    template: str
    """"ours:<format>" or "model" (the tokenizer's own chat template)."""

    def trainable_ranges(self) -> list[tuple[int, int]]:
        return [(s.start, s.end) for s in self.segments if s.trainable]

    def spans(self) -> list[Span]:
        return [span for s in self.segments for span in s.spans]


@dataclass(frozen=True)
class Markup:
    """Role markup of a model family: turn header, end-of-turn marker, glue after it, text before the first turn."""

    name: str
    header: str  # format with {role}
    end: str
    glue: str
    begin: str = ""
    tool_role: str | None = None
    """Role that carries tool results in this markup (None: the codec's choice)."""


CHATML = Markup("chatml", "<|im_start|>{role}\n", "<|im_end|>", "\n")
LLAMA3 = Markup("llama3", "<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>", "", "<|begin_of_text|>",
                tool_role="ipython")


def markup_for(tokenizer: Any) -> Markup:
    """ChatML unless the tokenizer speaks Llama 3 headers."""
    if tokenizer is None:
        return CHATML
    template = getattr(tokenizer, "chat_template", None) or ""
    vocab = getattr(tokenizer, "get_vocab", dict)()
    if "<|start_header_id|>" in template or ("<|start_header_id|>" in vocab and "<|im_start|>" not in vocab):
        return LLAMA3
    return CHATML


def model_template_takes_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def _codec(fmt: str | Codec) -> Codec:
    if isinstance(fmt, Codec):
        return fmt
    from qwen_tool.codec import get_codec

    return get_codec(fmt)


def _check_messages(messages: list[dict]) -> None:
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise CodecError(f"message {index} has no valid role (system/user/assistant/tool): {message!r:.120}; "
                             "fix: use OpenAI chat messages")


def render_conversation(tokenizer: Any, messages: list[dict], tools: list[dict] | None, fmt: str | Codec,
                        add_generation_prompt: bool = False, *, use_model_template: bool | None = None
                        ) -> RenderedChat:
    """Render `messages` (OpenAI format, with `tool_calls` and `tool` messages) and `tools` as one string.

    `use_model_template`: None picks the tokenizer's own template when it takes tools, else ours for `fmt`. A codec
    whose `tool_rendering` is not json always gets ours: a model's own template writes the tools its own way.
    """
    _check_messages(messages)
    rendering = fmt.tool_rendering if isinstance(fmt, Codec) else "json"
    if use_model_template is None:
        use_model_template = rendering == "json" and tokenizer is not None and model_template_takes_tools(tokenizer)
    if use_model_template:
        if rendering != "json":
            raise CodecError(f"the model's own chat template writes the tools its own way, not as tool_rendering "
                             f"{rendering!r}; fix: pass use_model_template=False, or use tool_rendering json")
        return _render_with_model_template(tokenizer, messages, tools, fmt, add_generation_prompt)
    return _render_ours(markup_for(tokenizer), messages, tools, _codec(fmt), add_generation_prompt)


def render_prompt(tokenizer: Any, messages: list[dict], tools: list[dict] | None, fmt: str | Codec,
                  **kwargs: Any) -> str:
    """The conversation plus the assistant generation prompt: what a model continues at inference."""
    return render_conversation(tokenizer, messages, tools, fmt, add_generation_prompt=True, **kwargs).text


def _system_text(messages: list[dict], tools: list[dict] | None, codec: Codec) -> str:
    parts = []
    if messages and messages[0]["role"] == "system" and messages[0].get("content"):
        parts.append(_text(messages[0]["content"]))
    if tools:
        parts.append(codec.render_tools(tools))
    return "\n\n".join(parts)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _render_ours(markup: Markup, messages: list[dict], tools: list[dict] | None, codec: Codec,
                 add_generation_prompt: bool) -> RenderedChat:
    out = TextBuilder()
    segments: list[Segment] = []

    def plain_turn(index: int, role: str, body: str) -> None:
        start = out.length
        out.add(markup.header.format(role=role) + body + markup.end + markup.glue)
        segments.append(Segment(index, role, start, out.length, False))

    out.add(markup.begin)
    system = _system_text(messages, tools, codec)
    has_system = bool(messages) and messages[0]["role"] == "system"
    if system or has_system:
        plain_turn(0 if has_system else -1, "system", system)
    index = 1 if has_system else 0
    tool_role = markup.tool_role or codec.tool_result_role
    while index < len(messages):
        message = messages[index]
        role = message["role"]
        if role == "assistant":
            header_start = out.length
            out.add(markup.header.format(role="assistant"))
            segments.append(Segment(index, role, header_start, out.length, False))
            rendered = codec.render_assistant(_text(message.get("content")) or None,
                                              normalise_calls(message.get("tool_calls")),
                                              message.get("reasoning_content") or message.get("reasoning"))
            body_start = out.length
            out.add_rendered(rendered)
            out.add(markup.end)
            spans = [span.shifted(body_start) for span in rendered.spans]
            segments.append(Segment(index, role, body_start, out.length, True, spans))
            if markup.glue:
                glue_start = out.length
                out.add(markup.glue)
                segments.append(Segment(index, role, glue_start, out.length, False))
            index += 1
        elif role == "tool":
            first = index
            while index < len(messages) and messages[index]["role"] == "tool":
                index += 1
            start = out.length
            out.add(markup.header.format(role=tool_role))
            for position in range(first, index):
                if position > first:
                    out.add(codec.tool_results_joiner)
                out.add(codec.render_tool_result(messages[position]))
                segments.append(Segment(position, "tool", start, out.length, False))
                start = out.length
            out.add(markup.end + markup.glue)
            segments[-1].end = out.length
        else:
            if role == "system":
                raise CodecError(f"message {index} is a system message after the start; fix: put it first")
            plain_turn(index, role, _text(message.get("content")))
            index += 1
    if add_generation_prompt:
        start = out.length
        out.add(markup.header.format(role="assistant"))
        segments.append(Segment(len(messages), "assistant", start, out.length, False))
    return RenderedChat(out.build().text, segments, f"ours:{codec.name}")


def _apply(tokenizer: Any, messages: list[dict], tools: list[dict] | None, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def _render_with_model_template(tokenizer: Any, messages: list[dict], tools: list[dict] | None, fmt: str | Codec,
                                add_generation_prompt: bool) -> RenderedChat:
    """Offsets from growing prefixes; refuse (with the fix) when the template rewrites earlier turns."""
    full = _apply(tokenizer, messages, tools, add_generation_prompt)
    segments: list[Segment] = []
    cursor = 0
    end_marker = getattr(tokenizer, "eos_token", None) or ""
    for index, message in enumerate(messages):
        prefix = _apply(tokenizer, messages[: index + 1], tools, False)
        if message["role"] == "assistant":
            head = _apply(tokenizer, messages[:index], tools, True)
            if not (full.startswith(head) and prefix.startswith(head) and head.startswith(full[:cursor])):
                raise CodecError("the model's chat template rewrites earlier turns, so turn offsets are not exact; "
                                 "fix: pass use_model_template=False to use our template for this model's format")
            segments.append(Segment(index, "assistant", cursor, len(head), False))
            body = prefix[len(head):]
            cut = body.rfind(end_marker) + len(end_marker) if end_marker and end_marker in body else len(body)
            spans = _locate_spans(prefix, len(head), message)
            segments.append(Segment(index, "assistant", len(head), len(head) + cut, True, spans))
            if cut < len(body):
                segments.append(Segment(index, "assistant", len(head) + cut, len(prefix), False))
        else:
            if not full.startswith(prefix):
                raise CodecError("the model's chat template rewrites earlier turns, so turn offsets are not exact; "
                                 "fix: pass use_model_template=False to use our template for this model's format")
            segments.append(Segment(index, message["role"], cursor, len(prefix), False))
        cursor = len(prefix)
    if cursor < len(full):
        segments.append(Segment(len(messages), "assistant", cursor, len(full), False))
    return RenderedChat(full, segments, "model")


def _locate_spans(text: str, start: int, message: dict) -> list[Span]:
    """Find each call's name, keys and values in order in the model's rendering (JSON or raw text forms)."""
    spans: list[Span] = []
    cursor = start
    for call_index, call in enumerate(normalise_calls(message.get("tool_calls"))):
        at = text.find(call.name, cursor)
        if at < 0:
            continue
        spans.append(Span("name", at, at + len(call.name), call_index))
        cursor = at + len(call.name)
        for key, value in call.arguments.items():
            key_at = text.find(key, cursor)
            if key_at < 0:
                break
            spans.append(Span("arg_key", key_at, key_at + len(key), call_index))
            cursor = key_at + len(key)
            for form in (dumps(value), value if isinstance(value, str) else None):
                if form and (value_at := text.find(form, cursor)) >= 0:
                    spans.append(Span("arg_value", value_at, value_at + len(form), call_index))
                    cursor = value_at + len(form)
                    break
    return spans

