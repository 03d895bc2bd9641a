"""Policies on tiny snapshots: known best orders, purity and conformance."""

import pytest

from helium_lc.schedule.cost import CostModel
from helium_lc.schedule.policies import POLICIES, HeliumOptions, get_policy, helium
from helium_lc.schedule.policies._refine import PlanEstimator, refine
from helium_lc.schedule.radix import RadixCache
from helium_lc.schedule.snapshot import PendingCall, Snapshot, WorkerView

BS = 4
COST = CostModel(prefill_base_s=0.0, prefill_s_per_token=0.01, decode_step_base_s=0.01,
                 decode_s_per_seq=0.0, block_size=BS)
SYS_A = tuple(range(100, 116))   # 4 blocks
SYS_B = tuple(range(200, 216))


def six_calls():
    # arrival alternates A, B, A, B, A, B over rows 0..2
    calls = []
    for r in range(3):
        for name, sys in (("a", SYS_A), ("b", SYS_B)):
            calls.append(PendingCall(f"{name}{r}", sys + (r, r), template_key=(sys, "q"), row=r,
                                     est_output_tokens=4, arrival_seq=len(calls)))
    return tuple(calls)


def two_workers(resident_a_on=None):
    views = []
    for w in range(2):
        cache = RadixCache(block_size=BS)
        if w == resident_a_on:
            cache.insert(SYS_A)
        views.append(WorkerView(w, resident=cache))
    return tuple(views)


def test_helium_keeps_each_prefix_on_one_worker_and_warms_it():
    snap = Snapshot(calls=six_calls(), workers=two_workers(), cost=COST)
    a = get_policy("helium")(snap)
    # the A-calls go together, the B-calls together, each on its own worker, rows in order
    assert sorted(a.order.values()) == [("a0", "a1", "a2"), ("b0", "b1", "b2")]
    assert a.warm == {}  # 16-token prefixes are below the warm threshold


def test_helium_places_by_resident_prefix():
    # worker 1 already holds SYS_A: the A-calls go there
    snap = Snapshot(calls=six_calls(), workers=two_workers(resident_a_on=1), cost=COST)
    assert get_policy("helium")(snap).order[1] == ("a0", "a1", "a2")


def test_fifo_round_robins_in_arrival_order():
    a = get_policy("fifo")(Snapshot(calls=six_calls(), workers=two_workers(), cost=COST))
    # least-queue alternates workers, so A and B calls land on the worker by parity
    assert a.order == {0: ("a0", "a1", "a2"), 1: ("b0", "b1", "b2")}


def test_prefix_affinity_follows_resident_prefix_then_load():
    a = get_policy("prefix_affinity")(Snapshot(calls=six_calls(), workers=two_workers(resident_a_on=1),
                                               cost=COST))
    # A-calls follow worker 1's resident prefix; b0 (no match anywhere) goes to the idle worker 0
    assert a.order[1] == ("a0", "a1", "a2") and a.order[0] == ("b0", "b1", "b2")


def test_lspf_runs_longest_resident_prefix_first():
    cache = RadixCache(block_size=BS)
    cache.insert(SYS_B)
    snap = Snapshot(calls=six_calls(), workers=(WorkerView(0, resident=cache, max_num_seqs=2),), cost=COST)
    # B-calls match 16 resident tokens -> first wave; after it A-calls are alone
    assert get_policy("lspf")(snap).order[0][:2] == ("b0", "b1")


def test_opwise_runs_operator_by_operator():
    snap = Snapshot(calls=six_calls(), workers=(WorkerView(0),), cost=COST)
    assert get_policy("opwise")(snap).order[0] == ("a0", "a1", "a2", "b0", "b1", "b2")


def test_helium_orders_producers_first_and_rows_inside_group():
    # row r: two experts (A, B) then a reducer R that needs both; one worker
    calls = []
    sys_r = tuple(range(300, 308))
    for r in range(2):
        for name, sys in (("a", SYS_A), ("b", SYS_B)):
            calls.append(PendingCall(f"{name}{r}", sys + (r,), template_key=(sys, "q"), row=r,
                                     arrival_seq=len(calls)))
        calls.insert(0, PendingCall(f"red{r}", sys_r + (r,), template_key=(sys_r, "q"), row=r,
                                    deps=(f"a{r}", f"b{r}"), ready=False, arrival_seq=-10 + r))
    snap = Snapshot(calls=tuple(calls), workers=(WorkerView(0),), cost=COST)
    order = get_policy("helium")(snap).order[0]
    # reducers arrived first but have the shortest critical path: they go last, row by row
    assert order == ("a0", "a1", "b0", "b1", "red0", "red1")


def reducer_waits_calls():
    # two workers that run one call at a time; 0.01 s per prefilled token, 0.01 s per decode step.
    # a0, a1 (prefix A, row 0) and c0 (prefix C, row 0) feed the reducer red; x (prefix A, row 1)
    # feeds nothing. Every call decodes 4 tokens (0.04 s).
    A, C, R = tuple(range(100, 116)), tuple(range(200, 208)), tuple(range(300, 308))
    spec = [("a0", A, (0, 0), 0), ("a1", A, (0, 1), 0), ("x", A, (1, 1), 1), ("c0", C, (0, 0), 0)]
    calls = [PendingCall(cid, pre + tail, template_key=(pre, "q"), row=row, est_output_tokens=4, arrival_seq=i)
             for i, (cid, pre, tail, row) in enumerate(spec)]
    calls.append(PendingCall("red", R + (0,), template_key=(R, "q"), row=0, deps=("a0", "a1", "c0"), ready=False,
                             est_output_tokens=4, arrival_seq=4))
    views = (WorkerView(0, max_num_seqs=1), WorkerView(1, max_num_seqs=1))
    return Snapshot(calls=tuple(calls), workers=views, cost=COST)


def test_helium_places_by_estimated_finish_so_the_reducer_does_not_wait():
    snap = reducer_waits_calls()
    plan = get_policy("helium")(snap)
    # a0 cold: 18 tokens + decode = 0.22 s; a1 and x then prefill 2 tokens each: 0.06 s each.
    # c0 cold: 10 tokens = 0.14 s; red cold: 9 tokens = 0.13 s.
    # Best: one worker runs a0, a1, x (ends 0.34); the other runs c0 then red, which starts when
    # a1 ends at 0.28 and finishes at 0.41 (the MILP optimum). x, which nobody waits for, goes last.
    assert sorted(plan.order.values()) == [("a0", "a1", "x"), ("c0", "red")]  # the workers are alike
    est = PlanEstimator(snap, batch_size=1)
    assert est.score(plan.order)[0] == pytest.approx(0.41)
    # without the makespan-scored search, even-work packing makes red wait longer (0.49 s)
    packed = helium(snap, HeliumOptions(refine_max_calls=0))
    assert est.score(packed.order)[0] == pytest.approx(0.49)


def test_plan_estimator_counts_precedence_waits_and_rejects_deadlocks():
    est = PlanEstimator(reducer_waits_calls(), batch_size=1)
    # all on worker 0: a0 0.22, a1 0.28, x 0.34, c0 cold 0.48, red cold 0.61; busy = 0.61
    makespan_s, busy_s, _ = est.score({0: ["a0", "a1", "x", "c0", "red"], 1: []})
    assert (makespan_s, busy_s) == (pytest.approx(0.61), pytest.approx(0.61))
    # red queued before its input c0 on the same worker can never start
    assert est.score({0: ["a0", "a1", "x", "red", "c0"], 1: []})[0] == float("inf")
    # refine() never returns a worse plan and reaches the 0.41 s optimum from the serial plan
    better_plan = refine(est, {0: ["a0", "a1", "x", "c0", "red"], 1: []})
    assert est.score(better_plan)[0] == pytest.approx(0.41)


def test_plan_estimator_credits_resident_prefix_to_every_call():
    # Worker 0 holds SYS_A (16 tokens). Call b (SYS_B + 2) runs first, then a (SYS_A + 2):
    # b is cold, 18 x 0.01 + 4 decode steps x 0.01 = 0.22 s; a shares nothing with b but
    # still finds SYS_A resident, so it prefills 2 tokens: 0.02 + 0.04 = 0.06 s. Total 0.28 s
    # (0.44 s if only the previous prompt counted).
    calls = (PendingCall("b", SYS_B + (1, 1), est_output_tokens=4),
             PendingCall("a", SYS_A + (1, 1), est_output_tokens=4))
    est = PlanEstimator(Snapshot(calls=calls, workers=two_workers(resident_a_on=0), cost=COST), batch_size=1)
    assert est.score({0: ["b", "a"], 1: []})[0] == pytest.approx(0.28)
    # on worker 1, which holds nothing, a is cold: b on 0 (0.22), a on 1 (0.22)
    assert est.score({0: ["b"], 1: ["a"]})[0] == pytest.approx(0.22)


def test_helium_keeps_many_conversations_home_beyond_the_refine_size():
    # 20 conversations (more than refine_max_calls = 16, so the packing path decides) from
    # one input row, behind one shared system prompt: the runtime gives them one template
    # (SYS_A, "rest"), so they are one group. Conversation i's earlier turn (SYS_A + 16 own
    # tokens) is resident on worker i % 2. Every call goes home (10 per worker: balanced)
    # and computes only its 4 new tokens.
    convs = [SYS_A + tuple(range(1000 + 100 * i, 1016 + 100 * i)) for i in range(20)]
    caches = [RadixCache(block_size=BS), RadixCache(block_size=BS)]
    for i, c in enumerate(convs):
        caches[i % 2].insert(c)
    calls = tuple(PendingCall(i, c + (7, 7, 7, 7), template_key=(SYS_A, "rest"), row=0, est_output_tokens=4,
                              arrival_seq=i) for i, c in enumerate(convs))
    snap = Snapshot(calls=calls, workers=tuple(WorkerView(w, resident=caches[w]) for w in (0, 1)), cost=COST)
    order = helium(snap).order
    assert order[0] == tuple(range(0, 20, 2)) and order[1] == tuple(range(1, 20, 2))


def test_helium_options_are_validated():
    with pytest.raises(ValueError, match="refine_max_evals"):
        HeliumOptions(refine_max_evals=-1)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_conformance_pure_complete_and_dependency_safe(name):
    calls = list(six_calls())
    calls.append(PendingCall("sum0", (1, 2, 3, 4, 5), template_key=((1, 2, 3, 4), "x"), row=0,
                             deps=("a0", "b0"), ready=False, arrival_seq=-5))
    snap = Snapshot(calls=tuple(calls), workers=two_workers(resident_a_on=0), cost=COST, seed=3)
    policy = get_policy(name)
    first, second = policy(snap), policy(snap)
    assert first == second                      # same snapshot -> same assignment
    first.check(snap)                           # nothing lost/duplicated; deps before dependents
    order = [c for ids in first.order.values() for c in ids]
    assert sorted(order) == sorted(c.call_id for c in calls)


def test_unknown_policy_lists_valid_names():
    with pytest.raises(ValueError, match="helium"):
        get_policy("sjf")


def test_dependency_cycle_is_reported():
    calls = (PendingCall("x", (1,), deps=("y",)), PendingCall("y", (2,), deps=("x",)))
    with pytest.raises(ValueError, match="cycle"):
        get_policy("fifo")(Snapshot(calls=calls, workers=(WorkerView(0),)))


def test_round_robin_deals_calls_in_turn():
    calls = tuple(PendingCall(f"c{i}", (i, i + 1), arrival_seq=i) for i in range(5))
    snap = Snapshot(calls=calls, workers=(WorkerView(0), WorkerView(1)), cost=COST)
    assert get_policy("round_robin")(snap).order == {0: ("c0", "c2", "c4"), 1: ("c1", "c3")}


def test_cache_aware_follows_the_prefix_until_the_load_is_unbalanced():
    # 12 calls sharing one long prefix: affinity sends them to the worker that holds it until it
    # is CACHE_AWARE_ABS_GAP calls busier than the other; the rest balance.
    from helium_lc.schedule.policies.baselines import CACHE_AWARE_ABS_GAP

    prefix = tuple(range(100, 140))
    calls = tuple(PendingCall(f"c{i}", prefix + (i,), arrival_seq=i) for i in range(12))
    snap = Snapshot(calls=calls, workers=two_workers(resident_a_on=0), cost=COST)
    order = get_policy("cache_aware")(snap).order
    assert order[0][0] == "c0" and len(order[0]) - len(order[1]) <= CACHE_AWARE_ABS_GAP + 1
    assert len(order[1]) >= 1


def test_helium_orders_by_the_plans_remaining_critical_path():
    # Two ready calls of different call sites, one worker: without plan knowledge arrival order
    # decides; with HeliumOptions(plan_critical_path=True), when the plan says the later-arriving
    # call's row still has 2 s of LLM work after it (downstream_s), that call starts first.
    def calls(downstream):
        return (PendingCall("short", SYS_A + (1,), template_key=(SYS_A, "q"), row=0, est_output_tokens=4, arrival_seq=0),
                PendingCall("long", SYS_B + (2,), template_key=(SYS_B, "q"), row=1, est_output_tokens=4, arrival_seq=1,
                            downstream_s=downstream))
    workers = (WorkerView(0, resident=RadixCache(block_size=BS)),)
    on = HeliumOptions(plan_critical_path=True)
    assert helium(Snapshot(calls=calls(0.0), workers=workers, cost=COST), on).order[0] == ("short", "long")
    assert helium(Snapshot(calls=calls(2.0), workers=workers, cost=COST), on).order[0] == ("long", "short")
    # off by default (see HeliumOptions.plan_critical_path): arrival order again
    assert helium(Snapshot(calls=calls(2.0), workers=workers, cost=COST)).order[0] == ("short", "long")


def _independent_calls(n):
    # n rows, each its own prompt (no shared prefix), so only load decides placement
    return tuple(PendingCall(f"c{r}", tuple(range(1000 + 20 * r, 1016 + 20 * r)), row=r,
                             est_output_tokens=4, arrival_seq=r) for r in range(n))


@pytest.mark.parametrize("refine_max_calls", [0, 16])
def test_helium_gives_a_slower_worker_less_work(refine_max_calls):
    opts = HeliumOptions(refine_max_calls=refine_max_calls)
    calls = _independent_calls(12)
    even = helium(Snapshot(calls=calls, workers=(WorkerView(0), WorkerView(1)), cost=COST), opts)
    assert sorted(len(ids) for ids in even.order.values()) == [6, 6]
    # worker 1 takes 3x as long per call: the plan that finishes first gives it a quarter
    slow = helium(Snapshot(calls=calls, workers=(WorkerView(0, slowdown=0.6), WorkerView(1, slowdown=1.8)),
                           cost=COST), opts)
    assert len(slow.order.get(1, ())) == 3 and len(slow.order[0]) == 9, slow.order
    est = PlanEstimator(Snapshot(calls=calls, workers=(WorkerView(0, slowdown=0.6), WorkerView(1, slowdown=1.8)),
                                 cost=COST), batch_size=1)
    assert est.score(slow.order)[0] < est.score(even.order)[0]


def test_worker_view_rejects_a_non_positive_slowdown():
    with pytest.raises(ValueError, match="slowdown"):
        WorkerView(0, slowdown=0.0)
