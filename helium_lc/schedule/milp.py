"""Exact schedules of tiny batches by MILP (PuLP + its bundled CBC), to measure policies' gaps.

Model (the one both the MILP and ``sequence_makespan`` use):
- each worker runs its calls one at a time, in a sequence;
- the KV cache keeps only the previous call's prompt (a worker under KV pressure), so a
  call ``j`` run right after ``i`` prefills ``setup(i, j) = len(j) - lcp(i, j)`` tokens, lcp
  in whole blocks; the first call on worker ``w`` matches ``w``'s resident prompt;
- ``dur(i, j) = prefill_s(setup(i, j)) + decode_s(out_j, 1)``; a call starts after the
  calls it depends on finish, on any worker.

Formulation. Binary ``x[a, j]`` = call ``j`` runs right after ``a`` (``a`` a call or the
start node of a worker); binary ``z[j, w]`` = ``j`` runs on ``w``; continuous start ``S_j``,
finish ``F_j`` and makespan ``C``. Minimise ``C`` subject to:
    sum_a x[a, j] = 1;  sum_j x[i, j] <= 1;  sum_j x[start_w, j] <= 1;  sum_w z[j, w] = 1
    x[start_w, j] <= z[j, w];  |z[j, w] - z[i, w]| <= 1 - x[i, j]       (a chain stays on one worker)
    F_j = S_j + sum_a x[a, j] * dur(a, j)
    S_j >= F_i - M (1 - x[i, j]);  S_j >= F_i for each dependency i -> j;  C >= F_j
Every duration is positive, so the timing rows also rule out cycles (no MTZ rows needed).

Example:
    >>> inst = random_instance(seed=0)
    >>> opt = solve_milp(inst)
    >>> opt.makespan_s <= sequence_makespan(inst, opt.order) + 1e-6
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

from helium_lc.schedule.cost import CostModel
from helium_lc.schedule.policies import get_policy
from helium_lc.schedule.radix import lcp_aligned
from helium_lc.schedule.radix import RadixCache
from helium_lc.schedule.snapshot import PendingCall, Snapshot, WorkerView


@dataclass(frozen=True)
class MilpInstance:
    """A tiny batch: calls, workers, a cost model and what each worker holds at start."""

    calls: tuple[PendingCall, ...]
    num_workers: int = 1
    cost: CostModel = field(default_factory=lambda: CostModel(
        prefill_base_s=0.0, prefill_s_per_token=0.01, decode_step_base_s=0.01, decode_s_per_seq=0.0,
        block_size=4))
    resident: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError("MilpInstance.num_workers must be >= 1.")
        if self.resident and len(self.resident) != self.num_workers:
            raise ValueError("MilpInstance.resident needs one prompt per worker (use () for none).")
        if len(self.calls) > 12:
            raise ValueError(f"MILP instances must stay tiny (<= 12 calls), got {len(self.calls)}.")

    def resident_of(self, w: int) -> tuple[int, ...]:
        return self.resident[w] if self.resident else ()

    def dur(self, prev: tuple[int, ...], call: PendingCall) -> float:
        """Seconds to run ``call`` right after a call whose prompt was ``prev``."""
        setup = len(call.prompt_token_ids) - lcp_aligned(prev, call.prompt_token_ids, self.cost.block_size)
        return self.cost.prefill_s(setup) + self.cost.decode_s(call.est_output_tokens, 1)


@dataclass(frozen=True)
class MilpSolution:
    makespan_s: float
    order: dict[int, tuple[Hashable, ...]]
    status: str


def sequence_makespan(inst: MilpInstance, order: Mapping[int, Sequence[Hashable]]) -> float:
    """Makespan of running each worker's calls in the given order under the model above."""
    by_id = {c.call_id: c for c in inst.calls}
    heads = {w: 0 for w in order}
    free = {w: 0.0 for w in order}
    prev = {w: inst.resident_of(w) for w in order}
    finish: dict[Hashable, float] = {}
    while len(finish) < len(by_id):
        progressed = False
        for w, ids in order.items():
            while heads[w] < len(ids):
                c = by_id[ids[heads[w]]]
                if any(d in by_id and d not in finish for d in c.deps):
                    break
                start = max([free[w]] + [finish[d] for d in c.deps if d in by_id])
                free[w] = finish[c.call_id] = start + inst.dur(prev[w], c)
                prev[w] = c.prompt_token_ids
                heads[w] += 1
                progressed = True
        if not progressed:
            raise ValueError("the order deadlocks: a call waits on a dependency queued behind it.")
    return max(finish.values(), default=0.0)


def solve_milp(inst: MilpInstance, time_limit_s: float = 30.0) -> MilpSolution:
    """Solve the instance exactly with CBC (see the module docstring for the formulation)."""
    import pulp  # lazy: only the gap tool needs it

    calls = list(inst.calls)
    ids = [c.call_id for c in calls]
    W = inst.num_workers
    starts = [("start", w) for w in range(W)]
    prompt = {("start", w): inst.resident_of(w) for w in range(W)}
    prompt.update({c.call_id: c.prompt_token_ids for c in calls})
    by_id = {c.call_id: c for c in calls}
    big_m = sum(inst.dur((), c) for c in calls) + 1.0  # no schedule is longer than all calls cold, in a row
    prob = pulp.LpProblem("helium_gap", pulp.LpMinimize)
    idx = {k: i for i, k in enumerate(starts + ids)}
    x = {(a, j): pulp.LpVariable(f"x_{idx[a]}_{idx[j]}", cat="Binary")
         for a in starts + ids for j in ids if a != j}
    z = {(j, w): pulp.LpVariable(f"z_{idx[j]}_{w}", cat="Binary") for j in ids for w in range(W)}
    S = {j: pulp.LpVariable(f"S_{idx[j]}", lowBound=0) for j in ids}
    F = {j: pulp.LpVariable(f"F_{idx[j]}", lowBound=0) for j in ids}
    C = pulp.LpVariable("C", lowBound=0)
    prob += C
    for j in ids:
        prob += pulp.lpSum(x[a, j] for a in starts + ids if a != j) == 1
        prob += pulp.lpSum(z[j, w] for w in range(W)) == 1
        prob += F[j] == S[j] + pulp.lpSum(x[a, j] * inst.dur(prompt[a], by_id[j]) for a in starts + ids if a != j)
        prob += C >= F[j]
        for d in by_id[j].deps:
            if d in by_id:
                prob += S[j] >= F[d]
    for a in starts + ids:
        prob += pulp.lpSum(x[a, j] for j in ids if j != a) <= 1
    for w, s in enumerate(starts):
        for j in ids:
            prob += x[s, j] <= z[j, w]
    for i in ids:
        for j in ids:
            if i == j:
                continue
            prob += S[j] >= F[i] - big_m * (1 - x[i, j])
            for w in range(W):
                prob += z[j, w] - z[i, w] <= 1 - x[i, j]
                prob += z[i, w] - z[j, w] <= 1 - x[i, j]
    status = prob.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s))
    if pulp.LpStatus[status] != "Optimal":
        raise RuntimeError(f"CBC did not prove optimality ({pulp.LpStatus[status]}); "
                           "raise time_limit_s or use a smaller instance.")
    succ = {a: j for (a, j), v in x.items() if v.value() is not None and v.value() > 0.5}
    order: dict[int, tuple[Hashable, ...]] = {}
    for w, s in enumerate(starts):
        seq, cur = [], succ.get(s)
        while cur is not None:
            seq.append(cur)
            cur = succ.get(cur)
        order[w] = tuple(seq)
    return MilpSolution(float(pulp.value(C)), order, pulp.LpStatus[status])


def policy_makespan(inst: MilpInstance, policy_name: str) -> float:
    """Makespan, under the MILP's model, of the order the named policy chooses."""
    bs = inst.cost.block_size
    workers = []
    for w in range(inst.num_workers):
        cache = RadixCache(block_size=bs)
        if inst.resident_of(w):
            cache.insert(inst.resident_of(w))
        workers.append(WorkerView(w, resident=cache, max_num_seqs=1))
    plan = get_policy(policy_name)(Snapshot(calls=inst.calls, workers=tuple(workers), cost=inst.cost))
    return sequence_makespan(inst, plan.order)


def random_instance(seed: int, num_calls: int = 6, num_workers: int | None = None,
                    block_size: int = 4) -> MilpInstance:
    """A small batch with prefix sharing: 2-3 static prefixes, 2-3 rows, sometimes a reducer."""
    rng = random.Random(seed)
    W = num_workers if num_workers is not None else rng.choice([1, 2])
    fresh = iter(range(1000, 100000))
    prefixes = [tuple(next(fresh) for _ in range(block_size * rng.randint(2, 6))) for _ in range(rng.randint(2, 3))]
    rows = [tuple(next(fresh) for _ in range(rng.randint(2, 8))) for _ in range(rng.randint(2, 3))]
    with_reducer = rng.random() < 0.4
    calls: list[PendingCall] = []
    seq = 0
    while len(calls) < num_calls - (1 if with_reducer else 0):
        p = rng.randrange(len(prefixes))
        r = rng.randrange(len(rows))
        cid = f"c{seq}"
        calls.append(PendingCall(cid, prefixes[p] + rows[r] + (next(fresh),), template_key=(prefixes[p], "row", "x"),
                                 row=r, est_output_tokens=rng.randint(2, 8), arrival_seq=seq, call_site=f"op{p}"))
        seq += 1
    if with_reducer:
        reducer = tuple(next(fresh) for _ in range(block_size * 2))
        deps = tuple(c.call_id for c in calls if c.row == 0)
        calls.append(PendingCall(f"c{seq}", reducer + rows[0], template_key=(reducer, "row"), row=0, deps=deps,
                                 est_output_tokens=rng.randint(2, 8), ready=not deps, arrival_seq=seq,
                                 call_site="reduce"))
    return MilpInstance(calls=tuple(calls), num_workers=W, cost=CostModel(
        prefill_base_s=0.0, prefill_s_per_token=0.01, decode_step_base_s=0.01, decode_s_per_seq=0.0,
        block_size=block_size))
