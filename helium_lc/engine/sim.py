"""Simulated workers: ``SimWorker`` (the ``Worker`` protocol in virtual time) and
``simulate()`` (a whole batch, planned by a policy, run on N simulated workers; it lives in
``helium_lc.schedule.batch_sim`` and is re-exported here).

Both run on ``VirtualEngine`` (radix KV cache with capacity, LRU eviction and block
aligned hits; continuous batching; a cost-model clock), so they are deterministic:
the same inputs give the same times, hits and output text. Output tokens are a function
of a hash of the prompt; their number is ``sampling.max_tokens`` unless ``output_len_fn``
says otherwise. Output tokens are not inserted into the KV cache model.

Example:
    >>> import asyncio
    >>> from helium_lc.engine.types import GenerationRequest, SamplingSpec
    >>> w = SimWorker(block_size=4, kv_capacity_tokens=64)
    >>> req = lambda: GenerationRequest(tuple(range(10)), SamplingSpec(max_tokens=2))
    >>> r1 = asyncio.run(w.generate(req())); r2 = asyncio.run(w.generate(req()))
    >>> (r1.num_cached_prompt_tokens, r2.num_cached_prompt_tokens, r1.text == r2.text)
    (0, 8, True)
    >>> from helium_lc.schedule.snapshot import PendingCall
    >>> calls = [PendingCall(i, (1,) * 32 + (i,), template_key=((1,) * 32, "x")) for i in range(4)]
    >>> simulate("helium", calls, num_workers=2, block_size=16).computed_prompt_tokens  # 2 x 32 + 4
    68
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import replace
from typing import AsyncIterator, Callable, Sequence

from helium_lc.engine.types import (EngineError, GenerationChunk, GenerationRequest, GenerationResult,
                                    SamplingSpec, WorkerDiedError, WorkerStats)
from helium_lc.schedule.batch_sim import SimReport, SimWorkerReport, simulate
from helium_lc.schedule.cost import CostModel
from helium_lc.schedule.virtual_engine import Job, VirtualEngine

__all__ = ["SimWorker", "simulate", "SimReport", "SimWorkerReport", "synthetic_output_tokens"]


def synthetic_output_tokens(prompt: Sequence[int], num_tokens: int, vocab_size: int = 49152) -> tuple[int, ...]:
    """Deterministic output token ids for a prompt (a hash of the prompt drives them)."""
    h = int.from_bytes(hashlib.blake2b(repr(tuple(prompt)).encode(), digest_size=8).digest(), "little")
    return tuple((h + 7919 * i) % vocab_size for i in range(num_tokens))


class SimWorker:
    """A simulated engine implementing the ``Worker`` protocol in virtual time.

    Requests submitted in the same event-loop turn are batched together; the engine then
    jumps from event to event without sleeping. ``time_s`` is the worker's virtual clock.
    """

    def __init__(self, worker_id: int = 0, cost: CostModel | None = None, block_size: int = 16,
                 kv_capacity_tokens: int = 65536, max_num_seqs: int = 32,
                 output_len_fn: Callable[[GenerationRequest], int] | None = None,
                 vocab_size: int = 49152) -> None:
        self.worker_id = worker_id
        self.block_size = block_size
        self.kv_capacity_tokens = kv_capacity_tokens
        self._cost = replace(cost or CostModel(), block_size=block_size)
        self._engine = VirtualEngine(self._cost, kv_capacity_tokens, max_num_seqs, worker_id)
        self._output_len_fn = output_len_fn or (lambda r: r.sampling.max_tokens)
        self._vocab = vocab_size
        self._futures: dict[str, tuple[asyncio.Future[GenerationResult], GenerationRequest, bool]] = {}
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self._stats = WorkerStats(worker_id=worker_id)

    @property
    def time_s(self) -> float:
        """The worker's virtual clock in seconds."""
        return self._engine.time_s

    @property
    def cache(self):
        """The worker's radix KV cache (read it; do not mutate it)."""
        return self._engine.cache

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run one request to completion in virtual time."""
        return await self._submit(request, max(1, int(self._output_len_fn(request))), is_warm=False)

    async def _submit(self, request: GenerationRequest, num_out: int, is_warm: bool) -> GenerationResult:
        if not self._stats.alive:
            raise WorkerDiedError(f"SimWorker {self.worker_id} was shut down; use another worker.")
        if request.request_id in self._futures:
            raise EngineError(f"request id {request.request_id!r} is already in flight on worker {self.worker_id}.")
        fut: asyncio.Future[GenerationResult] = asyncio.get_running_loop().create_future()
        self._futures[request.request_id] = (fut, request, is_warm)
        self._engine.submit(request.request_id, request.prompt_token_ids, num_out,
                            (request.priority, next(self._seq)))
        self._stats.num_running += 1
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive())
        return await fut

    async def _drive(self) -> None:
        while True:
            await asyncio.sleep(0)  # let requests submitted in this turn join the step
            if self._engine.is_idle:
                return
            try:
                done = self._engine.admit()
                if not done:
                    done = self._engine.advance(self._engine.next_completion_s())
            except Exception as exc:  # e.g. a prompt larger than the KV cache: fail the head request
                self._fail_all(EngineError(f"SimWorker {self.worker_id}: {exc}"))
                return
            for job in done:
                self._finish(job)

    def _finish(self, job: Job) -> None:
        entry = self._futures.pop(job.job_id, None)
        if entry is None:
            return
        fut, req, is_warm = entry
        toks = synthetic_output_tokens(req.prompt_token_ids, job.num_output_tokens, self._vocab)
        result = GenerationResult(
            request_id=req.request_id, text="".join(f" w{t}" for t in toks), token_ids=toks,
            num_prompt_tokens=len(req.prompt_token_ids), num_cached_prompt_tokens=job.num_cached_tokens,
            finish_reason="length", worker_id=self.worker_id, queued_s=job.admit_s - job.submit_s,
            first_token_s=job.first_token_s - job.submit_s, total_s=job.finish_s - job.submit_s)
        s = self._stats
        s.num_running -= 1
        s.num_requests += 1
        s.num_warm_requests += int(is_warm)
        s.num_prompt_tokens += result.num_prompt_tokens
        s.num_cached_prompt_tokens += result.num_cached_prompt_tokens
        s.num_output_tokens += len(toks)
        s.busy_s += result.total_s
        if not fut.done():
            fut.set_result(result)

    def _fail_all(self, exc: Exception) -> None:
        for rid in list(self._futures):
            fut, _, _ = self._futures.pop(rid)
            self._engine.abort(rid)
            self._stats.num_running -= 1
            self._stats.num_failed += 1
            if not fut.done():
                fut.set_exception(exc)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Yield one chunk per output token; the last chunk carries the result."""
        result = await self.generate(request)
        for i, t in enumerate(result.token_ids):
            last = i == len(result.token_ids) - 1
            yield GenerationChunk(request.request_id, f" w{t}", (t,), result if last else None)

    async def warm(self, prompt_token_ids: Sequence[int]) -> GenerationResult:
        """Prefill a prefix (one output token) so later requests hit it."""
        req = GenerationRequest(tuple(prompt_token_ids), SamplingSpec(max_tokens=1), priority=-1)
        return await self._submit(req, 1, is_warm=True)

    async def abort(self, request_id: str) -> None:
        """Drop a request; its ``generate`` raises ``EngineError``."""
        entry = self._futures.pop(request_id, None)
        if entry is None:
            return
        self._engine.abort(request_id)
        self._stats.num_running -= 1
        self._stats.num_failed += 1
        if not entry[0].done():
            entry[0].set_exception(EngineError(f"request {request_id!r} was aborted."))

    async def reset_prefix_cache(self) -> None:
        """Evict every unlocked prefix."""
        self._engine.cache.reset()

    def stats(self) -> WorkerStats:
        """A copy of the counters."""
        return replace(self._stats)

    async def shutdown(self) -> None:
        """Stop: in-flight requests fail with ``WorkerDiedError``."""
        self._stats.alive = False
        self._fail_all(WorkerDiedError(f"SimWorker {self.worker_id} shut down."))
