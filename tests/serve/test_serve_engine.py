"""The batching engine: stop conditions, cancellation, backpressure, failures; and driving the transformers decoder's
step API on the tiny model."""

from __future__ import annotations

import asyncio

import pytest
from serve_helpers import shared_tokenizer

from qwen_tool.decode import Request, SamplingParams
from qwen_tool.decode.transformers_decoder import Token, TransformersDecoder
from qwen_tool.serve.engine import BatchingEngine, EngineBusy, Piece, ServeParams, stop_holdback
from qwen_tool.testing import ScriptedDecoder, tiny_model


def params(max_tokens: int, *, stop: tuple[str, ...] = (), **sampling: object) -> ServeParams:
    return ServeParams(SamplingParams(max_tokens, **sampling), stop)  # type: ignore[arg-type]


async def collect(engine: BatchingEngine, prompt: str, serve_params: ServeParams) -> tuple[str, Piece]:
    text, last = "", None
    async for piece in engine.submit(prompt, serve_params):
        text, last = text + piece.text, piece
    assert last is not None
    return text, last


def scripted(text: str, **kwargs: object) -> BatchingEngine:
    tokenizer = shared_tokenizer()
    return BatchingEngine(ScriptedDecoder(tokenizer, lambda prompt: text), tokenizer, **kwargs)  # type: ignore[arg-type]


def test_end_of_turn_stop_string_and_length() -> None:
    script = "The answer is 42. Done here."
    engine = scripted(script)
    script_tokens = len(shared_tokenizer()(script, add_special_tokens=False)["input_ids"])

    async def main() -> None:
        # The end-of-turn token counts as generated, and never shows in the text.
        assert await collect(engine, "q", params(50)) == (script, Piece("", "stop", script_tokens + 1))
        text, last = await collect(engine, "q", params(50, stop=("42",)))
        assert (text, last.finish_reason) == ("The answer is ", "stop")
        text, last = await collect(engine, "q", params(3))
        assert (text, last.finish_reason, last.completion_tokens) == ("The answer is", "length", 3)

    asyncio.run(main())
    engine.close()


def test_stop_string_split_across_tokens_is_never_emitted() -> None:
    engine = scripted("alpha beta<|im_sep|> gamma")

    async def main() -> list[str]:
        return [piece.text async for piece in engine.submit("q", params(50, stop=("<|im_sep|>",)))]

    pieces = asyncio.run(main())
    assert "".join(pieces) == "alpha beta" and not any("<" in piece for piece in pieces)
    engine.close()


def test_stop_holdback_holds_only_a_growing_stop_string() -> None:
    assert stop_holdback("hello EN", ["END"]) == 2
    assert stop_holdback("hello E", ["END", "XY"]) == 1
    assert stop_holdback("hello", ["END"]) == 0
    assert stop_holdback("abc", []) == 0


def test_cancel_frees_the_slot_and_a_full_queue_refuses() -> None:
    tokenizer = shared_tokenizer()
    decoder = ScriptedDecoder(tokenizer, lambda prompt: "word " * 2000, token_delay_s=0.002, max_batch=1)
    engine = BatchingEngine(decoder, tokenizer, max_queue=1)

    async def main() -> None:
        first = engine.submit("a", params(5000))
        await first.__anext__()
        second = engine.submit("b", params(5000))
        with pytest.raises(EngineBusy):
            engine.submit("c", params(5))
        first.cancel()
        piece = await second.__anext__()  # the waiting request got the freed slot
        assert piece.text
        second.cancel()
        for _ in range(200):
            if engine.stats() == {"running": 0, "waiting": 0}:
                break
            await asyncio.sleep(0.01)
        assert engine.stats() == {"running": 0, "waiting": 0}
        assert decoder.rows == {}  # both rows were removed from the decoder

    asyncio.run(main())
    engine.close()


def test_the_engine_fills_the_decoders_slots_and_no_more() -> None:
    """The decoder's max_batch is the engine's slot count (the scripted decoder, like the real one, refuses more)."""
    tokenizer = shared_tokenizer()
    decoder = ScriptedDecoder(tokenizer, lambda prompt: f"reply to {prompt}", token_delay_s=0.002, max_batch=2)
    engine = BatchingEngine(decoder, tokenizer)

    async def main() -> list[str]:
        return [text for text, _ in await asyncio.gather(*(collect(engine, f"q{i}", params(50)) for i in range(5)))]

    assert asyncio.run(main()) == [f"reply to q{i}" for i in range(5)]
    assert engine.max_rows_seen == 2
    engine.close()


class FailingDecoder(ScriptedDecoder):
    """Fails every step, or every prefill of a prompt containing "bad"."""

    fail_steps = True

    def step(self) -> list[Token]:
        if self.fail_steps:
            raise RuntimeError("boom")
        return super().step()

    def add(self, requests: list[Request]) -> list[Token]:  # type: ignore[override]
        if any("bad" in self.tokenizer.decode(r.prompt_ids) for r in requests):
            raise RuntimeError("bad prompt")
        return super().add(requests)


def test_a_model_failure_ends_its_requests_with_an_error_and_the_engine_goes_on() -> None:
    tokenizer = shared_tokenizer()
    decoder = FailingDecoder(tokenizer, lambda prompt: "a b c d", token_delay_s=0.002)
    engine = BatchingEngine(decoder, tokenizer)

    async def main() -> None:
        text, last = await collect(engine, "q", params(10))
        assert last.finish_reason == "error" and "boom" in (last.error or "")
        assert decoder.rows == {}
        decoder.fail_steps = False  # repaired
        good = engine.submit("q", params(10))
        pieces = [await good.__anext__()]  # running when the bad prompt's prefill fails
        text, last = await collect(engine, "bad", params(10))
        assert last.finish_reason == "error" and "bad prompt" in (last.error or "")
        pieces += [piece async for piece in good]
        assert ("".join(p.text for p in pieces), pieces[-1]) == ("a b c d", Piece("", "stop", 5))

    asyncio.run(main())
    engine.close()


@pytest.mark.usefixtures("one_thread")
def test_batched_decoding_with_rows_joining_and_leaving_equals_one_at_a_time() -> None:
    """Same text per request whether decoded alone or in a batch that others join mid-way and leave early.

    Seeded sampling (temperature 1) makes the random tiny model's output varied, so a row mixed up with another (by
    position instead of id), a wrong slot or a wrong position would show as different text.
    """
    tokenizer, model = shared_tokenizer(), tiny_model()
    prompts = ["<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", "hi",
               "<|im_start|>user\nA much longer question about the weather in Paris today?<|im_end|>\n"]

    def run(max_batch: int, stagger_s: float) -> tuple[list[tuple[str, int]], int]:
        engine = BatchingEngine(TransformersDecoder(model, tokenizer, max_batch=max_batch), tokenizer)

        async def one(index: int, prompt: str) -> tuple[str, int]:
            await asyncio.sleep(index * stagger_s)
            text, last = await collect(engine, prompt, params(8 + 4 * index, temperature=1.0, seed=index))
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

    tokenizer, model = shared_tokenizer(), tiny_model(seed=3)
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    engine = BatchingEngine(TransformersDecoder(model, tokenizer), tokenizer)
    text, _ = asyncio.run(collect(engine, prompt, params(12, temperature=0.0)))
    engine.close()
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.inference_mode():
        reference = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    assert text == tokenizer.decode(reference[0, ids.shape[1]:], skip_special_tokens=False)
