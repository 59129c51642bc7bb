"""The tool environment: `ToolEnv` (the MDP), `Task`, simulated suites, RoTBench noise, BFCL multi-turn."""

from qwen_tool.env.env import (
    Observation,
    RewardInput,
    StepResult,
    ToolEnv,
    ToolEnvBatch,
    replay_gold,
    run_gold_episode,
    suite_for,
)
from qwen_tool.env.noise import NOISE_LEVELS, NoisyToolset, apply_noise
from qwen_tool.env.suite import Suite, tool_method
from qwen_tool.env.task import Task, UserTurn

__all__ = [
    "NOISE_LEVELS",
    "NoisyToolset",
    "Observation",
    "RewardInput",
    "StepResult",
    "Suite",
    "Task",
    "ToolEnv",
    "ToolEnvBatch",
    "UserTurn",
    "apply_noise",
    "replay_gold",
    "run_gold_episode",
    "suite_for",
    "tool_method",
]
