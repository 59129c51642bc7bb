"""Config loading: YAML + overrides into typed dataclasses, one-line errors that name file, key and fix."""

from __future__ import annotations

from typing import Literal

import pytest

from qwen_tool.config import ConfigError, config, field, field_docs, load_config


@config
class Optim:
    lr: float = 1e-5
    """Peak learning rate."""
    schedule: Literal["cosine", "linear"] = "cosine"
    """Learning-rate schedule."""


@config
class Recipe:
    model: str = "smollm2-135m-instruct"
    """Model name."""
    epochs: int = 1
    """Passes over the data."""
    optim: Optim = field(default_factory=Optim)
    """Optimiser settings."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}; fix: set epochs: 1 or more")


def write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides_build_nested_dataclasses(tmp_path):
    path = write(tmp_path, "epochs: 2\noptim:\n  lr: 3.0e-4\n")
    model = tmp_path / "m"  # a model name must resolve at load: here, a model directory
    model.mkdir()
    (model / "config.json").write_text("{}")
    cfg = load_config(Recipe, path, ["optim.schedule=linear", f"model={model}"])
    assert cfg.epochs == 2
    assert isinstance(cfg.optim, Optim)
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.schedule == "linear"
    assert cfg.model == str(model)


def test_defaults_without_file():
    cfg = load_config(Recipe)
    assert cfg == Recipe()


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, "optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(Recipe, path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "'optim.lrr'" in message
    assert "did you mean 'lr'" in message
    assert "allowed keys here are lr, schedule" in message


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "model: smol\noptim:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(Recipe, path)
    message = str(info.value)
    assert "\n" not in message
    assert f"{path}:" in message
    assert "malformed YAML" in message
    assert "fix:" in message


def test_bad_literal_lists_allowed_values(tmp_path):
    path = write(tmp_path, "optim:\n  schedule: constant\n")
    with pytest.raises(ConfigError, match=r"optim\.schedule.*'constant'.*'cosine' or 'linear'"):
        load_config(Recipe, path)
    with pytest.raises(ConfigError, match=r"'optim\.schedule' has value 'cosin'; fix: did you mean 'cosine'\? use "
                                          r"'cosine' or 'linear'$"):
        load_config(Recipe, None, ["optim.schedule=cosin"])


def test_wrong_type_and_cross_field_check(tmp_path):
    with pytest.raises(ConfigError, match=r"'epochs' has value 'many'"):
        load_config(Recipe, None, ["epochs=many"])
    with pytest.raises(ConfigError, match=r"epochs must be at least 1.*fix"):
        load_config(Recipe, None, ["epochs=0"])


def test_top_level_must_be_mapping_and_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Recipe, write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(Recipe, None, ["epochs"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(Recipe, tmp_path / "missing.yaml")


def test_field_docs_come_from_attribute_docstrings():
    assert field_docs(Optim) == {"lr": "Peak learning rate.", "schedule": "Learning-rate schedule."}


@pytest.mark.parametrize(("overrides", "expected"), [
    (["data.n_train=-5"], r"key 'data': n_train must be at least 1, got -5; fix: set n_train: 1 or more"),
    (["data.mix={single: 1, paralel: 1}"], r"unknown mix category 'paralel'; fix: did you mean 'parallel'\?"),
    (["eval.categories=[simple_pythn]"], r"unknown BFCL category 'simple_pythn'; fix: did you mean 'simple_python'\?"),
    (["eval.limits={multipl: 5}"], r"unknown BFCL category 'multipl'; fix: did you mean 'multiple'\?"),
    (["eval.batch_size=0"], r"key 'eval': batch_size must be at least 1, got 0"),
    (["sft.max_examples=0"], r"key 'sft': max_examples must be at least 1"),
    (["rl.suites=[wether]"], r"unknown suite 'wether'; fix: did you mean 'weather'\?"),
    (["sft.tool_rendering=compakt"], r"key 'sft.tool_rendering' has value 'compakt'; fix: did you mean 'compact'\? "
                                     r"use 'json' or 'compact'$"),
    (["rl.tool_rendering=JSON"], r"key 'rl.tool_rendering' has value 'JSON'; fix: use 'json' or 'compact'$"),
    (["eval.guided=true"], r"^config \+ overrides: eval.guided was replaced by eval.decoding; fix: write decoding: "
                           r"\[guided\] for guided: true, \[free\] for false, or \[guided, free\] for both"),
    (["eval.decoding=[guided, guided]"], r"key 'eval': decoding is \['guided', 'guided'\]; fix: list guided, free"),
    (["eval.decoding=[]"], r"key 'eval': decoding is \[\]; fix:"),
    (["eval.decoding=[greedy]"], r"key 'eval.decoding.0' has value 'greedy'; fix: .*use 'guided' or 'free'"),
    (["eval.name=../elsewhere"], r"key 'eval': name '../elsewhere' is not a folder name; fix:"),
    (["data.n_eval_decisions=0"], r"key 'data': n_eval_decisions must be at least 1, got 0"),
    (["eval.parallel_max_new_tokens=0"], r"key 'eval': parallel_max_new_tokens must be at least 1, got 0"),
    (["eval.max_new_tokens_by_category={live_simple: 384}"],
     r"max_new_tokens_by_category.live_simple caps a set this evaluation does not score; fix: use one of "
     r"simple_python, multiple, irrelevance, internal, or remove it"),
    (["eval.internal=false", "eval.max_new_tokens_by_category={internal: 256}"],
     r"max_new_tokens_by_category.internal caps a set .*one of simple_python, multiple, irrelevance, or remove it"),
    (["eval.max_new_tokens_by_category={multiple: 0}"], r"max_new_tokens_by_category.multiple must be at least 1"),
], ids=["n_train", "mix", "categories", "limits", "batch_size", "max_examples", "suites", "tool_rendering",
        "rl_tool_rendering", "old_guided_key", "repeated_decoding", "no_decoding", "unknown_decoding", "eval_name",
        "decisions", "parallel_cap", "cap_unscored", "cap_internal_off", "cap_zero"])
def test_recipe_values_are_checked_at_load(overrides, expected):
    """Issue 26: these were accepted at load and failed later, after the model had loaded (or never)."""
    from qwen_tool.config import PipelineConfig

    with pytest.raises(ConfigError, match=expected):
        load_config(PipelineConfig, None, overrides)


def test_model_names_are_checked_at_load(monkeypatch):
    """A typo fails at load with did-you-mean (offline: from the cache alone), before anything loads."""
    from huggingface_hub import constants

    from qwen_tool import models
    from qwen_tool.config import GenerateConfig, RLTrainingConfig

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    models._hub_snapshot.cache_clear()
    with pytest.raises(ConfigError, match=r"key 'model': model 'smollm2-135m'.*did you mean the built-in model "
                                          r"'smollm2-135m-instruct'\?"):
        load_config(GenerateConfig, None, ["model=smollm2-135m"])
    with pytest.raises(ConfigError, match=r"key 'reference_model'"):
        load_config(RLTrainingConfig, None, ["reference_model=someone/not-cached"])
    with pytest.raises(ConfigError, match=r"key 'ppo.critic_model'"):
        load_config(RLTrainingConfig, None, ["algo=ppo", "ppo.critic=separate", "ppo.critic_model=someone/not-cached"])


@pytest.mark.parametrize(("overrides", "expected"), [
    (["gamma=0.9"], r"unknown key 'gamma'; fix: did you mean 'ppo.gamma'\?"),
    (["drop_uniform_groups=true"], r"unknown key 'drop_uniform_groups'; fix: did you mean 'grpo.drop_uniform_groups'"),
    (["ppo.gamma=0.9", "ppo.kl_in_reward=true"],
     r"^config \+ overrides: algo is grpo, which ignores ppo.gamma, ppo.kl_in_reward; fix: remove them \(the ppo: "
     r"section\), or set algo: ppo$"),
    (["algo=ppo", "grpo.loss_aggregation=constant"], r"algo is ppo, which ignores grpo.loss_aggregation; fix: remove"),
    (["grpo.max_completion_tokens=128"], r"key 'grpo': max_completion_tokens is Dr. GRPO's constant and "
                                         r"loss_aggregation is token; fix: set loss_aggregation: constant"),
    (["grpo.loss_aggregation=constant", "grpo.max_completion_tokens=0"], r"max_completion_tokens must be at least 1"),
    (["algo=ppo", "ppo.critic_model=x"], r"key 'ppo': critic_model names a separate critic.*fix: set critic: separate"),
    (["algo=ppo", "ppo.kl_estimator=k3"], r"key 'ppo': kl_estimator is read only with the KL in the reward"),
], ids=["ppo-key-at-top", "grpo-key-at-top", "ppo-under-grpo", "grpo-under-ppo", "budget-without-constant",
        "budget-zero", "critic-model-without-separate", "estimator-without-kl-in-reward"])
def test_rl_settings_the_chosen_algorithm_ignores_are_refused(overrides, expected):
    from qwen_tool.config import RLTrainingConfig

    with pytest.raises(ConfigError, match=expected):
        load_config(RLTrainingConfig, None, overrides)


def test_each_algorithm_takes_its_own_section():
    from qwen_tool.config import RLTrainingConfig

    ppo = load_config(RLTrainingConfig, None, ["algo=ppo", "ppo.gamma=0.9", "ppo.kl_in_reward=true"])
    assert (ppo.ppo.gamma, ppo.ppo.kl_in_reward) == (0.9, True)
    grpo = load_config(RLTrainingConfig, None, ["grpo.loss_aggregation=constant", "grpo.max_completion_tokens=96"])
    assert (grpo.grpo.loss_aggregation, grpo.grpo.max_completion_tokens) == ("constant", 96)
