"""Baseline policies the paper compares against, as pure functions of a ``Snapshot``.

- ``fifo``: arrival order; each call to the worker with the fewest queued calls.
- ``random``: a seeded shuffle (``snapshot.seed``), dependencies kept; least-queue placement.
- ``lspf``: longest shared prefix first, SGLang-style: least-queue placement, then each
  worker runs waves of ``max_num_seqs`` ready calls, each wave the calls with the longest
  prefix resident in (its cache + the waves before it), emulating the online policy.
- ``prefix_affinity``: Parrot-style routing to the worker holding (or already sent) the
  longest prefix of the call; ties to the least loaded; arrival order on each worker.
- ``opwise``: operator by operator over the whole batch in topological order.
- ``round_robin``: arrival order, calls dealt to the workers in turn (a Kubernetes Service).
- ``cache_aware``: an SGLang-router / llm-d style router: the worker with the longest matching
  prefix when it matches at least half the prompt and the load is balanced (the busiest
  worker has at most ``CACHE_AWARE_ABS_GAP`` calls and ``CACHE_AWARE_REL_GAP`` times more than
  the idlest), else the least loaded worker.

Example:
    >>> from helium_lc.schedule.snapshot import PendingCall, Snapshot, WorkerView
    >>> calls = tuple(PendingCall(f"c{i}", (i,), arrival_seq=i) for i in range(3))
    >>> fifo(Snapshot(calls=calls, workers=(WorkerView(0), WorkerView(1)))).order
    {0: ('c0', 'c2'), 1: ('c1',)}
"""

from __future__ import annotations

import random as _random
from typing import Hashable

from helium_lc.schedule.policies._common import LeastQueue, assignment_from, topo_order
from helium_lc.schedule.radix import KVCacheFullError, RadixCache
from helium_lc.schedule.snapshot import Assignment, PendingCall, Snapshot


def _least_queue_placement(snapshot: Snapshot, order: list[Hashable]) -> dict[Hashable, int]:
    lq = LeastQueue(snapshot.live_workers)
    return {cid: lq.take() for cid in order}


def fifo(snapshot: Snapshot) -> Assignment:
    """Arrival order, least-queue worker (the LangGraph ``abatch`` + load balancer baseline)."""
    order = topo_order(snapshot.calls, key=lambda c: c.arrival_seq)
    return assignment_from(snapshot, order, _least_queue_placement(snapshot, order))


def random_policy(snapshot: Snapshot) -> Assignment:
    """Seeded random order (dependencies kept), least-queue worker."""
    rng = _random.Random(snapshot.seed)
    rank = {c.call_id: rng.random() for c in snapshot.calls}
    order = topo_order(snapshot.calls, key=lambda c: rank[c.call_id])
    return assignment_from(snapshot, order, _least_queue_placement(snapshot, order))


def opwise(snapshot: Snapshot) -> Assignment:
    """Operator by operator (call site) in topological order, rows inside each operator."""
    arrival = topo_order(snapshot.calls, key=lambda c: c.arrival_seq)
    by_id = {c.call_id: c for c in snapshot.calls}
    level: dict[Hashable, int] = {}
    for cid in arrival:
        level[cid] = 1 + max((level[d] for d in by_id[cid].deps if d in by_id), default=-1)
    op_level: dict[Hashable, int] = {}
    op_first: dict[Hashable, int] = {}
    for c in snapshot.calls:
        op_level[c.site] = max(op_level.get(c.site, 0), level[c.call_id])
        op_first[c.site] = min(op_first.get(c.site, c.arrival_seq), c.arrival_seq)
    order = topo_order(snapshot.calls, key=lambda c: (
        op_level[c.site], op_first[c.site], c.row if c.row is not None else -1, c.arrival_seq))
    return assignment_from(snapshot, order, _least_queue_placement(snapshot, order))


def lspf(snapshot: Snapshot) -> Assignment:
    """Longest shared prefix first, emulated wave by wave per worker (see module doc)."""
    arrival = topo_order(snapshot.calls, key=lambda c: c.arrival_seq)
    worker_of = _least_queue_placement(snapshot, arrival)
    by_id = {c.call_id: c for c in snapshot.calls}
    rank = {cid: i for i, cid in enumerate(arrival)}
    final_rank: dict[Hashable, int] = {}
    for w in snapshot.live_workers:
        mine = [by_id[cid] for cid in arrival if worker_of[cid] == w.worker_id]
        shadow = RadixCache(block_size=snapshot.cost.block_size, capacity_tokens=w.kv_capacity_tokens)
        done: set[Hashable] = set()
        pending = list(mine)
        while pending:
            ready = [c for c in pending if all(d in done or d not in by_id for d in c.deps)]
            if not ready:  # dependencies on other workers: take them in arrival order
                ready = pending
            ready.sort(key=lambda c: (-max(w.resident.peek(c.prompt_token_ids),
                                           shadow.peek(c.prompt_token_ids)), rank[c.call_id]))
            wave = ready[: w.max_num_seqs]
            for c in wave:
                final_rank[c.call_id] = len(final_rank)
                try:
                    shadow.insert(c.prompt_token_ids)
                except KVCacheFullError:  # a prompt larger than the cache is simply not kept
                    pass
                done.add(c.call_id)
            wave_ids = {c.call_id for c in wave}
            pending = [c for c in pending if c.call_id not in wave_ids]
    order = topo_order(snapshot.calls, key=lambda c: final_rank[c.call_id])
    return assignment_from(snapshot, order, worker_of)


def prefix_affinity(snapshot: Snapshot) -> Assignment:
    """Route each call to the worker with the longest matching prefix (resident or already
    routed there); ties go to the least loaded worker, then the lowest id."""
    workers = snapshot.live_workers
    bs = snapshot.cost.block_size
    shadow = {w.worker_id: RadixCache(block_size=bs) for w in workers}
    queued = {w.worker_id: w.num_running + w.num_waiting for w in workers}
    order = topo_order(snapshot.calls, key=lambda c: c.arrival_seq)
    by_id: dict[Hashable, PendingCall] = {c.call_id: c for c in snapshot.calls}
    worker_of: dict[Hashable, int] = {}
    for cid in order:
        p = by_id[cid].prompt_token_ids
        best = min(workers, key=lambda w: (-max(w.resident.peek(p), shadow[w.worker_id].peek(p)),
                                           queued[w.worker_id], w.worker_id))
        worker_of[cid] = best.worker_id
        queued[best.worker_id] += 1
        shadow[best.worker_id].insert(p)
    return assignment_from(snapshot, order, worker_of)


def round_robin(snapshot: Snapshot) -> Assignment:
    """Arrival order; call ``i`` of the batch (by arrival number) to live worker ``i mod n``."""
    order = topo_order(snapshot.calls, key=lambda c: c.arrival_seq)
    live = [w.worker_id for w in snapshot.live_workers]
    by_id = {c.call_id: c for c in snapshot.calls}
    return assignment_from(snapshot, order, {cid: live[by_id[cid].arrival_seq % len(live)] for cid in order})


#: ``cache_aware``'s balance test (SGLang router's defaults scaled to a few dozen calls in flight).
CACHE_AWARE_ABS_GAP = 4
CACHE_AWARE_REL_GAP = 1.5
CACHE_AWARE_MIN_MATCH = 0.5


def cache_aware(snapshot: Snapshot) -> Assignment:
    """Longest-prefix routing with a load cap (see the module doc)."""
    workers = snapshot.live_workers
    bs = snapshot.cost.block_size
    shadow = {w.worker_id: RadixCache(block_size=bs) for w in workers}
    queued = {w.worker_id: w.num_running + w.num_waiting for w in workers}
    order = topo_order(snapshot.calls, key=lambda c: c.arrival_seq)
    by_id: dict[Hashable, PendingCall] = {c.call_id: c for c in snapshot.calls}
    worker_of: dict[Hashable, int] = {}
    for cid in order:
        p = by_id[cid].prompt_token_ids
        hi, lo = max(queued.values()), min(queued.values())
        balanced = hi - lo <= CACHE_AWARE_ABS_GAP or hi <= CACHE_AWARE_REL_GAP * lo
        match = {w.worker_id: max(w.resident.peek(p), shadow[w.worker_id].peek(p)) for w in workers}
        best = max(workers, key=lambda w: (match[w.worker_id], -queued[w.worker_id], -w.worker_id))
        if balanced and match[best.worker_id] >= CACHE_AWARE_MIN_MATCH * len(p):
            chosen = best.worker_id
        else:
            chosen = min(workers, key=lambda w: (queued[w.worker_id], w.worker_id)).worker_id
        worker_of[cid] = chosen
        queued[chosen] += 1
        shadow[chosen].insert(p)
    return assignment_from(snapshot, order, worker_of)

