"""Makespan-scored refinement of small plans: earliest-finish seeding plus local search.

Organising rule: *on a small batch, score whole plans by their estimated makespan.*
The packing in ``helium.py`` balances estimated work, which ignores how long a call
waits for inputs produced on another worker. For a batch of at most a few dozen calls we
can afford to simulate every candidate plan instead:

- ``PlanEstimator`` runs each worker's sequence one call at a time with the ``CostModel``:
  a call starts when its worker is free and every in-snapshot dependency has finished (on
  any worker); it prefills the prompt tokens beyond the longer of the whole-block prefix it
  shares with the worker's previous prompt and the prefix resident on the worker at
  snapshot time, then takes its share of decode. Within the plan only the previous prompt
  counts (the KV-pressure case, valid whatever the cache capacity); what was resident
  before the plan is credited to every call, so a conversation whose earlier turns sit on
  one worker is cheaper there wherever it comes in that worker's sequence (online, this
  is what keeps a growing conversation on the worker that holds it).
- ``earliest_finish_plan`` list-schedules calls in priority order onto the worker where
  each finishes first (precedence delays included).
- ``refine`` improves plans by relocating runs of 1-3 consecutive calls (to any worker and
  position) and swapping pairs of calls, first improvement in a fixed scan order, until no
  move helps; then it kicks the best plan (a few seeded random relocations) and descends
  again, keeping what is better (iterated local search), until ``max_evals`` plans were
  scored. Plans compare by (makespan, busy time, sum of finish times), so moves that save
  cache work or finish calls earlier are kept when the makespan ties.

Everything is deterministic: same inputs and seed, same plan.

Example:
    >>> from helium_lc.schedule.cost import CostModel
    >>> from helium_lc.schedule.snapshot import PendingCall, Snapshot, WorkerView
    >>> cost = CostModel(prefill_base_s=0.0, prefill_s_per_token=0.01, decode_step_base_s=0.01,
    ...                  decode_s_per_seq=0.0, block_size=4)
    >>> calls = (PendingCall("a", (1,) * 8, est_output_tokens=1), PendingCall("b", (2,) * 8, est_output_tokens=1),
    ...          PendingCall("r", (3,) * 4, deps=("a", "b"), est_output_tokens=1))
    >>> est = PlanEstimator(Snapshot(calls=calls, workers=(WorkerView(0), WorkerView(1)), cost=cost), batch_size=1)
    >>> round(est.score({0: ["a", "b", "r"], 1: []})[0], 2)   # 0.09 + 0.09 + 0.05
    0.23
    >>> plan = refine(est, {0: ["a", "b", "r"], 1: []})
    >>> round(est.score(plan)[0], 2)                         # a and b in parallel, then r
    0.14
"""

from __future__ import annotations

import random
from typing import Hashable, Mapping, Sequence

from helium_lc.schedule.radix import lcp_aligned
from helium_lc.schedule.snapshot import Snapshot

Score = tuple[float, float, float]
Plan = dict[int, list[Hashable]]
_INFEASIBLE: Score = (float("inf"), float("inf"), float("inf"))
_TOL_S = 1e-9


class PlanEstimator:
    """Estimated makespan of per-worker call sequences under the snapshot's cost model.

    ``batch_size`` sets each call's decode share (``out * step_s(b) / b``), as in the
    policy's work estimates; with 1 it is the call's full decode latency.
    """

    def __init__(self, snapshot: Snapshot, batch_size: int) -> None:
        cost = snapshot.cost
        self.snapshot = snapshot
        self.worker_ids = [w.worker_id for w in snapshot.live_workers]
        self._slowdown = [w.slowdown for w in snapshot.live_workers]
        self.initial_free_s = [w.queued_work_s * w.slowdown for w in snapshot.live_workers]
        self._resident = [w.resident for w in snapshot.live_workers]
        self.ids = [c.call_id for c in snapshot.calls]
        self.index = {cid: i for i, cid in enumerate(self.ids)}
        self._prompts = [c.prompt_token_ids for c in snapshot.calls]
        b = max(1, batch_size)
        self._decode_s = [c.est_output_tokens * cost.step_s(b) / b for c in snapshot.calls]
        self.deps = [tuple(sorted({self.index[d] for d in c.deps if d in self.index})) for c in snapshot.calls]
        self._cost = cost
        self._dur: dict[tuple[int, int, int], float] = {}
        self._resident_hit: dict[tuple[int, int], int] = {}

    def resident_tokens(self, w: int, j: int) -> int:
        """Leading tokens of call ``j``'s prompt resident on the ``w``-th live worker at snapshot time."""
        key = (w, j)
        hit = self._resident_hit.get(key)
        if hit is None:
            hit = self._resident_hit[key] = self._resident[w].peek(self._prompts[j])
        return hit

    def dur_s(self, w: int, prev: int, j: int) -> float:
        """Seconds of call ``j`` on the ``w``-th live worker right after call ``prev`` (``prev < 0``:
        the first call there)."""
        key = (w, prev, j)
        d = self._dur.get(key)
        if d is None:
            prompt = self._prompts[j]
            hit = self.resident_tokens(w, j)
            if prev >= 0:
                hit = max(hit, lcp_aligned(self._prompts[prev], prompt, self._cost.block_size))
            d = self._dur[key] = (self._cost.prefill_s(len(prompt) - hit) + self._decode_s[j]) * self._slowdown[w]
        return d

    def score_indices(self, seqs: Sequence[Sequence[int]]) -> Score:
        """(makespan, busy time, sum of finish times) of index sequences, one per live worker
        (``_INFEASIBLE`` when a call waits on a dependency queued behind it)."""
        n = len(self.ids)
        finish: list[float | None] = [None] * n
        free = list(self.initial_free_s)
        heads = [0] * len(seqs)
        prev = [-1] * len(seqs)
        done, busy, total = 0, 0.0, 0.0
        while done < n:
            progressed = False
            for w, seq in enumerate(seqs):
                h, t, p = heads[w], free[w], prev[w]
                while h < len(seq):
                    j = seq[h]
                    s = t
                    for d in self.deps[j]:
                        f = finish[d]
                        if f is None:
                            break
                        if f > s:
                            s = f
                    else:
                        d_s = self.dur_s(w, p, j)
                        t = s + d_s
                        finish[j] = t
                        busy += d_s
                        total += t
                        p = j
                        h += 1
                        done += 1
                        continue
                    break
                if h != heads[w]:
                    progressed = True
                    heads[w], free[w], prev[w] = h, t, p
            if not progressed:
                return _INFEASIBLE
        return (max(free, default=0.0), busy, total)

    def to_indices(self, plan: Mapping[int, Sequence[Hashable]]) -> list[list[int]]:
        """Index sequences, one per live worker, in worker-id order."""
        return [[self.index[c] for c in plan.get(w, ())] for w in self.worker_ids]

    def to_plan(self, seqs: Sequence[Sequence[int]]) -> Plan:
        """Call-id sequences keyed by worker id."""
        return {w: [self.ids[j] for j in seq] for w, seq in zip(self.worker_ids, seqs)}

    def score(self, plan: Mapping[int, Sequence[Hashable]]) -> Score:
        """``score_indices`` of a plan keyed by worker id."""
        return self.score_indices(self.to_indices(plan))


def better(a: Score, b: Score) -> bool:
    """Whether score ``a`` beats ``b``: lower makespan, then busy time, then sum of finishes."""
    for x, y in zip(a, b):
        if x < y - _TOL_S:
            return True
        if x > y + _TOL_S:
            return False
    return False


def earliest_finish_plan(est: PlanEstimator, priority: Sequence[Hashable]) -> Plan:
    """Take calls in ``priority`` order (which must list dependencies first) and put each on
    the worker where it would finish earliest; ties go to the worker free sooner, then the
    lowest id."""
    W = len(est.worker_ids)
    free = list(est.initial_free_s)
    prev = [-1] * W
    finish: dict[int, float] = {}
    seqs: list[list[int]] = [[] for _ in range(W)]
    for cid in priority:
        j = est.index[cid]
        ready = max((finish[d] for d in est.deps[j]), default=0.0)
        best = min(range(W), key=lambda w: (max(free[w], ready) + est.dur_s(w, prev[w], j), free[w], w))
        finish[j] = free[best] = max(free[best], ready) + est.dur_s(best, prev[best], j)
        prev[best] = j
        seqs[best].append(j)
    return est.to_plan(seqs)


def _neighbours(seqs: list[list[int]], max_run: int):
    """Every plan one move away: relocate a run of 1..max_run calls, or swap two calls."""
    W = len(seqs)
    for src in range(W):
        for i in range(len(seqs[src])):
            for length in range(1, max_run + 1):
                if i + length > len(seqs[src]):
                    break
                run = seqs[src][i:i + length]
                rest = seqs[src][:i] + seqs[src][i + length:]
                for dst in range(W):
                    base = rest if dst == src else seqs[dst]
                    for k in range(len(base) + 1):
                        if dst == src and k == i:
                            continue
                        out = list(seqs)
                        if dst != src:
                            out[src] = rest
                        out[dst] = base[:k] + run + base[k:]
                        yield out
    flat = [(w, i) for w in range(W) for i in range(len(seqs[w]))]
    for a in range(len(flat)):
        for b in range(a + 1, len(flat)):
            (wa, ia), (wb, ib) = flat[a], flat[b]
            if wa == wb and ib == ia + 1:
                continue  # an adjacent swap is already a relocation
            out = list(seqs)
            out[wa] = list(seqs[wa])
            if wb != wa:
                out[wb] = list(seqs[wb])
            out[wa][ia], out[wb][ib] = seqs[wb][ib], seqs[wa][ia]
            yield out


def _descend(est: PlanEstimator, seqs: list[list[int]], budget: list[int], max_run: int
             ) -> tuple[list[list[int]], Score]:
    """First-improvement descent; ``budget[0]`` counts down the plans it may still score."""
    cur = est.score_indices(seqs)
    improved = True
    while improved and budget[0] > 0:
        improved = False
        for cand in _neighbours(seqs, max_run):
            budget[0] -= 1
            s = est.score_indices(cand)
            if better(s, cur):
                seqs, cur, improved = cand, s, True
                break
            if budget[0] <= 0:
                break
    return seqs, cur


def _kick(seqs: list[list[int]], rng: random.Random, num_moves: int = 2) -> list[list[int]]:
    """Relocate ``num_moves`` randomly chosen calls to random workers and positions."""
    out = [list(s) for s in seqs]
    for _ in range(num_moves):
        src = rng.choice([w for w in range(len(out)) if out[w]])
        j = out[src].pop(rng.randrange(len(out[src])))
        dst = rng.randrange(len(out))
        out[dst].insert(rng.randrange(len(out[dst]) + 1), j)
    return out


def refine(est: PlanEstimator, *plans: Mapping[int, Sequence[Hashable]], max_evals: int = 4000,
           max_kicks: int = 0, seed: int = 0, max_run: int = 3) -> Plan:
    """Local search (first improvement, fixed scan order) from each of ``plans``, then up to
    ``max_kicks`` rounds of iterated local search: perturb the best plan with a seeded random
    kick and descend again, keeping the result when it is better.

    Returns the best plan found (never worse than the first input; inputs win ties in
    order). At most ``max_evals`` candidate plans are scored in all; the same inputs and
    ``seed`` always give the same plan.
    """
    if not plans:
        raise ValueError("refine() needs at least one starting plan.")
    budget = [max_evals]
    best: tuple[list[list[int]], Score] | None = None
    for plan in plans:
        seqs, score = _descend(est, est.to_indices(plan), budget, max_run)
        if best is None or better(score, best[1]):
            best = (seqs, score)
    assert best is not None
    rng = random.Random(seed)
    if len(est.ids) >= 2:
        for _ in range(max_kicks):
            if budget[0] <= 0:
                break
            seqs, score = _descend(est, _kick(best[0], rng), budget, max_run)
            if better(score, best[1]):
                best = (seqs, score)
    return est.to_plan(best[0])
