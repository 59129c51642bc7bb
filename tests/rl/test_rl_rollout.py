"""The rollout loop with a scripted policy (a valid call, a call with a wrong argument name, no call) and with the
tiny random model: logged rates, token-in/token-out and the tool-result mask."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qwen_tool.env.suites import get_suite
from qwen_tool.rl.algorithms import grpo_loss
from qwen_tool.rl.policy import completion_forward
from qwen_tool.rl.rollout import Sample, SingleTurnEpisode, ToolEnvEpisode, collate, rollout_stats, run_episodes
from qwen_tool.testing import tiny_model, tiny_tokenizer

VALID = '<tool_call>\n{"name": "fetch_current_conditions", "arguments": {"city": "Lisbon", "unit": "fahrenheit"}}\n' \
        '</tool_call>'
WRONG_NAME = '<tool_call>\n{"name": "fetch_current_conditions", "arguments": {"town": "Lisbon"}}\n</tool_call>'
ANSWER = "Lisbon is warmer."
WEIGHTS = {"irm": 1.0}


class ScriptedSampler:
    """Returns scripted texts: the script is chosen by a marker in the prompt, the turn by how many assistant turns
    the prompt already holds."""

    def __init__(self, tokenizer, scripts: dict[str, list[str]]) -> None:
        self.tokenizer, self.scripts = tokenizer, scripts
        self.stop_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.greedy_calls: list[list[bool]] = []

    def sample(self, prompts, max_new_tokens, greedy=None):
        self.greedy_calls.append(list(greedy))
        out = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt)
            marker = next(m for m in self.scripts if f"[{m}]" in text)
            turn = text.count("<|im_start|>assistant") - 1
            ids = self.tokenizer(self.scripts[marker][turn], add_special_tokens=False)["input_ids"] + [self.stop_id]
            out.append(Sample(ids, [-0.5] * len(ids), True))
        return out


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
    rollouts = run_episodes(ScriptedSampler(tokenizer, scripts), tokenizer, "hermes", episodes)
    stats = rollout_stats(rollouts)
    # Calls: A one (ok), B one (town is not a parameter → parameter_hallucination), C none. Turns: 2 + 2 + 1 = 5.
    assert [r.call_categories for r in rollouts] == [["ok"], ["parameter_hallucination"], []]
    assert stats["calls_per_episode"] == pytest.approx(2 / 3)
    assert stats["call_rate"] == pytest.approx(2 / 5)
    assert stats["failure_rate"] == pytest.approx(1 / 2)
    assert stats["category/ok"] == stats["category/parameter_hallucination"] == pytest.approx(1 / 2)
    assert stats["turns_per_episode"] == pytest.approx(5 / 3)
    # IRM per turn against the gold of that step (gold step 0: Lisbon and Oslo in fahrenheit; step 1: answer).
    # A: one of two gold calls exact (+1), the other missing (−1.5) → −0.25; then answering when due: +1.
    # B: town is hallucinated, unit and city missing → −1.3 paired with Lisbon, Oslo missing −1.5 → −1.4; then +1.
    # C: no call when two were due → two missing → −1.5.
    assert [r.turn_rewards for r in rollouts] == [pytest.approx([-0.25, 1.0]), pytest.approx([-1.4, 1.0]),
                                                  pytest.approx([-1.5])]


def test_mean_turn_return_makes_length_neutral(tokenizer):
    """With turn_return="mean" a two-turn episode's return is the mean of its turn rewards (plus the episode reward),
    and the per-token scores that PPO sees still sum to that return."""
    scripts = {"A": [VALID, ANSWER], "C": [ANSWER]}
    episodes = [ToolEnvEpisode(weather_task(m), WEIGHTS) for m in scripts]
    summed = run_episodes(ScriptedSampler(tokenizer, scripts), tokenizer, "hermes", episodes)
    episodes = [ToolEnvEpisode(weather_task(m), WEIGHTS) for m in scripts]
    averaged = run_episodes(ScriptedSampler(tokenizer, scripts), tokenizer, "hermes", episodes, turn_return="mean")
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
    (rollout,) = run_episodes(ScriptedSampler(tokenizer, scripts), tokenizer, "hermes",
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
    (rollout,) = run_episodes(ScriptedSampler(tokenizer, {"A": [VALID]}), tokenizer, "hermes", [episode])
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
    sampler = ScriptedSampler(tokenizer, scripts)
    episodes = [ToolEnvEpisode(weather_task(m), WEIGHTS) for m in scripts]
    run_episodes(sampler, tokenizer, "hermes", episodes, greedy=[False, False, True])
    # Turn 1: all three; B answers at once, so turn 2 holds A and C, and C keeps its flag.
    assert sampler.greedy_calls == [[False, False, True], [False, True]]
    with pytest.raises(ValueError, match="2 flags for 3 episodes"):
        run_episodes(sampler, tokenizer, "hermes", episodes, greedy=[True, False])


def test_greedy_rows_take_the_argmax_and_record_tempered_logprobs(tokenizer):
    """A flagged row decodes as a greedy sampler would, while its log-probs stay those of the tempered distribution
    the loss reads; the unflagged row still samples."""
    from qwen_tool.rl.policy import completion_forward
    from qwen_tool.rl.rollout import TransformersSampler

    model = tiny_model()
    prompt = tokenizer("<|im_start|>user\nweather in Oslo?<|im_end|>\n<|im_start|>assistant\n",
                       add_special_tokens=False)["input_ids"]
    greedy_ids = TransformersSampler(model, tokenizer, temperature=0).sample([prompt], 8)[0].token_ids
    sampler = TransformersSampler(model, tokenizer, temperature=2.0, generator=torch.Generator().manual_seed(0))
    flagged, sampled = sampler.sample([prompt, prompt], max_new_tokens=8, greedy=[True, False])
    assert flagged.token_ids == greedy_ids
    assert sampled.token_ids != greedy_ids  # temperature 2 on random weights: a greedy-looking draw is vanishingly rare
    completion = torch.tensor([flagged.token_ids])
    with torch.no_grad():
        out = completion_forward(model, torch.tensor([prompt]), torch.ones(1, len(prompt), dtype=torch.long),
                                 completion, torch.ones_like(completion), temperature=2.0)
    assert torch.allclose(out.logprobs_BC[0], torch.tensor(flagged.logprobs), atol=1e-4)


def test_tiny_model_rollout_records_sampling_logprobs(tokenizer):
    """Old log-probs recorded while sampling equal a fresh forward pass over the appended ids."""
    from qwen_tool.rl.policy import completion_forward
    from qwen_tool.rl.rollout import TransformersSampler

    model = tiny_model()
    sampler = TransformersSampler(model, tokenizer, temperature=1.0, generator=torch.Generator().manual_seed(0))
    episodes = [ToolEnvEpisode(weather_task(m), WEIGHTS) for m in "AB"]
    rollouts = run_episodes(sampler, tokenizer, "hermes", episodes, max_new_tokens=6)
    batch = collate(rollouts, tokenizer.pad_token_id)
    with torch.no_grad():
        out = completion_forward(model, batch.prompt_ids_BP, batch.prompt_mask_BP, batch.completion_ids_BC,
                                 batch.completion_mask_BC)
    mask = batch.action_mask_BC.bool()
    assert mask.sum() == sum(r.sampled_tokens for r in rollouts) > 0
    assert torch.allclose(out.logprobs_BC[mask], batch.old_logprobs_BC[mask], atol=1e-4)


def test_sampler_prefills_a_repeated_prompt_once_and_samples_each_copy_independently(tokenizer):
    from qwen_tool.rl.policy import completion_forward
    from qwen_tool.rl.rollout import TransformersSampler

    model = tiny_model()
    prompt = tokenizer("<|im_start|>user\nweather in Oslo?<|im_end|>\n<|im_start|>assistant\n",
                       add_special_tokens=False)["input_ids"]
    other = prompt[:-3] + prompt[-2:]
    prefill_rows = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kwargs: prefill_rows.append(kwargs["input_ids"].shape) if kwargs["input_ids"].shape[1] > 1
        else None, with_kwargs=True)
    sampler = TransformersSampler(model, tokenizer, temperature=1.0, generator=torch.Generator().manual_seed(0))
    samples = sampler.sample([prompt] * 4 + [other], max_new_tokens=8)
    hook.remove()
    assert prefill_rows == [torch.Size([2, len(prompt)])]  # two distinct prompts, prefilled once each
    assert len({tuple(s.token_ids) for s in samples[:4]}) > 1  # the copies are independent draws
    for row, sample in zip([prompt] * 4 + [other], samples, strict=True):  # and each log-prob is its row's own
        ids = torch.tensor([row + sample.token_ids])
        with torch.no_grad():
            out = completion_forward(model, ids[:, :len(row)], torch.ones_like(ids[:, :len(row)]),
                                     ids[:, len(row):], torch.ones_like(ids[:, len(row):]))
        assert torch.allclose(out.logprobs_BC[0], torch.tensor(sample.logprobs), atol=1e-4)


def test_tool_result_tokens_get_zero_gradient():
    """Through the real forward pass: the loss's gradient at the logits predicting inserted ids is exactly zero."""
    tokenizer = tiny_tokenizer()
    scripts = {"A": ['<tool_call>\n{"name": "fetch_current_conditions", "arguments": {"city": "Oslo"}}\n</tool_call>',
                     "Done."]}
    rollouts = run_episodes(ScriptedSampler(tokenizer, scripts), tokenizer, "hermes",
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
