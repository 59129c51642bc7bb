"""`qwen-tool ablate`: the cells and their recipes, the rejections, and a two-cell ablation on a tiny model that writes
its table, resumes where it stopped, and trains nothing on a dry run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from qwen_tool import QwenToolError
from qwen_tool.ablation import (
    CELLS,
    check_mae_data,
    check_overrides,
    parse_cells,
    parse_seeds,
    plan_cells,
    prepare_ablation,
)
from qwen_tool.config import PipelineConfig, load_config
from qwen_tool.testing import cli_user_error, save_tiny_model


def test_every_cell_gets_its_switches_and_seed_and_nothing_else(tmp_path):
    cfg = PipelineConfig()
    runs = plan_cells(cfg, parse_cells(None), [0, 2], tmp_path)
    # Seed by seed, cells in the paper's order: the first seed's table is complete first.
    assert [(r.cell.name, r.seed) for r in runs] == [(c, s) for s in (0, 2) for c in CELLS]
    expected = {
        "sft": (False, False, False),
        "mae": (True, False, False),
        "pkt": (False, True, False),
        "mae-pkt": (True, True, False),
        "irm": (False, False, True),
        "tl": (True, True, True),
    }
    for run in runs:
        sft, rl = run.config.sft, run.config.rl
        assert (sft.mae, sft.pkt, run.cell.irm) == expected[run.cell.name]
        assert sft.seed == rl.seed == run.seed
        # Everything else is the recipe's: the cells differ only in their switches and seed.
        assert replace(sft, mae=cfg.sft.mae, pkt=cfg.sft.pkt, seed=cfg.sft.seed) == cfg.sft
        assert replace(rl, seed=cfg.rl.seed) == cfg.rl
        assert (run.config.data, run.config.eval, run.config.model) == (cfg.data, cfg.eval, cfg.model)
        assert run.root == tmp_path / run.cell.name / f"seed-{run.seed}"
    by_name = {(r.cell.name, r.seed): r for r in runs}
    # RL cells start from the SFT model of their SFT cell at the same seed, trained once under the same settings.
    for rl_cell, sft_cell in (("irm", "sft"), ("tl", "mae-pkt")):
        rl_run, sft_run = by_name[(rl_cell, 2)], by_name[(sft_cell, 2)]
        assert rl_run.sft_root == sft_run.root
        (rl_sft_root, _, rl_sft_settings), rl_stage, rl_eval = rl_run.stages()
        (sft_root, _, sft_settings), _ = sft_run.stages()
        assert (rl_sft_root, rl_sft_settings) == (sft_root, sft_settings)
        assert [rl_stage[1], rl_eval[1]] == ["rl", "eval"] and rl_stage[0] == rl_run.root
        assert rl_stage[2]["rl"]["seed"] == 2 and rl_eval[2]["rl"]["seed"] == 2
    assert by_name[("mae", 0)].stages()[0][2]["sft"]["mae"] is True
    assert by_name[("mae", 0)].stages()[0][2] != by_name[("mae", 2)].stages()[0][2]  # seeds do not share a model


def test_cells_and_seeds_from_the_command_line():
    assert parse_cells("irm,mae") == ["sft", "mae", "irm"]  # the reference always, then the paper's order
    assert parse_cells(None) == list(CELLS)
    with pytest.raises(QwenToolError, match="did you mean 'mae'"):
        parse_cells("mea")
    with pytest.raises(QwenToolError, match="only the reference.*fix: add a cell"):
        parse_cells("sft")
    assert parse_seeds(None) == [0]
    assert parse_seeds("0", ["1", "2"]) == [0, 1, 2]  # --seeds 0 1 2
    assert parse_seeds("3,1") == [3, 1]
    with pytest.raises(QwenToolError, match="twice"):
        parse_seeds("0,1", ["1"])
    with pytest.raises(QwenToolError, match="whole numbers"):
        parse_seeds("a")
    with pytest.raises(QwenToolError, match="only after --seeds"):
        parse_seeds(None, ["1"])


def test_cells_that_make_no_sense_for_the_recipe_are_rejected(tmp_path):
    no_pkt = load_config(PipelineConfig, None, ["sft.w_max=1"])
    with pytest.raises(QwenToolError, match=r"sft.w_max is 1.0.*fix: set sft.w_max above 1"):
        plan_cells(no_pkt, parse_cells("pkt"), [0], tmp_path)
    assert plan_cells(no_pkt, parse_cells("mae,irm"), [0], tmp_path)  # cells without PKT are fine
    no_irm = load_config(PipelineConfig, None, ["rl.rewards.irm=0"])
    with pytest.raises(QwenToolError, match=r"rl.rewards.irm is 0.*fix: set rl.rewards.irm=1"):
        plan_cells(no_irm, parse_cells("tl"), [0], tmp_path)
    with pytest.raises(QwenToolError, match="ablate sets sft.mae.*fix: drop it and choose the cells with --cells"):
        check_overrides(["sft.lr_scheduler=linear", "sft.mae=false"])
    with pytest.raises(QwenToolError, match="--seeds"):
        check_overrides(["rl.seed=3"])


def test_mae_cells_need_erroneous_turns_in_the_data(tmp_path):
    from qwen_tool.data.schema import write_jsonl
    from qwen_tool.data.synth import synthesize

    runs = plan_cells(PipelineConfig(), parse_cells("mae"), [0], tmp_path)
    clean = tmp_path / "clean.jsonl"
    write_jsonl(synthesize(4, seed=0, mix={"single": 1.0}), clean)
    with pytest.raises(QwenToolError, match="no erroneous assistant turn.*fix: give data.mix an error_recovery share"):
        check_mae_data(runs, str(clean))
    check_mae_data(plan_cells(PipelineConfig(), parse_cells("pkt"), [0], tmp_path), str(clean))  # no MAE cell
    with_errors = tmp_path / "errors.jsonl"
    write_jsonl(synthesize(4, seed=0, mix={"error_recovery": 1.0}), with_errors)
    check_mae_data(runs, str(with_errors))


def test_the_command_rejects_with_one_line_and_the_fix(capsys, tmp_path):
    out = str(tmp_path / "ablate")
    assert "did you mean 'irm'" in cli_user_error(capsys, "ablate", "--out", out, "--cells", "imr")
    assert "sft.pkt" in cli_user_error(capsys, "ablate", "--out", out, "sft.pkt=true")
    assert "twice" in cli_user_error(capsys, "ablate", "--out", out, "--seeds", "0", "0")
    assert "sft.w_max" in cli_user_error(capsys, "ablate", "--out", out, "sft.w_max=1")
    assert not (tmp_path / "ablate").exists()  # rejected before anything was written


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def tiny_overrides(tiny_dir) -> list[str]:
    return [
        f"model={tiny_dir}",
        "data.n_train=4",
        "data.n_eval=2",
        "data.n_eval_tasks=1",
        "sft.examples_per_device=2",
        "sft.gradient_accumulation=1",
        "sft.save_steps=10",
        "eval.max_new_tokens=4",
        "eval.batch_size=4",
        "eval.categories=[simple_python, irrelevance]",
        "eval.limits={simple_python: 2, irrelevance: 2}",
        "rl.steps=1",
        "rl.prompts_per_step=2",
        "rl.samples_per_prompt=2",
        "rl.max_new_tokens=4",
        "rl.suites=[]",
        "rl.kl_coef=0",
    ]


def ablate(*args: str) -> None:
    """`qwen-tool ablate ARGS` as the console script runs it, asserting it succeeded."""
    from qwen_tool.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", *args])
    assert exit_info.value.code == 0


def test_a_tiny_ablation_writes_its_table_and_resumes_where_it_stopped(tmp_path, tiny_dir, capsys):
    out = tmp_path / "ablate"
    ablate("--out", str(out), "--cells", "irm", "--resamples", "200", *tiny_overrides(tiny_dir))
    printed = capsys.readouterr().out
    # The plan with its projection came first, then the table.
    assert printed.index("projected to go") < printed.index("TL-Training ablation")
    assert "+IRM" in printed and "standard SFT" in printed
    table = json.loads((out / "ablation.json").read_text())
    assert [c["name"] for c in table["cells"]] == ["sft", "irm"]
    irm = table["cells"][1]
    assert irm["runs"][0]["settings"] == {"sft.mae": False, "sft.pkt": False, "rl": True, "sft.seed": 0, "rl.seed": 0}
    # Every compared metric carries its difference and interval; the headline includes each BFCL category.
    assert irm["metrics"] and all(m["low"] <= m["difference"] <= m["high"] for m in irm["metrics"])
    assert ["bfcl", "simple_python accuracy"] in table["headline"] and ["internal", "CF"] in table["headline"]
    markdown = (out / "ablation.md").read_text()
    assert "| standard SFT |" in markdown and "| +IRM |" in markdown and "BFCL simple_python" in markdown
    assert (out / "compare" / "irm" / "paired.json").is_file()
    # RL started from the standard SFT cell's model, trained once.
    rl_marker = json.loads((out / "irm" / "seed-0" / "stages" / "rl.json").read_text())
    assert rl_marker["settings"]["sft"]["mae"] is False and rl_marker["settings"]["rl"]["seed"] == 0
    assert (out / "sft" / "seed-0" / "sft" / "final").is_dir() and not (out / "irm" / "seed-0" / "sft").exists()
    projection = json.loads((out / "projection.json").read_text())
    assert set(projection["projected_at_start"]) == {
        "sft/seed-0/sft",
        "sft/seed-0/eval",
        "irm/seed-0/rl",
        "irm/seed-0/eval",
    }
    assert all(seconds > 0 for seconds in projection["projected_at_start"].values())
    assert set(projection["took"]) == set(projection["projected_at_start"])

    # Killed during the last cell's evaluation: a rerun redoes only that stage.
    (out / "irm" / "seed-0" / "stages" / "eval.json").unlink()
    kept = {p: p.stat().st_mtime for p in out.glob("*/seed-0/stages/*.json")}
    ablate("--out", str(out), "--cells", "irm", "--resamples", "200", *tiny_overrides(tiny_dir))
    plan = capsys.readouterr().out.split("TL-Training ablation")[0]
    assert "done" in plan and "sft, eval" not in plan  # the plan lists only the evaluation still to run
    after = {p: p.stat().st_mtime for p in out.glob("*/seed-0/stages/*.json")}
    assert {p for p in after if after[p] != kept.get(p)} == {out / "irm" / "seed-0" / "stages" / "eval.json"}

    # A finished ablation: the dry run reuses everything and projects nothing.
    ablation = prepare_ablation(
        load_config(PipelineConfig, None, tiny_overrides(tiny_dir)), ["sft", "irm"], [0], out, resamples=200
    )
    assert ablation.projection.projected == {} and ablation.projection.remaining_s() == 0
    # A recipe change that would make a finished cell stale stops before anything trains.
    with pytest.raises(QwenToolError, match=r"stage sft .*sft\.learning_rate"):
        prepare_ablation(
            load_config(PipelineConfig, None, [*tiny_overrides(tiny_dir), "sft.learning_rate=0.5"]),
            ["sft", "irm"],
            [0],
            out,
        )


def test_a_dry_run_prints_the_cells_and_their_cost_and_trains_nothing(tmp_path, tiny_dir, capsys):
    out = tmp_path / "ablate"
    ablate(
        "--out",
        str(out),
        "--dry-run",
        "--seeds",
        "0",
        "1",
        *tiny_overrides(tiny_dir),
        "data.mix={single: 0.5, error_recovery: 0.5}",
    )  # MAE cells need erroneous turns to mask
    printed = capsys.readouterr().out
    assert "dry run: nothing trained" in printed and "projected to go" in printed
    for cell in CELLS.values():
        assert cell.label in printed
    projection = json.loads((out / "projection.json").read_text())
    # Six cells × two seeds: SFT for the four SFT cells, RL for two, an evaluation each; all still to run.
    assert len(projection["projected_at_start"]) == 2 * (4 + 2 + 6) and not set(projection["took"])
    assert sorted(p.name for p in out.iterdir()) == ["data", "projection.json", "recipe.json", "stages"]
    assert [p.stem for p in (out / "stages").glob("*.json")] == ["data"]
