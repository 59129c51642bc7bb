"""Rollouts, token-in/token-out: sample assistant turns, step the environment, append its reply as token ids.

The growing conversation is never re-tokenised. Each episode keeps the prompt's ids and appends, turn by turn, the
ids the policy sampled (action mask 1, with the log-probs recorded at sampling time) and the ids of the environment's
reply (tool results, follow-up user turns, the next generation prompt: action mask 0), tokenised piece by piece. The
reply's text comes from our prefix-stable chat template: everything it renders after the assistant turn's end.

Sampling goes through the one generation engine (`qwen_tool.decode`): each turn the active episodes' conversations
are one `generate` call, so a GRPO group's shared prompt is prefilled once and a later turn reuses the keys and values
of the conversation so far.

Two kinds of episode: `SingleTurnEpisode` (a prompt and the gold calls of its first assistant turn, from a
synthesised trajectory; nothing is executed, calls are only validated against the schemas) and `ToolEnvEpisode`
(a multi-turn `ToolEnv` task whose calls run).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch

from qwen_tool import QwenToolError
from qwen_tool.codec import Codec, get_codec
from qwen_tool.codec.chat import markup_for, render_conversation
from qwen_tool.codec.types import ParsedOutput, ToolCall
from qwen_tool.decode import Completion, Decoder, Request, SamplingParams
from qwen_tool.env import ToolEnv
from qwen_tool.env.task import Task
from qwen_tool.rewards import RewardResult, Turn, as_calls, episode_reward, tool_n1_reward, turn_reward
from qwen_tool.tools import Executor, Tool

# ---------------------------------------------------------------- episodes


@dataclass
class StepReport:
    """What one assistant turn did in its episode."""

    new_messages: list[dict[str, Any]]
    reward: RewardResult
    done: bool
    categories: list[str] = field(default_factory=list)
    calls: int = 0


class Episode(Protocol):
    task_id: str

    def reset(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    def step(self, parsed: ParsedOutput, truncated: bool) -> StepReport: ...

    def finish(self) -> RewardResult: ...

    def succeeded(self) -> bool:
        """Whether the episode did what the gold asks (for the curriculum's success rate)."""
        ...


class SingleTurnEpisode:
    """One assistant turn against the gold calls of a trajectory's first assistant turn; calls are validated against
    the tools' schemas (structural feedback categories) but never executed."""

    def __init__(self, prompt: list[dict[str, Any]], tools: list[dict[str, Any]], gold: list[dict[str, Any]],
                 weights: Mapping[str, float], task_id: str = "") -> None:
        self.prompt, self.tools, self.gold, self.weights, self.task_id = prompt, tools, gold, weights, task_id
        self._tools = {t.name: t for t in (Tool.from_schema(s) for s in tools)}
        self.exact = False

    @classmethod
    def from_trajectory(cls, record: Mapping[str, Any], weights: Mapping[str, float]) -> SingleTurnEpisode:
        """Prompt = the messages before the first assistant turn; gold = that turn's calls (none: an answer)."""
        messages = record["messages"]
        first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
        if first is None:
            raise QwenToolError(f"trajectory {record.get('meta', {}).get('id', '?')} has no assistant turn; "
                                "fix: filter such records out of the RL data")
        gold = [{"name": c.name, "arguments": c.arguments} for c in as_calls(messages[first].get("tool_calls"))]
        return cls(copy.deepcopy(messages[:first]), record.get("tools") or [], gold, weights,
                   str(record.get("meta", {}).get("id", "")))

    def reset(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.prompt, self.tools

    def step(self, parsed: ParsedOutput, truncated: bool) -> StepReport:
        executor = Executor()
        categories = []
        for call in parsed.tool_calls:
            rejected = executor.reject(ToolCall(call.name, call.arguments), self._tools)
            categories.append("ok" if rejected is None else rejected.category.value)
        turn = Turn(parsed.tool_calls, self.gold, self.tools, parse_error=parsed.error is not None,
                    truncated=truncated, categories=categories)
        self.exact = parsed.error is None and tool_n1_reward(parsed.tool_calls, self.gold).total == 1.0
        return StepReport([], turn_reward(turn, self.weights), True, categories, len(parsed.tool_calls))

    def finish(self) -> RewardResult:
        return RewardResult(0.0, {})

    def succeeded(self) -> bool:
        return self.exact


class ToolEnvEpisode:
    """A multi-turn `ToolEnv` task: per-turn rewards against the gold calls of that step, episode-level terms at the
    end (end state reached; calls beyond the gold count)."""

    def __init__(self, task: Task, weights: Mapping[str, float], env: ToolEnv | None = None,
                 error_penalty: float = 0.25, extra_call_penalty: float = 0.1) -> None:
        self.task, self.weights, self.task_id = task, weights, task.id
        self.env = env or ToolEnv()
        self.error_penalty, self.extra_call_penalty = error_penalty, extra_call_penalty
        self.step_categories: list[list[str]] = []
        self.ok_calls: Counter[tuple[str, str]] = Counter()

    def reset(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        observation = self.env.reset(self.task)
        self.step_categories, self.ok_calls = [], Counter()
        return copy.deepcopy(observation.messages), observation.tools

    def step(self, parsed: ParsedOutput, truncated: bool) -> StepReport:
        gold = self.env.present_gold(self.env.step_index).tool_calls
        before = len(self.env.messages)
        result = self.env.step(parsed)
        categories = [o.category.value for o in result.feedback if o.call is not None]
        self.step_categories.append(categories)
        for outcome in result.feedback:
            if outcome.call is not None and outcome.category.value == "ok":
                self.ok_calls[_key(outcome.call)] += 1
        turn = Turn(parsed.tool_calls, gold, self.env.tool_schemas(), parse_error=parsed.error is not None,
                    truncated=truncated, categories=categories)
        new = copy.deepcopy(self.env.messages[before + 1:])  # after the assistant message the env appended
        return StepReport(new, turn_reward(turn, self.weights), result.done, categories, len(parsed.tool_calls))

    def end_state_reached(self) -> bool:
        """The suite's gold state when the task has one; else: ended on an answer with every gold call made
        successfully (as presented, multiset)."""
        end = self.env.end_state or {}
        if end.get("state_match") is not None:
            return bool(end["state_match"])
        if self.env.termination != "final_answer":
            return False
        gold = Counter(_key(c) for step in range(len(self.task.gold_calls))
                       for c in self.env.present_gold(step).tool_calls)
        return not gold - self.ok_calls

    def succeeded(self) -> bool:
        return self.end_state_reached()

    def finish(self) -> RewardResult:
        gold_count = sum(len(step) for step in self.task.gold_calls)
        calls = sum(len(step) for step in self.step_categories)
        return episode_reward(end_state_reached=self.end_state_reached(), step_categories=self.step_categories,
                              calls=calls, gold_calls=gold_count, weights=self.weights,
                              error_penalty=self.error_penalty, extra_call_penalty=self.extra_call_penalty)


def _key(call: Any) -> tuple[str, str]:
    import json

    return call.name, json.dumps(call.arguments, sort_keys=True, default=str)


# ---------------------------------------------------------------- the rollout loop


@dataclass
class Rollout:
    """One finished episode as token ids, masks and rewards."""

    task_id: str
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    action_mask: list[int] = field(default_factory=list)
    """1 at ids the policy sampled, 0 at ids the environment inserted."""
    old_logprobs: list[float] = field(default_factory=list)
    turn_ends: list[int] = field(default_factory=list)
    """Index in `completion_ids` of the last sampled id of each assistant turn (where its reward lands)."""
    turn_rewards: list[float] = field(default_factory=list)
    episode_reward: float = 0.0
    turn_return: Literal["sum", "mean"] = "sum"
    """How the turn rewards enter the return: summed, or averaged so an episode's length is neither cost nor gain."""
    components: dict[str, float] = field(default_factory=dict)
    """Turn components averaged over the turns, plus the episode components."""
    call_categories: list[str] = field(default_factory=list)
    turns_with_calls: int = 0
    truncated_turns: int = 0
    texts: list[str] = field(default_factory=list)
    ended_by: str = ""
    success: bool = False

    @property
    def turn_weight(self) -> float:
        """What each turn's reward is multiplied by in the return: 1 (sum) or 1 / turns (mean)."""
        return 1.0 / max(1, self.turns) if self.turn_return == "mean" else 1.0

    @property
    def reward(self) -> float:
        """The episode's return: w · Σ_t r_t + R_episode, w = 1 (sum) or 1 / T (mean over its T turns)."""
        return self.turn_weight * sum(self.turn_rewards) + self.episode_reward

    @property
    def turns(self) -> int:
        return len(self.turn_rewards)

    @property
    def sampled_tokens(self) -> int:
        return sum(self.action_mask)


def environment_piece(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                      fmt: str | Codec, ended_on_stop: bool) -> str:
    """The text our template renders after the last assistant turn's end: the environment's reply and the next
    generation prompt. A turn cut at the token limit never wrote its end marker, so the piece starts with it."""
    rendered = render_conversation(tokenizer, messages, tools, fmt, add_generation_prompt=True,
                                   use_model_template=False)
    last_assistant = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    end = max(s.end for s in rendered.segments if s.message_index == last_assistant and s.trainable)
    piece = rendered.text[end:]
    return piece if ended_on_stop else markup_for(tokenizer).end + piece


def turn_requests(prompts: Sequence[Sequence[int]], greedy: Sequence[bool], temperature: float,
                  max_new_tokens: int) -> list[Request]:
    """One decoding request per active episode: sampled at `temperature` with log-probs; a greedy-flagged episode
    takes the argmax while its log-probs still come from the tempered distribution the loss reads."""
    return [Request(list(prompt), SamplingParams(max_tokens=max_new_tokens, temperature=temperature, greedy=flag,
                                                 logprobs=True))
            for prompt, flag in zip(prompts, greedy, strict=True)]


def _turn_logprobs(completion: Completion) -> list[float]:
    if completion.logprobs is None or len(completion.logprobs) != len(completion.token_ids):
        raise QwenToolError("the decoder returned no log-prob per sampled token; fix: a decoder must honour "
                            "SamplingParams(logprobs=True)")
    return completion.logprobs


def run_episodes(decoder: Decoder, tokenizer: Any, fmt: str | Codec, episodes: Sequence[Episode], *,
                 temperature: float = 1.0, max_new_tokens: int = 64, max_total_tokens: int = 4096,
                 turn_return: Literal["sum", "mean"] = "sum", greedy: Sequence[bool] | None = None,
                 progress: str | None = None) -> list[Rollout]:
    """Play every episode to its end, decoding the active ones together turn by turn (one `decoder.generate` per
    turn) at `temperature`; episodes flagged in `greedy` (parallel to `episodes`) are decoded greedily at every turn.
    `fmt`: a format name, or a codec (with its tool rendering). `progress`: a description for the decoder's
    progress bar ("<progress> turn <k>"), None for none."""
    flags = list(greedy) if greedy is not None else [False] * len(episodes)
    if len(flags) != len(episodes):
        raise ValueError(f"greedy has {len(flags)} flags for {len(episodes)} episodes; give one flag per episode")
    codec = fmt if isinstance(fmt, Codec) else get_codec(fmt)
    states: list[tuple[Episode, Rollout, list[dict[str, Any]], list[dict[str, Any]]]] = []
    for episode in episodes:
        messages, tools = episode.reset()
        messages = copy.deepcopy(messages)
        text = render_conversation(tokenizer, messages, tools, codec, add_generation_prompt=True,
                                   use_model_template=False).text
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        states.append((episode, Rollout(episode.task_id, prompt_ids, turn_return=turn_return), messages, tools))
    active = list(range(len(states)))
    turn = 0
    while active:
        turn += 1
        requests = turn_requests([states[i][1].prompt_ids + states[i][1].completion_ids for i in active],
                                 [flags[i] for i in active], temperature, max_new_tokens)
        completions = decoder.generate(requests, progress=f"{progress} turn {turn}" if progress else None)
        still_active = []
        for index, completion in zip(active, completions, strict=True):
            episode, rollout, messages, tools = states[index]
            finished = completion.finish_reason == "stop"
            rollout.completion_ids += completion.token_ids
            rollout.action_mask += [1] * len(completion.token_ids)
            rollout.old_logprobs += _turn_logprobs(completion)
            rollout.turn_ends.append(len(rollout.completion_ids) - 1)
            text = tokenizer.decode(completion.token_ids, skip_special_tokens=True)
            rollout.texts.append(text)
            parsed = codec.parse(text, tools)
            report = episode.step(parsed, truncated=not finished)
            rollout.turn_rewards.append(report.reward.total)
            for key, value in report.reward.components.items():
                rollout.components[key] = rollout.components.get(key, 0.0) + value
            rollout.call_categories += report.categories
            rollout.turns_with_calls += report.calls > 0
            rollout.truncated_turns += not finished
            messages.append(_assistant_message(parsed))
            messages.extend(report.new_messages)
            if report.done:
                rollout.ended_by = "done"
                continue
            piece = environment_piece(tokenizer, messages, tools, codec, finished)
            piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
            if len(rollout.prompt_ids) + len(rollout.completion_ids) + len(piece_ids) + max_new_tokens \
                    > max_total_tokens:
                rollout.ended_by = "context"
                continue
            rollout.completion_ids += piece_ids
            rollout.action_mask += [0] * len(piece_ids)
            rollout.old_logprobs += [0.0] * len(piece_ids)
            still_active.append(index)
        active = still_active
    for episode, rollout, _, _ in states:
        for key in rollout.components:
            rollout.components[key] /= max(1, rollout.turns)
        final = episode.finish()
        rollout.episode_reward = final.total
        rollout.components.update(final.components)
        rollout.success = episode.succeeded()
    return [state[1] for state in states]


def gold_rollout(record: Mapping[str, Any], tokenizer: Any, fmt: str | Codec, max_total_tokens: int
                 ) -> Rollout | None:
    """A trajectory teacher-forced into the rollout layout, for the supervised term: the prompt is everything before
    its first trained assistant turn; the completion is the rest, with action mask 1 on the assistant-authored text of
    each assistant turn (MAE: not on turns marked `erroneous`). Pieces are tokenised separately, as sampling sees them.
    Cut at `max_total_tokens`; None when nothing trained is left."""
    messages, tools = record["messages"], record.get("tools") or []
    rendered = render_conversation(tokenizer, messages, tools, fmt, use_model_template=False)
    trained = sorted((s for s in rendered.segments
                      if s.trainable and not messages[s.message_index].get("erroneous")), key=lambda s: s.start)
    if not trained:
        return None
    text, cursor = rendered.text, trained[0].start
    rollout = Rollout(str(record.get("meta", {}).get("id", "")),
                      tokenizer(text[:cursor], add_special_tokens=False)["input_ids"])
    for segment in trained:
        for start, end, action in ((cursor, segment.start, 0), (segment.start, segment.end, 1)):
            if end > start:
                ids = tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
                rollout.completion_ids += ids
                rollout.action_mask += [action] * len(ids)
        cursor = segment.end
    room = max(0, max_total_tokens - len(rollout.prompt_ids))
    rollout.completion_ids, rollout.action_mask = rollout.completion_ids[:room], rollout.action_mask[:room]
    if not any(rollout.action_mask):
        return None
    rollout.old_logprobs = [0.0] * len(rollout.completion_ids)
    rollout.turn_ends, rollout.turn_rewards = [len(rollout.completion_ids) - 1], [0.0]
    return rollout


def _assistant_message(parsed: ParsedOutput) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": parsed.content or ""}
    if parsed.tool_calls:
        message["tool_calls"] = [c.to_openai() for c in parsed.tool_calls]
    return message


# ---------------------------------------------------------------- batching


@dataclass
class RolloutBatch:
    """Rollouts as padded tensors in the policy layout (left-padded prompts, right-padded completions)."""

    prompt_ids_BP: torch.Tensor
    prompt_mask_BP: torch.Tensor
    completion_ids_BC: torch.Tensor
    completion_mask_BC: torch.Tensor
    """1 at every real completion id (sampled or inserted): what attention sees."""
    action_mask_BC: torch.Tensor
    """1 only at sampled ids: what receives loss."""
    old_logprobs_BC: torch.Tensor
    scores_BC: torch.Tensor
    """Each turn's reward (times the rollout's turn weight) at its last sampled id, the episode reward added at the
    final one (PPO's sparse reward); a row sums to its return."""
    returns_B: torch.Tensor

    def to(self, device: torch.device | str) -> RolloutBatch:
        return RolloutBatch(**{k: v.to(device) for k, v in self.__dict__.items()})

    def select(self, rows: Sequence[int] | torch.Tensor) -> RolloutBatch:
        """A micro-batch, trimmed to its own widest prompt and completion."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        parts = {k: v[rows] for k, v in self.__dict__.items()}
        keep_P = parts["prompt_mask_BP"].sum(0) > 0
        keep_C = parts["completion_mask_BC"].sum(0) > 0
        for key in ("prompt_ids_BP", "prompt_mask_BP"):
            parts[key] = parts[key][:, keep_P]
        for key in ("completion_ids_BC", "completion_mask_BC", "action_mask_BC", "old_logprobs_BC", "scores_BC"):
            parts[key] = parts[key][:, keep_C]
        return RolloutBatch(**parts)


def collate(rollouts: Sequence[Rollout], pad_id: int) -> RolloutBatch:
    """Pad rollouts into a `RolloutBatch`."""
    B = len(rollouts)
    P = max(len(r.prompt_ids) for r in rollouts)
    C = max(1, max(len(r.completion_ids) for r in rollouts))
    prompt_ids = torch.full((B, P), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((B, P), dtype=torch.long)
    completion_ids = torch.full((B, C), pad_id, dtype=torch.long)
    completion_mask = torch.zeros((B, C), dtype=torch.long)
    action_mask = torch.zeros((B, C), dtype=torch.long)
    old_logprobs = torch.zeros((B, C))
    scores = torch.zeros((B, C))
    for b, r in enumerate(rollouts):
        prompt_ids[b, P - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
        prompt_mask[b, P - len(r.prompt_ids):] = 1
        n = len(r.completion_ids)
        if n:
            completion_ids[b, :n] = torch.tensor(r.completion_ids)
            completion_mask[b, :n] = 1
            action_mask[b, :n] = torch.tensor(r.action_mask)
            old_logprobs[b, :n] = torch.tensor(r.old_logprobs)
            for end, reward in zip(r.turn_ends, r.turn_rewards, strict=True):
                scores[b, end] += r.turn_weight * reward
            scores[b, r.turn_ends[-1]] += r.episode_reward
    returns = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
    return RolloutBatch(prompt_ids, prompt_mask, completion_ids, completion_mask, action_mask, old_logprobs, scores,
                        returns)


# ---------------------------------------------------------------- logged statistics


def rollout_stats(rollouts: Sequence[Rollout]) -> dict[str, float]:
    """Per-step logs: mean reward and components, call and failure rates, error-category rates, lengths."""
    n = max(1, len(rollouts))
    calls = [c for r in rollouts for c in r.call_categories]
    turns = sum(r.turns for r in rollouts)
    stats: dict[str, float] = {
        "reward": sum(r.reward for r in rollouts) / n,
        "success_rate": sum(r.success for r in rollouts) / n,
        "calls_per_episode": len(calls) / n,
        "call_rate": sum(r.turns_with_calls for r in rollouts) / max(1, turns),
        "failure_rate": sum(c not in ("ok", "tool_instability") for c in calls) / max(1, len(calls)),
        "turns_per_episode": turns / n,
        "response_length": sum(r.sampled_tokens for r in rollouts) / max(1, turns),
        "truncated_rate": sum(r.truncated_turns for r in rollouts) / max(1, turns),
    }
    for category, count in Counter(calls).items():
        stats[f"category/{category}"] = count / max(1, len(calls))
    keys = sorted({k for r in rollouts for k in r.components})
    for key in keys:
        stats[f"reward/{key}"] = sum(r.components.get(key, 0.0) for r in rollouts) / n
    return stats
