"""The trajectory record every data file holds, its strict validation, and JSONL / Parquet / `datasets` IO.

A trajectory is `{"tools": [...], "messages": [...], "meta": {...}}` in OpenAI chat format: `tools` are OpenAI function
tools, assistant messages carry `tool_calls` (arguments as a JSON string), `tool` messages answer a call by
`tool_call_id`. Per-turn annotations ride on the messages themselves so they stay aligned when turns are sliced:
`erroneous` (an assistant turn whose call failed: MAE gives it no loss) and `feedback_category` (on a tool message: what
its feedback says; on an erroneous assistant turn: why it failed). Trajectory-level facts (category, difficulty,
domain, source) live in `meta`.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from qwen_tool import QwenToolError
from qwen_tool.codec.values import (
    MAX_DEPTH,
    TOO_DEEP,
    Refused,
    fix_for,
    loads,
    surrogate_problem,
    text_problem,
    value_problem,
)
from qwen_tool.files import FileProblem, atomic_write, decode_utf8, open_input
from qwen_tool.tools.feedback import FeedbackCategory

FEEDBACK_CATEGORIES = tuple(category.value for category in FeedbackCategory)
"""The feedback taxonomy (`tools.feedback.FeedbackCategory`, after TL-Training: docs/references.md) as the strings
stored in data files."""


class TrajectoryError(QwenToolError):
    """A data record that does not fit the schema; the message names file:line, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionSpec(_Strict):
    name: str
    description: str = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not value or any(ch.isspace() for ch in value):
            raise ValueError(f"tool name {value!r} is empty or has spaces; use e.g. snake_case or module.function")
        return value

    @field_validator("parameters")
    @classmethod
    def _schema_ok(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = _schema_problem(json.dumps(value, sort_keys=True))
        if problem:
            raise ValueError(problem)
        return value


@functools.lru_cache(maxsize=4096)
def _schema_problem(schema_json: str) -> str | None:
    """Why a parameters schema is unusable (None when fine); cached because datasets repeat their tools."""
    schema = json.loads(schema_json)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"parameters is not a valid JSON schema ({exc.message})"
    if schema.get("type") != "object":
        return 'parameters must be a JSON schema with "type": "object"'
    return None


class ToolSpec(_Strict):
    type: Literal["function"] = "function"
    function: FunctionSpec


class CallFunction(_Strict):
    name: str
    arguments: str

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments_json(cls, value: Any) -> str:
        """Accept a dict (normalised to its JSON text) or JSON text that decodes to an object, within the codec's
        bounds (nesting, valid Unicode): the same arguments a model's call may hold."""
        if isinstance(value, dict):
            decoded: Any = Refused(problem) if (problem := value_problem(value)) else value
        elif not isinstance(value, str):
            raise ValueError("arguments must be a JSON object or its JSON text")
        else:
            try:
                decoded = loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"arguments is not valid JSON ({exc.msg} at char {exc.pos})") from None
        if isinstance(decoded, Refused):
            raise ValueError(f"the value {decoded.reason}; fix: {fix_for(decoded.reason)}")
        if not isinstance(decoded, dict):
            raise ValueError("arguments must decode to a JSON object")
        return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value


class ToolCallSpec(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: CallFunction


class Message(_Strict):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)  # feedback_category stays a plain string

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCallSpec] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    reasoning_content: str | None = None
    erroneous: bool | None = None
    """Assistant turn whose call drew error feedback (MAE masks it)."""
    feedback_category: FeedbackCategory | None = None
    """Tool message: what its feedback says. Erroneous assistant turn: why it failed."""

    @model_validator(mode="after")
    def _role_fields(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id (the id of the call it answers)")
        if self.role != "tool" and self.tool_call_id is not None:
            raise ValueError(f"tool_call_id is only allowed on tool messages, not {self.role}")
        if self.role != "assistant" and (self.tool_calls or self.erroneous):
            raise ValueError(f"tool_calls and erroneous are only allowed on assistant messages, not {self.role}")
        if self.role == "assistant" and not self.tool_calls and self.content is None:
            raise ValueError("an assistant message needs content or tool_calls")
        if self.role in ("system", "user", "tool") and self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        return self


class Meta(BaseModel):
    """Trajectory-level facts; extra keys are kept (generators add their own provenance)."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    category: str | None = None
    difficulty: float | None = None
    domain: str | None = None
    source: str | None = None
    split: str | None = None


class Trajectory(_Strict):
    tools: list[ToolSpec] = []
    messages: list[Message]
    meta: Meta = Meta()

    @model_validator(mode="after")
    def _conversation_ok(self, info: ValidationInfo) -> Trajectory:
        names = [tool.function.name for tool in self.tools]
        duplicates = [name for name, count in Counter(names).items() if count > 1]
        if duplicates:
            raise ValueError(f"tools: duplicate tool names {duplicates}; each offered tool needs a unique name")
        if not any(message.role == "user" for message in self.messages):
            raise ValueError("messages: no user message; a trajectory starts from a user query")
        offered = set(names)
        unknown_ok = bool(info.context and info.context.get("allow_unknown_tools"))
        call_ids: set[str] = set()
        for index, message in enumerate(self.messages):
            for call in message.tool_calls or []:
                if call.function.name not in offered and not message.erroneous and not unknown_ok:
                    raise ValueError(
                        f"messages.{index}: calls {call.function.name!r}, which is not among the offered tools; "
                        "fix: offer the tool, or mark the turn erroneous (`qwen-tool data annotate` does)"
                    )
                call_ids.add(call.id)
            if message.role == "tool" and message.tool_call_id not in call_ids:
                raise ValueError(
                    f"messages.{index}: tool_call_id {message.tool_call_id!r} answers no earlier assistant call"
                )
        return self


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"field {loc}: unknown key; fix: remove it or move it under meta"
    if err["type"] == "missing":
        return f"field {loc}: missing; fix: add it"
    return f"field {loc}: {message}" + ("" if "fix:" in message else "; fix: correct that field")


def _problem_field(value: Any, path: str = "") -> str:
    """Dotted path to the first place where `value_problem` objects (a lone surrogate, or the start of deep nesting)."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str) and surrogate_problem(item):
            return where
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return where
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in reversed(list(pairs)):
                child_path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and surrogate_problem(key):
                    return child_path
                stack.append((child, child_path, depth + 1))
    return path or "(top level)"


def _record_problem(record: dict[str, Any], where: str) -> None:
    """Refuse a record holding what no output can hold: a lone surrogate (`\\ud800`) in any string, or nesting
    deeper than MAX_DEPTH. Both read fine and then crash the writer part-way through an output file."""
    try:
        text = json.dumps(record, ensure_ascii=False, default=str)
    except RecursionError:
        problem: str | None = TOO_DEEP
    else:
        problem = text_problem(text, 0, len(text), record)
    if problem:
        field = _problem_field(record)
        shown = field if len(field) <= 80 else field[:80] + "..."
        raise TrajectoryError(f"{where}: field {shown}: the value {problem}; fix: {fix_for(problem)}, or drop the "
                              "line (--skip-invalid)")


def validate_trajectory(record: Any, where: str = "record", allow_unknown_tools: bool = False) -> dict[str, Any]:
    """Validate one record and return it normalised (arguments as JSON text, unset optional keys dropped).

    Raises `TrajectoryError` naming `where` (e.g. `train.jsonl:12`) and the first offending field. `allow_unknown_tools`
    accepts a call to a tool the record does not offer on a turn not yet marked erroneous (input to `annotate`).
    """
    if not isinstance(record, dict):
        raise TrajectoryError(f"{where}: not a JSON object; fix: write each trajectory as an object with tools, "
                              "messages and meta")
    _record_problem(record, where)
    try:
        model = Trajectory.model_validate(record, context={"allow_unknown_tools": allow_unknown_tools})
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise TrajectoryError(f"{where}: {_describe(errors[0])}{more}") from None
    return dump_trajectory(model)


def dump_trajectory(model: Trajectory) -> dict[str, Any]:
    """A validated trajectory as plain data with a stable key order."""
    data = model.model_dump(exclude_none=True)
    for tool in data["tools"]:
        function = tool["function"]
        tool["function"] = {"name": function["name"], "description": function["description"],
                            "parameters": function["parameters"]}
    return data


@dataclass
class ReadReport:
    """What a read kept and skipped; `errors` holds one `file:line: field ...` line per skipped record."""

    kept: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def iter_jsonl(path: str | Path, skip_invalid: bool = False, report: ReadReport | None = None,
               allow_unknown_tools: bool = False) -> Iterator[dict]:
    """Yield validated trajectories from a JSONL file; bad lines raise (or are counted in `report` if skipping)."""
    path = Path(path)
    report = report if report is not None else ReadReport()
    with open_input(path, fix="pass an existing .jsonl file") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                line = decode_utf8(raw, where, fix="save the file as UTF-8 JSON lines, one trajectory per line")
                record = parse_line(line, where)
                yield_record = validate_trajectory(record, where, allow_unknown_tools)
            except (TrajectoryError, FileProblem) as exc:
                if not skip_invalid:
                    raise
                report.skipped += 1
                report.errors.append(str(exc))
                continue
            report.kept += 1
            yield yield_record


def parse_line(line: str, where: str) -> Any:
    """One line of JSON; TrajectoryError naming `where` when it is not JSON or nests too deep to decode at all."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrajectoryError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); fix: one trajectory "
                              "object per line") from None
    except RecursionError:
        raise TrajectoryError(f"{where}: the line {TOO_DEEP}; fix: {fix_for(TOO_DEEP)}, or drop the line "
                              "(--skip-invalid)") from None


def read_jsonl(path: str | Path, skip_invalid: bool = False,
               allow_unknown_tools: bool = False) -> tuple[list[dict], ReadReport]:
    """All trajectories of a JSONL file and the read report."""
    report = ReadReport()
    records = list(iter_jsonl(path, skip_invalid=skip_invalid, report=report, allow_unknown_tools=allow_unknown_tools))
    return records, report


def to_jsonl_line(record: dict[str, Any]) -> str:
    """One trajectory as one JSON line (UTF-8 kept, compact, stable key order so equal data gives equal bytes)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write trajectories as JSONL; returns the count."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(to_jsonl_line(record) + "\n")
            count += 1
    return count


_PARQUET_COLUMNS = ("tools", "messages", "meta")


def write_parquet(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write trajectories as Parquet, one JSON-text column per part (tool schemas vary too much for Arrow structs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(records)
    columns = {name: [json.dumps(row.get(name, {} if name == "meta" else []), ensure_ascii=False) for row in rows]
               for name in _PARQUET_COLUMNS}
    columns["category"] = [row.get("meta", {}).get("category") for row in rows]
    with atomic_write(path, "wb") as handle:
        pq.write_table(pa.table(columns), handle)
    return len(rows)


def read_parquet(path: str | Path, skip_invalid: bool = False,
                 allow_unknown_tools: bool = False) -> tuple[list[dict], ReadReport]:
    """Read trajectories written by `write_parquet`; rows are validated like JSONL lines (row numbers from 1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    with open_input(path, fix="pass an existing .parquet file") as handle:
        try:
            table = pq.read_table(handle).to_pydict()
        except pa.ArrowException as exc:
            raise TrajectoryError(f"{path}: not a Parquet file ({exc}); fix: write it with write_parquet, or name a "
                                  "JSON lines file .jsonl") from None
    missing = [name for name in _PARQUET_COLUMNS if name not in table]
    if missing:
        raise TrajectoryError(f"{path}: missing columns {missing}; fix: write it with write_parquet")
    report = ReadReport()
    records = []
    for row_index in range(len(table["messages"])):
        where = f"{path}:row {row_index + 1}"
        try:
            try:
                record = {name: parse_line(table[name][row_index], where) for name in _PARQUET_COLUMNS}
            except TypeError as exc:
                raise TrajectoryError(f"{where}: a column is not JSON text ({exc}); fix: write it with write_parquet"
                                      ) from None
            records.append(validate_trajectory(record, where, allow_unknown_tools))
            report.kept += 1
        except TrajectoryError as exc:
            if not skip_invalid:
                raise
            report.skipped += 1
            report.errors.append(str(exc))
    return records, report


def read_any(path: str | Path, skip_invalid: bool = False,
             allow_unknown_tools: bool = False) -> tuple[list[dict], ReadReport]:
    """Read `.jsonl` or `.parquet` by suffix."""
    path = Path(path)
    if path.suffix == ".parquet":
        return read_parquet(path, skip_invalid, allow_unknown_tools)
    return read_jsonl(path, skip_invalid, allow_unknown_tools)


def write_any(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write `.jsonl` or `.parquet` by suffix."""
    path = Path(path)
    return write_parquet(records, path) if path.suffix == ".parquet" else write_jsonl(records, path)


def to_hf_dataset(records: list[dict[str, Any]]):
    """A `datasets.Dataset` view: `messages` as structured rows, `tools` and `meta` as JSON text, plus `category`.

    Tool schemas differ per row, so they stay JSON text (decode with `json.loads`); messages share one structure.
    """
    from datasets import Dataset

    rows = []
    for record in records:
        messages = [
            {
                "role": m["role"],
                "content": m.get("content"),
                "tool_calls": m.get("tool_calls"),
                "tool_call_id": m.get("tool_call_id"),
                "erroneous": bool(m.get("erroneous", False)),
                "feedback_category": m.get("feedback_category"),
            }
            for m in record["messages"]
        ]
        rows.append({
            "messages": messages,
            "tools": json.dumps(record.get("tools", []), ensure_ascii=False),
            "meta": json.dumps(record.get("meta", {}), ensure_ascii=False),
            "category": record.get("meta", {}).get("category"),
        })
    return Dataset.from_list(rows)


__all__ = [
    "FEEDBACK_CATEGORIES",
    "ReadReport",
    "Trajectory",
    "TrajectoryError",
    "dump_trajectory",
    "iter_jsonl",
    "parse_line",
    "read_any",
    "read_jsonl",
    "read_parquet",
    "to_hf_dataset",
    "to_jsonl_line",
    "validate_trajectory",
    "write_any",
    "write_jsonl",
    "write_parquet",
]
