"""The batching engine: stop conditions, cancellation, backpressure; the transformers step model on the tiny model."""

from __future__ import annotations

import asyncio

import pytest
from serve_helpers import shared_tokenizer

from qwen_tool.serve.engine import BatchingEngine, EngineBusy, Piece, SamplingParams, ScriptedStepModel
from qwen_tool.testing import tiny_model


async def collect(engine: BatchingEngine, prompt: str, params: SamplingParams) -> tuple[str, Piece]:
    text, last = "", None
    async for piece in engine.submit(prompt, params):
        text, last = text + piece.text, piece
    assert last is not None
    return text, last


def scripted(text: str, **kwargs: object) -> BatchingEngine:
    tokenizer = shared_tokenizer()
    return BatchingEngine(ScriptedStepModel(tokenizer, lambda prompt: text), tokenizer, **kwargs)  # type: ignore[arg-type]


def test_end_of_turn_stop_string_and_length() -> None:
    script = "The answer is 42. Done here."
    engine = scripted(script)
    script_tokens = len(shared_tokenizer()(script, add_special_tokens=False)["input_ids"])

    async def main() -> None:
        # The end-of-turn token counts as generated, and never shows in the text.
        assert await collect(engine, "q", SamplingParams(50)) == (script, Piece("", "stop", script_tokens + 1))
        text, last = await collect(engine, "q", SamplingParams(50, stop=("42",)))
        assert (text, last.finish_reason) == ("The answer is ", "stop")
        text, last = await collect(engine, "q", SamplingParams(3))
        assert (text, last.finish_reason, last.completion_tokens) == ("The answer is", "length", 3)

    asyncio.run(main())
    engine.close()


def test_stop_string_split_across_tokens_is_never_emitted() -> None:
    engine = scripted("alpha beta<|im_sep|> gamma")

    async def main() -> list[str]:
        pieces = [piece.text async for piece in engine.submit("q", SamplingParams(50, stop=("<|im_sep|>",)))]
        return pieces

    pieces = asyncio.run(main())
    assert "".join(pieces) == "alpha beta" and not any("<" in piece for piece in pieces)
    engine.close()


def test_cancel_frees_the_slot_and_a_full_queue_refuses() -> None:
    tokenizer = shared_tokenizer()
    model = ScriptedStepModel(tokenizer, lambda prompt: "word " * 2000, token_delay_s=0.002)
    engine = BatchingEngine(model, tokenizer, max_batch=1, max_queue=1)

    async def main() -> None:
        first = engine.submit("a", SamplingParams(5000))
        await first.__anext__()
        second = engine.submit("b", SamplingParams(5000))
        with pytest.raises(EngineBusy):
            engine.submit("c", SamplingParams(5))
        first.cancel()
        piece = await second.__anext__()  # the waiting request got the freed slot
        assert piece.text
        second.cancel()
        for _ in range(200):
            if engine.stats() == {"running": 0, "waiting": 0}:
                break
            await asyncio.sleep(0.01)
        assert engine.stats() == {"running": 0, "waiting": 0}

    asyncio.run(main())
    engine.close()


class FailingModel(ScriptedStepModel):
    def step(self) -> list[int]:
        raise RuntimeError("boom")


def test_a_model_failure_ends_its_requests_with_an_error_and_the_engine_goes_on() -> None:
    tokenizer = shared_tokenizer()
    model = FailingModel(tokenizer, lambda prompt: "a b c d")
    engine = BatchingEngine(model, tokenizer)

    async def main() -> None:
        text, last = await collect(engine, "q", SamplingParams(10))
        assert last.finish_reason == "error" and "boom" in (last.error or "")
        model.step = lambda: ScriptedStepModel.step(model)  # type: ignore[method-assign]  # repaired
        text, last = await collect(engine, "q", SamplingParams(10))
        assert (text, last.finish_reason) == ("a b c d", "stop")

    asyncio.run(main())
    engine.close()


@pytest.fixture
def one_thread() -> object:
    """Tiny matmuls run faster on one thread than on two contended ones (test speed only)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_batched_decoding_with_rows_joining_and_leaving_equals_one_at_a_time() -> None:
    """Same text per request whether decoded alone or in a batch that others join mid-way and leave early.

    Seeded sampling (temperature 1) makes the random tiny model's output varied, so a wrong cache merge, padding
    or position would show as different text.
    """
    from qwen_tool.serve.engine import TransformersStepModel

    tokenizer, model = shared_tokenizer(), tiny_model()
    prompts = ["<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", "hi",
               "<|im_start|>user\nA much longer question about the weather in Paris today?<|im_end|>\n"]

    def run(max_batch: int, stagger_s: float) -> tuple[list[tuple[str, int]], int]:
        engine = BatchingEngine(TransformersStepModel(model, tokenizer), tokenizer, max_batch=max_batch)

        async def one(index: int, prompt: str) -> tuple[str, int]:
            await asyncio.sleep(index * stagger_s)
            text, last = await collect(engine, prompt, SamplingParams(8 + 4 * index, temperature=1.0, seed=index))
            return text, last.completion_tokens

        async def main() -> list[tuple[str, int]]:
            return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))

        results = asyncio.run(main())
        engine.close()
        return results, engine.max_rows_seen

    alone, rows_alone = run(max_batch=1, stagger_s=0.0)
    together, rows_together = run(max_batch=4, stagger_s=0.02)
    assert rows_alone == 1 and rows_together >= 2
    assert together == alone
    assert [tokens for _, tokens in alone] == [8, 12, 16]
    assert len({text for text, _ in alone}) == 3


@pytest.mark.usefixtures("one_thread")
def test_greedy_decoding_matches_transformers_generate() -> None:
    import torch

    from qwen_tool.serve.engine import TransformersStepModel

    tokenizer, model = shared_tokenizer(), tiny_model(seed=3)
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    engine = BatchingEngine(TransformersStepModel(model, tokenizer), tokenizer)
    text, _ = asyncio.run(collect(engine, prompt, SamplingParams(12, temperature=0.0)))
    engine.close()
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.inference_mode():
        reference = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    assert text == tokenizer.decode(reference[0, ids.shape[1]:], skip_special_tokens=False)
