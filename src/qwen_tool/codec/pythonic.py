"""Pythonic calls (BFCL, NexusRaven, Llama 4, OLMo): `[f(a=1), g(b='x')]`, optionally inside
`<|python_start|>...<|python_end|>`.

The list is parsed with `ast.parse` and walked: only calls with keyword arguments whose values are literals are
accepted; nothing is evaluated. A bracketed expression that is not such a list stays content.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from qwen_tool.codec.base import (
    CONTENT,
    Codec,
    Handler,
    Region,
    Rendered,
    ScanState,
    Span,
    TextBuilder,
    awaiting_anew,
    drop,
    dumps,
    function_of,
    result_text,
    waiting,
)
from qwen_tool.codec.types import ToolCall
from qwen_tool.codec.values import MAX_DEPTH, TOO_DEEP, Refused, join_surrogate_pairs

CALL_START = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(")
CALL_PREFIX = re.compile(r"\[\s*(?:[A-Za-z_][\w.]*\s*)?$")
NAMED_LITERALS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}


class _NotLiteral(ValueError):
    pass


class _Refused(ValueError):
    """A literal that reads fine but cannot be an argument (a lone surrogate, from an escape such as `'\\ud800'`)."""


def literal(node: ast.AST) -> Any:
    """The value of a literal expression node; raises `_NotLiteral` for anything else (no evaluation)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        value = join_surrogate_pairs(node.value) if isinstance(node.value, str) else node.value
        if isinstance(value, Refused):
            raise _Refused(value.reason)
        return value
    if isinstance(node, ast.Name) and node.id in NAMED_LITERALS:
        return NAMED_LITERALS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [literal(item) for item in node.elts]
    if isinstance(node, ast.Dict) and all(key is not None for key in node.keys):
        return {literal(key): literal(value) for key, value in zip(node.keys, node.values, strict=True)}
    raise _NotLiteral(ast.dump(node)[:80])


def dotted_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return dotted_name(node.value) + "." + node.attr
    raise _NotLiteral("call target is not a name")


def calls_from_source(source: str) -> list[ToolCall] | Refused | None:
    """`[f(a=1), ...]` → calls; None when the source is not exactly a list of keyword-literal calls; `Refused` when it
    is, but a value cannot be an argument."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return None
    if not isinstance(tree.body, ast.List) or not tree.body.elts:
        return None
    calls = []
    try:
        for element in tree.body.elts:
            if not isinstance(element, ast.Call) or element.args:
                return None
            arguments = {}
            for keyword in element.keywords:
                if keyword.arg is None:
                    return None
                arguments[keyword.arg] = literal(keyword.value)
            calls.append(ToolCall(dotted_name(element.func), arguments))
    except _Refused as refused:
        return Refused(str(refused))
    except (_NotLiteral, TypeError, RecursionError):
        return None
    return calls


BRACKET_OR_QUOTE = re.compile(r"""[()\[\]{}'"]""")
STRING_REST = {quote: re.compile(r"(?:[^\\]|\\.)*?" + quote, re.S) for quote in ("'", '"', "'''", '"""')}
"""After an opening quote: the string's body (escapes skipped) and its closing quote."""


def matching_bracket(text: str, start: int) -> tuple[int, int] | None:
    """Index of the `]` closing the `[` at `start` and the deepest bracket nesting before it, skipping string
    literals; None if the text ends first. Jumps between brackets and quotes with regexes: a call list of 100,000
    calls is one region, so a loop over its characters in Python cost seconds."""
    depth = deepest = 0
    i = start
    while (found := BRACKET_OR_QUOTE.search(text, i)) is not None:
        i, ch = found.start(), found.group()
        if ch in "'\"":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            body = STRING_REST[quote].match(text, i + len(quote))
            if body is None:
                return None
            i = body.end()
            continue
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
            if depth == 0:
                return i, deepest
        i += 1
    return None


def py_literal(value: Any) -> str:
    """A value as Python source (what pythonic models write): strings quoted, True/False/None."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float, str)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    return repr(str(value))


class PythonicCodec(Codec):
    name = "pythonic"
    call_markers = ("[",)

    def markers(self, mode: str) -> dict[str, Handler]:
        table = dict(super().markers(mode))
        if mode == CONTENT:
            table["<|python_start|>"] = drop("<|python_start|>")
            table["<|python_end|>"] = drop("<|python_end|>")
            table["["] = self._calls  # found by `CALL_START`, not by plain search
        return table

    def find_marker(self, text: str, pos: int, state: ScanState) -> tuple[int, str] | None:
        """The earliest marker; a call list is found by `CALL_START`, searched only up to the next other marker (so
        the regex never reads the same text twice either)."""
        found: tuple[int, str] | None = None
        for marker in self.marker_table(state.mode):
            idx = state.finder.find(text, marker, pos) if marker != "[" else -1
            if idx >= 0 and (found is None or idx < found[0]):
                found = (idx, marker)
        if state.mode != CONTENT:
            return found
        match = CALL_START.search(text, pos, found[0] if found else len(text))
        return (match.start(), "[") if match else found

    def holdback(self, text: str, pos: int, mode: str) -> int:
        cut = super().holdback(text, pos, mode)
        if mode == CONTENT:
            bracket = text.rfind("[", pos)
            if bracket >= 0 and CALL_PREFIX.match(text, bracket):
                cut = min(cut, bracket)
        return cut

    def _calls(self, text: str, pos: int, final: bool, state: ScanState) -> Region | None:
        found = matching_bracket(text, pos)
        if found is None:
            return waiting(text, pos, final, "call list") if final else awaiting_anew(state, "]")
        end, deepest = found
        if deepest > MAX_DEPTH + 2:  # the list and the call's parentheses hold the arguments
            return Region(end + 1, error=Refused(TOO_DEEP).error("call list", pos))
        calls = calls_from_source(text[pos:end + 1])
        if isinstance(calls, Refused):
            return Region(end + 1, error=calls.error("call list", pos))
        if calls is None:
            return Region(end + 1, content=text[pos:end + 1])
        return Region(end + 1, calls=calls)

    def declarations(self, tools: list[dict]) -> str:
        return "\n".join(dumps(function_of(tool)) for tool in tools)

    def tools_prompt(self, tools: list[dict], declarations: str) -> str:
        written = ("JSON schema, one per line" if self.tool_rendering == "json"
                   else "typed signatures; `?` marks an optional argument, `=` its default")
        return (
            f"You can call the functions described below ({written}).\n"
            f"{declarations}\n\n"
            "To call functions, reply with only a Python list of calls with keyword arguments, for example "
            "[func_name1(param1=value1, param2=value2), func_name2(param=value)], and no other text."
        )

    def render_calls(self, calls: list[ToolCall]) -> Rendered:
        builder = TextBuilder().add("[")
        for index, call in enumerate(calls):
            if index:
                builder.add(", ")
            builder.add(call.name, "name", index).add("(")
            args_start = builder.length
            for position, (key, value) in enumerate(call.arguments.items()):
                if position:
                    builder.add(", ")
                builder.add(str(key), "arg_key", index).add("=").add(py_literal(value), "arg_value", index)
            if call.arguments:
                builder.spans.append(Span("arguments", args_start, builder.length, index))
            builder.add(")")
        return builder.add("]").build()

    def render_tool_result(self, result: dict) -> str:
        return result_text(result)
