from __future__ import annotations

import threading
import time

import pytest

from qwen_tool.codec.types import ToolCall
from qwen_tool.tools import (
    Executor,
    FeedbackCategory,
    Tool,
    ToolInstabilityError,
    ToolRegistry,
    classify_feedback_text,
    validate_arguments,
)


def get_temperature(city: str, unit: str = "celsius") -> dict:
    """Temperature of a city."""
    return {"city": city, "temperature": 21 if unit == "celsius" else 70}


def set_mode(mode: str, level: int) -> str:
    """Set a mode."""
    return f"{mode}:{level}"


def divide(a: float, b: float) -> float:
    """Divide."""
    return a / b


def flaky() -> str:
    """Always down."""
    raise ToolInstabilityError("503 Service Unavailable")


def sleepy(seconds: float) -> str:
    """Sleep."""
    time.sleep(seconds)
    return "woke"


def unserialisable() -> object:
    """Returns an object JSON cannot hold."""
    return object()


ENUM_TOOL = Tool.from_schema(
    {"name": "set_unit", "parameters": {"type": "object", "properties": {"unit": {"type": "string",
     "enum": ["celsius", "fahrenheit"]}}, "required": ["unit"]}}, handler=lambda unit: unit)
TOOLS = ToolRegistry([get_temperature, set_mode, divide, flaky, sleepy, unserialisable, ENUM_TOOL])


def run(name, **arguments):
    """One call of a trusted tool, in-process: these tests are about validation and classification, and a sandbox's
    start-up (tests/tools/test_sandbox.py) would eat into the short timeout."""
    return Executor(timeout_s=0.5, isolate=False).execute([ToolCall(name, arguments)], TOOLS)[0]


def test_ok():
    outcome = run("get_temperature", city="Oslo")
    assert outcome.category is FeedbackCategory.OK
    assert outcome.content == '{"city": "Oslo", "temperature": 21}'
    assert outcome.result == {"city": "Oslo", "temperature": 21}


def test_tool_hallucination():
    outcome = run("get_temprature", city="Oslo")
    assert outcome.category is FeedbackCategory.TOOL_HALLUCINATION
    assert "get_temprature" in outcome.content and "get_temperature" in outcome.content


def test_parameter_hallucination_names_the_argument():
    outcome = run("get_temperature", city="Oslo", country="NO")
    assert outcome.category is FeedbackCategory.PARAMETER_HALLUCINATION
    assert "unexpected argument 'country'" in outcome.error_message


def test_parameter_missing_names_argument_and_type():
    outcome = run("set_mode", mode="eco")
    assert outcome.category is FeedbackCategory.PARAMETER_MISSING
    assert outcome.error_message == "missing required argument 'level' (expected integer)"


def test_wrong_type_and_enum_are_call_failures_with_expected_vs_got():
    wrong_type = run("set_mode", mode="eco", level="3")
    assert wrong_type.category is FeedbackCategory.CALL_FAILURE
    assert wrong_type.error_message == "argument 'level' expected integer but got string '3'"
    bool_for_int = validate_arguments(TOOLS["set_mode"], {"mode": "x", "level": True})
    assert bool_for_int[0].kind == "type" and bool_for_int[0].got is True
    enum = run("set_unit", unit="kelvin")
    assert enum.category is FeedbackCategory.CALL_FAILURE
    assert enum.error_message == "argument 'unit' must be one of ['celsius', 'fahrenheit'] but got 'kelvin'"


def test_exception_in_tool_is_call_failure_with_type():
    outcome = run("divide", a=1, b=0)
    assert outcome.category is FeedbackCategory.CALL_FAILURE
    assert outcome.error_type == "ZeroDivisionError"
    assert outcome.content.startswith("Error: ZeroDivisionError")


def test_instability_exception():
    outcome = run("flaky")
    assert outcome.category is FeedbackCategory.TOOL_INSTABILITY
    assert "503" in outcome.content


def test_sleeping_tool_is_stopped_at_timeout_and_classified_instability():
    start = time.perf_counter()
    outcome = run("sleepy", seconds=5)
    assert time.perf_counter() - start < 1.5
    assert outcome.category is FeedbackCategory.TOOL_INSTABILITY
    assert outcome.error_type == "Timeout"
    # the episode goes on: the next call works
    assert run("get_temperature", city="Oslo").ok


def test_other_category_for_unserialisable_result():
    outcome = run("unserialisable")
    assert outcome.category is FeedbackCategory.OTHER


def test_parallel_calls_run_concurrently_and_keep_order():
    """Both `rendezvous` calls wait at a two-party barrier: it only opens when they run at the same time."""
    barrier = threading.Barrier(2)

    def rendezvous() -> str:
        """Meet the other call."""
        barrier.wait(timeout=1.5)
        return "met"

    tools = ToolRegistry([get_temperature, rendezvous])
    calls = [ToolCall("rendezvous", {}), ToolCall("get_temperature", {"city": "A"}), ToolCall("rendezvous", {})]
    outcomes = Executor(timeout_s=5, isolate=False).execute(calls, tools)
    assert [o.content for o in outcomes] == ["met", '{"city": "A", "temperature": 21}', "met"]

    barrier.reset()
    one_at_a_time = Executor(timeout_s=5, concurrent=False, isolate=False).execute(calls, tools)
    assert [o.ok for o in one_at_a_time] == [False, True, False], "one at a time, neither call meets the other"


def test_result_is_capped():
    big = Tool.from_callable(lambda: "x" * 100, name="big", description="")
    outcome = Executor(max_result_chars=10).execute([ToolCall("big", {})], {"big": big})[0]
    assert outcome.content.startswith("x" * 10 + "... [truncated 90")


def hog() -> int:
    """Allocate without bound."""
    chunks = []
    while True:
        chunks.append(bytearray(16 * 1024 * 1024))


def spin() -> int:
    """Burn CPU forever."""
    n = 0
    while True:
        n += 1


def test_isolation_stops_unbounded_allocation_by_memory_limit():
    tool = Tool.from_callable(hog, isolate=True)
    outcome = Executor(timeout_s=20, memory_limit_mb=128).execute([ToolCall("hog", {})], {"hog": tool})[0]
    assert outcome.category is FeedbackCategory.TOOL_INSTABILITY
    assert outcome.error_type in ("MemoryError", "ResourceLimitExceeded")
    assert "128 MiB" in outcome.error_message
    assert outcome.elapsed_s < 15


def test_isolation_stops_cpu_hog_and_returns_results():
    spinner = Tool.from_callable(spin, isolate=True)
    # A generous wall-clock timeout, so the 1 s CPU limit trips first even on a heavily loaded machine.
    outcome = Executor(timeout_s=120, cpu_limit_s=1).execute([ToolCall("spin", {})], {"spin": spinner})[0]
    assert outcome.category is FeedbackCategory.TOOL_INSTABILITY
    assert outcome.error_type == "ResourceLimitExceeded" and "CPU" in outcome.error_message
    sandboxed = Executor(isolate=True).execute([ToolCall("get_temperature", {"city": "B"}),
                                                ToolCall("divide", {"a": 1, "b": 0})], TOOLS)
    assert sandboxed[0].result == {"city": "B", "temperature": 21}
    assert sandboxed[1].error_type == "ZeroDivisionError"


def test_isolation_kills_at_timeout():
    tool = Tool.from_callable(sleepy, isolate=True)
    outcome = Executor(timeout_s=0.3).execute([ToolCall("sleepy", {"seconds": 30})], {"sleepy": tool})[0]
    assert outcome.category is FeedbackCategory.TOOL_INSTABILITY and outcome.error_type == "Timeout"


@pytest.mark.parametrize(("text", "category"), [
    ('{"temperature": 21}', FeedbackCategory.OK),
    ("HTTPError: 503 Server Error: Service Unavailable", FeedbackCategory.TOOL_INSTABILITY),
    ("Request timed out after 30s", FeedbackCategory.TOOL_INSTABILITY),
    ("NameError: name 'get_wether' is not defined", FeedbackCategory.TOOL_HALLUCINATION),
    ("TypeError: f() got an unexpected keyword argument 'country'", FeedbackCategory.PARAMETER_HALLUCINATION),
    ("TypeError: f() missing 1 required positional argument: 'city'", FeedbackCategory.PARAMETER_MISSING),
    ("400 Client Error: Bad Request for url", FeedbackCategory.CALL_FAILURE),
    ("Invalid API call: value must be positive", FeedbackCategory.CALL_FAILURE),
])
def test_text_classifier(text, category):
    assert classify_feedback_text(text) is category


def test_structured_contents_classify_back_to_their_category():
    """What the executor sends back is recognised by the text classifier (recorded trajectories stay consistent)."""
    cases = [run("get_temprature", city="x"), run("get_temperature", city="x", country="y"),
             run("set_mode", mode="eco"), run("divide", a=1, b=0), run("flaky"), run("get_temperature", city="x")]
    for outcome in cases:
        assert classify_feedback_text(outcome.content) is outcome.category, outcome.content
