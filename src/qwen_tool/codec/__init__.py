"""Tool-call wire formats: render tools, calls and results into model text, and parse model text back.

`get_codec(name)` returns the codec of a format family; `available_formats()` lists them. Every format converts to and
from the canonical OpenAI message model (`ToolCall`, `ParsedOutput`) here, and nowhere else.
"""

from __future__ import annotations

from qwen_tool.codec.base import TOOL_RENDERINGS, Codec, CodecError, Rendered, Span, StreamParser
from qwen_tool.codec.types import ParsedOutput, ToolCall

__all__ = ["TOOL_RENDERINGS", "Codec", "CodecError", "ParsedOutput", "Rendered", "Span", "StreamParser", "ToolCall",
           "available_formats", "get_codec"]


def _registry() -> dict[str, type[Codec]]:
    from qwen_tool.codec.auto import AutoCodec
    from qwen_tool.codec.deepseek import DeepSeekCodec
    from qwen_tool.codec.deepseek_dsml import DeepSeekDsmlCodec
    from qwen_tool.codec.gemma import FunctionGemmaCodec, Gemma4Codec
    from qwen_tool.codec.glm import GlmCodec
    from qwen_tool.codec.harmony import HarmonyCodec
    from qwen_tool.codec.hermes import HermesCodec
    from qwen_tool.codec.kimi import KimiK2Codec, KimiK3Codec
    from qwen_tool.codec.llama3 import Llama3JsonCodec
    from qwen_tool.codec.mistral import MistralCodec
    from qwen_tool.codec.pythonic import PythonicCodec
    from qwen_tool.codec.qwen3_xml import Qwen3XmlCodec
    from qwen_tool.codec.react import ReactCodec

    classes: list[type[Codec]] = [HermesCodec, Qwen3XmlCodec, Llama3JsonCodec, PythonicCodec, MistralCodec,
                                  ReactCodec, GlmCodec, DeepSeekCodec, DeepSeekDsmlCodec, KimiK2Codec, KimiK3Codec,
                                  HarmonyCodec,
                                  Gemma4Codec, FunctionGemmaCodec, AutoCodec]
    return {cls.name: cls for cls in classes}


def available_formats() -> list[str]:
    """Names accepted by `get_codec` (`auto` included)."""
    return sorted(_registry())


def get_codec(name: str, variant: str | None = None, tool_rendering: str = "json") -> Codec:
    """The codec of a format family; `variant` picks a generation where a family has several (e.g. mistral v3);
    `tool_rendering` how its prompts list tool declarations (`TOOL_RENDERINGS`: json schemas, or compact signatures)."""
    registry = _registry()
    if name not in registry:
        raise CodecError(f"unknown tool-call format {name!r}; fix: use one of {sorted(registry)}")
    return registry[name](variant, tool_rendering)
