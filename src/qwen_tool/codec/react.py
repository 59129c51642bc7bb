"""ReAct (ToolLLaMA, Qwen-Agent's older prompt): `Thought: … Action: name Action Input: {json}`, answers after
`Final Answer:`; and Qwen-Agent's `qwen` style: `✿FUNCTION✿: name ✿ARGS✿: {json}`, `✿RESULT✿`, `✿RETURN✿`.

`Thought:` text is reasoning. An `Observation:` / `✿RESULT✿` written by the model is the environment's part: it and
everything after it are dropped (engines stop there). Parsing accepts both styles; the variant picks the rendering.
"""

from __future__ import annotations

from qwen_tool.codec.base import (
    CONTENT,
    REASONING,
    Codec,
    Handler,
    Region,
    Rendered,
    ScanState,
    TextBuilder,
    add_json_object,
    call_from_obj,
    call_region,
    decode_json,
    dumps,
    function_of,
    glued,
    result_text,
    skip_ws,
    waiting,
)
from qwen_tool.codec.types import ToolCall

THOUGHT, ACTION, ACTION_INPUT, FINAL, OBSERVATION = "Thought:", "Action:", "Action Input:", "Final Answer:", \
    "Observation:"
FN, FN_ARGS, FN_RESULT, FN_RETURN = "✿FUNCTION✿", "✿ARGS✿", "✿RESULT✿", "✿RETURN✿"


class ReactCodec(Codec):
    name = "react"
    call_markers = (ACTION, FN)
    think_tags = False
    variants = ("react", "qwen")
    default_variant = "react"

    def markers(self, mode: str) -> dict[str, Handler]:
        table: dict[str, Handler] = {
            ACTION: self._action, FN: self._function,
            FINAL: self._to_content(FINAL), FN_RETURN: self._to_content(FN_RETURN),
            OBSERVATION: self._rest_dropped, FN_RESULT: self._rest_dropped,
        }
        if mode == CONTENT:
            table[THOUGHT] = lambda text, pos, final, state: glued(text, pos + len(THOUGHT), final, 1, REASONING, " ")
        return table

    @staticmethod
    def _to_content(marker: str) -> Handler:
        def handler(text: str, pos: int, final: bool, state: ScanState) -> Region | None:
            end = pos + len(marker)
            if end == len(text) and not final:
                return None
            if text.startswith(":", end):  # Qwen-Agent writes "✿RETURN✿:"
                end += 1
            return glued(text, end, final, 1, CONTENT, " ")
        return handler

    @staticmethod
    def _rest_dropped(text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        return Region(len(text), mode=CONTENT) if final else None

    def _read(self, text: str, pos: int, final: bool, head: str, args_marker: str) -> Region | None:
        q = pos + len(head)
        if text.startswith(":", q):
            q += 1
        args_at = text.find(args_marker, q)
        if args_at < 0:
            return waiting(text, pos, final, head)
        name = text[q:args_at].strip()
        body = args_at + len(args_marker)
        if text.startswith(":", body):
            body += 1
        body = skip_ws(text, body)
        decoded = decode_json(text, body) if body < len(text) else None
        if decoded is None:
            if not final or text.startswith("{", body) or body >= len(text):
                return waiting(text, pos, final, head)
            line_end = text.find("\n", body)
            end = len(text) if line_end < 0 else line_end
            return Region(end, mode=CONTENT, error=f"{head} at char {pos}: the input is not JSON; the call was dropped")
        arguments, end = decoded
        return call_region(end, call_from_obj({"name": name, "arguments": arguments}), head, pos,
                           f"{head} at char {pos}: input is not an object; call dropped", mode=CONTENT)

    def _action(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        return self._read(text, pos, final, ACTION, ACTION_INPUT)

    def _function(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        return self._read(text, pos, final, FN, FN_ARGS)

    def declarations(self, tools: list[dict]) -> str:
        return "\n\n".join(
            f"{function_of(tool)['name']}: {function_of(tool).get('description', '')} "
            f"Parameters: {dumps(function_of(tool).get('parameters') or {})}" for tool in tools)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        names = ", ".join(function_of(tool)["name"] for tool in tools)
        if self.variant == "qwen":
            return (f"# Tools\n\nYou can use these tools:\n\n{declarations}\n\n"
                    f"To use a tool, write:\n\n{FN}: the tool's name, one of [{names}]\n{FN_ARGS}: its input as JSON\n"
                    f"{FN_RESULT}: the result it returns\n{FN_RETURN}: your reply based on the result")
        return (f"Answer the question as well as you can. You can use these tools:\n\n{declarations}\n\n"
                "Use this layout:\n\nQuestion: the question to answer\nThought: what to do next\n"
                f"Action: the tool to use, one of [{names}]\nAction Input: the tool's input as a JSON object\n"
                "Observation: the tool's result\n... (Thought/Action/Action Input/Observation may repeat)\n"
                "Thought: I now know the final answer\nFinal Answer: the answer to the question")

    def render_reasoning(self, reasoning: str) -> str:
        return f"{THOUGHT} {reasoning}\n"

    def render_assistant(self, content: str | None, tool_calls: list[ToolCall] | None = None,
                         reasoning: str | None = None) -> Rendered:
        builder = TextBuilder()
        if reasoning:
            builder.add(self.render_reasoning(reasoning))
        if tool_calls:
            if content:
                builder.add(content + "\n")
            builder.add_rendered(self.render_calls(tool_calls))
        elif content:
            builder.add((f"{FN_RETURN}: " if self.variant == "qwen" else f"{FINAL} ") + content)
        return builder.build()

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        head, args = (f"{FN}: ", f"\n{FN_ARGS}: ") if self.variant == "qwen" else (f"{ACTION} ", f"\n{ACTION_INPUT} ")
        builder = TextBuilder()
        for index, call in enumerate(calls):
            if index:
                builder.add("\n")
            builder.add(head).add(call.name, "name", index).add(args)
            add_json_object(builder, call.arguments, index)
        return builder.build()

    def render_tool_result(self, result: dict) -> str:
        marker = f"{FN_RESULT}:" if self.variant == "qwen" else OBSERVATION
        return f"{marker} {result_text(result)}"
