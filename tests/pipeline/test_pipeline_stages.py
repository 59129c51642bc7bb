"""The main job on a tiny model: every stage runs, writes its outputs, and a rerun skips completed stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen_tool import QwenToolError
from qwen_tool.config import PipelineConfig, load_config, to_dict
from qwen_tool.pipeline import Run, evaluate_like, run_pipeline
from qwen_tool.testing import cli_user_error, save_tiny_model


def test_run_skips_completed_stages(tmp_path):
    run = Run(tmp_path / "run")
    calls = []
    first = run.stage("work", lambda: calls.append(1) or {"value": 3})
    again = run.stage("work", lambda: calls.append(2) or {"value": 4})
    assert first == again == {"value": 3}
    assert calls == [1]
    assert "work" in run.seconds()


def test_a_completed_stage_is_reused_only_under_its_own_settings(tmp_path):
    from qwen_tool import QwenToolError
    from qwen_tool.pipeline import stage_settings

    cfg = PipelineConfig()
    run = Run(tmp_path / "run")
    run.stage("sft", lambda: {"model": "a"}, stage_settings(cfg)["sft"])
    faster_eval = load_config(PipelineConfig, None, ["eval.batch_size=32"])
    assert run.stage("sft", lambda: {"model": "b"}, stage_settings(faster_eval)["sft"]) == {"model": "a"}
    assert stage_settings(faster_eval)["trained_eval"] == stage_settings(cfg)["trained_eval"]
    more_data = load_config(PipelineConfig, None, [f"data.n_train={cfg.data.n_train + 1}"])
    with pytest.raises(QwenToolError, match=r"stage sft .*data\.n_train: \d+ -> \d+.*fix: delete"):
        run.stage("sft", lambda: {"model": "c"}, stage_settings(more_data)["sft"])
    assert run.completed("sft", stage_settings(faster_eval)["sft"]) and not run.completed("rl")
    with pytest.raises(QwenToolError, match=r"stage sft .*data\.n_train"):  # checked without running the stage
        run.completed("sft", stage_settings(more_data)["sft"])
    other_lr = load_config(PipelineConfig, None, ["sft.learning_rate=0.5"])
    with pytest.raises(QwenToolError, match=r"sft\.learning_rate"):
        run.stage("sft", lambda: {"model": "d"}, stage_settings(other_lr)["sft"])
    # An RL setting is downstream of SFT: it does not invalidate the SFT stage.
    assert stage_settings(load_config(PipelineConfig, None, ["rl.kl_coef=0.5"]))["sft"] == stage_settings(cfg)["sft"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _overrides(model, run_dir):
    """The tiny job's settings, shared by the main job and its named evaluation."""
    return [f"model={model}", f"run_dir={run_dir}", "data.n_train=6",
            "sft.examples_per_device=2", "sft.gradient_accumulation=1", "sft.save_steps=1", "sft.logging_steps=1",
            "eval.baseline_limit=2", "eval.max_new_tokens=8", "eval.parallel_max_new_tokens=8", "eval.batch_size=4"]


def test_main_job_end_to_end_on_a_tiny_model(tmp_path, tiny_dir):
    cfg = load_config(PipelineConfig, None, [
        *_overrides(tiny_dir, tmp_path / "run"), "data.n_eval=4", "data.n_eval_tasks=2",
        "eval.limits={simple_python: 2, multiple: 2, irrelevance: 2}",
    ])
    report = run_pipeline(cfg)
    root = tmp_path / "run"
    assert report.is_file()
    text = report.read_text()
    assert "baseline" in text and "trained" in text
    stages = sorted(p.stem for p in (root / "stages").glob("*.json"))
    assert stages == ["baseline_eval", "data", "held_out", "sft", "trained_eval"]
    trained = json.loads((root / "stages" / "trained_eval.json").read_text())["result"]["free"]
    assert set(trained["categories"]) == {"simple_python", "multiple", "irrelevance"}
    assert all(c["n"] == 2 for c in trained["categories"].values())
    assert trained["internal_tasks"]["episodes"] == 2 and "Multi-turn VA" in text
    assert (root / "sft" / "final" / "qwen_tool.json").is_file()
    # The job projected each stage at its start and recorded what each then took; the report shows both, and the
    # precision SFT chose with its reason.
    projection = json.loads((root / "projection.json").read_text())
    assert set(projection["projected_at_start"]) == {"baseline_eval", "sft", "trained_eval"}
    assert all(seconds > 0 for seconds in projection["projected_at_start"].values())
    assert set(projection["took"]) == {"data", "held_out", "baseline_eval", "sft", "trained_eval"}
    assert projection["rates"]["train_tokens_per_s"] > 0
    assert "projected at the job's start" in text and "Machine and precision" in text
    assert "fp32 (pinned to fp32 by the test suite)" in text

    # A rerun finds every stage complete and only rewrites the report.
    marker_times = {p.name: p.stat().st_mtime for p in (root / "stages").glob("*.json")}
    run_pipeline(cfg)
    assert marker_times == {p.name: p.stat().st_mtime for p in (root / "stages").glob("*.json")}

    # A named evaluation with larger held-out sets, a parallel category and both decodings reuses the job's data
    # and SFT model (its markers untouched), and keeps its own stages, outcomes and report beside the job's.
    main_report = report.read_text()
    named = load_config(PipelineConfig, None, [
        *_overrides(tiny_dir, root), "data.n_eval=4", "data.n_eval_decisions=9", "data.n_eval_tasks=3",
        "eval.name=report", "eval.decoding=[guided, free]", "eval.categories=[simple_python, parallel]",
        "eval.limits={simple_python: 2, parallel: 2}",
    ])
    named_report = run_pipeline(named)
    assert marker_times == {p.name: p.stat().st_mtime for p in (root / "stages").glob("*.json")}
    assert report.read_text() == main_report
    own = root / "evaluations" / "report"
    assert named_report == own / "report.md"
    assert sorted(p.stem for p in (own / "stages").glob("*.json")) == ["baseline_eval", "held_out", "trained_eval"]
    projection = json.loads((own / "projection.json").read_text())  # its own stages projected, SFT taken as done
    assert set(projection["projected_at_start"]) == {"baseline_eval", "trained_eval"}
    assert {"data", "sft", "held_out", "baseline_eval", "trained_eval"} == set(projection["took"])
    held = json.loads((own / "stages" / "held_out.json").read_text())["result"]
    assert held["decisions"] >= 9 and held["n_eval"] >= 4 and held["n_tasks"] == 3
    by_decoding = json.loads((own / "stages" / "trained_eval.json").read_text())["result"]
    assert set(by_decoding) == {"guided", "free"}
    assert by_decoding["guided"]["generation"]["guided"] and not by_decoding["free"]["generation"]["guided"]
    assert "internal_tasks" in by_decoding["free"] and "internal_tasks" not in by_decoding["guided"]
    text = named_report.read_text()
    assert "| trained (SFT), guided | " in text and "| trained (SFT), free | " in text
    assert "| parallel | 2 |" in text
    metrics = json.loads((own / "metrics.json").read_text())["runs"]
    assert set(metrics) == {"baseline, guided", "baseline, free", "trained (SFT), guided", "trained (SFT), free"}
    from qwen_tool.eval.compare import compare_runs

    paired = compare_runs([own / "eval" / "trained" / "free"], [own / "eval" / "trained" / "guided"],
                          tmp_path / "paired", resamples=200)
    compared = {(m.section, m.metric) for m in paired.metrics}
    assert ("bfcl", "parallel accuracy") in compared and ("internal", "CF") in compared
    assert all(m.items == held["decisions"] for m in paired.metrics if m.section == "internal" and m.metric == "CF")

    # `eval like`: the SFT model evaluated as the named evaluation evaluated it (free decoding only) gives its very
    # outcomes, item by item, on the evaluation's own held-out sets and tasks.
    like = tmp_path / "like"
    assert set(evaluate_like(own, str(root / "sft" / "final"), like, ["eval.decoding=[free]"])) == {"free"}
    for section in ("bfcl", "internal", "internal_tasks"):
        reported = own / "eval" / "trained" / "free" / section / "outcomes.jsonl"
        assert (like / section / "outcomes.jsonl").read_text() == reported.read_text(), section
    assert json.loads((like / "config.json").read_text())["like"] == str(own)
    from typer.testing import CliRunner

    from qwen_tool.cli import app

    result = CliRunner().invoke(app, ["eval", "like", str(own), "--model", str(root / "sft" / "final"), "--out",
                                      str(like), "eval.decoding=[free]"])  # answers from the run's generation cache
    assert result.exit_code == 0, result.output
    assert f"compare: qwen-tool eval compare {own / 'eval' / 'trained' / 'free'} {like}" in result.output


def test_eval_like_takes_eval_settings_only(tmp_path, capsys):
    job = tmp_path / "job"
    job.mkdir()
    with pytest.raises(QwenToolError, match="holds no config.json"):
        evaluate_like(job, "m", tmp_path / "out")
    (job / "config.json").write_text(json.dumps(to_dict(load_config(PipelineConfig, None, []))))
    line = cli_user_error(capsys, "eval", "like", str(job), "--model", "m", "--out", str(tmp_path / "out"),
                          "sft.mae=false")
    assert "sft.mae=false: eval like takes the job's data, SFT and RL settings as they were; fix: override eval.*" \
        in line
    with pytest.raises(QwenToolError, match=r"internal_eval\.jsonl: the held-out set eval\.internal asks for is "
                                            r"missing; fix: pass the job's own folder, or set eval\.internal=false"):
        evaluate_like(job, "m", tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing is written before the settings are checked"


def test_rl_never_trains_on_the_suites_held_out_for_evaluation():
    from qwen_tool import QwenToolError
    from qwen_tool.data.synth import held_out_split
    from qwen_tool.pipeline import training_suites

    cfg = PipelineConfig()
    held_out = held_out_split(cfg.data.held_out_fraction, cfg.data.seed)
    suites = training_suites(cfg)
    assert suites and not set(suites) & held_out
    assert set(cfg.rl.suites) & held_out  # the recipe's list did name some: they were taken out
    only_held = load_config(PipelineConfig, None, [f"rl.suites=[{', '.join(sorted(set(cfg.rl.suites) & held_out))}]"])
    with pytest.raises(QwenToolError, match="held out"):
        training_suites(only_held)


def test_the_data_stage_makes_what_data_synth_makes(tmp_path):
    """One preparation for both ways in: the same settings give the same filtered records, and the same held-out
    set and tasks (`data synth` once drew them with the training seed, the job with seed+1 and seed+2)."""
    from typer.testing import CliRunner

    from qwen_tool.cli import app
    from qwen_tool.pipeline import synthesize_data, synthesize_held_out

    cfg = load_config(PipelineConfig, None, ["data.n_train=40", "data.n_eval=4", "data.n_eval_tasks=2", "data.seed=3",
                                             "data.mix={single: 0.5, irrelevance: 0.5}",
                                             "data.eval_mix={single: 0.6, parallel: 0.4}"])
    made = synthesize_data(cfg, Run(tmp_path / "run"))
    held = synthesize_held_out(cfg, tmp_path / "run")
    cli = tmp_path / "cli"
    result = CliRunner().invoke(app, ["data", "synth", "--n", "40", "--seed", "3", "--mix",
                                      "single=0.5,irrelevance=0.5", "--held-out-tools", "0.2", "--suite-share", "0.2",
                                      "--out", str(cli / "train.jsonl"), "--eval-out", str(cli / "eval.jsonl"),
                                      "--eval-n", "4", "--eval-mix", "single=0.6,parallel=0.4",
                                      "--eval-tasks-out", str(cli / "tasks.jsonl"), "--eval-tasks-n", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "data" / "train.jsonl").read_text() == (cli / "train.jsonl").read_text()
    assert made["filters"]["train"].startswith("filters: kept")
    assert Path(held["internal_eval"]).read_text() == (cli / "eval.jsonl").read_text()
    assert Path(held["internal_tasks"]).read_text() == (cli / "tasks.jsonl").read_text()
    assert {json.loads(line)["meta"]["category"] for line in (cli / "eval.jsonl").read_text().splitlines()} \
        <= {"single", "parallel"}


def test_the_data_stage_filters_what_it_synthesizes(tmp_path, monkeypatch):
    """A duplicate (same tools, user text and calls) that synthesis made is dropped, and the stage says so."""
    from qwen_tool.data import prepare
    from qwen_tool.pipeline import synthesize_data

    real = prepare.synthesize

    def with_a_duplicate(n, **kwargs):
        records = real(n, **kwargs)
        return records + [json.loads(json.dumps(records[0]))]

    monkeypatch.setattr(prepare, "synthesize", with_a_duplicate)
    cfg = load_config(PipelineConfig, None, ["data.n_train=5", "data.n_eval=2", "data.n_eval_tasks=1"])
    made = synthesize_data(cfg, Run(tmp_path / "run"))
    assert made["n_train"] == 5 and made["filters"]["train"] == "filters: kept 5 of 6; dropped duplicate 1"
    assert len((tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()) == 5
