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
    cfg = load_config(Recipe, path, ["optim.schedule=linear", "model=/tmp/m"])
    assert cfg.epochs == 2
    assert isinstance(cfg.optim, Optim)
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.schedule == "linear"
    assert cfg.model == "/tmp/m"


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
