"""`qwen-tool env play --model`: a model (here the tiny random one) plays a suite task end to end."""

from __future__ import annotations

from typer.testing import CliRunner

from qwen_tool.cli import app
from qwen_tool.testing import save_tiny_model


def test_env_play_with_a_model(tmp_path):
    model_dir = save_tiny_model(tmp_path / "tiny")
    saved = tmp_path / "episode.json"
    result = CliRunner().invoke(app, ["env", "play", "weather", "--task", "0", "--model", str(model_dir),
                                      "--save", str(saved)])
    assert result.exit_code == 0, result.output
    assert "termination:" in result.output
    import json

    trajectory = json.loads(saved.read_text())
    assert trajectory["messages"][-1]["role"] in ("assistant", "tool")
    assert any(m["role"] == "assistant" for m in trajectory["messages"])
