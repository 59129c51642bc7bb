"""Rollouts, token-in/token-out: sample assistant turns, step the environment, append its reply as token ids.

The growing conversation is never re-tokenised. Each episode keeps the prompt's ids and appends, turn by turn, the
ids the policy sampled (action mask 1, with the log-probs recorded at sampling time) and the ids of the environment's
reply (tool results, follow-up user turns, the next generation prompt: action mask 0), tokenised piece by piece. The
reply's text comes from our prefix-stable chat template: everything it renders after the assistant turn's end.

Sampling goes through the one generation engine (`qwen_tool.decode`): each turn the active episodes' conversations
are one `generate` call, so a GRPO group's shared prompt is prefilled once and a later turn reuses the keys and values
of the conversation so far.

The episodes themselves (what is played and how it is scored) are in `qwen_tool.rl.episodes`.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from qwen_tool import QwenToolError
from qwen_tool.codec import Codec, get_codec
from qwen_tool.codec.base import StartState
from qwen_tool.codec.chat import markup_for, render_conversation
from qwen_tool.codec.types import ParsedOutput
from qwen_tool.decode import Completion, Decoder, Request, SamplingParams
from qwen_tool.rl.episodes import Episode


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
    turn_golds: list[int] = field(default_factory=list)
    """The gold step each turn was scored against (`StepReport.gold_index`; empty: turn k against step k): per-turn
    credit compares siblings' turns only at the same turn index and gold step."""
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
    starts: list[StartState] = []  # per episode: where its latest generation prompt left the parser
    for episode in episodes:
        messages, tools = episode.reset()
        messages = copy.deepcopy(messages)
        text = render_conversation(tokenizer, messages, tools, codec, add_generation_prompt=True,
                                   use_model_template=False).text
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        starts.append(codec.start_state(text))
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
            parsed = codec.parse(text, tools, start=starts[index])
            report = episode.step(parsed, truncated=not finished)
            rollout.turn_rewards.append(report.reward.total)
            rollout.turn_golds.append(report.gold_index)
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
            starts[index] = codec.start_state(piece)
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
