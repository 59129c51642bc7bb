"""Resuming SFT picks the newest checkpoint whose save finished."""

from __future__ import annotations

from transformers.trainer import TRAINER_STATE_NAME

from qwen_tool.sft.trainer import last_complete_checkpoint


def test_resume_passes_over_a_checkpoint_whose_save_was_cut_short(tmp_path, caplog):
    for step in (5, 10, 40):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (5, 10):  # checkpoint-40 died before the Trainer wrote its state file
        (tmp_path / f"checkpoint-{step}" / TRAINER_STATE_NAME).write_text("{}")
    with caplog.at_level("WARNING", logger="qwen_tool"):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert "checkpoint-40" in caplog.text and "cut short" in caplog.text


def test_no_checkpoint_to_resume_from(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    (tmp_path / "checkpoint-3").mkdir()
    assert last_complete_checkpoint(tmp_path) is None
