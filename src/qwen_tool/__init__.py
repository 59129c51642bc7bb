"""Qwen-Tool: teach language models to call tools.

Rooms (see ARCHITECTURE.md): codec, tools, env, data, rewards, sft, rl, eval, serve; `models` resolves model names,
`config` loads typed configs, `cli` and `pipeline` wire the rooms together.
"""

__version__ = "0.1.0"


class QwenToolError(Exception):
    """An error a user can fix: the message names the place and the fix, and the CLI prints it on one line."""
