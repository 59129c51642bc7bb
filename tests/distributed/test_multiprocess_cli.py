"""`qwen-tool train` in two CPU processes (gloo) on the tiny model, launched as users launch it: torchrun for SFT, GRPO
(with a checkpoint and --resume) and PPO, and `accelerate launch` with the shipped multi-GPU config. Only the main
process writes the logs, the checkpoint's state and the final model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen_tool.testing import save_tiny_model

HERE = Path(__file__).parent
REPO = HERE.parents[1]
TRAJECTORY = {
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ],
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
            ],
        },
    ],
}
RL_RUN = [
    "prompts_per_step=2",
    "samples_per_prompt=2",
    "max_new_tokens=8",
    "suites=[weather]",
    "multi_turn_share=0.5",
    "curriculum.enabled=false",
    "precision=fp32",
]


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny model directory, a JSONL file of four trajectories)."""
    root = tmp_path_factory.mktemp("assets")
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({**TRAJECTORY, "meta": {"id": f"t{i}"}}) + "\n" for i in range(4)))
    return save_tiny_model(root / "tiny"), data


def _audited(two_processes, tmp_path: Path, output_dir: Path, args: list[str], launcher: list[str] | None = None):
    """Run `qwen-tool ARGS` in two processes; return the paths under `output_dir` each process opened for writing.
    Both must have closed the process group before exiting (one left open has aborted a process at exit)."""
    reports = tmp_path / "writes"
    reports.mkdir()
    watch = {"WRITES_WATCHED": str(output_dir), "WRITES_REPORT_DIR": str(reports)}
    result = two_processes([str(HERE / "audited_cli.py"), *args], launcher=launcher, extra_env=watch)
    assert result.returncode == 0, result.stdout[-4000:]
    ranks = [json.loads((reports / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["group_open"] for rank in ranks] == [False, False]
    return [set(rank["written"]) for rank in ranks]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _steps(output_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_grpo_in_two_processes_saves_on_the_main_one_and_resumes(tmp_path, assets, two_processes):
    model, data = assets
    out = tmp_path / "run"
    common = ["train", "rl", f"model={model}", f"data={data}", f"output_dir={out}", *RL_RUN]
    main, other = _audited(two_processes, tmp_path, out, [*common, "steps=2", "save_steps=1"])
    assert {"metrics.jsonl", "final/config.json"} <= main
    assert any(path.startswith("checkpoint-1/") and "rl_state.json" in path for path in main)
    assert other == set()  # accelerate's own random_states_1.pkl is written by torch's zip writer, unseen here
    assert (out / "final" / "model.safetensors").is_file() and _steps(out) == [1, 2]
    state = json.loads((out / "checkpoint-1" / "rl_state.json").read_text())
    assert len(state["rng_by_process"]) == 2 and state["rng_by_process"][0] != state["rng_by_process"][1]
    assert (out / "checkpoint-1" / "random_states_1.pkl").is_file()

    result = two_processes(["-m", "qwen_tool.cli", *common, "steps=3", "save_steps=1", "--resume"])
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Resumed from" in result.stdout and _steps(out) == [1, 2, 3]  # step 2 rerun, logged once


def test_ppo_with_value_pretraining_in_two_processes(tmp_path, assets, two_processes):
    model, data = assets
    out = tmp_path / "run"
    result = two_processes(
        [
            "-m",
            "qwen_tool.cli",
            "train",
            "rl",
            "--algo",
            "ppo",
            f"model={model}",
            f"data={data}",
            f"output_dir={out}",
            *RL_RUN,
            "steps=1",
            "ppo.value_pretrain_steps=1",
        ]
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert (out / "final" / "model.safetensors").is_file() and _steps(out) == [1]


def test_sft_in_two_processes_saves_on_the_main_one(tmp_path, assets, two_processes):
    model, data = assets
    out = tmp_path / "run"
    main, other = _audited(
        two_processes,
        tmp_path,
        out,
        [
            "train",
            "sft",
            f"model={model}",
            f"data={data}",
            f"output_dir={out}",
            "epochs=1",
            "examples_per_device=1",
            "gradient_accumulation=1",
            "max_length=256",
            "precision=fp32",
            "logging_steps=1",
            "save_steps=1",
        ],
    )
    assert "final/config.json" in main and other == set()
    assert (out / "final" / "model.safetensors").is_file()


def test_accelerate_launch_with_the_shipped_multi_gpu_config_runs_two_cpu_processes(tmp_path, assets, two_processes):
    """`accelerate launch --cpu` runs one process (its multi-CPU mode needs MPI); the multi-GPU config with
    ACCELERATE_USE_CPU=true launches through torchrun with gloo, the code path of a multi-GPU machine."""
    import sys

    model, data = assets
    out = tmp_path / "run"
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "configs/accelerate/multi-gpu.yaml"),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        str(_free_port()),  # the config's static rendezvous would take 29500, which another run may hold
    ]
    main, other = _audited(
        two_processes,
        tmp_path,
        out,
        ["train", "rl", f"model={model}", f"data={data}", f"output_dir={out}", *RL_RUN, "steps=1"],
        launcher=launcher,
    )
    assert "final/config.json" in main and other == set()
