"""ONE suite of ``Worker`` protocol tests that every engine implementation must pass.

The test functions take a ``harness`` fixture (the worker plus a way to run its coroutines on
its own loop). Here they run on ``SimWorker``; ``tests/integration/test_worker_conformance_engine.py``
imports the same functions and runs them on the real ``VLLMWorker``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Coroutine

import pytest

from helium_lc.engine.sim import SimWorker
from helium_lc.engine.types import (EngineError, GenerationRequest, SamplingSpec, Worker, WorkerDiedError,
                                    WorkerStats)

_bases = itertools.count(1000, 200)  # distinct token ranges per test, so no test hits another's cache


@dataclass
class Harness:
    """A worker under test and how to run its coroutines (on the loop it lives on)."""

    worker: Any
    run: Callable[[Coroutine[Any, Any, Any]], Any]
    settle_s: float = 0.0          # how long a request runs before the abort test aborts it
    can_shutdown: bool = True      # False for a shared worker other tests still need


def _prompt(n: int) -> tuple[int, ...]:
    base = next(_bases)
    return tuple(range(base, base + n))


def _stats(h: Harness) -> WorkerStats:
    return dataclasses.replace(h.worker.stats())  # a copy: some workers return their live counters


# ---------------------------------------------------------------------------------- the suite
def check_generate(h: Harness) -> None:
    # A 40-token prompt, up to 4 output tokens: the result describes exactly this request.
    req = GenerationRequest(_prompt(40), SamplingSpec(max_tokens=4))
    r = h.run(h.worker.generate(req))
    assert isinstance(h.worker, Worker)
    assert r.request_id == req.request_id and r.worker_id == h.worker.worker_id
    assert r.num_prompt_tokens == 40
    assert 1 <= r.num_output_tokens <= 4 and r.finish_reason is not None
    assert 0 <= r.num_cached_prompt_tokens < 40 and r.num_cached_prompt_tokens % h.worker.block_size == 0


def check_stream_chunks_add_up(h: Harness) -> None:
    # Streamed deltas concatenate to the final result; only the last chunk carries it.
    req = GenerationRequest(_prompt(24), SamplingSpec(max_tokens=6))

    async def collect() -> list[Any]:
        return [c async for c in h.worker.stream(req)]

    chunks = h.run(collect())
    assert chunks and chunks[-1].result is not None
    assert all(c.result is None for c in chunks[:-1])
    result = chunks[-1].result
    assert tuple(t for c in chunks for t in c.token_ids_delta) == result.token_ids
    assert "".join(c.text_delta for c in chunks) == result.text
    assert all(c.request_id == req.request_id for c in chunks)


def check_warm_then_hit_block_aligned(h: Harness) -> None:
    # Warm a prefix of 3 blocks + 3 tokens. A later request extending it finds exactly the 3
    # full blocks cached (engines cache whole blocks only), and the warm-up is counted.
    bs = h.worker.block_size
    h.run(h.worker.reset_prefix_cache())
    prefix = _prompt(3 * bs + 3)
    before = _stats(h)
    w = h.run(h.worker.warm(prefix))
    assert w.num_prompt_tokens == len(prefix) and w.num_output_tokens == 1
    assert _stats(h).num_warm_requests == before.num_warm_requests + 1
    r = h.run(h.worker.generate(GenerationRequest(prefix + _prompt(5), SamplingSpec(max_tokens=2))))
    assert r.num_cached_prompt_tokens == 3 * bs


def check_reset_prefix_cache(h: Harness) -> None:
    # The same prompt twice hits; after a reset it misses again.
    bs = h.worker.block_size
    p = _prompt(2 * bs + 1)
    h.run(h.worker.generate(GenerationRequest(p, SamplingSpec(max_tokens=1))))
    again = h.run(h.worker.generate(GenerationRequest(p, SamplingSpec(max_tokens=1))))
    assert again.num_cached_prompt_tokens == 2 * bs
    h.run(h.worker.reset_prefix_cache())
    cold = h.run(h.worker.generate(GenerationRequest(p, SamplingSpec(max_tokens=1))))
    assert cold.num_cached_prompt_tokens == 0


def check_stats_counters(h: Harness) -> None:
    # Two requests: every counter grows by exactly what their results report.
    before = _stats(h)
    reqs = [GenerationRequest(_prompt(n), SamplingSpec(max_tokens=3)) for n in (10, 30)]
    results = [h.run(h.worker.generate(r)) for r in reqs]
    after = _stats(h)
    assert after.num_requests - before.num_requests == 2
    assert after.num_prompt_tokens - before.num_prompt_tokens == 40
    assert after.num_output_tokens - before.num_output_tokens == sum(r.num_output_tokens for r in results)
    assert (after.num_cached_prompt_tokens - before.num_cached_prompt_tokens
            == sum(r.num_cached_prompt_tokens for r in results))
    assert after.num_running == 0 and after.alive


def check_abort(h: Harness) -> None:
    # Abort a running long request: it ends early (error, or a short 'abort' result), the
    # worker counts nothing as running afterwards and still serves the next request.
    # Aborting an unknown id is a no-op.
    req = GenerationRequest(_prompt(16), SamplingSpec(max_tokens=200))

    async def scenario() -> Any:
        task = asyncio.ensure_future(h.worker.generate(req))
        while h.worker.stats().num_running < 1 and not task.done():
            await asyncio.sleep(0)
        if h.settle_s:
            await asyncio.sleep(h.settle_s)
        await h.worker.abort(req.request_id)
        await h.worker.abort("no-such-request")
        try:
            return await asyncio.wait_for(task, 30)
        except (EngineError, asyncio.CancelledError) as exc:
            return exc

    outcome = h.run(scenario())
    if not isinstance(outcome, BaseException):
        assert outcome.num_output_tokens < 200 or outcome.finish_reason == "abort"
    assert h.worker.stats().num_running == 0
    ok = h.run(h.worker.generate(GenerationRequest(_prompt(8), SamplingSpec(max_tokens=1))))
    assert ok.num_output_tokens == 1


def check_shutdown(h: Harness) -> None:
    # After shutdown the worker is not alive and refuses work with WorkerDiedError.
    if not h.can_shutdown:
        pytest.skip("shared worker: shutting it down would break the other tests")
    h.run(h.worker.shutdown())
    assert not h.worker.stats().alive
    with pytest.raises(WorkerDiedError):
        h.run(h.worker.generate(GenerationRequest(_prompt(4), SamplingSpec(max_tokens=1))))


CONFORMANCE_CHECKS = (check_generate, check_stream_chunks_add_up, check_warm_then_hit_block_aligned,
                      check_reset_prefix_cache, check_stats_counters, check_abort, check_shutdown)


# ---------------------------------------------------------------------------------- SimWorker
def _sim_harness() -> tuple[Harness, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    return Harness(SimWorker(0, block_size=4, kv_capacity_tokens=4096), loop.run_until_complete), loop


IMPLEMENTATIONS = {"sim": _sim_harness}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def harness(request: pytest.FixtureRequest) -> Any:
    h, loop = IMPLEMENTATIONS[request.param]()
    yield h
    loop.close()


@pytest.mark.parametrize("check", CONFORMANCE_CHECKS, ids=lambda f: f.__name__)
def test_worker_conformance(harness: Harness, check: Callable[[Harness], None]) -> None:
    check(harness)
