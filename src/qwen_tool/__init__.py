"""Qwen-Tool: teach language models to call tools.

Rooms (see ARCHITECTURE.md): codec, tools, env, data, rewards, sft, rl, eval, serve; `models` resolves model names,
`config` loads typed configs, `cli` and `pipeline` wire the rooms together.
"""

from collections.abc import Iterable

__version__ = "0.1.0"


class QwenToolError(Exception):
    """An error a user can fix: the message names the place and the fix, and the CLI prints it on one line."""


def did_you_mean(name: str, choices: Iterable[str], what: str = "") -> str:
    """"did you mean <what> 'x'? " for the choice closest to `name` (difflib), or "" when none is close: the first
    words of a fix."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {what + ' ' if what else ''}{close[0]!r}? " if close else ""
