"""configs/main-rl-smollm2-cpu.yaml is the main recipe plus the ideas recipe's RL: pointed at a finished main job it
reuses that job's data and SFT model (every stage setting upstream of RL is the main recipe's), and it trains what
the RL study measured."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from qwen_tool.config import PipelineConfig, RLTrainingConfig, load_config, to_dict
from qwen_tool.pipeline import stage_settings

CONFIGS = Path(__file__).parents[2] / "configs"


def test_main_rl_recipe_is_the_main_job_plus_the_ideas_rl():
    main = load_config(PipelineConfig, CONFIGS / "main-smollm2-cpu.yaml")
    with_rl = load_config(PipelineConfig, CONFIGS / "main-rl-smollm2-cpu.yaml")
    assert with_rl.rl_enabled and not main.rl_enabled
    for stage in ("data", "held_out", "baseline_eval", "sft", "trained_eval"):
        assert stage_settings(with_rl)[stage] == stage_settings(main)[stage], stage
    ideas = load_config(RLTrainingConfig, CONFIGS / "grpo-ideas-smollm2-cpu.yaml")
    filled_by_the_job = {"model": "m", "data": "d", "output_dir": "o", "suites": []}
    assert to_dict(replace(with_rl.rl, **filled_by_the_job)) == to_dict(replace(ideas, **filled_by_the_job))
