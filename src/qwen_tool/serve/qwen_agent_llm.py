"""A Qwen-Agent LLM (`model_type="qwen_tool_oai"`) that reads tool calls from any OpenAI-compatible server.

Qwen-Agent's stock `oai` class reads only `content`/`reasoning_content` in no-stream and delta-stream modes, and
merges streamed call fragments by `id`; servers with a tool parser (vLLM, SGLang) put calls in `tool_calls`, so agents
stalled. Here every response goes through the codec bridge (`qwen_tool.codec.openai`): calls from `tool_calls`
(merged by `index`) and calls written in `content` (any format, `tool_format` in the config, default `auto`) become
the canonical message, then the text of the call format Qwen-Agent's own prompt parses (`nous` → Hermes,
`qwen` → ✿FUNCTION✿). Importing this module registers the class.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

from openai import OpenAIError
from qwen_agent.llm.base import ModelServiceError, register_llm
from qwen_agent.llm.function_calling import simulate_response_completion_with_chat
from qwen_agent.llm.oai import TextChatAtOAI
from qwen_agent.llm.schema import ASSISTANT, Message

from qwen_tool.codec import get_codec
from qwen_tool.codec.base import normalise_calls
from qwen_tool.codec.openai import StreamAssembler, normalise_response

MODEL_TYPE = "qwen_tool_oai"


@register_llm(MODEL_TYPE)
class QwenToolChatAtOAI(TextChatAtOAI):
    """Stock OpenAI-compatible client plus tool calls in every mode (no-stream, stream, delta-stream)."""

    def __init__(self, cfg: dict | None = None) -> None:
        cfg = cfg or {}
        prompt_type = (cfg.get("generate_cfg") or {}).get("fncall_prompt_type", "nous")
        super().__init__(cfg)
        self.tool_format = cfg.get("tool_format", "auto")
        self.agent_codec = get_codec("react", "qwen") if prompt_type == "qwen" else get_codec("hermes")

    def _calls_text(self, calls: list) -> str:
        return self.agent_codec.render_calls(calls).text if calls else ""

    def _join(self, content: str, calls: list) -> str:
        calls_text = self._calls_text(calls)
        return f"{content}\n{calls_text}" if content and calls_text else content or calls_text

    def _chat_with_functions(self, messages: list[Message], functions: list[dict], stream: bool, delta_stream: bool,
                             generate_cfg: dict, lang: str) -> list[Message] | Iterator[list[Message]]:
        """The stock class refuses delta-stream with functions; ours emits each call whole, so it can parse it."""
        if not delta_stream:
            return super()._chat_with_functions(messages, functions, stream, delta_stream, generate_cfg, lang)
        generate_cfg = copy.deepcopy(generate_cfg)
        for key in ("parallel_function_calls", "function_choice", "thought_in_content"):
            generate_cfg.pop(key, None)
        messages = simulate_response_completion_with_chat(messages)
        return self._chat(messages, stream=True, delta_stream=True, generate_cfg=generate_cfg)

    def _chat_no_stream(self, messages: list[Message], generate_cfg: dict) -> list[Message]:
        payload = self.convert_messages_to_dicts(messages)
        try:
            response = self._chat_complete_create(model=self.model, messages=payload, stream=False, **generate_cfg)
        except OpenAIError as ex:
            raise ModelServiceError(exception=ex) from ex
        message = normalise_response(response, self.tool_format)
        text = self._join(message.get("content") or "", normalise_calls(message.get("tool_calls")))
        return [Message(role=ASSISTANT, content=text, reasoning_content=message.get("reasoning_content") or "")]

    def _chat_stream(self, messages: list[Message], delta_stream: bool, generate_cfg: dict) -> Iterator[list[Message]]:
        payload = self.convert_messages_to_dicts(messages)
        try:
            response = self._chat_complete_create(model=self.model, messages=payload, stream=True, **generate_cfg)
            assembler = StreamAssembler(self.tool_format)
            for chunk in response:
                deltas = assembler.add_chunk(chunk)
                if delta_stream:
                    yield from self._delta_messages(deltas)
                else:
                    yield [self._snapshot(assembler, complete_only=True)]
            tail = assembler.finish()
            if delta_stream:
                yield from self._delta_messages(tail)
                calls_text = self._calls_text(assembler.calls())
                if calls_text:  # each call once, whole, after its fragments were merged by index
                    yield [Message(role=ASSISTANT, content=("\n" if assembler.content else "") + calls_text)]
            else:
                yield [self._snapshot(assembler, complete_only=False)]
        except OpenAIError as ex:
            raise ModelServiceError(exception=ex) from ex

    @staticmethod
    def _delta_messages(deltas: list[dict]) -> Iterator[list[Message]]:
        for delta in deltas:
            if delta.get("content") or delta.get("reasoning_content"):
                yield [Message(role=ASSISTANT, content=delta.get("content", ""),
                               reasoning_content=delta.get("reasoning_content", ""))]

    def _snapshot(self, assembler: StreamAssembler, complete_only: bool) -> Message:
        text = self._join(assembler.content.strip(), assembler.calls(complete_only))
        return Message(role=ASSISTANT, content=text, reasoning_content=assembler.reasoning.strip())
