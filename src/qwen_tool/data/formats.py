"""Other people's data formats, to and from our trajectory (OpenAI chat) form.

Each format has `to_<fmt>(record) -> item` and `from_<fmt>(item) -> record`; `to_<fmt>(from_<fmt>(item)) == item` for
items these exporters write (tests check each). What a format cannot hold is said in its docstring.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qwen_tool import did_you_mean
from qwen_tool.codec.values import TOO_DEEP, fix_for
from qwen_tool.data.annotate import annotate
from qwen_tool.data.schema import TrajectoryError, parse_line, validate_trajectory
from qwen_tool.files import read_text, write_lines
from qwen_tool.tools import bfcl_to_json_schema


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
            for c in message.get("tool_calls") or []]


def _openai_call(index: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"call_{index}", "type": "function", "function": {"name": name, "arguments": _dumps(arguments)}}


# ---------------------------------------------------------------- OpenAI fine-tuning JSONL


def to_openai(record: dict[str, Any]) -> dict[str, Any]:
    """OpenAI fine-tuning line: `messages` + `tools`; erroneous assistant turns get `"weight": 0` (not learned).

    Lost: `meta` and `feedback_category` (OpenAI rejects unknown keys).
    """
    messages = []
    for message in record["messages"]:
        out = {k: v for k, v in message.items() if k not in ("erroneous", "feedback_category")}
        if message["role"] == "assistant" and message.get("erroneous"):
            out["weight"] = 0
        messages.append(out)
    return {"messages": messages, "tools": record.get("tools", [])}


def from_openai(item: dict[str, Any]) -> dict[str, Any]:
    messages = []
    for message in item["messages"]:
        out = {k: v for k, v in message.items() if k != "weight"}
        if message.get("weight") == 0 and message["role"] == "assistant":
            out["erroneous"] = True
        messages.append(out)
    return {"tools": item.get("tools", []), "messages": messages, "meta": {"source": "openai"}}


# ---------------------------------------------------------------- ShareGPT / LLaMA-Factory


def to_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    """LLaMA-Factory function-call format: human / function_call / observation / gpt turns, `system`, `tools` (JSON).

    Parallel calls are a JSON list in one function_call turn; their results a JSON list in one observation.
    Lost: call ids (rebuilt as call_0, call_1, ...), meta; per-turn annotations are re-derived on import (annotate).
    """
    roles = {"user": "human", "assistant": "gpt"}
    conversations = []
    system = ""
    messages = record["messages"]
    index = 0
    while index < len(messages):
        message = messages[index]
        if message["role"] == "system":
            system = message["content"]
        elif message["role"] == "assistant" and message.get("tool_calls"):
            calls = _calls(message)
            conversations.append({"from": "function_call", "value": _dumps(calls[0] if len(calls) == 1 else calls)})
        elif message["role"] == "tool":
            results = []
            while index < len(messages) and messages[index]["role"] == "tool":
                results.append(messages[index]["content"])
                index += 1
            conversations.append({"from": "observation", "value": results[0] if len(results) == 1 else _dumps(results)})
            continue
        else:
            conversations.append({"from": roles[message["role"]], "value": message["content"]})
        index += 1
    return {"conversations": conversations, "system": system,
            "tools": _dumps([t["function"] for t in record.get("tools", [])])}


def from_sharegpt(item: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if item.get("system"):
        messages.append({"role": "system", "content": item["system"]})
    counter = 0
    pending: list[str] = []
    for turn in item["conversations"]:
        kind, value = turn["from"], turn["value"]
        if kind == "function_call":
            decoded = json.loads(value)
            calls = decoded if isinstance(decoded, list) else [decoded]
            tool_calls = []
            for call in calls:
                tool_calls.append(_openai_call(counter, call["name"], call.get("arguments", {})))
                counter += 1
            pending = [c["id"] for c in tool_calls]
            messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
        elif kind == "observation":
            results = json.loads(value) if len(pending) > 1 else [value]
            messages += [{"role": "tool", "tool_call_id": call_id, "content": result}
                         for call_id, result in zip(pending, results, strict=True)]
        else:
            messages.append({"role": {"human": "user", "gpt": "assistant"}[kind], "content": value})
    tools = [{"type": "function", "function": f} for f in json.loads(item.get("tools") or "[]")]
    return annotate({"tools": tools, "messages": messages, "meta": {"source": "sharegpt"}})


# ---------------------------------------------------------------- xLAM / APIGen

_XLAM_TYPES = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "object": "dict",
               "array": "list"}
_JSON_TYPES = {v: k for k, v in _XLAM_TYPES.items()}


def to_xlam(record: dict[str, Any]) -> dict[str, Any]:
    """APIGen/xLAM single-turn item: `query`, `tools` and `answers` as JSON text; flat parameter dicts.

    Holds only the first user query and the first correct assistant turn (no call: `answers` is `[]`).
    Lost: later turns, nested properties and enums of parameters, meta.
    """
    query = next(m["content"] for m in record["messages"] if m["role"] == "user")
    first_calls = next((m for m in record["messages"] if m["role"] == "assistant" and not m.get("erroneous")), {})
    tools = []
    for tool in record.get("tools", []):
        function = tool["function"]
        schema = function.get("parameters", {})
        required = set(schema.get("required", []))
        params = {}
        for name, spec in schema.get("properties", {}).items():
            kind = _XLAM_TYPES.get(spec.get("type", "string"), "str")
            kind = kind if name in required else f"{kind}, optional"
            entry = {"description": spec.get("description", ""), "type": kind}
            if "default" in spec:
                entry["default"] = spec["default"]
            params[name] = entry
        tools.append({"name": function["name"], "description": function.get("description", ""), "parameters": params})
    return {"query": query, "tools": _dumps(tools), "answers": _dumps(_calls(first_calls))}


def from_xlam(item: dict[str, Any]) -> dict[str, Any]:
    tools = []
    for tool in json.loads(item["tools"]):
        properties, required = {}, []
        for name, entry in tool.get("parameters", {}).items():
            kind, _, optional = entry.get("type", "str").partition(",")
            spec = {"type": _JSON_TYPES.get(kind.strip(), "string"), "description": entry.get("description", "")}
            if "default" in entry:
                spec["default"] = entry["default"]
            properties[name] = spec
            if not optional.strip():
                required.append(name)
        tools.append({"type": "function", "function": {
            "name": tool["name"], "description": tool.get("description", ""),
            "parameters": {"type": "object", "properties": properties, "required": required}}})
    answers = json.loads(item["answers"])
    messages: list[dict[str, Any]] = [{"role": "user", "content": item["query"]}]
    if answers:
        messages.append({"role": "assistant", "content": None,
                         "tool_calls": [_openai_call(i, a["name"], a["arguments"]) for i, a in enumerate(answers)]})
    return {"tools": tools, "messages": messages, "meta": {"source": "xlam"}}


# ---------------------------------------------------------------- ToolBench / ToolAlpaca ReAct traces

FINISH = "Finish"


def to_react(record: dict[str, Any]) -> dict[str, Any]:
    """ToolBench-style trace: `conversations` of system/user/assistant/function turns; the assistant writes
    `Thought: ...\\nAction: NAME\\nAction Input: {json}`, and ends with `Action: Finish` carrying the final answer.

    One action per turn, so parallel calls become consecutive turns. Lost: call grouping, ids, meta; annotations are
    re-derived on import (annotate).
    """
    conversations = []
    for message in record["messages"]:
        role = message["role"]
        if role in ("system", "user"):
            conversations.append({"from": role, "value": message["content"]})
        elif role == "tool":
            conversations.append({"from": "function", "value": message["content"]})
        elif message.get("tool_calls"):
            for call in _calls(message):
                thought = message.get("content") or ""
                conversations.append({"from": "assistant", "value": (
                    f"Thought: {thought}\nAction: {call['name']}\nAction Input: {_dumps(call['arguments'])}")})
        else:
            answer = {"return_type": "give_answer", "final_answer": message["content"]}
            conversations.append({"from": "assistant", "value": f"Thought: \nAction: {FINISH}\nAction Input: "
                                                                f"{_dumps(answer)}"})
    return {"conversations": conversations, "tools": [t["function"] for t in record.get("tools", [])]}


def _parse_react(text: str, where: str) -> tuple[str, str, dict[str, Any]]:
    thought, _, rest = text.partition("\nAction: ")
    name, _, action_input = rest.partition("\nAction Input: ")
    if not name:
        raise TrajectoryError(f"{where}: assistant turn has no 'Action:' line; fix: write Thought/Action/Action Input")
    try:
        arguments = json.loads(action_input or "{}")
    except json.JSONDecodeError as exc:
        raise TrajectoryError(f"{where}: Action Input is not JSON ({exc.msg}); fix: write it as a JSON object"
                              ) from None
    return thought.removeprefix("Thought: ").removeprefix("Thought:"), name.strip(), arguments


def from_react(item: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    counter = 0
    for index, turn in enumerate(item["conversations"]):
        kind, value = turn["from"], turn["value"]
        if kind in ("system", "user"):
            messages.append({"role": kind, "content": value})
        elif kind == "function":
            messages.append({"role": "tool", "tool_call_id": f"call_{counter - 1}", "content": value})
        else:
            thought, name, arguments = _parse_react(value, f"conversations.{index}")
            if name == FINISH:
                messages.append({"role": "assistant", "content": arguments.get("final_answer", "")})
                continue
            messages.append({"role": "assistant", "content": thought or None,
                             "tool_calls": [_openai_call(counter, name, arguments)]})
            counter += 1
    tools = [{"type": "function", "function": f} for f in item.get("tools", [])]
    return annotate({"tools": tools, "messages": messages, "meta": {"source": "react"}})


# ---------------------------------------------------------------- BFCL (evaluation only)


def from_bfcl(entry: dict[str, Any], answer: dict[str, Any] | None = None) -> dict[str, Any]:
    """A BFCL entry (and its possible answer) as a trajectory marked `eval_only`: never train on it.

    The gold call takes the first accepted value of each argument and omits arguments whose accepted values start
    with "" (optional). The original function docs are kept in meta so `to_bfcl` gives the entry back unchanged.
    """
    question = entry["question"][0]
    tools = [{"type": "function", "function": {
        "name": f["name"], "description": f.get("description", ""),
        "parameters": bfcl_to_json_schema(f.get("parameters") or {"type": "dict", "properties": {}})}}
        for f in entry["function"]]
    messages = [dict(m) for m in question]
    if answer is not None:
        calls = []
        for index, gold in enumerate(answer.get("ground_truth", [])):
            (name, accepted), = gold.items()
            arguments = {k: v[0] for k, v in accepted.items() if v and v[0] != ""}
            calls.append(_openai_call(index, name, arguments))
        messages.append({"role": "assistant", "content": None, "tool_calls": calls} if calls
                        else {"role": "assistant", "content": ""})
    meta = {"source": "bfcl", "id": entry["id"], "split": "eval", "eval_only": True, "bfcl_function": entry["function"],
            "bfcl_ground_truth": (answer or {}).get("ground_truth")}
    return {"tools": tools, "messages": messages, "meta": meta}


def to_bfcl(record: dict[str, Any]) -> dict[str, Any]:
    meta = record.get("meta", {})
    question = [m for m in record["messages"] if m["role"] in ("system", "user")]
    entry = {"id": meta.get("id", ""), "question": [question], "function": meta.get("bfcl_function") or [
        {"name": t["function"]["name"], "description": t["function"].get("description", ""),
         "parameters": t["function"].get("parameters", {})} for t in record.get("tools", [])]}
    return entry


FORMATS: dict[str, tuple[Callable[[dict], dict], Callable[[dict], dict]]] = {
    "openai": (to_openai, from_openai),
    "sharegpt": (to_sharegpt, from_sharegpt),
    "xlam": (to_xlam, from_xlam),
    "react": (to_react, from_react),
    "bfcl": (to_bfcl, from_bfcl),
}
"""Format name → (exporter, importer)."""


def check_format(fmt: str, option: str = "--format") -> None:
    """Raise a one-line error unless `fmt` is a data format this module reads and writes."""
    if fmt != "trajectory" and fmt not in FORMATS:
        hint = did_you_mean(fmt, ["trajectory", *FORMATS])
        raise TrajectoryError(f"{option} {fmt!r} is not a data format; fix: {hint}use one of trajectory, "
                              f"{', '.join(FORMATS)}")


def read_format(path: str | Path, fmt: str, skip_invalid: bool = False) -> tuple[list[dict], list[str]]:
    """Import a JSONL file in `fmt`; each line is converted and validated, errors name file:line."""
    check_format(fmt)
    if fmt == "trajectory":
        from qwen_tool.data.schema import read_any

        records, report = read_any(path, skip_invalid)
        return records, report.errors
    path = Path(path)
    text = read_text(path, fix=f"pass an existing UTF-8 JSON lines file of {fmt} items")
    importer = FORMATS[fmt][1]
    records, errors = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            item = parse_line(line, where)
            try:
                record = importer(item)
            except TrajectoryError as exc:
                raise TrajectoryError(f"{where}: {exc}") from None
            except RecursionError:
                raise TrajectoryError(f"{where}: the line {TOO_DEEP}; fix: {fix_for(TOO_DEEP)}, or drop the line "
                                      "(--skip-invalid)") from None
            except (KeyError, TypeError, ValueError, StopIteration) as exc:
                raise TrajectoryError(f"{where}: not a {fmt} item ({type(exc).__name__}: {exc}); "
                                      f"fix: check the line against the {fmt} format") from None
            records.append(validate_trajectory(record, where))
        except TrajectoryError as exc:
            if not skip_invalid:
                raise
            errors.append(str(exc))
    return records, errors


def write_format(records: list[dict[str, Any]], path: str | Path, fmt: str) -> int:
    check_format(fmt, "--to")
    if fmt == "trajectory":
        from qwen_tool.data.schema import write_any

        return write_any(records, path)
    exporter = FORMATS[fmt][0]
    write_lines(path, (json.dumps(exporter(record), ensure_ascii=False) for record in records))
    return len(records)


__all__ = ["FORMATS", "check_format", "from_bfcl", "from_openai", "from_react", "from_sharegpt", "from_xlam",
           "read_format", "to_bfcl", "to_openai", "to_react", "to_sharegpt", "to_xlam", "write_format"]
