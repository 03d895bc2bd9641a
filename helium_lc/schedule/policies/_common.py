"""Helpers shared by the policies: dependency-respecting orders and least-queue placement.

Example:
    >>> from helium_lc.schedule.snapshot import PendingCall
    >>> calls = [PendingCall("b", (1,), deps=("a",), arrival_seq=0), PendingCall("a", (2,), arrival_seq=1)]
    >>> topo_order(calls, key=lambda c: c.arrival_seq)
    ['a', 'b']
"""

from __future__ import annotations

import heapq
from typing import Callable, Hashable, Iterable, Sequence

from helium_lc.schedule.radix import lcp_aligned
from helium_lc.schedule.snapshot import Assignment, PendingCall, Snapshot, WorkerView


def topo_order(calls: Sequence[PendingCall], key: Callable[[PendingCall], object]) -> list[Hashable]:
    """Order calls by ``key`` (smallest first) while never placing a call before a
    dependency in the same list (Kahn's algorithm with a priority heap).

    Dependencies on ids outside ``calls`` are treated as already finished.

    Raises:
        ValueError: the dependencies form a cycle (names a few calls on it).
    """
    if not any(c.deps for c in calls):  # independent calls (every online plan): a plain sort
        return [cid for _, _, cid in sorted((key(c), i, c.call_id) for i, c in enumerate(calls))]
    by_id = {c.call_id: c for c in calls}
    unmet = {c.call_id: 0 for c in calls}
    dependents: dict[Hashable, list[PendingCall]] = {}
    for c in calls:
        for d in set(c.deps):
            if d in by_id:
                unmet[c.call_id] += 1
                dependents.setdefault(d, []).append(c)
    heap = [(key(c), i, c.call_id) for i, c in enumerate(calls) if unmet[c.call_id] == 0]
    index = {c.call_id: i for i, c in enumerate(calls)}
    heapq.heapify(heap)
    out: list[Hashable] = []
    while heap:
        _, _, cid = heapq.heappop(heap)
        out.append(cid)
        for nxt in dependents.get(cid, ()):
            unmet[nxt.call_id] -= 1
            if unmet[nxt.call_id] == 0:
                heapq.heappush(heap, (key(nxt), index[nxt.call_id], nxt.call_id))
    if len(out) != len(calls):
        stuck = [repr(cid) for cid, n in unmet.items() if n > 0][:5]
        raise ValueError(f"the calls' dependencies form a cycle (e.g. {', '.join(stuck)}); "
                         "a call cannot wait on its own output.")
    return out


class LeastQueue:
    """Pick the live worker with the fewest queued calls (ties: lowest worker id)."""

    def __init__(self, workers: Iterable[WorkerView]) -> None:
        self._heap = [(w.num_running + w.num_waiting, w.worker_id) for w in workers if w.alive]
        heapq.heapify(self._heap)

    def take(self) -> int:
        """Return the least-queued worker and count one more call on it."""
        n, wid = heapq.heappop(self._heap)
        heapq.heappush(self._heap, (n + 1, wid))
        return wid


def assignment_from(snapshot: Snapshot, global_order: Sequence[Hashable],
                    worker_of: dict[Hashable, int],
                    warm: dict[int, tuple[tuple[int, ...], ...]] | None = None) -> Assignment:
    """Project one global order onto workers (every live worker gets an entry)."""
    per: dict[int, list[Hashable]] = {w.worker_id: [] for w in snapshot.live_workers}
    for cid in global_order:
        per[worker_of[cid]].append(cid)
    return Assignment(order={w: tuple(ids) for w, ids in per.items()}, warm=dict(warm or {}))


def unique_tokens(prompts: Sequence[tuple[int, ...]], block_size: int) -> int:
    """Tokens of the union of ``prompts`` as a prefix tree, counting whole blocks as shared."""
    if len(prompts) < 2:
        return len(prompts[0]) if prompts else 0
    ordered = sorted(prompts)
    total = len(ordered[0])
    for prev, cur in zip(ordered, ordered[1:]):
        total += len(cur) - lcp_aligned(prev, cur, block_size)
    return total
