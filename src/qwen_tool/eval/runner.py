"""Benchmark runners: prompt with the model's own tool format, generate (cached), parse with the codec, score.

`run_bfcl` writes `outcomes.jsonl` (every example: id, category, prompt hash, raw output, parsed calls, verdict, error
category) and `metrics.json` into the run directory, and returns the metrics.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qwen_tool import QwenToolError
from qwen_tool.codec import Codec, ToolCall, get_codec
from qwen_tool.codec.base import normalise_calls
from qwen_tool.codec.chat import render_prompt
from qwen_tool.codec.guided import structural_tag
from qwen_tool.env.env import ToolEnv, ToolEnvBatch
from qwen_tool.eval import bfcl_single_turn, metrics
from qwen_tool.eval.generation import Backend, GenerationSettings, generate_all, load_backend, prompt_hash
from qwen_tool.files import read_json_objects, write_json, write_lines
from qwen_tool.log import logger

DEFAULT_MAX_NEW_TOKENS = {"parallel": 384, "default": 160}
"""Caps per category kind: one call fits in ~100 tokens of JSON; parallel answers hold several."""


MULTI_TURN_MAX_STEPS = 20
"""Assistant steps allowed per user turn; BFCL's own limit (its runner force-terminates after 20)."""


def max_new_tokens_for(category: str) -> int:
    return DEFAULT_MAX_NEW_TOKENS["parallel" if "parallel" in category else "default"]


@dataclass
class Outcome:
    """One scored example, as written to outcomes.jsonl."""

    id: str
    category: str
    prompt_hash: str
    raw_output: str
    parsed_calls: list[dict[str, Any]]
    valid: bool
    error_category: str
    """Empty when valid; else BFCL's error type (e.g. `type_error`, `parallel:wrong_count`) or `prompt_error`."""
    error: str = ""
    parse_error: str | None = None
    new_tokens: int = 0
    finish_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def score_bfcl_output(example: bfcl_single_turn.BfclExample, text: str, codec: Codec, tools: list[dict[str, Any]],
                      prompt: str = "") -> tuple[list[dict[str, Any]], bfcl_single_turn.Verdict, str | None]:
    """(decoded calls as `[{name: args}]`, verdict, parse error). Malformed calls are dropped and the well-formed
    ones scored, as BFCL's own handler for Hermes-style models does; any text at all is scored, never raised on.
    `prompt`: the rendered prompt, whose end says where the output starts (e.g. inside an opened think block)."""
    try:
        parsed = codec.parse(text, tools, start=codec.start_state(prompt))
        calls = [{call.name: call.arguments} for call in parsed.tool_calls]
        parse_error = parsed.error
    except Exception as exc:  # noqa: BLE001 - model output is data: a parser bug must not end the run
        calls, parse_error = [], f"{type(exc).__name__}: {exc}"
    return calls, bfcl_single_turn.check_ast(example.category, example.functions, calls, example.gold), parse_error


def summarise_bfcl(outcomes: list[Outcome], categories: Sequence[str]) -> dict[str, Any]:
    """The `categories` and `summary` parts of a BFCL run's metrics, computed from its outcomes alone (so parts of
    one evaluation can be joined and scored again: `eval join`)."""
    by_category = metrics.accuracy_by_category((o.category, o.valid) for o in outcomes)
    per_category: dict[str, Any] = {}
    for category in categories:
        rows = [o for o in outcomes if o.category == category]
        if not rows:
            continue
        per_category[category] = {
            "accuracy": by_category[category],
            "n": len(rows),
            "valid": sum(o.valid for o in rows),
            "error_categories": dict(Counter(o.error_category for o in rows if not o.valid).most_common()),
            "parse_errors": sum(o.parse_error is not None for o in rows),
            "truncated": sum(o.finish_reason == "length" for o in rows),
            "average_calls": metrics.average_calls([len(o.parsed_calls) for o in rows]),
        }
        if category in bfcl_single_turn.MULTI_TURN_CATEGORIES:
            call_categories = [c for o in rows for c in o.extra.get("call_categories", [])]
            per_category[category]["DE"] = metrics.documentation_error_rate(call_categories)
            per_category[category]["CE"] = metrics.call_error_rate(call_categories)
            per_category[category]["VA"] = metrics.valid_answer_rate(
                [o.extra.get("termination") == "final_answer" for o in rows])
    ast = [by_category[c] for c in per_category if c in bfcl_single_turn.AST_CATEGORIES]
    irrelevance = [by_category[c] for c in per_category if c in bfcl_single_turn.IRRELEVANCE_CATEGORIES]
    single = [o for o in outcomes if o.category in bfcl_single_turn.SINGLE_TURN_CATEGORIES]
    timing = metrics.call_timing([bool(o.parsed_calls) for o in single],
                                 [o.category not in bfcl_single_turn.IRRELEVANCE_CATEGORIES for o in single])
    return {
        "categories": per_category,
        "summary": {
            "overall_accuracy_unweighted": metrics.unweighted_mean(by_category.values()),
            "ast_accuracy_unweighted": metrics.unweighted_mean(ast),
            "irrelevance_accuracy_unweighted": metrics.unweighted_mean(irrelevance),
            "examples": len(outcomes),
            "valid": sum(o.valid for o in outcomes),
            "call_timing_precision": timing["precision"],
            "call_timing_recall": timing["recall"],
            "call_timing_abstain_recall": timing["abstain_recall"],
        },
    }



def run_bfcl_multi_turn(category: str, limit: int | None, backend: Backend, tokenizer: Any, codec: Codec,
                        settings: GenerationSettings, cache: Path, progress: bool = True) -> list[Outcome]:
    """BFCL multi-turn entries played through ToolEnv (the env room checks BFCL's end state and responses)."""
    from qwen_tool.env.bfcl_multi_turn import load_bfcl_tasks

    tasks = sorted(load_bfcl_tasks(category), key=lambda t: bfcl_single_turn.natural_key(t.id))
    tasks = tasks[:limit] if limit is not None else tasks
    return play_tasks(tasks, category, backend, tokenizer, codec, settings, cache, progress,
                      max_turns=MULTI_TURN_MAX_STEPS)


def play_tasks(tasks: Sequence[Any], category: str, backend: Backend, tokenizer: Any, codec: Codec,
               settings: GenerationSettings, cache: Path, progress: bool = True, max_turns: int = 20
               ) -> list[Outcome]:
    """Multi-turn tasks played through ToolEnv, one `Outcome` per episode.

    All episodes advance together: at each step the unfinished ones are prompted in one batched, cached call, so an
    interrupted run replays the finished steps from the cache. An episode is valid when the environment's verdict
    says so (BFCL's checker), or else when it ends in a final answer with the suite's state equal to the task's gold
    state. Per-call feedback categories give DE and CE; `extra.termination` gives VA.
    """
    batch = ToolEnvBatch(len(tasks), fmt=codec.name, max_turns=max_turns)
    batch.reset(list(tasks))
    texts: list[list[str]] = [[] for _ in tasks]
    tokens = [0] * len(tasks)
    truncated = [0] * len(tasks)
    first_prompt = [""] * len(tasks)
    step = 0
    while active := batch.active:
        prompts = [render_prompt(tokenizer, batch.envs[i].messages, batch.envs[i].tool_schemas(), codec)
                   for i in active]
        generations = generate_all(backend, prompts, settings, cache, progress=progress,
                                   description=f"{category} step {step} ({len(active)} episodes)")
        outputs: list[str | None] = [None] * len(tasks)
        for i, prompt, generation in zip(active, prompts, generations, strict=True):
            first_prompt[i] = first_prompt[i] or prompt
            outputs[i] = codec.parse(generation.text, batch.envs[i].tool_schemas(), start=codec.start_state(prompt))
            texts[i].append(generation.text)
            tokens[i] += generation.new_tokens
            truncated[i] += generation.finish_reason == "length"
        batch.step(outputs)
        step += 1
    outcomes = []
    for i, trajectory in enumerate(batch.trajectories()):
        meta = trajectory["meta"]
        verdict = dict(meta["end_state"] or {"valid": False, "error_type": "multi_turn:no_verdict"})
        if "valid" not in verdict:  # no checker verdict: the gold state, reached and then answered
            answered = meta["termination"] == "final_answer"
            verdict["valid"] = bool(verdict.get("state_match")) and answered
            verdict["error_type"] = "multi_turn:state_mismatch" if answered else "multi_turn:no_final_answer"
        calls = [{c["function"]["name"]: json.loads(c["function"]["arguments"])}
                 for m in trajectory["messages"] if m.get("role") == "assistant" for c in m.get("tool_calls") or []]
        outcomes.append(Outcome(
            id=tasks[i].id, category=category, prompt_hash=prompt_hash(first_prompt[i]),
            raw_output="\n\n--- next step ---\n\n".join(texts[i]), parsed_calls=calls, valid=bool(verdict["valid"]),
            error_category="" if verdict["valid"] else verdict.get("error_type", ""),
            error=str(verdict.get("error_message", "")), new_tokens=tokens[i],
            finish_reason="length" if truncated[i] else "stop",
            extra={"steps": meta["steps"], "termination": meta["termination"],
                   "call_categories": [c for a in meta["annotations"] for c in a["categories"]]},
        ))
    return outcomes


def play_with_model(model: str, task: Any, noise: str = "clean", instability: float = 0.0, seed: int | None = None,
                    max_turns: int = 9) -> dict[str, Any]:
    """One episode of `task` in which `model` answers every step (greedy, its own tool format and rendering); the
    trajectory, for `qwen-tool env play --model`."""
    from qwen_tool.models import load_tokenizer

    codec = model_codec(model)
    backend, tokenizer = load_backend(model), load_tokenizer(model)
    env = ToolEnv(fmt=codec.name, noise=noise, instability_rate=instability, max_turns=max_turns)
    env.reset(task, seed)
    settings = GenerationSettings(max_new_tokens=256, batch_size=1)
    while not env.done:
        prompt = render_prompt(tokenizer, env.messages, env.tool_schemas(), codec)
        text = backend.generate([prompt], settings)[0].text
        env.step(codec.parse(text, env.tool_schemas(), start=codec.start_state(prompt)))
    return env.trajectory()


def model_codec(model: str, tool_format: str | None = None, tool_rendering: str | None = None) -> Codec:
    """The codec `model` is prompted with: its own tool format and tool rendering (the ones it was trained with,
    `models.tool_rendering_for`) unless given."""
    from qwen_tool.models import tool_format_for, tool_rendering_for

    return get_codec(tool_format or tool_format_for(model), tool_rendering=tool_rendering_for(model, tool_rendering))


def run_bfcl(model: str, categories: Sequence[str] | None = None, limit: int | dict[str, int | None] | None = None,
             out_dir: str | Path = "results/bfcl", *, backend: Backend | None = None, tokenizer: Any = None,
             tool_format: str | None = None, tool_rendering: str | None = None, batch_size: int = 8,
             max_new_tokens: int | dict[str, int] | None = None, cache_dir: str | Path | None = None,
             progress: bool = True, guided: bool = False) -> dict[str, Any]:
    """Evaluate `model` on BFCL single-turn categories and write outcomes.jsonl and metrics.json into `out_dir`.

    `guided` decodes tool calls under the offered tools' schemas (`qwen_tool.codec.guided`; single-turn categories).

    `limit` keeps the first `limit` entries of each category in id order (a fixed subset); a dict gives each category
    its own limit (a category absent from it is taken whole). `max_new_tokens` caps answers, one cap for every
    category or one per category (a category absent from it, or None, gets `max_new_tokens_for`). `backend`,
    `tokenizer`, `tool_format` and `tool_rendering` default to the model's own (from the registry and its
    qwen_tool.json); tests pass scripted ones.
    Generations are cached in `cache_dir` (default `<out_dir>/../.generation-cache`, shared between runs) keyed by
    model, prompt and settings.
    """
    from qwen_tool.models import load_tokenizer

    categories = list(categories or bfcl_single_turn.SINGLE_TURN_CATEGORIES)
    bfcl_single_turn.check_categories(categories)
    limits = limit if isinstance(limit, dict) else {category: limit for category in categories}
    caps = max_new_tokens if isinstance(max_new_tokens, dict) else {category: max_new_tokens for category in categories}
    if any(value is not None and value < 1 for value in limits.values()):
        raise QwenToolError(f"--limit must be at least 1, got {limit}; fix: pass a positive number or no limit")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out.parent / ".generation-cache"
    codec = model_codec(model, tool_format, tool_rendering)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
    started = time.perf_counter()
    if backend is None:
        backend = load_backend(model)
    outcomes: list[Outcome] = []
    generated_tokens = 0
    generation_seconds = 0.0
    for category in categories:
        if category in bfcl_single_turn.MULTI_TURN_CATEGORIES:
            settings = GenerationSettings(max_new_tokens=caps.get(category) or DEFAULT_MAX_NEW_TOKENS["parallel"],
                                          batch_size=batch_size)
            tick = time.perf_counter()
            episodes = run_bfcl_multi_turn(category, limits.get(category), backend, tokenizer, codec, settings, cache,
                                           progress)
            generation_seconds += time.perf_counter() - tick
            generated_tokens += sum(o.new_tokens for o in episodes)
            outcomes.extend(episodes)
            continue
        examples = bfcl_single_turn.load_category(category, limits.get(category))
        prompts: list[str | None] = []
        tools_per_example = []
        for example in examples:
            tools = bfcl_single_turn.functions_to_tools(example.functions)
            tools_per_example.append(tools)
            try:
                prompts.append(render_prompt(tokenizer, example.messages, tools, codec))
            except QwenToolError as exc:
                logger.warning("%s: cannot render the prompt (%s); scored as an error", example.id, exc)
                prompts.append(None)
        settings = GenerationSettings(max_new_tokens=caps.get(category) or max_new_tokens_for(category),
                                      batch_size=batch_size, guided=guided)
        tick = time.perf_counter()
        renderable = [p for p in prompts if p is not None]
        guides = ([structural_tag(codec.name, tools) for p, tools in zip(prompts, tools_per_example, strict=True)
                   if p is not None] if guided else None)
        generations = iter(generate_all(backend, renderable, settings, cache, progress=progress,
                                        description=f"BFCL {category}", guides=guides))
        generation_seconds += time.perf_counter() - tick
        for example, prompt, tools in zip(examples, prompts, tools_per_example, strict=True):
            if prompt is None:
                outcomes.append(Outcome(example.id, category, "", "", [], False, "prompt_error"))
                continue
            generation = next(generations)
            generated_tokens += generation.new_tokens
            calls, verdict, parse_error = score_bfcl_output(example, generation.text, codec, tools, prompt)
            outcomes.append(Outcome(
                id=example.id, category=category, prompt_hash=prompt_hash(prompt), raw_output=generation.text,
                parsed_calls=calls, valid=verdict.valid, error_category=verdict.error_type, error=verdict.error,
                parse_error=parse_error, new_tokens=generation.new_tokens, finish_reason=generation.finish_reason,
            ))
        acc = sum(o.valid for o in outcomes if o.category == category) / max(1, len(examples))
        logger.info("BFCL %s: %.1f%% of %d", category, 100 * acc, len(examples))
    result = summarise_bfcl(outcomes, categories)
    result.update({
        "suite": "bfcl", "model": model, "tool_format": codec.name, "tool_rendering": codec.tool_rendering,
        "limit": limit,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "generation": {"new_tokens": generated_tokens, "seconds": round(generation_seconds, 2),
                       "batch_size": batch_size, "model_id": backend.model_id,
                       "backend": getattr(getattr(backend, "decoder", None), "backend", type(backend).__name__),
                       "guided": guided},
    })
    write_lines(out / "outcomes.jsonl", (json.dumps(asdict(outcome), ensure_ascii=False) for outcome in outcomes))
    write_json(out / "metrics.json", result)
    return result


# ---------------------------------------------------------------- internal held-out suite (single-turn decisions)


def _call_dicts(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [{"name": call.name, "arguments": call.arguments} for call in calls]


def decision_points(record: dict[str, Any]) -> list[tuple[list[dict[str, Any]], list[ToolCall]]]:
    """(conversation so far, gold calls) at every assistant turn of a trajectory, the gold history before it
    (teacher forcing); turns marked `erroneous` (a failed call kept for context, MAE) are never gold."""
    points = []
    messages = record.get("messages") or []
    for index, message in enumerate(messages):
        if message.get("role") == "assistant" and not message.get("erroneous"):
            points.append((messages[:index], normalise_calls(message.get("tool_calls"))))
    return points


def _setup(model: str, out_dir: str | Path, backend: Backend | None, tokenizer: Any, tool_format: str | None,
           tool_rendering: str | None) -> tuple[Path, Any, Codec, Backend]:
    """(output directory, created; tokenizer; codec; backend), each the model's own unless given."""
    from qwen_tool.models import load_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
    codec = model_codec(model, tool_format, tool_rendering)
    return out, tokenizer, codec, backend or load_backend(model)


def read_held_out(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` records (all when None) of a held-out JSONL."""
    records = read_json_objects(path, fix="pass the held-out JSONL written by `qwen-tool data synth --eval-out`")
    return records[:limit] if limit is not None else records


def run_internal(model: str, records_path: str | Path, out_dir: str | Path, *, backend: Backend | None = None,
                 tokenizer: Any = None, tool_format: str | None = None, tool_rendering: str | None = None,
                 batch_size: int = 8, max_new_tokens: int = 256, limit: int | None = None,
                 cache_dir: str | Path | None = None, progress: bool = True, guided: bool = False) -> dict[str, Any]:
    """Score every assistant decision of held-out trajectories (`{"tools", "messages"}` JSON lines): TS/PI/CF on the
    first call, parameter accuracy over all calls, call timing (call when the gold calls, abstain when it answers).
    `guided` decodes tool calls under the offered tools' schemas, as in `run_bfcl`.

    Writes outcomes.jsonl and metrics.json into `out_dir` and returns the metrics.
    """
    records = read_held_out(records_path, limit)
    out, tokenizer, codec, backend = _setup(model, out_dir, backend, tokenizer, tool_format, tool_rendering)
    started = time.perf_counter()
    items = []
    for number, record in enumerate(records):
        for turn, (history, gold) in enumerate(decision_points(record)):
            prompt = render_prompt(tokenizer, history, record.get("tools"), codec)
            items.append((f"{record.get('id', number)}#{turn}", record, prompt, gold))
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, guided=guided)
    cache = Path(cache_dir) if cache_dir is not None else out.parent / ".generation-cache"
    guides = [structural_tag(codec.name, item[1].get("tools")) for item in items] if guided else None
    generations = generate_all(backend, [item[2] for item in items], settings, cache, progress=progress,
                               description="internal suite", guides=guides)
    outcomes, pairs, argument_pairs, called, gold_called = [], [], [], [], []
    for (item_id, record, prompt, gold), generation in zip(items, generations, strict=True):
        try:
            parsed = codec.parse(generation.text, record.get("tools"), start=codec.start_state(prompt))
            predicted, parse_error = parsed.tool_calls, parsed.error
        except Exception as exc:  # noqa: BLE001 - model output is data: a parser bug must not end the run
            predicted, parse_error = [], f"{type(exc).__name__}: {exc}"
        first_pred, first_gold = (predicted[0] if predicted else None), (gold[0] if gold else None)
        pairs.append((first_pred, first_gold))
        argument_pairs.append((predicted, gold))
        called.append(bool(predicted))
        gold_called.append(bool(gold))
        outcomes.append({
            "id": item_id, "category": (record.get("meta") or {}).get("category", "internal"),
            "prompt_hash": prompt_hash(prompt), "raw_output": generation.text,
            "parsed_calls": _call_dicts(predicted), "gold_calls": _call_dicts(gold),
            "valid": metrics.content_filling(first_pred, first_gold) and len(predicted) == len(gold),
            "TS": metrics.tool_selection(first_pred, first_gold),
            "PI": metrics.parameter_identification(first_pred, first_gold),
            "error_category": metrics.decision_error(predicted, gold),
            "parse_error": parse_error, "new_tokens": generation.new_tokens,
            "finish_reason": generation.finish_reason,
        })
    timing = metrics.call_timing(called, gold_called)
    result = {
        "suite": "internal", "model": model, "records": len(records), "decisions": len(items), "guided": guided,
        "summary": {
            **metrics.single_turn_scores(pairs),
            "parameter_accuracy": metrics.parameter_accuracy(argument_pairs),
            "call_timing_precision": timing["precision"], "call_timing_recall": timing["recall"],
            "call_timing_abstain_recall": timing["abstain_recall"],
            "exact_match": metrics.end_to_end_success([o["valid"] for o in outcomes]),
            "average_calls": metrics.average_calls([len(o["parsed_calls"]) for o in outcomes]),
        },
        "error_categories": dict(Counter(o["error_category"] for o in outcomes if o["error_category"]).most_common()),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_lines(out / "outcomes.jsonl", (json.dumps(o, ensure_ascii=False) for o in outcomes))
    write_json(out / "metrics.json", result)
    return result


# ---------------------------------------------------------------- internal held-out suite (multi-turn tasks)


def read_tasks(path: str | Path, limit: int | None = None) -> list[Any]:
    """The first `limit` tasks (all when None) of a task JSONL (`Task.to_dict` lines, as the main job writes)."""
    from qwen_tool.env.task import Task

    tasks = []
    for number, record in enumerate(read_held_out(path, limit), 1):
        try:
            tasks.append(Task.from_dict(record))
        except TypeError as exc:
            raise QwenToolError(f"{path}: record {number} is not a task ({exc}); fix: pass the tasks JSONL written by "
                                "`qwen-tool data synth --eval-tasks-out` or the main job") from None
    return tasks


def run_internal_tasks(model: str, tasks_path: str | Path, out_dir: str | Path, *, backend: Backend | None = None,
                       tokenizer: Any = None, tool_format: str | None = None, tool_rendering: str | None = None,
                       batch_size: int = 8, max_new_tokens: int = 256, limit: int | None = None, max_turns: int = 8,
                       cache_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Play held-out multi-turn tasks through ToolEnv: VA (episodes ending in a final answer), end-state accuracy
    (the suite's state equals the gold state), DE and CE over every call. Writes outcomes.jsonl and metrics.json."""
    tasks = read_tasks(tasks_path, limit)
    out, tokenizer, codec, backend = _setup(model, out_dir, backend, tokenizer, tool_format, tool_rendering)
    started = time.perf_counter()
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    cache = Path(cache_dir) if cache_dir is not None else out.parent / ".generation-cache"
    outcomes = play_tasks(tasks, "internal_tasks", backend, tokenizer, codec, settings, cache, progress,
                          max_turns=max_turns)
    call_categories = [c for o in outcomes for c in o.extra["call_categories"]]
    result = {
        "suite": "internal_tasks", "model": model, "episodes": len(outcomes),
        "summary": {
            "VA": metrics.valid_answer_rate([o.extra["termination"] == "final_answer" for o in outcomes]),
            "end_state_accuracy": metrics.end_to_end_success([o.valid for o in outcomes]),
            "DE": metrics.documentation_error_rate(call_categories),
            "CE": metrics.call_error_rate(call_categories),
            "average_steps": sum(o.extra["steps"] for o in outcomes) / max(1, len(outcomes)),
        },
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_lines(out / "outcomes.jsonl", (json.dumps(asdict(o), ensure_ascii=False) for o in outcomes))
    write_json(out / "metrics.json", result)
    return result
