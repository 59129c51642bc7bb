"""Rewards as pure functions of (predicted calls, gold calls, tools, feedback) with their component breakdown."""

from qwen_tool.rewards.comparison import multiset_jaccard, tool_n1_reward, toolrl_reward
from qwen_tool.rewards.composite import EPISODE_REWARDS, TURN_REWARDS, Turn, episode_reward, turn_reward
from qwen_tool.rewards.irm import IRM_VALUES, irm_case, irm_reward, match_calls
from qwen_tool.rewards.shaping import (
    call_timing_reward,
    coherence_reward,
    efficiency_reward,
    execution_reward,
    format_reward,
    recovery_reward,
)
from qwen_tool.rewards.types import Call, RewardError, RewardResult, as_call, as_calls

__all__ = [
    "EPISODE_REWARDS", "IRM_VALUES", "TURN_REWARDS", "Call", "RewardError", "RewardResult", "Turn", "as_call",
    "as_calls", "call_timing_reward", "coherence_reward", "efficiency_reward", "episode_reward", "execution_reward",
    "format_reward", "irm_case", "irm_reward", "match_calls", "multiset_jaccard", "recovery_reward", "tool_n1_reward",
    "toolrl_reward", "turn_reward",
]
