"""The rollout loop with a scripted decoder (a valid call, a call with a wrong argument name, no call) and with the
tiny random model on the transformers decoder: logged rates, token-in/token-out, the tool-result mask, greedy rows,
shared prefixes and weight updates."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qwen_tool.decode import Completion, Request, SamplingParams
from qwen_tool.decode.transformers_decoder import TransformersDecoder
from qwen_tool.env.suites import get_suite
from qwen_tool.rewards import RewardResult
from qwen_tool.rl.batch import collate
from qwen_tool.rl.episodes import SingleTurnEpisode, StepReport, ToolEnvEpisode
from qwen_tool.rl.losses import grpo_loss
from qwen_tool.rl.policy import completion_forward
from qwen_tool.rl.rollout import rollout_stats, run_episodes, turn_requests
from qwen_tool.testing import tiny_model, tiny_tokenizer

VALID = '<tool_call>\n{"name": "fetch_current_conditions", "arguments": {"city": "Lisbon", "unit": "fahrenheit"}}\n' \
        '</tool_call>'
WRONG_NAME = '<tool_call>\n{"name": "fetch_current_conditions", "arguments": {"town": "Lisbon"}}\n</tool_call>'
ANSWER = "Lisbon is warmer."
WEIGHTS = {"irm": 1.0}


class ScriptedDecoder:
    """A `Decoder` returning scripted texts: the script is chosen by a marker in the prompt, the turn by how many
    assistant turns the prompt already holds. Records each call's per-request greedy flags."""

    backend = "scripted"

    def __init__(self, tokenizer, scripts: dict[str, list[str]]) -> None:
        self.tokenizer, self.scripts = tokenizer, scripts
        self.stop_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.greedy_calls: list[list[bool]] = []

    def generate(self, requests, *, on_done=None, progress=None):
        self.greedy_calls.append([request.params.greedy for request in requests])
        out = []
        for index, request in enumerate(requests):
            text = self.tokenizer.decode(request.prompt_ids)
            marker = next(m for m in self.scripts if f"[{m}]" in text)
            turn = text.count("<|im_start|>assistant") - 1
            ids = self.tokenizer(self.scripts[marker][turn], add_special_tokens=False)["input_ids"] + [self.stop_id]
            completion = Completion(ids, "stop", [-0.5] * len(ids), prompt_tokens=len(request.prompt_ids))
            if on_done is not None:
                on_done(index, completion)
            out.append(completion)
        return out

    def update_weights(self, model) -> None:
        pass

    def close(self) -> None:
        pass


def weather_task(marker: str):
    task = get_suite("weather").tasks()[0]
    messages = [dict(m) for m in task.messages]
    messages[-1]["content"] += f" [{marker}]"
    return dataclasses.replace(task, id=f"weather-{marker}", messages=messages)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_scripted_policy_rates_are_exact(tokenizer):
    scripts = {"A": [VALID, ANSWER], "B": [WRONG_NAME, ANSWER], "C": [ANSWER]}
    episodes = [ToolEnvEpisode(weather_task(m), WEIGHTS) for m in scripts]
    rollouts = run_episodes(ScriptedDecoder(tokenizer, scripts), tokenizer, "hermes", episodes)
    stats = rollout_stats(rollouts)
    # Calls: A one (ok), B one (town is not a parameter → parameter_hallucination), C none. Turns: 2 + 2 + 1 = 5.
    assert [r.call_categories for r in rollouts] == [["ok"], ["parameter_hallucination"], []]
    assert stats["calls_per_episode"] == pytest.approx(2 / 3)
    assert stats["call_rate"] == pytest.approx(2 / 5)
    assert stats["failure_rate"] == pytest.approx(1 / 2)
    assert stats["category/ok"] == stats["category/parameter_hallucination"] == pytest.approx(1 / 2)
    assert stats["turns_per_episode"] == pytest.approx(5 / 3)
    # IRM per turn against the gold step the env compares it with (gold step 0: Lisbon and Oslo in fahrenheit;
    # step 1: answer; a turn after a model error retries the same step).
    # A: one of two gold calls exact (+1), the other missing (−1.5) → −0.25; then answering when due: +1.
    # B: town is hallucinated, unit and city missing → −1.3 paired with Lisbon, Oslo missing −1.5 → −1.4; that failed,
    #    so the answer is compared with step 0 again: two calls missing → −1.5.
    # C: no call when two were due → two missing → −1.5.
    assert [r.turn_rewards for r in rollouts] == [pytest.approx([-0.25, 1.0]), pytest.approx([-1.4, -1.5]),
                                                  pytest.approx([-1.5])]
    # the gold step each turn was scored against: B's answer retries step 0; per-turn credit groups by it
    assert [r.turn_golds for r in rollouts] == [[0, 1], [0, 0], [0]]
    assert collate(rollouts, tokenizer.pad_token_id).turn_gold_BK.tolist() == [[0, 1], [0, 0], [0, -1]]


def test_mean_turn_return_makes_length_neutral(tokenizer):
    """With turn_return="mean" a two-turn episode's return is the mean of its turn rewards (plus the episode reward),
    and the per-token scores that PPO sees still sum to that return."""
    scripts = {"A": [VALID, ANSWER], "C": [ANSWER]}
    episodes = [ToolEnvEpisode(weather_task(m), WEIGHTS) for m in scripts]
    summed = run_episodes(ScriptedDecoder(tokenizer, scripts), tokenizer, "hermes", episodes)
    episodes = [ToolEnvEpisode(weather_task(m), WEIGHTS) for m in scripts]
    averaged = run_episodes(ScriptedDecoder(tokenizer, scripts), tokenizer, "hermes", episodes, turn_return="mean")
    a_sum, c_sum = summed
    a_mean, c_mean = averaged
    # Turn rewards as in the test above: A [-0.25, 1.0], C [-1.5]; WEIGHTS has no coherence, so no episode reward.
    assert a_sum.reward == pytest.approx(0.75) and a_mean.reward == pytest.approx(0.375)
    assert c_sum.reward == c_mean.reward == pytest.approx(-1.5)  # one turn: the mean is the sum
    batch = collate(averaged, tokenizer.pad_token_id)
    assert batch.returns_B.tolist() == pytest.approx([0.375, -1.5])
    assert batch.scores_BC.sum(1).tolist() == pytest.approx([0.375, -1.5])
    assert batch.scores_BC[0, a_mean.turn_ends].tolist() == pytest.approx([-0.125, 0.5])


def test_tool_results_are_inserted_tokens_and_masked(tokenizer):
    scripts = {"A": [VALID, ANSWER]}
    (rollout,) = run_episodes(ScriptedDecoder(tokenizer, scripts), tokenizer, "hermes",
                              [ToolEnvEpisode(weather_task("A"), WEIGHTS)])
    ids = torch.tensor(rollout.completion_ids)
    mask = torch.tensor(rollout.action_mask).bool()
    sampled = tokenizer.decode(ids[mask])
    inserted = tokenizer.decode(ids[~mask])
    assert sampled == VALID + "<|im_end|>" + ANSWER + "<|im_end|>"
    assert inserted.startswith("\n<|im_start|>user\n<tool_response>") and inserted.endswith("<|im_start|>assistant\n")
    assert "Lisbon" in inserted  # the tool's result
    assert rollout.old_logprobs == [-0.5 if m else 0.0 for m in rollout.action_mask]
    assert rollout.turn_ends == [mask.nonzero()[i].item() for i in (len(tokenizer(VALID)["input_ids"]),
                                                                    int(mask.sum()) - 1)]


def test_single_turn_episode_from_trajectory(tokenizer):
    record = {
        "tools": [{"type": "function", "function": {"name": "fetch_current_conditions", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"]}}}],
        "messages": [{"role": "user", "content": "Weather in Lisbon? [A]"},
                     {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function", "function": {
                         "name": "fetch_current_conditions",
                         "arguments": '{"city": "Lisbon", "unit": "fahrenheit"}'}}]}],
        "meta": {"id": "t0"},
    }
    episode = SingleTurnEpisode.from_trajectory(record, {"irm": 1.0, "format": 1.0})
    (rollout,) = run_episodes(ScriptedDecoder(tokenizer, {"A": [VALID]}), tokenizer, "hermes", [episode])
    assert rollout.reward == pytest.approx(2.0)  # IRM exact +1, format +1
    assert rollout.action_mask == [1] * len(rollout.completion_ids) and rollout.call_categories == ["ok"]


GOLD_TRAJECTORY = {
    "tools": [{"type": "function", "function": {"name": "fetch_current_conditions", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "messages": [{"role": "user", "content": "Weather in Lisbon?"},
                 {"role": "assistant", "content": "", "erroneous": True, "tool_calls": [{
                     "id": "c0", "type": "function",
                     "function": {"name": "fetch_current_conditions", "arguments": '{"town": "Lisbon"}'}}]},
                 {"role": "tool", "tool_call_id": "c0", "content": "unknown argument town"},
                 {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {
                     "name": "fetch_current_conditions", "arguments": '{"city": "Lisbon"}'}}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
                 {"role": "assistant", "content": "It is 21 C in Lisbon."}],
    "meta": {"id": "g0"},
}


def test_gold_rollout_trains_the_assistant_turns_only_and_starts_where_sampling_would(tokenizer):
    from qwen_tool.codec.chat import render_prompt
    from qwen_tool.rl.rollout import gold_rollout

    rollout = gold_rollout(GOLD_TRAJECTORY, tokenizer, "hermes", max_total_tokens=4096)
    ids, mask = torch.tensor(rollout.completion_ids), torch.tensor(rollout.action_mask).bool()
    trained, context = tokenizer.decode(ids[mask]), tokenizer.decode(ids[~mask])
    assert trained == ('<tool_call>\n{"name": "fetch_current_conditions", "arguments": {"city": "Lisbon"}}\n'
                       '</tool_call><|im_end|>It is 21 C in Lisbon.<|im_end|>')
    assert "21 C" in context and "unknown argument town" in tokenizer.decode(rollout.prompt_ids)
    # MAE: the erroneous first turn is context, so the prompt is what sampling would continue at the second turn
    prompt = render_prompt(tokenizer, GOLD_TRAJECTORY["messages"][:3], GOLD_TRAJECTORY["tools"], "hermes",
                           use_model_template=False)
    assert rollout.prompt_ids == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert rollout.turn_ends == [len(rollout.completion_ids) - 1] and rollout.reward == 0.0


def test_gold_rollout_is_cut_at_the_token_budget(tokenizer):
    from qwen_tool.rl.rollout import gold_rollout

    full = gold_rollout(GOLD_TRAJECTORY, tokenizer, "hermes", max_total_tokens=4096)
    cut = gold_rollout(GOLD_TRAJECTORY, tokenizer, "hermes", max_total_tokens=len(full.prompt_ids) + 5)
    assert cut.completion_ids == full.completion_ids[:5] and cut.action_mask == full.action_mask[:5]
    assert gold_rollout(GOLD_TRAJECTORY, tokenizer, "hermes", max_total_tokens=len(full.prompt_ids)) is None
    no_turn = {**GOLD_TRAJECTORY, "messages": GOLD_TRAJECTORY["messages"][:1]}
    assert gold_rollout(no_turn, tokenizer, "hermes", max_total_tokens=4096) is None


def test_greedy_flags_follow_their_episodes_from_turn_to_turn(tokenizer):
    scripts = {"A": [VALID, ANSWER], "B": [ANSWER], "C": [VALID, ANSWER]}
    decoder = ScriptedDecoder(tokenizer, scripts)
    episodes = [ToolEnvEpisode(weather_task(m), WEIGHTS) for m in scripts]
    run_episodes(decoder, tokenizer, "hermes", episodes, greedy=[False, False, True])
    # Turn 1: all three; B answers at once, so turn 2 holds A and C, and C keeps its flag.
    assert decoder.greedy_calls == [[False, False, True], [False, True]]
    with pytest.raises(ValueError, match="2 flags for 3 episodes"):
        run_episodes(decoder, tokenizer, "hermes", episodes, greedy=[True, False])


PROMPT_TEXT = "<|im_start|>user\nweather in Oslo?<|im_end|>\n<|im_start|>assistant\n"


def forward_logprobs(model, prompt: list[int], completion: list[int], temperature: float = 1.0) -> torch.Tensor:
    """log π(completion | prompt) per token from one plain forward pass (no cache)."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        out = completion_forward(model, ids[:, :len(prompt)], torch.ones_like(ids[:, :len(prompt)]),
                                 ids[:, len(prompt):], torch.ones_like(ids[:, len(prompt):]), temperature=temperature)
    return out.logprobs_BC[0]


def test_greedy_rows_take_the_argmax_and_record_tempered_logprobs(tokenizer):
    """A flagged row decodes as greedy decoding would, while its log-probs stay those of the tempered distribution
    the loss reads; the unflagged row still samples."""
    model = tiny_model()
    prompt = tokenizer(PROMPT_TEXT, add_special_tokens=False)["input_ids"]
    (plain_greedy,) = TransformersDecoder(model, tokenizer).generate([Request(prompt, SamplingParams(max_tokens=8))])
    decoder = TransformersDecoder(model, tokenizer, seed=0)
    flagged, sampled = decoder.generate(turn_requests([prompt, prompt], [True, False], temperature=2.0,
                                                      max_new_tokens=8))
    assert flagged.token_ids == plain_greedy.token_ids
    # temperature 2 on random weights: a greedy-looking draw is vanishingly rare
    assert sampled.token_ids != plain_greedy.token_ids
    for completion in (flagged, sampled):
        expected = forward_logprobs(model, prompt, completion.token_ids, temperature=2.0)
        assert torch.allclose(expected, torch.tensor(completion.logprobs), atol=1e-4)


def test_tiny_model_rollout_records_sampling_logprobs(tokenizer):
    """Old log-probs recorded while sampling equal a fresh forward pass over the appended ids."""
    model = tiny_model()
    decoder = TransformersDecoder(model, tokenizer, seed=0)
    episodes = [ToolEnvEpisode(weather_task(m), WEIGHTS) for m in "AB"]
    rollouts = run_episodes(decoder, tokenizer, "hermes", episodes, temperature=1.0, max_new_tokens=6)
    batch = collate(rollouts, tokenizer.pad_token_id)
    with torch.no_grad():
        out = completion_forward(model, batch.prompt_ids_BP, batch.prompt_mask_BP, batch.completion_ids_BC,
                                 batch.completion_mask_BC)
    mask = batch.action_mask_BC.bool()
    assert mask.sum() == sum(r.sampled_tokens for r in rollouts) > 0
    assert torch.allclose(out.logprobs_BC[mask], batch.old_logprobs_BC[mask], atol=1e-4)


def test_decoder_prefills_a_repeated_prompt_once_and_samples_each_copy_independently(tokenizer):
    model = tiny_model()
    prompt = tokenizer(PROMPT_TEXT, add_special_tokens=False)["input_ids"]
    other = prompt[:-3] + prompt[-2:]
    n = len(prompt)
    decoder = TransformersDecoder(model, tokenizer, max_batch=8, seed=0)
    completions = decoder.generate(turn_requests([prompt] * 4 + [other], [False] * 5, temperature=1.0,
                                                 max_new_tokens=8))
    # The group's prompt is prefilled once; each copy takes its keys and values and feeds only the last prompt token
    # (whose logits pick its first token). The other prompt reuses the n - 3 tokens it shares with the group's.
    assert [c.cached_tokens for c in completions] == [0, n - 1, n - 1, n - 1, n - 3]
    assert decoder.prefilled_tokens == n + 3 * 1 + (n - 1) - (n - 3)
    assert decoder.prefilled_tokens + decoder.reused_tokens == 4 * n + (n - 1)  # every prompt position, once
    assert len({tuple(c.token_ids) for c in completions[:4]}) > 1  # the copies are independent draws
    for row, completion in zip([prompt] * 4 + [other], completions, strict=True):  # each log-prob is its row's own
        assert torch.allclose(forward_logprobs(model, row, completion.token_ids), torch.tensor(completion.logprobs),
                              atol=1e-4)


class TwoTurnEpisode:
    """Whatever the policy says, the user asks a follow-up once, then the episode ends."""

    task_id = "two-turn"

    def __init__(self) -> None:
        self.turns = 0

    def reset(self):
        return [{"role": "user", "content": "What is the weather in Oslo?"}], []

    def step(self, parsed, truncated):
        self.turns += 1
        follow_up = [{"role": "user", "content": "And in Lisbon?"}] if self.turns == 1 else []
        return StepReport(follow_up, RewardResult(0.0), done=self.turns == 2)

    def finish(self):
        return RewardResult(0.0)

    def succeeded(self):
        return False


class RecordingDecoder:
    """Passes calls through to a decoder and keeps each call's requests and completions."""

    def __init__(self, decoder) -> None:
        self.decoder, self.backend, self.calls = decoder, decoder.backend, []

    def generate(self, requests, *, on_done=None, progress=None):
        completions = self.decoder.generate(requests, on_done=on_done, progress=progress)
        self.calls.append((list(requests), completions))
        return completions


def test_the_second_turn_reuses_the_first_turns_keys_and_values(tokenizer):
    """Turn 2's prompt extends turn 1's prompt and sampled ids; the decoder kept turn 1's keys and values, so only the
    follow-up is prefilled, and the log-probs (through the reused cache) still equal a fresh forward pass."""
    model = tiny_model()
    decoder = RecordingDecoder(TransformersDecoder(model, tokenizer, seed=0))
    (rollout,) = run_episodes(decoder, tokenizer, "hermes", [TwoTurnEpisode()], temperature=1.0, max_new_tokens=6)
    assert rollout.turns == 2 and len(decoder.calls) == 2
    ([first_request], [first]), ([second_request], [second]) = decoder.calls
    assert first.cached_tokens == 0
    assert list(second_request.prompt_ids[:len(first_request.prompt_ids)]) == list(first_request.prompt_ids)
    # stored: turn 1's prompt and sampled ids but the last (never fed back, so it has no keys and values yet)
    assert second.cached_tokens == len(first_request.prompt_ids) + len(first.token_ids) - 1
    assert decoder.decoder.reused_tokens == second.cached_tokens
    batch = collate([rollout], tokenizer.pad_token_id)
    with torch.no_grad():
        out = completion_forward(model, batch.prompt_ids_BP, batch.prompt_mask_BP, batch.completion_ids_BC,
                                 batch.completion_mask_BC)
    mask = batch.action_mask_BC.bool()
    assert torch.allclose(out.logprobs_BC[mask], batch.old_logprobs_BC[mask], atol=1e-4)


def changed_model():
    """Other weights with another greedy continuation: a random tiny model (tied embeddings) greedily repeats the
    prompt's last token ("\n", id 198) whatever its seed, so that token's embedding is zeroed."""
    model = tiny_model(seed=1)
    with torch.no_grad():
        model.get_output_embeddings().weight[198] = 0.0
    return model


@pytest.mark.parametrize("in_place", [True, False], ids=["same-module", "another-module"])
def test_update_weights_decodes_with_the_new_weights_and_drops_stored_prefixes(tokenizer, in_place):
    """After an optimiser step (here: other weights), greedy decoding follows the new weights exactly as a fresh
    decoder on them does, and no keys or values computed by the old weights are reused."""
    prompt = tokenizer(PROMPT_TEXT, add_special_tokens=False)["input_ids"]
    request = Request(prompt, SamplingParams(max_tokens=8, logprobs=True))
    model = tiny_model(seed=0)
    decoder = TransformersDecoder(model, tokenizer)
    (before,) = decoder.generate([request])
    assert decoder.prefixes.entries  # the finished request's keys and values are kept for a later turn
    (again,) = decoder.generate([request])
    assert again.cached_tokens == len(prompt) - 1 and again.token_ids == before.token_ids
    if in_place:  # the RL trainer's case: the decoder decodes with the policy module the optimiser updates
        model.load_state_dict(changed_model().state_dict())
        decoder.update_weights(model)
    else:
        decoder.update_weights(changed_model())
    assert not decoder.prefixes.entries
    (after,) = decoder.generate([request])
    (fresh,) = TransformersDecoder(changed_model(), tokenizer).generate([request])
    assert after.cached_tokens == 0
    assert after.token_ids == fresh.token_ids != before.token_ids
    assert torch.allclose(torch.tensor(after.logprobs), torch.tensor(fresh.logprobs), atol=1e-5)


def test_tool_result_tokens_get_zero_gradient():
    """Through the real forward pass: the loss's gradient at the logits predicting inserted ids is exactly zero."""
    tokenizer = tiny_tokenizer()
    scripts = {"A": ['<tool_call>\n{"name": "fetch_current_conditions", "arguments": {"city": "Oslo"}}\n</tool_call>',
                     "Done."]}
    rollouts = run_episodes(ScriptedDecoder(tokenizer, scripts), tokenizer, "hermes",
                            [ToolEnvEpisode(weather_task("A"), {"irm": 1.0})])
    batch = collate(rollouts, tokenizer.pad_token_id)
    model = tiny_model()
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["logits"] = output

    model.lm_head.register_forward_hook(keep)
    out = completion_forward(model, batch.prompt_ids_BP, batch.prompt_mask_BP, batch.completion_ids_BC,
                             batch.completion_mask_BC)
    loss, _ = grpo_loss(out.logprobs_BC, out.logprobs_BC.detach() - 0.05, torch.tensor([1.0]), batch.action_mask_BC,
                        ref_logprobs_BT=out.logprobs_BC.detach() + 0.1, kl_coef=0.1)
    loss.backward()
    grad_BCV = captured["logits"].grad[:, :-1]  # column j predicts completion id j
    per_position = grad_BCV.abs().sum(-1)[0]
    inserted = batch.action_mask_BC[0] == 0
    assert inserted.sum() > 20  # the tool result and the next generation prompt
    assert torch.all(per_position[inserted] == 0)
    assert torch.all(per_position[~inserted] > 0)
