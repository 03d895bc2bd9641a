"""The real vLLM worker pool: generation, streaming, warming, abort, errors, threads, faults."""

from __future__ import annotations

import asyncio
import threading

import pytest

from helium_lc.engine.types import GenerationRequest, PromptTooLongError, SamplingSpec

pytestmark = pytest.mark.engine


def chat_ids(pool, text: str, system: str | None = None) -> list[int]:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return pool.apply_chat_template(msgs)


def test_generate_returns_text_tokens_and_timings(fresh_pool):
    r = fresh_pool.generate(chat_ids(fresh_pool, "Name a colour."), SamplingSpec(max_tokens=8))
    assert r.text.strip() and 1 <= r.num_output_tokens <= 8
    assert r.num_prompt_tokens == len(chat_ids(fresh_pool, "Name a colour."))
    assert r.total_s > 0 and r.worker_id == 0
    st = fresh_pool.stats()
    assert st["num_requests"] == 1 and st["num_prompt_tokens"] == r.num_prompt_tokens


def test_stream_chunks_add_up_to_the_result(fresh_pool):
    chunks = list(fresh_pool.stream(chat_ids(fresh_pool, "Count from one to five."), SamplingSpec(max_tokens=12)))
    final = chunks[-1].result
    assert final is not None and len(chunks) >= 3
    assert "".join(c.text_delta for c in chunks) == final.text
    assert sum(len(c.token_ids_delta) for c in chunks) == final.num_output_tokens


async def test_async_stream_from_another_loop(fresh_pool):
    pieces = [c async for c in fresh_pool.astream(chat_ids(fresh_pool, "Say hello."), SamplingSpec(max_tokens=6))]
    assert pieces[-1].result is not None and pieces[-1].result.num_output_tokens >= 1


def test_warm_then_request_reports_cached_prefix_tokens(fresh_pool):
    system = "You are a meticulous assistant who answers with one word. " * 12
    prefix_ids = chat_ids(fresh_pool, "Q1", system=system)
    # 1. cold: nothing cached yet
    cold = fresh_pool.generate(chat_ids(fresh_pool, "What colour is the sky?", system=system), SamplingSpec(max_tokens=2))
    assert cold.num_cached_prompt_tokens == 0
    fresh_pool.reset_prefix_cache()
    # 2. warm the shared system prompt (prefill only), then a request with the same prefix hits it
    warmed = fresh_pool.warm(prefix_ids)
    assert warmed[0].num_output_tokens == 1
    hot = fresh_pool.generate(chat_ids(fresh_pool, "What colour is grass?", system=system), SamplingSpec(max_tokens=2))
    block = fresh_pool.block_size
    shared = 0
    for a, b in zip(prefix_ids, hot_ids := chat_ids(fresh_pool, "What colour is grass?", system=system)):
        if a != b:
            break
        shared += 1
    assert hot.num_cached_prompt_tokens == (shared // block) * block > 0
    assert fresh_pool.stats()["num_warm_requests"] == 1
    assert len(hot_ids) == hot.num_prompt_tokens


def test_abort_stops_a_running_request(fresh_pool):
    req = GenerationRequest(tuple(chat_ids(fresh_pool, "Write a very long story about a dragon.")),
                            SamplingSpec(max_tokens=400))
    seen = []
    for chunk in fresh_pool.stream(req):
        seen.append(chunk)
        if len(seen) == 3:
            fresh_pool.abort(req.request_id)
    final = seen[-1].result
    assert final is not None and final.num_output_tokens < 400
    assert final.finish_reason == "abort"


def test_prompt_too_long_fails_only_that_request(fresh_pool):
    long_ids = chat_ids(fresh_pool, "word " * 3000)
    with pytest.raises(PromptTooLongError, match="Shorten the prompt"):
        fresh_pool.generate(long_ids, SamplingSpec(max_tokens=4))
    ok = fresh_pool.generate(chat_ids(fresh_pool, "Hi"), SamplingSpec(max_tokens=3))
    assert ok.num_output_tokens >= 1


def test_invalid_sampling_parameters_are_rejected_with_advice():
    with pytest.raises(ValueError, match="temperature must be"):
        SamplingSpec(temperature=-1)
    with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
        SamplingSpec(max_tokens=0)


def test_many_threads_share_the_pool(fresh_pool):
    ids = chat_ids(fresh_pool, "Say yes.")
    results, errors = [], []

    def call():
        try:
            results.append(fresh_pool.generate(ids, SamplingSpec(max_tokens=3)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 8


async def test_concurrent_async_requests_on_caller_loop(fresh_pool):
    ids = chat_ids(fresh_pool, "Name an animal.")
    rs = await asyncio.gather(*(fresh_pool.agenerate(ids, SamplingSpec(max_tokens=4)) for _ in range(6)))
    assert len({r.request_id for r in rs}) == 6
