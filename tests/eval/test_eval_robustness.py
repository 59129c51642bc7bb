"""The robustness suite: the internal held-out suite under the RoTBench noise levels (docs/references.md).

Noise changes names as each level says; the gold calls follow the presented names (an oracle answering the presented
gold scores 100% everywhere, one answering the clean gold does not); a seed fixes the noise; the CLI writes the table
and the chart; `write_report` shows the section.
"""

from __future__ import annotations

import json

import pytest

from qwen_tool import QwenToolError
from qwen_tool.cli import main
from qwen_tool.codec import get_codec
from qwen_tool.codec.chat import render_prompt
from qwen_tool.data.augment import augment_all
from qwen_tool.env.noise import NOISE_LEVELS
from qwen_tool.eval.report import write_report
from qwen_tool.eval.robustness import run_robustness, write_noised
from qwen_tool.eval.runner import decision_points
from qwen_tool.testing import ScriptedBackend, save_tiny_model, tiny_tokenizer

PNG = b"\x89PNG\r\n\x1a\n"


def _tool(name: str, params: list[str], required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": f"The {name} service for travellers.",
                                             "parameters": {"type": "object", "required": required, "properties": {
                                                 p: {"type": "string", "description": f"The {p}."} for p in params}}}}


TOOLS = [_tool("get_weather", ["city", "days"], ["city"]),
         _tool("book_hotel", ["city", "nights", "guests"], ["city", "nights"]),
         _tool("convert_currency", ["amount", "source", "target"], ["amount"])]
NAMES = {t["function"]["name"] for t in TOOLS}
PARAMS = {t["function"]["name"]: list(t["function"]["parameters"]["properties"]) for t in TOOLS}


def _call(name: str, arguments: dict) -> dict:
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def _records() -> list[dict]:
    """Three one-call records (one with a tool result and a final answer) and one that needs no call: 5 decisions."""
    return [
        {"tools": TOOLS, "messages": [
            {"role": "user", "content": "query-0: weather in Paris for 3 days"},
            {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Paris", "days": "3"})]},
            {"role": "tool", "tool_call_id": "c1", "content": "result-0: sunny"},
            {"role": "assistant", "content": "Sunny in Paris."}]},
        {"tools": TOOLS, "messages": [
            {"role": "user", "content": "query-1: a room in Rome for 2 nights"},
            {"role": "assistant", "content": "", "tool_calls": [
                _call("book_hotel", {"city": "Rome", "nights": "2"})]}]},
        {"tools": TOOLS, "messages": [
            {"role": "user", "content": "query-2: 5 EUR in USD"},
            {"role": "assistant", "content": "", "tool_calls": [
                _call("convert_currency", {"amount": "5", "source": "EUR", "target": "USD"})]}]},
        {"tools": TOOLS, "messages": [{"role": "user", "content": "query-3: hello"},
                                      {"role": "assistant", "content": "Hello!"}]},
    ]


def _write(path, records: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _gold(record: dict) -> tuple[str, dict] | None:
    calls = record["messages"][1].get("tool_calls")
    return (calls[0]["function"]["name"], json.loads(calls[0]["function"]["arguments"])) if calls else None


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def noised(tmp_path_factory) -> dict[str, list[dict]]:
    root = tmp_path_factory.mktemp("noised")
    return {level: _read(write_noised(_records(), level, 0, root / f"{level}.jsonl")) for level in NOISE_LEVELS}


def _presented(record: dict) -> dict[str, list[str]]:
    return {t["function"]["name"]: list(t["function"]["parameters"]["properties"]) for t in record["tools"]}


def test_clean_is_unchanged(noised) -> None:
    for original, record in zip(_records(), noised["clean"], strict=True):
        assert record["tools"] == original["tools"] and record["messages"] == original["messages"]
        assert record["meta"]["noise"] == "clean"


@pytest.mark.parametrize("level", ["slight", "medium"])
def test_slight_and_medium_rename_every_tool_and_parameter(noised, level) -> None:
    for record in noised[level]:
        for real, tool in zip(TOOLS, record["tools"], strict=True):
            name, params = tool["function"]["name"], list(tool["function"]["parameters"]["properties"])
            real_name, real_params = real["function"]["name"], list(real["function"]["parameters"]["properties"])
            assert name not in NAMES and len(params) == len(real_params)
            if level == "medium":  # reversed, or a random 1–10 letter (parameters 1–5) lowercase string
                assert name == real_name[::-1] or (name.isalpha() and name.islower() and len(name) <= 10)
                assert all(p == q[::-1] or (p.isalpha() and p.islower() and len(p) <= 5)
                           for p, q in zip(params, real_params, strict=True))
            else:  # a few character edits: at most a third of the name's length, so the length stays close
                assert abs(len(name) - len(real_name)) <= len(real_name) // 3
        assert sum(p not in PARAMS[r["function"]["name"]] for r, t in zip(TOOLS, record["tools"], strict=True)
                   for p in t["function"]["parameters"]["properties"]) >= 1


def test_heavy_shuffles_names_and_adds_a_required_parameter(noised) -> None:
    shuffled = 0
    for record in noised["heavy"]:
        presented = _presented(record)
        assert set(presented) == NAMES  # tool names permuted among the tools
        for real, tool in zip(TOOLS, record["tools"], strict=True):
            real_params = PARAMS[real["function"]["name"]]
            params = list(tool["function"]["parameters"]["properties"])
            assert sorted(params[:-1]) == sorted(real_params)  # parameters permuted, one new one at the end
            assert params[-1] not in real_params and params[-1] in tool["function"]["parameters"]["required"]
            shuffled += tool["function"]["name"] != real["function"]["name"]
        gold = _gold(record)
        if gold:
            assert gold[1][presented[gold[0]][-1]] == ""  # the gold fills the new parameter with ""
    assert shuffled >= 4  # seed 0: most tools are presented under another tool's name


def test_union_mixes_levels_and_changes_tool_and_parameter_names(noised) -> None:
    names = [t["function"]["name"] for r in noised["union"] for t in r["tools"]]
    params = [p for r in noised["union"] for t in r["tools"] for p in t["function"]["parameters"]["properties"]]
    assert any(n not in NAMES for n in names) and any(n in NAMES for n in names)  # seed 0: some heavy, some not
    assert any(p not in {q for ps in PARAMS.values() for q in ps} for p in params)


@pytest.mark.parametrize("level", NOISE_LEVELS)
def test_gold_calls_use_the_presented_names(noised, level) -> None:
    for record in noised[level]:
        presented = _presented(record)
        for message in record["messages"]:
            for call in message.get("tool_calls") or []:
                name, arguments = call["function"]["name"], json.loads(call["function"]["arguments"])
                assert name in presented and set(arguments) <= set(presented[name])
                tool = next(t for t in record["tools"] if t["function"]["name"] == name)
                assert set(tool["function"]["parameters"]["required"]) <= set(arguments)
    values = [sorted(map(str, _gold(r)[1].values())) for r in noised[level] if _gold(r)]
    clean = [sorted(map(str, _gold(r)[1].values())) for r in noised["clean"] if _gold(r)]
    assert [[v for v in vs if v] for vs in values] == clean  # values untouched (heavy adds only "")


def test_same_seed_same_noise(tmp_path) -> None:
    for level in NOISE_LEVELS:
        first = write_noised(_records(), level, 7, tmp_path / f"a-{level}.jsonl").read_bytes()
        assert first == write_noised(_records(), level, 7, tmp_path / f"b-{level}.jsonl").read_bytes()
    other = write_noised(_records(), "slight", 8, tmp_path / "c.jsonl").read_bytes()
    assert other != (tmp_path / "a-slight.jsonl").read_bytes()


def _answers(tokenizer, seed: int, gold_of) -> dict[str, str]:
    """The prompt the runner renders for every decision at every level → `gold_of(clean gold, noised gold)` in Hermes
    text (or a plain answer where the gold makes no call)."""
    codec = get_codec("hermes")
    clean_points = [p for r in _records() for p in decision_points(r)]
    answers = {}
    for level in NOISE_LEVELS:
        records = augment_all(_records(), [level], seed)
        points = [(r, p) for r in records for p in decision_points(r)]
        for (record, (history, gold)), (_, clean_gold) in zip(points, clean_points, strict=True):
            calls = gold_of(clean_gold, gold)
            answers[render_prompt(tokenizer, history, record["tools"], codec)] = (
                codec.render_calls(calls).text if calls else "Done.")
    return answers


def _run(tmp_path, tokenizer, backend, name="robust", seed=0) -> dict:
    return run_robustness("oracle", _write(tmp_path / "held.jsonl", _records()), tmp_path / name, backend=backend,
                          tokenizer=tokenizer, tool_format="hermes", seed=seed, cache_dir=tmp_path / name / "cache",
                          progress=False)


def test_oracle_on_presented_names_scores_everything(tmp_path, tokenizer) -> None:
    backend = ScriptedBackend(_answers(tokenizer, 0, lambda clean, noisy: noisy).__getitem__)
    result = _run(tmp_path, tokenizer, backend)
    assert list(result["levels"]) == list(NOISE_LEVELS)
    for level, scores in result["levels"].items():
        assert (scores["TS"], scores["PI"], scores["CF"], scores["n"]) == (1.0, 1.0, 1.0, 5), level
        assert (tmp_path / "robust" / level / "outcomes.jsonl").is_file()
        # the suite's noised copy is the seeded noise, byte for byte
        assert _read(tmp_path / "robust" / level / "records.jsonl") == augment_all(_records(), [level], 0)
    assert len(backend.decoded) == 5 * len(NOISE_LEVELS)  # one shared backend, every prompt distinct
    assert json.loads((tmp_path / "robust" / "metrics.json").read_text())["levels"] == result["levels"]
    table = (tmp_path / "robust" / "robustness.md").read_text()
    assert "| level | TS | PI | CF | n |" in table and "| union | 100.0 | 100.0 | 100.0 | 5 |" in table
    assert (tmp_path / "robust" / "robustness.png").read_bytes()[:8] == PNG


def test_oracle_on_clean_names_loses_under_noise(tmp_path, tokenizer) -> None:
    """Answering with the real (clean) names: 2 of 5 decisions make no call and always pass (the final answer after
    the tool result, and the greeting). Slight/medium rename every tool: the 3 calls fail TS → TS = PI = CF = 2/5.
    Heavy adds a required parameter to every tool, so no clean call passes PI: PI = CF = 2/5."""
    result = _run(tmp_path, tokenizer, ScriptedBackend(_answers(tokenizer, 0, lambda clean, noisy: clean).__getitem__))
    levels = result["levels"]
    assert (levels["clean"]["TS"], levels["clean"]["CF"]) == (1.0, 1.0)
    for level in ("slight", "medium"):
        assert (levels[level]["TS"], levels[level]["PI"], levels[level]["CF"]) == (0.4, 0.4, 0.4)
    assert (levels["heavy"]["PI"], levels["heavy"]["CF"]) == (0.4, 0.4)


def test_unknown_level_is_a_user_error(tmp_path, tokenizer) -> None:
    with pytest.raises(QwenToolError, match="noise levels"):
        run_robustness("oracle", _write(tmp_path / "held.jsonl", _records()), tmp_path / "x", levels=["loud"],
                       backend=ScriptedBackend({}.__getitem__), tokenizer=tokenizer, tool_format="hermes")


def test_report_shows_robustness_section(tmp_path) -> None:
    levels = {"clean": {"TS": 0.9, "PI": 0.8, "CF": 0.5, "n": 10}, "heavy": {"TS": 0.4, "PI": 0.2, "CF": 0.1, "n": 10}}
    report = write_report(tmp_path, {"trained": {"model": "m", "robustness": {"levels": levels}}})
    text = report.read_text()
    assert "| level | TS | PI | CF | n |" in text and "| heavy | 40.0 | 20.0 | 10.0 | 10 |" in text
    assert "![robustness.png](robustness.png)" in text
    assert (tmp_path / "robustness.png").read_bytes()[:8] == PNG


def test_cli_robustness_suite(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--suite", "robustness"])
    assert exit_info.value.code == 1
    assert "--suite robustness needs --data PATH; fix:" in capsys.readouterr().err
    model_dir = save_tiny_model(tmp_path / "tiny")
    data = _write(tmp_path / "held.jsonl", _records())
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", str(model_dir), "--suite", "robustness", "--data", str(data), "--limit", "2",
              "--max-new-tokens", "4", "--backend", "transformers", "--threads", "1", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert list(metrics["levels"]) == list(NOISE_LEVELS) and metrics["records"] == 2
    assert all(scores["n"] == 3 for scores in metrics["levels"].values())  # 2 records: 3 decisions
    assert "| clean |" in (tmp_path / "r" / "robustness.md").read_text()
    assert (tmp_path / "r" / "robustness.png").read_bytes()[:8] == PNG
