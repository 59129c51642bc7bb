"""What a call's arguments may hold, checked wherever calls are read: model text, data files, API requests.

Two kinds of value decode fine and break later, far from their cause, so both are refused where they are read, with a
reason naming them:

- nesting thousands deep: json, ast and the encoders recurse, so a RecursionError (a traceback) comes out of whatever
  touches the value next, or out of the decoder itself;
- lone surrogates: the JSON escape `\\ud800` decodes to half of a UTF-16 pair, which no UTF-8 text can hold, so
  printing or writing the value fails (`data convert` stopped part-way through its output file).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

MAX_DEPTH = 100
"""Deepest nesting of arrays and objects accepted in a JSON value that holds a call. Real arguments nest a few levels;
deeper values are refused well before Python's recursion limit (1,000) could be reached anywhere downstream."""

TOO_DEEP = f"nests arrays or objects more than {MAX_DEPTH} levels deep"

LONE_SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_HINT = re.compile(r"\\[uU](?:0000)?[dD][89a-fA-F]|[\ud800-\udfff]")
"""Text that may decode to a lone surrogate: a JSON or Python escape of one, or the character itself."""
JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
BRACKETS = re.compile(r"[\[\]{}]")
JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]|[^\s0-9a-zE.+\-,:"\[\]{}]', re.S)
"""A string, a bracket, or a character JSON cannot hold outside strings (which ends the search)."""
NESTING = {"[": 1, "{": 1, "]": -1, "}": -1}


@dataclass(frozen=True)
class Refused:
    """A value that was read but cannot be a call's arguments; `reason` says why."""

    reason: str

    def error(self, what: str, pos: int) -> str:
        """The parse error of the call that held it (the same shape as every other dropped call's)."""
        return f"{what} at char {pos}: the value {self.reason}; the call was dropped"


def fix_for(problem: str) -> str:
    """What to do about a `value_problem` reason, for messages that end in `fix: ...`."""
    if problem == TOO_DEEP:
        return f"nest arrays and objects at most {MAX_DEPTH} levels deep"
    return "write the character itself, or both halves of its surrogate pair (e.g. \\ud83d\\ude00)"


def surrogate_problem(text: str) -> str | None:
    """Why `text` cannot be written as UTF-8 (it holds a lone surrogate), or None."""
    match = LONE_SURROGATE.search(text)
    return None if match is None else f"holds a lone surrogate {ascii(match.group())[1:-1]}, which is not Unicode text"


def join_surrogate_pairs(text: str) -> str | Refused:
    """Python string escapes keep the two halves of a pair (`'\\ud83d\\ude00'`) as two code points, where JSON makes
    one character: join them the same way; a half left alone is refused."""
    if not LONE_SURROGATE.search(text):
        return text
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    problem = surrogate_problem(joined)
    return Refused(problem) if problem else joined


def value_problem(value: Any) -> str | None:
    """Why a decoded value cannot be a call's arguments (too deep, a lone surrogate in a key or string), or None.

    Walks the value with an explicit stack, so a value of any depth is measured without recursion.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = surrogate_problem(item)
            if problem:
                return problem
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return TOO_DEEP
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in JSON text (brackets inside strings ignored), without decoding it."""
    brackets = BRACKETS.findall(JSON_STRING.sub("", text))
    return max(accumulate(map(NESTING.__getitem__, brackets)), default=0)


def text_problem(text: str, start: int, end: int, value: Any) -> str | None:
    """`value_problem` of a value decoded from `text[start:end]`, looking closer only where the text hints at one.

    Nearly every call has fewer brackets than MAX_DEPTH and no surrogate escape: two C-speed scans of its text settle
    that, so the evaluation hot path does not walk every value in Python.
    """
    if text.count("{", start, end) + text.count("[", start, end) > MAX_DEPTH and \
            json_depth(text[start:end]) > MAX_DEPTH:
        return TOO_DEEP
    if SURROGATE_HINT.search(text, start, end):
        return value_problem(value)
    return None


def loads(text: str) -> Any:
    """`json.loads` for text that should hold arguments: a too-deep or lone-surrogate value comes back as `Refused`.

    Raises ValueError when the text is not JSON, never RecursionError.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        return Refused(TOO_DEEP)
    problem = text_problem(text, 0, len(text), value)
    return Refused(problem) if problem else value


def json_end(text: str, pos: int) -> int | None:
    """End of the array or object at `pos`, found by matching brackets outside strings; None if the text ends, or
    stops looking like JSON, first (so a value never closed costs only the text up to the next marker).

    For values too deep for the decoder (it raises RecursionError before it reaches their end).
    """
    depth = 0
    for match in JSON_TOKEN.finditer(text, pos):
        token = match.group()
        if token in NESTING:
            depth += NESTING[token]
            if depth <= 0:
                return match.end() if depth == 0 else None
        elif depth == 0 or not token.startswith('"'):
            return None  # not an array or object here, or not JSON from here on (e.g. the next marker)
    return None
