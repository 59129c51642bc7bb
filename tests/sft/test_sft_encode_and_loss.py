"""Encoding labels/weights, and the loss invariances: plain TRL SFT, PKT with weight 1, zero gradients where masked."""

from __future__ import annotations

import json

import pytest
import torch
from trl import SFTConfig, SFTTrainer

from qwen_tool.config import SFTTrainingConfig
from qwen_tool.sft.tokenize import IGNORE_INDEX, encode_trajectory
from qwen_tool.sft.trainer import ToolSFTTrainer, WeightedCollator, build_trainer
from qwen_tool.sft.weights import pkt_turn_weight, predicted_positions
from qwen_tool.testing import tiny_model, tiny_tokenizer

TOOLS = [
    {"type": "function", "function": {
        "name": "get_stock_price", "description": "Latest price of one stock.",
        "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}}, "required": ["symbol"]}}},
    {"type": "function", "function": {
        "name": "get_stock_prices", "description": "Latest prices of several stocks.",
        "parameters": {"type": "object", "properties": {"symbols": {"type": "array", "items": {"type": "string"}}},
                       "required": ["symbols"]}}},
]


def call(call_id: str, name: str, arguments: dict) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


# A wrong call (hallucinated argument name) drawing an error, the corrected call, its result, the final answer.
TRAJECTORY = {
    "tools": TOOLS,
    "messages": [
        {"role": "user", "content": "What is AAPL trading at?"},
        {"role": "assistant", "content": None, "tool_calls": [call("c1", "get_stock_price", {"ticker": "AAPL"})],
         "erroneous": True, "feedback_category": "parameter_hallucination"},
        {"role": "tool", "tool_call_id": "c1", "content": "error: unexpected argument 'ticker'; expected 'symbol'"},
        {"role": "assistant", "content": None, "tool_calls": [call("c2", "get_stock_price", {"symbol": "AAPL"})]},
        {"role": "tool", "tool_call_id": "c2", "content": "{\"symbol\": \"AAPL\", \"price\": 190.5}"},
        {"role": "assistant", "content": "AAPL trades at 190.5 dollars."},
    ],
}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def decoded_trained(example, tokenizer):
    pairs = zip(example.input_ids, example.labels, strict=True)
    return tokenizer.decode([t for t, label in pairs if label != IGNORE_INDEX])


def test_labels_cover_exactly_the_assistant_text(tokenizer):
    example = encode_trajectory(TRAJECTORY, tokenizer, "hermes", mae=False, pkt=False)
    trained = decoded_trained(example, tokenizer)
    assert '"ticker"' in trained and '"symbol": "AAPL"' in trained  # both calls trained when MAE is off
    assert "AAPL trades at 190.5 dollars.<|im_end|>" in trained
    for never in ("unexpected argument", "190.5}", "What is AAPL", "<tools>", "<|im_start|>"):
        assert never not in trained, never
    assert set(example.loss_weights) <= {0.0, 1.0}


def test_mae_zeroes_the_erroneous_turn_but_keeps_it_in_context(tokenizer):
    plain = encode_trajectory(TRAJECTORY, tokenizer, "hermes", mae=False, pkt=False)
    masked = encode_trajectory(TRAJECTORY, tokenizer, "hermes", mae=True, pkt=False)
    assert masked.input_ids == plain.input_ids
    trained = decoded_trained(masked, tokenizer)
    assert "ticker" not in trained
    assert '"symbol": "AAPL"' in trained
    assert "ticker" in tokenizer.decode(masked.input_ids)


def test_pkt_weights_key_tokens_of_each_turn(tokenizer):
    example = encode_trajectory(TRAJECTORY, tokenizer, "hermes", mae=True, pkt=True, w_max=9.0)
    key_tokens = [tokenizer.decode([t]) for t, k in zip(example.input_ids, example.key_mask, strict=True) if k]
    joined = "".join(key_tokens)
    assert "symbol" in joined and "AAPL" in joined and "get" in joined
    # Weight of the corrected call's key tokens = clip(|NK| / |K|, 1, 9) over that turn's trained tokens.
    turn = [(w, k) for w, k, label in zip(example.loss_weights, example.key_mask, example.labels, strict=True)
            if label != IGNORE_INDEX and w > 0]
    key_weights = {w for w, k in turn if k}
    assert len(key_weights) == 1
    (weight,) = key_weights
    # Recount the corrected call's turn from the rendered tokens to check the formula end to end.
    from qwen_tool.codec.chat import render_conversation

    rendered = render_conversation(tokenizer, TRAJECTORY["messages"], TOOLS, "hermes")
    turn_segment = next(s for s in rendered.segments if s.trainable and s.message_index == 3)
    turn_ids = tokenizer(rendered.text[turn_segment.start:turn_segment.end], add_special_tokens=False)["input_ids"]
    num_key = sum(1 for w, k in turn if k)
    assert weight == pytest.approx(pkt_turn_weight(num_key, len(turn_ids) - num_key, 9.0))
    assert weight > 1.0
    # Non-key trained tokens keep weight 1; the final answer has no key token.
    assert all(w == 1.0 for w, k in turn if not k)


def batch_of(examples, tokenizer):
    return WeightedCollator(tokenizer.pad_token_id)([e.to_dict() for e in examples])


def second_trajectory():
    return {"tools": TOOLS, "messages": [
        {"role": "user", "content": "Prices of MSFT and NVDA please"},
        {"role": "assistant", "content": None,
         "tool_calls": [call("c9", "get_stock_prices", {"symbols": ["MSFT", "NVDA"]})]},
    ]}


def test_loss_without_mae_and_pkt_equals_trl_sft_loss(tokenizer, tmp_path):
    model = tiny_model()
    examples = [encode_trajectory(t, tokenizer, "hermes", mae=False, pkt=False)
                for t in (TRAJECTORY, second_trajectory())]
    ours = build_trainer(SFTTrainingConfig(output_dir=str(tmp_path / "ours"), mae=False, pkt=False), model,
                         tokenizer, [e.to_dict() for e in examples], report_to=[])
    batch = batch_of(examples, tokenizer)
    our_loss = ours.compute_loss(model, batch)

    # Plain TRL: its own collator and its own loss on the same token ids and labels.
    from datasets import Dataset

    trl_data = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    trl = SFTTrainer(model=model, args=SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True,
                                                 dataset_kwargs={"skip_prepare_dataset": True}, max_length=None),
                     train_dataset=trl_data, processing_class=tokenizer)
    trl_batch = trl.data_collator([trl_data[i] for i in range(len(trl_data))])
    trl_loss = trl.compute_loss(model, trl_batch)
    assert our_loss.item() == pytest.approx(trl_loss.item(), abs=1e-6)


def test_pkt_with_every_weight_one_is_standard_sft(tokenizer, tmp_path):
    model = tiny_model()
    example = encode_trajectory(TRAJECTORY, tokenizer, "hermes", mae=True, pkt=True, w_max=1.0)
    assert set(example.loss_weights) <= {0.0, 1.0}
    batch = batch_of([example], tokenizer)
    trainer = build_trainer(SFTTrainingConfig(output_dir=str(tmp_path)), model, tokenizer, [example.to_dict()],
                            report_to=[])
    ours = trainer.compute_loss(model, batch)
    reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert ours.item() == pytest.approx(reference.item(), abs=1e-6)


def test_tool_result_and_masked_turn_positions_get_zero_gradient(tokenizer, tmp_path):
    model = tiny_model()
    example = encode_trajectory(TRAJECTORY, tokenizer, "hermes", mae=True, pkt=True)
    batch = batch_of([example], tokenizer)
    trainer = build_trainer(SFTTrainingConfig(output_dir=str(tmp_path)), model, tokenizer, [example.to_dict()],
                            report_to=[])
    captured = {}

    def keep_logits(module, args, output):
        output.retain_grad()
        captured["logits"] = output

    handle = model.lm_head.register_forward_hook(keep_logits)
    trainer.compute_loss(model, batch).backward()
    handle.remove()
    # The LM head runs only at positions that predict a trained token; every other position gets no gradient at all.
    positions_P = predicted_positions(batch["labels"])
    assert captured["logits"].shape[1] == len(positions_P) < batch["labels"].shape[1] - 1
    grad_T = torch.zeros(batch["labels"].shape[1])
    grad_T[positions_P] = captured["logits"].grad[0].abs().sum(-1)  # gradient reaching the logits of each position
    text = tokenizer.decode(example.input_ids)
    ids = example.input_ids
    # Logits at position t predict token t+1: collect positions that predict tool-result or erroneous-turn tokens.
    tool_text = "error: unexpected argument 'ticker'"
    pieces = [tokenizer.decode(ids[: i + 1]) for i in range(len(ids))]
    tool_start = next(i for i, p in enumerate(pieces) if tool_text[:12] in p)
    wrong_call = next(i for i, p in enumerate(pieces) if '"ticker"' in p)
    assert grad_T[tool_start - 1] == 0, "a tool-result token received gradient"
    assert grad_T[wrong_call - 1] == 0, "a token of the MAE-masked turn received gradient"
    right_call = next(i for i, p in enumerate(pieces) if '"symbol": "AAPL"' in p)
    assert grad_T[right_call - 1] > 0
    assert "ticker" in text


def test_gradient_accumulation_4x2_equals_8x1(tokenizer, tmp_path):
    trajectories = [TRAJECTORY, second_trajectory()] * 4
    examples = [encode_trajectory(t, tokenizer, "hermes").to_dict() for t in trajectories]
    results = []
    for per_device, accumulation in ((4, 2), (8, 1)):
        model = tiny_model(seed=3)
        cfg = SFTTrainingConfig(output_dir=str(tmp_path / f"{per_device}x{accumulation}"),
                                examples_per_device=per_device, gradient_accumulation=accumulation,
                                learning_rate=0.5, epochs=1, warmup_ratio=0.0, lr_scheduler="constant_with_warmup")
        trainer = build_trainer(cfg, model, tokenizer, examples, report_to=[], optim="sgd", max_grad_norm=0.0,
                                train_sampling_strategy="sequential", save_strategy="no")
        trainer.train()
        results.append(model.model.layers[0].mlp.up_proj.weight.detach().clone())
    start = tiny_model(seed=3).model.layers[0].mlp.up_proj.weight
    assert not torch.allclose(results[0], start), "training did not move the weights"
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_trainer_is_our_subclass(tokenizer, tmp_path):
    trainer = build_trainer(SFTTrainingConfig(output_dir=str(tmp_path)), tiny_model(), tokenizer,
                            [encode_trajectory(TRAJECTORY, tokenizer, "hermes").to_dict()], report_to=[])
    assert isinstance(trainer, ToolSFTTrainer)


def test_decision_weight_sets_the_first_token_of_each_trained_turn(tokenizer):
    plain = encode_trajectory(TRAJECTORY, tokenizer, "hermes", mae=True, pkt=True)
    decided = encode_trajectory(TRAJECTORY, tokenizer, "hermes", mae=True, pkt=True, decision_weight=5.0)
    assert decided.input_ids == plain.input_ids and decided.key_mask == plain.key_mask
    changed = [i for i, (a, b) in enumerate(zip(plain.loss_weights, decided.loss_weights, strict=True)) if a != b]
    # Two trained turns (the corrected call and the text answer; the erroneous call stays masked by MAE), and each
    # changes at its first token only, to 5 whether it calls or answers.
    assert [decided.loss_weights[i] for i in changed] == [5.0, 5.0]
    firsts = [tokenizer.decode([decided.input_ids[i]]).strip() for i in changed]
    assert "<tool_call>".startswith(firsts[0]) and "AAPL".startswith(firsts[1]) and all(firsts)
    assert all(decided.labels[i - 1] == IGNORE_INDEX for i in changed)  # each opens its turn
    assert encode_trajectory(TRAJECTORY, tokenizer, "hermes", decision_weight=1.0).loss_weights == plain.loss_weights


def test_training_trajectories_are_shuffled_by_seed_then_cut_to_max_examples(tmp_path):
    from qwen_tool.sft.trainer import training_trajectories

    records = [{**TRAJECTORY, "messages": [{"role": "user", "content": f"question {i}"}, *TRAJECTORY["messages"][1:]]}
               for i in range(10)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    def firsts(**settings) -> list[str]:
        cfg = SFTTrainingConfig(model="tiny", data=str(path), **settings)
        return [t["messages"][0]["content"] for t in training_trajectories(cfg)]

    everything = firsts(seed=3)
    assert sorted(everything) == sorted(f"question {i}" for i in range(10))
    assert everything != [f"question {i}" for i in range(10)]  # shuffled
    assert firsts(seed=3, max_examples=4) == everything[:4]  # the same examples SFT trains on, in its order
    assert firsts(seed=3) == everything  # the shuffle depends on the seed alone
