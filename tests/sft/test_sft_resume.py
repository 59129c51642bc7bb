"""Resuming picks the newest checkpoint whose save finished (`checkpoints.complete_checkpoints`, used by SFT and RL)."""

from __future__ import annotations

from transformers.trainer import TRAINER_STATE_NAME

from qwen_tool.checkpoints import complete_checkpoints


def test_resume_passes_over_a_checkpoint_whose_save_was_cut_short(tmp_path, caplog):
    for step in (5, 10, 40):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (5, 10):  # checkpoint-40 died before the Trainer wrote its state file
        (tmp_path / f"checkpoint-{step}" / TRAINER_STATE_NAME).write_text("{}")
    (tmp_path / "checkpoint-notes").mkdir()  # not a step number: not a checkpoint
    (tmp_path / "checkpoint-99").write_text("a file, not a folder")
    with caplog.at_level("WARNING", logger="qwen_tool"):
        found = complete_checkpoints(tmp_path, TRAINER_STATE_NAME, warn_partial=True)
    assert found == [tmp_path / "checkpoint-5", tmp_path / "checkpoint-10"]  # by step number, not by name
    assert "checkpoint-40" in caplog.text and "cut short" in caplog.text


def test_partial_checkpoints_are_named_only_when_asked(tmp_path, caplog):
    (tmp_path / "checkpoint-3").mkdir()
    with caplog.at_level("WARNING", logger="qwen_tool"):
        assert complete_checkpoints(tmp_path, TRAINER_STATE_NAME) == []
    assert caplog.text == ""


def test_no_checkpoint_to_resume_from(tmp_path):
    assert complete_checkpoints(tmp_path / "missing", TRAINER_STATE_NAME) == []
