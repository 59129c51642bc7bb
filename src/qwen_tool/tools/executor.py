"""Run a turn's tool calls: validate, then execute with a timeout, capture exceptions, cap results, classify.

Model output is data: a call is dispatched by looking its name up in the offered tools and passing the decoded JSON
arguments as keywords. Nothing is ever `eval`ed.

A tool runs in the sandbox (`tools.sandbox`: a confined child process, killed with everything it forked at the
timeout, its outcome returned as JSON) unless it is marked trusted (`Tool.isolate=False`, as the built-in simulated
suites are) or the executor is told to trust every unmarked tool (`isolate=False`). State changes made by a sandboxed
handler stay in its child, so only stateless tools belong there.

A trusted tool runs in a daemon thread of the caller and the executor stops *waiting* at the timeout; Python cannot
kill a thread, so a hung handler is abandoned (its late result is discarded).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from qwen_tool.codec.types import ToolCall
from qwen_tool.tools.feedback import CallOutcome, FeedbackCategory
from qwen_tool.tools.running import RawOutcome, run_handler
from qwen_tool.tools.sandbox import SandboxedCall, SandboxLimits
from qwen_tool.tools.tool import Tool
from qwen_tool.tools.validation import category_of_problems, validate_arguments


class Executor:
    """Executes validated calls; every call yields a `CallOutcome` and nothing a tool does escapes as an exception.

    Args:
        timeout_s: per-call wall-clock limit (a tool's own `timeout_s` wins).
        max_result_chars: the text sent back to the model is cut to this length.
        concurrent: run the calls of one turn at the same time; turn it off for stateful tools whose calls depend
            on each other's order (they then run one after another, in the order the model wrote them).
        isolate: None (the default) sandboxes every tool not marked trusted (`Tool.isolate=False`); True sandboxes
            every tool, trusted or not; False trusts every unmarked tool (tools with `isolate=True` are still
            sandboxed). The timeout includes the sandbox's start (a fresh interpreter takes about 0.1 s).
        memory_limit_mb, cpu_limit_s: the sandbox's limits (address space beyond what its process holds at start).
    """

    def __init__(
        self,
        timeout_s: float = 10.0,
        max_result_chars: int = 4000,
        concurrent: bool = True,
        isolate: bool | None = None,
        memory_limit_mb: int = 512,
        cpu_limit_s: int = 10,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_result_chars = max_result_chars
        self.concurrent = concurrent
        self.isolate = isolate
        self.memory_limit_mb = memory_limit_mb
        self.cpu_limit_s = cpu_limit_s

    def execute(
        self, calls: Sequence[ToolCall], tools: Mapping[str, Tool], concurrent: bool | None = None
    ) -> list[CallOutcome]:
        """Outcomes in the order of `calls`; rejected calls (unknown tool, bad arguments) never reach a handler.

        `concurrent` overrides the executor's setting for this turn (stateful suites pass False).
        """
        concurrent = self.concurrent if concurrent is None else concurrent
        outcomes: list[CallOutcome | None] = [None] * len(calls)
        runnable: list[tuple[int, Tool]] = []
        for index, call in enumerate(calls):
            rejection = self.reject(call, tools)
            if rejection is not None:
                outcomes[index] = rejection
            else:
                runnable.append((index, tools[call.name]))
        if concurrent and len(runnable) > 1:
            started = [(index, tool, time.perf_counter(), self._start(tool, calls[index])) for index, tool in runnable]
            for index, tool, start, waiter in started:
                outcomes[index] = self._finish(calls[index], tool, start, waiter)
        else:
            for index, tool in runnable:
                start = time.perf_counter()
                outcomes[index] = self._finish(calls[index], tool, start, self._start(tool, calls[index]))
        return [outcome for outcome in outcomes if outcome is not None]

    def reject(self, call: ToolCall, tools: Mapping[str, Tool]) -> CallOutcome | None:
        """The outcome of a call that must not run (unknown tool, arguments violating the schema), else None."""
        if call.name not in tools:
            message = f"unknown tool '{call.name}'; available tools: {sorted(tools)}"
            return CallOutcome(call, FeedbackCategory.TOOL_HALLUCINATION, f"Error: {message}",
                               "ToolNotFound", message)
        if not isinstance(call.arguments, dict):
            message = f"arguments of '{call.name}' must be a JSON object, got {type(call.arguments).__name__}"
            return CallOutcome(call, FeedbackCategory.CALL_FAILURE, f"Error: {message}", "InvalidArguments", message)
        problems = validate_arguments(tools[call.name], call.arguments)
        if problems:
            message = "; ".join(p.message for p in problems)
            return CallOutcome(call, category_of_problems(problems), f"Error: {message}", "ValidationError", message)
        return None

    def sandboxes(self, tool: Tool) -> bool:
        """Whether `tool` runs in the sandbox: marked so, or not marked trusted while the executor trusts nothing."""
        if tool.isolate is True or self.isolate is True:
            return True
        return tool.isolate is None and self.isolate is None

    def _start(self, tool: Tool, call: ToolCall) -> Any:
        """Launch the handler; returns something `_finish` can turn into a `RawOutcome` before a deadline."""
        if tool.handler is None:
            return RawOutcome("error", error_type="ToolNotImplemented",
                              error_message=f"tool '{tool.name}' has no handler")
        if self.sandboxes(tool):
            limits = SandboxLimits(memory_mb=self.memory_limit_mb, cpu_s=self.cpu_limit_s)
            try:
                return SandboxedCall(tool.name, tool.handler, dict(call.arguments), limits)
            except OSError as exc:  # no process, pipe or folder to be had (limits of the machine)
                return RawOutcome("error", error_type="SandboxUnavailable", instability=True,
                                  error_message=f"cannot start the sandbox: {exc}")
        box: list[RawOutcome] = []
        thread = threading.Thread(target=_run_into, args=(tool.handler, dict(call.arguments), box), daemon=True)
        thread.start()
        return thread, box

    def _finish(self, call: ToolCall, tool: Tool, start: float, waiter: Any) -> CallOutcome:
        timeout = tool.timeout_s if tool.timeout_s is not None else self.timeout_s
        remaining = max(0.0, start + timeout - time.perf_counter())
        if isinstance(waiter, RawOutcome):
            raw = waiter
        elif isinstance(waiter, tuple):
            thread, box = waiter
            thread.join(remaining)
            raw = box[0] if box else RawOutcome("timeout")
        else:
            raw = waiter.wait(remaining)
        if raw.status == "timeout":
            message = f"'{tool.name}' did not answer within {timeout:g} s"
            raw = RawOutcome("timeout", error_type="Timeout", error_message=message, instability=True)
        return self._outcome(call, raw, time.perf_counter() - start)

    def _outcome(self, call: ToolCall, raw: RawOutcome, elapsed: float) -> CallOutcome:
        if raw.status == "ok":
            try:
                text = raw.value if isinstance(raw.value, str) else json.dumps(raw.value, ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                message = f"result of '{call.name}' is not JSON-serialisable ({exc})"
                return CallOutcome(call, FeedbackCategory.OTHER, f"Error: {message}", "UnserialisableResult",
                                   message, elapsed)
            return CallOutcome(call, FeedbackCategory.OK, self._cap(text), elapsed_s=elapsed, result=raw.value)
        category = raw.category or (FeedbackCategory.TOOL_INSTABILITY if raw.instability
                                    else FeedbackCategory.CALL_FAILURE)
        message = raw.error_message or ""
        content = raw.content or (f"Error: {raw.error_type}: {message}" if message else f"Error: {raw.error_type}")
        content = self._cap(content)
        return CallOutcome(call, category, content, raw.error_type, message, elapsed)

    def _cap(self, text: str) -> str:
        if len(text) <= self.max_result_chars:
            return text
        return text[: self.max_result_chars] + f"... [truncated {len(text) - self.max_result_chars} characters]"


def _run_into(handler: Any, arguments: dict[str, Any], box: list[RawOutcome]) -> None:
    box.append(run_handler(handler, arguments))
