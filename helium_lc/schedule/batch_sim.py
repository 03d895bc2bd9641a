"""Run a whole batch of calls, planned by a policy, on N simulated workers in virtual time.

``simulate()`` builds a ``Snapshot`` (empty caches unless ``resident`` is given), asks the
policy for an ``Assignment``, then runs a discrete-event simulation over one
``VirtualEngine`` per worker: each worker admits its *ready* calls in the planned order
(a call is ready when every dependency finished, on any worker), the warm prefixes run
first, and the clock jumps from completion to completion. No asyncio, O(events log N).

The report gives the makespan, the prompt tokens actually computed, and the lower bound
of tokens any schedule must compute (``lower_bound.py``).

Example:
    >>> from helium_lc.schedule.snapshot import PendingCall
    >>> calls = [PendingCall(i, (7,) * 64 + (i,), template_key=((7,) * 64, "q"), row=i) for i in range(8)]
    >>> r = simulate("helium", calls, num_workers=2, block_size=16)
    >>> r.computed_prompt_tokens, r.lower_bound_tokens   # the prefix once per worker
    (136, 72)
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, replace
from typing import Hashable, Mapping, Sequence

from helium_lc.schedule.cost import CostModel
from helium_lc.schedule.lower_bound import lower_bound_tokens
from helium_lc.schedule.policies import get_policy
from helium_lc.schedule.radix import RadixCache
from helium_lc.schedule.snapshot import PendingCall, Snapshot, WorkerView
from helium_lc.schedule.virtual_engine import Job, VirtualEngine


@dataclass(frozen=True)
class SimWorkerReport:
    """One worker's share of a simulated batch."""

    worker_id: int
    num_calls: int
    computed_prompt_tokens: int
    cached_prompt_tokens: int
    busy_s: float
    finish_s: float


@dataclass(frozen=True)
class SimReport:
    """Outcome of ``simulate()``; times are virtual seconds except ``planning_s`` (wall)."""

    policy: str
    num_calls: int
    num_workers: int
    makespan_s: float
    computed_prompt_tokens: int
    cached_prompt_tokens: int
    lower_bound_tokens: int
    planning_s: float
    per_worker: tuple[SimWorkerReport, ...]

    @property
    def prefill_over_lower_bound(self) -> float:
        """Computed prompt tokens divided by the lower bound (1.0 is perfect reuse)."""
        return self.computed_prompt_tokens / max(1, self.lower_bound_tokens)


def simulate(policy_name: str, calls: Sequence[PendingCall], num_workers: int, *,
             cost: CostModel | None = None, block_size: int = 16, kv_capacity_tokens: int | None = None,
             max_num_seqs: int = 32, warm: bool = True, resident: Sequence[RadixCache] | None = None,
             output_tokens: Mapping[Hashable, int] | None = None, seed: int = 0) -> SimReport:
    """Plan ``calls`` with the named policy and run them on ``num_workers`` simulated workers.

    Args:
        calls: the batch; ``deps`` name other calls of the batch; ``ready`` is ignored
            (readiness is decided by the simulation).
        cost: the cost model (its block size is replaced by ``block_size``).
        kv_capacity_tokens: KV cache size of each worker (``None``: unbounded).
        warm: run the policy's warm list before the calls.
        resident: per worker, a cache whose prefixes are already resident (it is used as
            the worker's KV cache and is mutated by the run).
        output_tokens: actual output length per call id (default: ``est_output_tokens``).
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers!r}.")
    if resident is not None and len(resident) != num_workers:
        raise ValueError(f"resident has {len(resident)} caches for {num_workers} workers; give one per worker.")
    cost = replace(cost or CostModel(), block_size=block_size)
    engines = [VirtualEngine(cost, kv_capacity_tokens, max_num_seqs, w) for w in range(num_workers)]
    if resident is not None:
        for eng, cache in zip(engines, resident):
            if cache.block_size != block_size:
                raise ValueError("resident caches must use the simulation's block_size.")
            eng.cache = cache
    by_id = {c.call_id: c for c in calls}
    views = tuple(WorkerView(w, resident=engines[w].cache, kv_capacity_tokens=kv_capacity_tokens,
                             max_num_seqs=max_num_seqs) for w in range(num_workers))
    snap_calls = tuple(replace(c, ready=not any(d in by_id for d in c.deps)) if c.ready else c for c in calls)
    t0 = time.perf_counter()
    plan = get_policy(policy_name)(Snapshot(calls=snap_calls, workers=views, cost=cost, seed=seed))
    planning_s = time.perf_counter() - t0

    worker_of: dict[Hashable, int] = {}
    rank: dict[Hashable, int] = {}
    for w, ids in plan.order.items():
        for pos, cid in enumerate(ids):
            worker_of[cid], rank[cid] = w, pos
    unmet = {c.call_id: sum(1 for d in set(c.deps) if d in by_id) for c in calls}
    dependents: dict[Hashable, list[Hashable]] = {}
    for c in calls:
        for d in set(c.deps):
            if d in by_id:
                dependents.setdefault(d, []).append(c.call_id)
    out_len = {c.call_id: (output_tokens or {}).get(c.call_id, c.est_output_tokens) for c in calls}

    if warm:
        for w, prefixes in plan.warm.items():
            for i, p in enumerate(prefixes):
                engines[w].submit(("__warm__", w, i), p, 1, (-1, i))
    dirty: set[int] = set()

    def release(cid: Hashable, now: float) -> None:
        c = by_id[cid]
        eng = engines[worker_of[cid]]
        if eng.time_s < now and eng.num_running == 0:
            eng.advance(now)
        eng.submit(cid, c.prompt_token_ids, out_len[cid], (0, rank[cid]))
        dirty.add(worker_of[cid])

    for c in calls:
        if unmet[c.call_id] == 0:
            release(c.call_id, 0.0)
    per_calls = [0] * num_workers
    finish = [0.0] * num_workers
    events: list[tuple[float, int, int]] = []
    version = [0] * num_workers

    def handle(done: list[Job]) -> None:
        for job in done:
            w = worker_of.get(job.job_id, None)
            if isinstance(job.job_id, tuple) and job.job_id[:1] == ("__warm__",):
                w = job.job_id[1]
            else:
                per_calls[w] += 1
            finish[w] = max(finish[w], job.finish_s)
            for nxt in dependents.get(job.job_id, ()):
                unmet[nxt] -= 1
                if unmet[nxt] == 0:
                    release(nxt, job.finish_s)

    def schedule(w: int) -> None:
        version[w] += 1
        t = engines[w].next_completion_s()
        if t is not None:
            heapq.heappush(events, (t, w, version[w]))

    now = 0.0
    while True:
        while dirty:
            w = dirty.pop()
            eng = engines[w]
            if eng.num_running < eng.max_num_seqs:
                handle(eng.advance(now))
                handle(eng.admit())
            schedule(w)
        if not events:
            break
        t, w, ver = heapq.heappop(events)
        if ver != version[w]:
            continue
        now = t
        handle(engines[w].advance(t))
        handle(engines[w].admit())
        schedule(w)
    stuck = [cid for cid, n in unmet.items() if n > 0]
    if stuck or any(not e.is_idle for e in engines):
        raise RuntimeError(f"simulation ended with unfinished calls (e.g. {stuck[:3]!r}); "
                           "check that every dependency names a call of the batch.")
    per = tuple(SimWorkerReport(w, per_calls[w], e.num_computed_prompt_tokens, e.num_cached_prompt_tokens,
                                e.busy_s, finish[w]) for w, e in enumerate(engines))
    return SimReport(
        policy=policy_name, num_calls=len(calls), num_workers=num_workers, makespan_s=max(finish),
        computed_prompt_tokens=sum(p.computed_prompt_tokens for p in per),
        cached_prompt_tokens=sum(p.cached_prompt_tokens for p in per),
        lower_bound_tokens=lower_bound_tokens((c.prompt_token_ids for c in calls), block_size),
        planning_s=planning_s, per_worker=per)
