"""A deterministic continuous-batching engine in virtual time (the simulator's core).

One ``VirtualEngine`` models one vLLM worker: a waiting queue ordered by priority, a
running batch of at most ``max_num_seqs`` sequences, and a radix KV cache with block
aligned prefix hits, LRU eviction and a capacity. Time is virtual and comes from a
``CostModel``:

- a step that admits new requests costs ``prefill_s(their uncached tokens) + step_s(b)``
  and gives every running sequence (new ones included) one token;
- a plain decode step costs ``step_s(b)``, ``b`` = running sequences.

Between admissions and completions nothing changes, so the engine jumps ahead by whole
runs of identical steps: the cost of a simulation is O(events), not O(tokens).
Like vLLM, a request admitted with its whole prompt cached still recomputes its last
block (at least one prompt token is always computed). Admission is strictly in
priority order: if the head of the queue does not fit in the KV cache, nothing behind
it jumps ahead (vLLM's FCFS behaviour).

Example:
    >>> from helium_lc.schedule.cost import CostModel
    >>> eng = VirtualEngine(CostModel(block_size=4), kv_capacity_tokens=64, max_num_seqs=4)
    >>> eng.submit("a", tuple(range(10)), num_output_tokens=3)
    >>> eng.submit("b", tuple(range(10)), num_output_tokens=3)
    >>> done = eng.admit() + eng.advance(eng.next_completion_s())
    >>> sorted(j.job_id for j in done), eng.num_computed_prompt_tokens, eng.num_cached_prompt_tokens
    (['a', 'b'], 12, 8)
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Hashable

from helium_lc.schedule.cost import CostModel
from helium_lc.schedule.radix import RadixCache


class KVCapacityError(ValueError):
    """A request cannot fit in an empty KV cache (prompt + output exceed its capacity)."""


@dataclass
class Job:
    """One request's life in the engine; times are virtual seconds."""

    job_id: Hashable
    prompt: tuple[int, ...]
    num_output_tokens: int
    priority: tuple[object, ...]
    submit_s: float
    admit_s: float = -1.0
    first_token_s: float = -1.0
    finish_s: float = -1.0
    remaining: int = 0
    num_cached_tokens: int = 0
    reserved_tokens: int = 0
    node: object = field(default=None, repr=False)


class VirtualEngine:
    """One simulated worker: radix KV cache + continuous batching + cost-model clock."""

    def __init__(self, cost: CostModel, kv_capacity_tokens: int | None = None, max_num_seqs: int = 32,
                 worker_id: int = 0) -> None:
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {max_num_seqs!r}.")
        self.cost = cost
        self.worker_id = worker_id
        self.max_num_seqs = max_num_seqs
        self.cache = RadixCache(block_size=cost.block_size, capacity_tokens=kv_capacity_tokens)
        self.time_s = 0.0
        self.busy_s = 0.0
        self.num_computed_prompt_tokens = 0
        self.num_cached_prompt_tokens = 0
        self.num_finished = 0
        self._seq = itertools.count()
        self._waiting: list[tuple[tuple[object, ...], int, Job]] = []
        self._running: list[Job] = []
        self._reserved_tokens = 0

    # ------------------------------------------------------------------ queries
    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def is_idle(self) -> bool:
        """Nothing running and nothing waiting."""
        return not self._running and not self._waiting

    def next_completion_s(self) -> float | None:
        """Virtual time at which the next running request finishes (``None`` when idle)."""
        if not self._running:
            return None
        k = min(j.remaining for j in self._running)
        return self.time_s + k * self.cost.step_s(len(self._running))

    # ---------------------------------------------------------------- mutators
    def submit(self, job_id: Hashable, prompt: tuple[int, ...], num_output_tokens: int,
               priority: tuple[object, ...] | int = 0) -> None:
        """Queue a ready request at the current time. Mutates the waiting queue."""
        if num_output_tokens < 1:
            raise ValueError(f"job {job_id!r}: num_output_tokens must be >= 1.")
        if not prompt:
            raise ValueError(f"job {job_id!r}: a request needs at least one prompt token.")
        prio = priority if isinstance(priority, tuple) else (priority,)
        job = Job(job_id, tuple(prompt), num_output_tokens, prio, self.time_s)
        heapq.heappush(self._waiting, (prio, next(self._seq), job))

    def abort(self, job_id: Hashable) -> bool:
        """Drop a waiting or running request; frees its KV. Returns whether it was found."""
        for j in self._running:
            if j.job_id == job_id:
                self._release(j)
                self._running.remove(j)
                return True
        if any(e[2].job_id == job_id for e in self._waiting):
            self._waiting = [e for e in self._waiting if e[2].job_id != job_id]
            heapq.heapify(self._waiting)
            return True
        return False

    def admit(self) -> list[Job]:
        """Admit waiting requests in priority order while seats and KV allow, then run the
        mixed prefill+decode step. Mutates cache, queues and clock; returns finished jobs."""
        bs = self.cost.block_size
        cap = self.cache.capacity_tokens
        admitted: list[Job] = []
        computed = 0
        while self._waiting and len(self._running) < self.max_num_seqs:
            job = self._waiting[0][2]
            found = self.cache.match(job.prompt)
            self.cache.lock(found.node)
            full = len(job.prompt) - len(job.prompt) % bs
            reserve = math.ceil((len(job.prompt) - full + job.num_output_tokens) / bs) * bs
            need = (full - found.num_matched_tokens) + reserve
            if cap is not None:
                over = self.cache.size_tokens + self._reserved_tokens + need - cap
                if over > 0:
                    self.cache.evict(over)
                if self.cache.size_tokens + self._reserved_tokens + need > cap:
                    self.cache.unlock(found.node)
                    if not self._running and not admitted:
                        raise KVCapacityError(
                            f"request {job.job_id!r} needs {full + reserve} KV tokens but the cache holds "
                            f"{cap}; raise kv_capacity_tokens or shorten the prompt/max_tokens.")
                    break
            heapq.heappop(self._waiting)
            inserted = self.cache.insert(job.prompt)
            self.cache.lock(inserted.node)
            self.cache.unlock(found.node)
            cached = min(found.num_matched_tokens, len(job.prompt) - 1)
            job.num_cached_tokens = cached - cached % bs
            job.node, job.reserved_tokens = inserted.node, reserve
            job.remaining, job.admit_s = job.num_output_tokens, self.time_s
            self._reserved_tokens += reserve
            computed += len(job.prompt) - job.num_cached_tokens
            admitted.append(job)
        if not admitted:
            return []
        self.num_computed_prompt_tokens += computed
        self.num_cached_prompt_tokens += sum(j.num_cached_tokens for j in admitted)
        self._running.extend(admitted)
        dt = self.cost.prefill_s(computed) + self.cost.step_s(len(self._running))
        self.time_s += dt
        self.busy_s += dt
        for j in admitted:
            j.first_token_s = self.time_s
        return self._tick(1)

    def advance(self, until_s: float | None) -> list[Job]:
        """Run decode steps up to (at least) ``until_s``, stopping at the first completion.
        An idle engine's clock jumps to ``until_s``. Returns finished jobs."""
        if until_s is None or until_s <= self.time_s + 1e-12:
            return []
        if not self._running:
            self.time_s = until_s
            return []
        step = self.cost.step_s(len(self._running))
        k = min(j.remaining for j in self._running)
        n = min(k, max(1, math.ceil((until_s - self.time_s) / step - 1e-9)))
        self.time_s += n * step
        self.busy_s += n * step
        return self._tick(n)

    def _tick(self, n: int) -> list[Job]:
        done: list[Job] = []
        keep: list[Job] = []
        for j in self._running:
            j.remaining -= n
            if j.remaining <= 0:
                j.finish_s = self.time_s
                self._release(j)
                done.append(j)
            else:
                keep.append(j)
        self._running = keep
        self.num_finished += len(done)
        return done

    def _release(self, job: Job) -> None:
        self.cache.unlock(job.node)
        self._reserved_tokens -= job.reserved_tokens
        job.reserved_tokens = 0
