"""RuntimeScheduler on simulated workers: routing, planned order, warming, faults, stats.

Each scenario uses ``WorkerPool(workers=[SimWorker...])`` (real tokenizer, simulated engines)
and block size 4 unless said otherwise, so token counts can be checked by hand.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from helium_lc import HeliumChatModel, HeliumConfig, accelerate
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.sim import SimWorker
from helium_lc.engine.types import GenerationRequest, RequestOrigin, SamplingSpec
from helium_lc.runtime.sched_model import (PromptBlocks, RowReuse, RowReuseBook, SiteBook, best_row_concurrency, choose_warm_prefixes,
                                           row_footprints, template_for)
from helium_lc.explain import scheduler_text
from helium_lc.runtime.scheduler import RunTicket, ScheduleOptions, scheduler_for
from helium_lc.runtime.stats import StatsRecorder
from helium_lc.schedule.policies import POLICIES
from helium_lc.schedule.radix import RadixCache


def _req(tokens: tuple[int, ...], node: str = "n", row: int | None = None, max_tokens: int = 2) -> GenerationRequest:
    return GenerationRequest(tokens, SamplingSpec(max_tokens=max_tokens), origin=RequestOrigin(node=node, row=row))


def _pool(*workers: SimWorker) -> WorkerPool:
    return WorkerPool(workers=list(workers))


# ------------------------------------------------------------------ pure pieces
def test_site_book_learns_static_prefix_and_template() -> None:
    book = SiteBook()
    book.observe(("app", "a", 0), (1, 2, 3, 4, 5, 6))
    assert book.static_prefix(("app", "a", 0)) is None          # one prompt: no template yet
    book.observe(("app", "a", 0), (1, 2, 3, 4, 9))
    assert book.static_prefix(("app", "a", 0)) == (1, 2, 3, 4)  # common prefix of both
    assert template_for((1, 2, 3, 4, 7), (1, 2, 3, 4)) == ((1, 2, 3, 4), "rest")
    assert template_for((1, 2), (1, 2)) == ((1, 2),)            # the whole prompt is static
    assert [s for s, _, _ in book.known_prefixes("app")] == [("app", "a", 0)]
    assert book.known_prefixes("other") == []


def test_warm_rule_skips_what_this_tick_prefills_or_is_resident() -> None:
    # Block size 4, threshold 8. Prefix P = 12 tokens (3 blocks), plus 2 stray tokens cut off.
    p = tuple(range(100, 114))
    model = RadixCache(block_size=4, capacity_tokens=400)
    # No request shares P and nothing is resident: all 12 tokens are new -> warm.
    assert choose_warm_prefixes({0: [p]}, {}, {0: model}, threshold_tokens=8, block_size=4) == [(0, p[:12])]
    # A request in the same tick shares the first 8: only 4 new tokens < 8 -> no warm.
    tick = {0: [p[:8] + (1, 2, 3)]}
    assert choose_warm_prefixes({0: [p]}, tick, {0: model}, threshold_tokens=8, block_size=4) == []
    # The same request on ANOTHER worker does not help worker 0 -> warm.
    assert choose_warm_prefixes({0: [p]}, {1: tick[0]}, {0: model}, threshold_tokens=8, block_size=4) == [(0, p[:12])]
    # Resident already -> nothing to do.
    model.insert(p)
    assert choose_warm_prefixes({0: [p]}, {}, {0: model}, threshold_tokens=8, block_size=4) == []
    # Larger than half the worker's capacity -> never warmed.
    small = RadixCache(block_size=4, capacity_tokens=20)
    assert choose_warm_prefixes({0: [p]}, {}, {0: small}, threshold_tokens=8, block_size=4) == []


def test_options_and_config_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown scheduling policy"):
        ScheduleOptions(policy="fastest")
    with pytest.raises(ValueError, match="warm_threshold_tokens"):
        ScheduleOptions(warm_threshold_tokens=-1)
    with pytest.raises(ValueError, match="gather_window_s"):
        ScheduleOptions(gather_window_s=5.0)
    with pytest.raises(ValueError, match="warm_threshold_tokens"):
        HeliumConfig(warm_threshold_tokens=-5)
    with pytest.raises(ValueError, match="positive integer"):
        WorkerPool(workers=[])
    assert ScheduleOptions(policy="fifo").window_s == 0.0 and ScheduleOptions().window_s > 0
    assert ScheduleOptions().window_for(2) > ScheduleOptions().window_for(1)
    assert ScheduleOptions(gather_window_s=0.004).window_for(8) == 0.004


# ------------------------------------------------------------------ on a pool
@pytest.fixture(scope="module")
def pool2() -> Any:
    pool = _pool(SimWorker(0, block_size=4), SimWorker(1, block_size=4))
    yield pool
    pool.shutdown()


def test_fifo_reproduces_least_outstanding_routing(pool2: WorkerPool) -> None:
    # Six requests arrive together. Plain pool routing puts them on 0,1,0,1,0,1 (least
    # outstanding, ties to the lower id); fifo through the scheduler must do the same.
    reqs = [_req(tuple(range(10 * i, 10 * i + 9)), row=i) for i in range(6)]
    sched = scheduler_for(pool2)

    async def both() -> tuple[list[int], list[int]]:
        plain = await asyncio.gather(*(pool2.agenerate(r) for r in reqs))
        fifo = await asyncio.gather(*(sched.agenerate(r, options=ScheduleOptions(policy="fifo")) for r in reqs))
        return [r.worker_id for r in plain], [r.worker_id for r in fifo]

    plain, fifo = pool2.engine_loop.run(both())
    assert plain == [0, 1, 0, 1, 0, 1]
    assert fifo == plain


def test_one_worker_runs_calls_in_planned_order() -> None:
    # One worker admitting ONE request at a time. Arrivals: a(row0), b(row0), a(row1), b(row1),
    # where site a's prompts start with 8 tokens of 1s and site b's with 8 tokens of 2s. The helium
    # plan groups by static prefix: a0, a1, b0, b1 -- and the pool must run them in that order.
    w = SimWorker(0, block_size=4)
    w.max_num_seqs = 1  # type: ignore[attr-defined]  # the pool admits one at a time
    pool = _pool(w)
    try:
        sched = scheduler_for(pool)
        a, b = (1,) * 8, (2,) * 8
        reqs = [_req(a + (10, 0), "a", 0), _req(b + (10, 0), "b", 0), _req(a + (11, 1), "a", 1), _req(b + (11, 1), "b", 1)]
        done: list[str] = []

        async def run_all() -> None:
            async def one(r: GenerationRequest) -> None:
                await sched.agenerate(r, options=ScheduleOptions(policy="helium", gather_window_s=0.005))
                done.append(f"{r.origin.node}{r.origin.row}")
            await asyncio.gather(*(one(r) for r in reqs))

        pool.engine_loop.run(run_all())
        assert done == ["a0", "a1", "b0", "b1"]
        assert "worker 0: 4 calls: a#0/r0, a#0/r1, b#0/r0, b#0/r1" in scheduler_text(sched)
    finally:
        pool.shutdown()


def test_row_footprints_split_shared_and_own_blocks() -> None:
    # Block size 4. Rows 0 and 1 share an 8-token system prompt; row 0 has two calls that
    # share its 4-token context; row 1 one call. Row 0: context block 4 + two agent blocks 8 +
    # tails 2 + outputs 2x3; row 1: context 4 + agent 4 + tail 0 + output 5.
    system, c0, c1 = (1,) * 8, (5, 5, 5, 5), (6, 6, 6, 6)
    calls = [(0, system + c0 + (7, 7, 7, 7, 9, 9), 3), (0, system + c0 + (8, 8, 8, 8), 3),
             (1, system + c1 + (7, 7, 7, 7), 5)]
    assert row_footprints(calls, 4) == (8, {0: 4 + 8 + 2 + 6, 1: 4 + 4 + 5})
    # the scheduler passes each prompt's blocks, hashed once on the caller's thread: same answer
    assert row_footprints([(r, PromptBlocks.of(p, 4), o) for r, p, o in calls], 4) == row_footprints(calls, 4)


def test_row_gate_admits_rows_as_kv_allows_until_row_done(monkeypatch: pytest.MonkeyPatch) -> None:
    # One worker with 64 tokens of KV; three rows whose 40-token prompts share nothing: one row's
    # footprint (40 + 2 output) fits, two do not. Under helium (row-major) with a run that
    # signals row ends, row 1 waits for row_done(row 0) and row 2 for row_done(row 1). (Stall
    # recovery, which admits a held row after STALL_S without progress, is pushed out of the way.)
    import helium_lc.runtime.scheduler as scheduler_module
    monkeypatch.setattr(scheduler_module, "STALL_S", 30.0)
    pool = _pool(SimWorker(0, block_size=4, kv_capacity_tokens=64))
    try:
        sched = scheduler_for(pool)
        # What the app's earlier rows showed: each re-read 400 own tokens over 2 decode steps.
        # Holding a row then costs less (one more fixed decode step per row) than the misses.
        sched.reuse._apps["app"] = RowReuse(rows=8, own_tokens=400, revisit_tokens=400, decode_steps=2)
        ticket = RunTicket("app", signals_rows=True)
        reqs = [_req(tuple(range(100 * r, 100 * r + 40)), "a", r) for r in range(3)]
        opts = ScheduleOptions(policy="helium")
        done: list[int] = []

        async def scenario() -> None:
            async def one(r: GenerationRequest) -> None:
                await sched.agenerate(r, options=opts, ticket=ticket)
                done.append(r.origin.row)  # type: ignore[union-attr]
            tasks = [asyncio.ensure_future(one(r)) for r in reqs]
            await asyncio.sleep(0.1)
            assert done == [0]              # rows 1 and 2 are held
            sched.row_done(ticket, 0)
            await asyncio.sleep(0.1)
            assert done == [0, 1]
            sched.row_done(ticket, None)    # the run ended: everything left may run
            await asyncio.gather(*tasks)
            assert done == [0, 1, 2]

        pool.engine_loop.run(scenario())
        # A run that does not signal row ends is never held; nor is an app never seen re-reading.
        free = RunTicket("app2")

        async def unsignalled() -> None:
            await asyncio.gather(*(sched.agenerate(_req(tuple(range(500 + 100 * r, 540 + 100 * r)), "a", r),
                                                   options=opts, ticket=free) for r in range(3)))
        pool.engine_loop.run(unsignalled(), timeout_s=10)
        fresh = RunTicket("app3", signals_rows=True)
        done.clear()

        async def unseen_app() -> None:
            async def one(r: int) -> None:
                await sched.agenerate(_req(tuple(range(900 + 100 * r, 940 + 100 * r)), "a", r), options=opts,
                                      ticket=fresh)
                done.append(r)
            await asyncio.wait_for(asyncio.gather(*(one(r) for r in range(3))), timeout=5)
        pool.engine_loop.run(unseen_app())   # STALL_S is 30 s: nothing was held
        assert sorted(done) == [0, 1, 2]
    finally:
        pool.shutdown()


def test_row_reuse_book_tells_rereading_rows_from_one_shot_rows() -> None:
    # Block size 4. Debate-like app: each row's round 2 (a later wave) re-reads its 8-token
    # context behind the shared 8-token system prompt; map-reduce-like app: the row's experts
    # read the context in one wave and the summariser reads only answers. A plan of a row with
    # calls still in flight belongs to the same wave (its blocks are pinned): not a re-read.
    system, bs = (1,) * 8, 4
    book = RowReuseBook(bs)
    for row in (0, 1):
        ctx = (10 + row,) * 8
        book.observe("debate", 1, [(row, system + ctx + (2, 2, 2, 2), 3)])
        book.observe("debate", 1, [(row, system + ctx + (3, 3, 3, 3), 3)])  # same wave: row 0 in flight
        book.call_done(1, row)
        book.call_done(1, row)
    for row in (0, 1):
        ctx = (10 + row,) * 8
        book.observe("debate", 1, [(row, system + ctx + (2, 2, 2, 2, 7, 7, 7, 7), 5)])
    book.finish(1, None)
    d = book.estimate("debate")
    assert d is not None and d.rows == 2
    assert d.own_tokens == 8 + 4 + 4 + 4       # context, two agent lines, round 2's new block
    assert d.revisit_tokens == 8 + 4           # context and agent 0's line, once per plan
    assert d.decode_steps == 3 + 5
    for row in (0, 1):
        ctx = (20 + row,) * 8
        book.observe("mapred", 2, [(row, system + ctx + (2, 2, 2, 2), 3), (row, system + ctx + (3, 3, 3, 3), 3)])
        book.call_done(2, row)
        book.call_done(2, row)
        book.observe("mapred", 2, [(row, system + (30 + row,) * 8, 3)])
    book.finish(2, 0)
    book.finish(2, 1)
    run = book._runs[2]   # only the shared system-prompt blocks stay remembered
    assert len(run.seen) == len(run.shared) == 2
    m = book.estimate("mapred")
    assert m is not None and m.rows == 2 and m.revisit_tokens == 0 and m.own_tokens == 8 + 4 + 4 + 8
    assert book.estimate("unknown") is None


def test_best_row_concurrency_weighs_decode_steps_against_misses() -> None:
    kw = dict(own_tokens=1000, free_tokens=3000, step_base_s=0.03, prefill_s_per_token=3e-4)
    assert best_row_concurrency(3, 12, decode_steps=32, revisit_tokens=0, **kw) == 12   # nothing to save
    assert best_row_concurrency(3, 12, decode_steps=32, revisit_tokens=3000, **kw) == 3  # misses dominate
    # Long decodes with little re-read: more rows than fit.
    g = best_row_concurrency(3, 12, decode_steps=400, revisit_tokens=500, **kw)
    assert 3 < g <= 12
    assert best_row_concurrency(5, 5, decode_steps=1, revisit_tokens=1, **kw) == 5


def test_row_major_priority_serves_an_earlier_rows_next_call_first() -> None:
    # One worker admitting one request at a time, each taking real milliseconds. Row 0's first
    # call runs; rows 1-3's first calls wait. Row 0's second call arrives when its first ends
    # (row 1's is admitted then): under helium it goes before rows 2 and 3 (row-major
    # priority), under fifo after them (arrival order).
    def run(policy: str, rereads: bool = True) -> list[str]:
        w = _SlowSim(0, block_size=4)
        w.max_num_seqs = 1  # type: ignore[attr-defined]
        pool = _pool(w)
        try:
            sched = scheduler_for(pool)
            if rereads:  # the app's earlier rows re-read their context (row-major is used only then)
                sched.reuse._apps["app"] = RowReuse(rows=4, own_tokens=8, revisit_tokens=8, decode_steps=16)
            ticket = RunTicket("app")
            opts = ScheduleOptions(policy=policy, gather_window_s=0.002)
            done: list[str] = []

            async def call(row: int, node: str) -> None:
                await sched.agenerate(_req((row + 1,) * 8 + (len(node),), node, row, max_tokens=8),
                                      options=opts, ticket=ticket)
                done.append(f"{node}{row}")

            async def row0() -> None:
                await call(0, "a")
                await call(0, "b")

            async def scenario() -> None:
                first = asyncio.ensure_future(row0())
                await asyncio.sleep(0.001)  # row 0's first call is planned (and runs) first
                await asyncio.gather(first, *(call(r, "a") for r in (1, 2, 3)))
            pool.engine_loop.run(scenario())
            return done
        finally:
            pool.shutdown()

    helium, fifo = run("helium"), run("fifo")
    assert helium.index("b0") < helium.index("a2"), helium
    assert fifo.index("b0") > fifo.index("a3"), fifo
    # An app not seen re-reading its rows keeps plan order under helium too.
    assert run("helium", rereads=False).index("b0") > 2


def test_worker_death_replans_without_losing_or_duplicating() -> None:
    # Two workers admitting 2 requests each; 8 requests -> 4 per worker, 2 waiting on each.
    # Worker 1 dies right after placement: its running and waiting requests fail and are
    # re-planned onto worker 0. Every request returns exactly once, all from worker 0's side
    # except those worker 1 finished before dying (none here: it dies before its first step).
    w0, w1 = SimWorker(0, block_size=4), SimWorker(1, block_size=4)
    w0.max_num_seqs = w1.max_num_seqs = 2  # type: ignore[attr-defined]
    pool = _pool(w0, w1)
    try:
        sched = scheduler_for(pool)
        reqs = [_req(tuple(range(20 * i, 20 * i + 12)), row=i) for i in range(8)]

        async def run_all() -> list[Any]:
            tasks = [asyncio.ensure_future(sched.agenerate(r, options=ScheduleOptions(policy="fifo"))) for r in reqs]
            for _ in range(3):
                await asyncio.sleep(0)  # the plan is made and requests are admitted
            await w1.shutdown()          # in-flight requests on worker 1 fail with WorkerDiedError
            return await asyncio.gather(*tasks)

        results = pool.engine_loop.run(run_all(), timeout_s=10)
        assert sorted(r.request_id for r in results) == sorted(r.request_id for r in reqs)
        assert {r.worker_id for r in results} == {0}
        assert w0.stats().num_requests == 8          # each ran exactly once, on the survivor
        assert sched.totals["num_replanned_requests"] >= 1
        assert not pool.is_alive(1)
    finally:
        pool.shutdown()


def test_oversized_prompt_is_served_and_counted() -> None:
    # The worker reports a 32-token KV cache (its simulated engine is larger, so it can serve).
    # A 40-token prompt is larger than every worker's cache: served, not modelled, counted.
    w = SimWorker(0, block_size=4, kv_capacity_tokens=4096)
    w.kv_capacity_tokens = 32
    pool = _pool(w)
    try:
        sched = scheduler_for(pool)
        rec = StatsRecorder()
        result = sched.generate(_req(tuple(range(40))), options=ScheduleOptions(), ticket=RunTicket("app", rec))
        assert result.num_prompt_tokens == 40
        assert rec.get("num_oversized_requests") == 1
        assert rec.get("planning_s") > 0
        assert sched.models.get(0, w).size_tokens == 0
    finally:
        pool.shutdown()


def test_second_batch_warms_a_later_sites_prefix() -> None:
    # Sites "a" (first step) and "b" (second step) have 16-token static prefixes (A, B), block 4,
    # warm threshold 8. Batch 1: two rows of a, then two rows of b -> both prefixes learned.
    # Then the cache is emptied. Batch 2 (a new run): when a's calls arrive, b's prefix is
    # warmed on worker 0 (a's own prefix is not: a's requests prefill it themselves). So b's
    # calls then find all 16 tokens of B cached.
    w = SimWorker(0, block_size=4)
    pool = _pool(w)
    try:
        sched = scheduler_for(pool)
        A, B = tuple(range(100, 116)), tuple(range(200, 216))
        opts = ScheduleOptions(policy="helium", warm=True, warm_threshold_tokens=8)

        def batch(ticket: RunTicket) -> list[Any]:
            async def run() -> list[Any]:
                first = await asyncio.gather(*(sched.agenerate(_req(A + (r, r, r, r), "a", r), options=opts, ticket=ticket) for r in range(2)))
                second = await asyncio.gather(*(sched.agenerate(_req(B + (r, r, r, r), "b", r), options=opts, ticket=ticket) for r in range(2)))
                return [*first, *second]
            return pool.engine_loop.run(run())

        rec1 = StatsRecorder()
        batch(RunTicket("app", rec1))
        assert rec1.get("num_warm_requests") == 0      # nothing known yet
        pool.reset_prefix_cache()
        sched.forget_cache_model()
        rec2 = StatsRecorder()
        results = batch(RunTicket("app", rec2))
        assert rec2.get("num_warm_requests") == 1      # B on worker 0, once
        assert w.stats().num_warm_requests == 1
        assert [r.num_cached_prompt_tokens for r in results[2:]] == [16, 16]  # all of B, warmed
    finally:
        pool.shutdown()


# ------------------------------------------------------------------ through accelerate()
class _State(TypedDict, total=False):
    context: str
    round: int
    answers: Annotated[list, operator.add]


class _SlowSim(SimWorker):
    """A SimWorker whose requests also take 5-45 ms of real time (varying by prompt), so that
    requests overlap and rows finish rounds in different orders, as on a real engine."""

    async def generate(self, request: GenerationRequest) -> Any:
        await asyncio.sleep(0.005 + 0.01 * (sum(request.prompt_token_ids) % 5))
        return await super().generate(request)


def _debate(llm: HeliumChatModel, num_agents: int = 2, num_rounds: int = 2, sync: bool = False) -> Any:
    """Debate-like: each agent's conversation (agent line, long per-row context, own answers)
    grows round after round behind a shared system prompt."""
    system = "You debate. " + " ".join(f"rule{i}" for i in range(60))

    def fan(state: _State) -> list[Send]:
        return [Send("agent", {"context": state["context"], "answers": state.get("answers", []),
                               "agent": a, "round": state.get("round", 0)}) for a in range(num_agents)]

    def messages(t: dict[str, Any]) -> list[Any]:
        msgs = [SystemMessage(system), HumanMessage(f"You are agent {t['agent']}. Context: {t['context']}")]
        for r in range(t["round"]):
            mine = [x["text"] for x in t["answers"] if x["round"] == r and x["agent"] == t["agent"]][0]
            msgs += [AIMessage(mine), HumanMessage(f"Round {r + 1} is over. Update.")]
        return msgs

    async def agent(t: dict[str, Any]) -> dict[str, Any]:
        reply = await llm.ainvoke(messages(t))
        return {"answers": [{"round": t["round"], "agent": t["agent"], "text": reply.content}]}

    def sync_agent(t: dict[str, Any]) -> dict[str, Any]:
        reply = llm.invoke(messages(t))
        return {"answers": [{"round": t["round"], "agent": t["agent"], "text": reply.content}]}

    def next_round(state: _State) -> list[Send] | str:
        return fan(state) if state["round"] < num_rounds else END

    g = StateGraph(_State)
    g.add_node("agent", sync_agent if sync else agent)
    g.add_node("end_round", lambda s: {"round": s.get("round", 0) + 1})
    g.add_conditional_edges(START, fan, ["agent"])
    g.add_edge("agent", "end_round")
    g.add_conditional_edges("end_round", next_round, ["agent", END])
    return g.compile()


def _inputs(num_rows: int, seed: int) -> list[dict[str, Any]]:
    return [{"context": " ".join(f"fact{seed}x{r}x{i}" for i in range(60))} for r in range(num_rows)]


def test_all_policies_give_identical_final_states(pool2: WorkerPool) -> None:
    # Simulated outputs depend only on the prompt, so placement and order must not change
    # any final state: the same 3-row debate under all six policies gives equal outputs.
    outs = {}
    for policy in sorted(POLICIES):
        fast = accelerate(_debate(HeliumChatModel(pool=pool2, max_tokens=4)), config=HeliumConfig(policy=policy))
        outs[policy] = asyncio.run(fast.abatch(_inputs(3, seed=1)))
        assert fast.last_run_stats().num_engine_requests == 12   # 3 rows x 2 agents x 2 rounds
    assert len(POLICIES) == 8
    assert all(o == outs["fifo"] for o in outs.values())


def test_helium_prefills_less_than_fifo_on_two_workers() -> None:
    # 2 workers, 6 rows x 2 agents x 2 rounds, twice. Round 2 of an agent extends its round-1
    # prompt (~300 tokens of its own after the system prompt), so it should go to the worker that
    # ran round 1. fifo routes by queue length only and misses some; helium weighs the resident
    # prefix. Summed over two batches (arrival orders vary), helium computes fewer tokens.
    computed = {}
    for policy in ("fifo", "helium"):
        pool = _pool(_SlowSim(0, block_size=16), _SlowSim(1, block_size=16))
        try:
            total = 0
            for seed in (1, 2):
                fast = accelerate(_debate(HeliumChatModel(pool=pool, max_tokens=8)), config=HeliumConfig(policy=policy))
                before = pool.stats()["num_computed_prompt_tokens"]
                asyncio.run(fast.abatch(_inputs(6, seed)))
                total += pool.stats()["num_computed_prompt_tokens"] - before
                assert fast.last_run_stats().planning_s > 0
            computed[policy] = total
        finally:
            pool.shutdown()
    assert computed["helium"] < computed["fifo"], computed


def test_helium_row_gate_prefills_less_than_fifo_under_kv_pressure(monkeypatch: pytest.MonkeyPatch) -> None:
    # One worker whose KV cache holds about two rows' conversations; 6 rows x 2 agents x 2
    # rounds. fifo lets every row's round 1 in and round 2 finds its row context evicted;
    # helium admits rows as the KV allows and runs a row's round 2 before new rows start.
    # Final states are equal (simulated outputs depend only on the prompt).
    # Two first batches teach helium that this app's rows re-read their context (it is not
    # held back before; two, because one batch's evidence was once missed on a loaded machine:
    # helium then equalled fifo exactly); the third batch (new inputs) is measured. Stall recovery (a held row
    # is admitted after STALL_S with nothing in flight) is slowed down: on a loaded machine the
    # graph steps between a row's rounds can take 100 ms, and this test is about the gate.
    import helium_lc.runtime.scheduler as scheduler_module
    monkeypatch.setattr(scheduler_module, "STALL_S", 2.0)
    computed, outs, first = {}, {}, {}
    for policy in ("fifo", "helium"):
        pool = _pool(_SlowSim(0, block_size=16, kv_capacity_tokens=1024))
        try:
            fast = accelerate(_debate(HeliumChatModel(pool=pool, max_tokens=8)), config=HeliumConfig(policy=policy))
            first[policy] = asyncio.run(fast.abatch(_inputs(6, seed=3)))
            asyncio.run(fast.abatch(_inputs(6, seed=5)))
            before = pool.stats()["num_computed_prompt_tokens"]
            outs[policy] = asyncio.run(fast.abatch(_inputs(6, seed=4)))
            computed[policy] = pool.stats()["num_computed_prompt_tokens"] - before
            assert fast.last_run_stats().num_engine_requests == 24
        finally:
            pool.shutdown()
    assert outs["helium"] == outs["fifo"] and first["helium"] == first["fifo"]
    assert computed["helium"] < 0.9 * computed["fifo"], computed


def test_explain_shows_the_schedulers_last_plans_after_a_run(pool2: WorkerPool) -> None:
    import io

    from helium_lc.explain import explain
    fast = accelerate(_debate(HeliumChatModel(pool=pool2, max_tokens=4)), config=HeliumConfig(policy="helium"))
    before = explain(fast, file=io.StringIO())
    assert "(no run yet" in before
    asyncio.run(fast.abatch(_inputs(2, seed=5)))
    text = explain(fast, file=io.StringIO())
    section = text.split("-- scheduler")[1]
    assert "policy helium" in section and "worker 0:" in section and "worker 1:" in section
    assert "agent#0/r0" in section   # planned calls are named by node, ordinal and row


def test_row_gate_does_not_deadlock_sync_nodes_on_a_small_executor() -> None:
    # Sync nodes run on the event loop's default executor (LangGraph's run_in_executor). With 2
    # threads, 8 rows and a KV cache that holds about one row, calls of held rows occupy the
    # threads that an admitted row needs for its next node; the gate must then admit more rows
    # (after STALL_S without progress) instead of waiting forever. Outputs equal fifo's.
    from concurrent.futures import ThreadPoolExecutor

    outs = {}
    for policy in ("helium", "fifo"):
        pool = _pool(_SlowSim(0, block_size=16, kv_capacity_tokens=800))
        try:
            fast = accelerate(_debate(HeliumChatModel(pool=pool, max_tokens=8), sync=True),
                              config=HeliumConfig(policy=policy))

            async def main() -> list[Any]:
                asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
                return await asyncio.wait_for(fast.abatch(_inputs(8, seed=7)), timeout=60)

            outs[policy] = asyncio.run(main())
            assert fast.last_run_stats().num_engine_requests == 32
        finally:
            pool.shutdown()
    assert outs["helium"] == outs["fifo"]


def _map_reduce(llm: HeliumChatModel, num_agents: int = 2) -> Any:
    """Map-reduce-like, no loop: agents answer over the row's context, a summariser reads only
    their answers."""
    system = "You debate. " + " ".join(f"rule{i}" for i in range(60))

    def fan(state: _State) -> list[Send]:
        return [Send("agent", {"context": state["context"], "agent": a, "round": 0}) for a in range(num_agents)]

    async def agent(t: dict[str, Any]) -> dict[str, Any]:
        reply = await llm.ainvoke([SystemMessage(system), HumanMessage(f"Agent {t['agent']}. {t['context']}")])
        return {"answers": [{"round": 0, "agent": t["agent"], "text": reply.content}]}

    async def summarise(state: _State) -> dict[str, Any]:
        listing = " ".join(a["text"] for a in state["answers"])
        await llm.ainvoke([SystemMessage(system), HumanMessage(f"Summarise: {listing}")])
        return {"round": 1}

    g = StateGraph(_State)
    g.add_node("agent", agent)
    g.add_node("summarise", summarise)
    g.add_conditional_edges(START, fan, ["agent"])
    g.add_edge("agent", "summarise")
    g.add_edge("summarise", END)
    return g.compile()


def test_first_batch_of_a_looping_app_is_gated_from_its_plans_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    # The debate's graph loops back to its LLM node (captured topology), so on the very first
    # batch of a new accelerate() -- no rows finished, nothing learned -- the row gate holds
    # rows that do not fit and row-major order runs a row's round 2 first: less prefill than
    # fifo, same final states. A graph without such a loop is never held on its first batch.
    import helium_lc.runtime.scheduler as scheduler_module
    monkeypatch.setattr(scheduler_module, "STALL_S", 2.0)  # see the test above
    computed, outs = {}, {}
    for policy in ("fifo", "helium"):
        pool = _pool(_SlowSim(0, block_size=16, kv_capacity_tokens=1024))
        try:
            fast = accelerate(_debate(HeliumChatModel(pool=pool, max_tokens=8)), config=HeliumConfig(policy=policy))
            assert fast.learned_plan.looping_nodes == {"agent"}
            assert "rows loop through LLM node agent" in fast.learned_plan.summary()
            outs[policy] = asyncio.run(fast.abatch(_inputs(6, seed=3)))
            computed[policy] = pool.stats()["num_computed_prompt_tokens"]
            held = scheduler_for(pool).totals["num_held_requests"]
            assert held > 0 if policy == "helium" else held == 0
        finally:
            pool.shutdown()
    assert outs["helium"] == outs["fifo"]
    assert computed["helium"] < 0.9 * computed["fifo"], computed

    pool = _pool(_SlowSim(0, block_size=16, kv_capacity_tokens=1024))
    try:
        fast = accelerate(_map_reduce(HeliumChatModel(pool=pool, max_tokens=8)), config=HeliumConfig(policy="helium"))
        assert fast.learned_plan.looping_nodes == set()
        asyncio.run(fast.abatch(_inputs(6, seed=3)))
        assert scheduler_for(pool).totals["num_held_requests"] == 0
    finally:
        pool.shutdown()


def test_row_reuse_counts_rereads_of_a_wave_planned_in_several_plans() -> None:
    # Round 2 of a row whose two agents' calls arrive in two plans (the second while the first
    # is in flight): one wave, and each agent's re-read of its own round-1 blocks counts.
    book = RowReuseBook(2)
    book.observe("app", 1, [(0, (1, 2, 5, 6), 1), (0, (1, 2, 7, 8), 1)])   # wave 1: both agents
    book.call_done(1, 0); book.call_done(1, 0)
    book.observe("app", 1, [(0, (1, 2, 5, 6, 9, 9), 1)])                 # wave 2, agent 0
    book.observe("app", 1, [(0, (1, 2, 7, 8, 9, 9), 1)])                 # wave 2, agent 1 (same wave)
    book.observe("app", 1, [(0, (1, 2, 5, 6, 9, 9), 1)])                 # a repeat in that wave: counted once
    book.finish(1, None)
    r = book.estimate("app")
    assert (r.own_tokens, r.revisit_tokens) == (10.0, 6.0)  # 5 own blocks; wave 2 re-read 3 (before: 2)


def test_worker_model_reconciles_with_engine_reported_cached_tokens() -> None:
    from helium_lc.runtime.sched_model import WorkerModels

    class W:
        kv_capacity_tokens = 64

    models, w = WorkerModels(block_size=4), W()
    m = models.get(0, w)
    m.insert(tuple(range(40)))
    # the engine always computes a prompt's last token: a full hit reports len - 1 rounded to blocks
    assert models.reconcile(0, 40, predicted=40, reported=36) == 0 and m.capacity_tokens == 64
    # the engine had evicted what the model held: effective capacity shrinks by the gap, model evicts to fit
    assert models.reconcile(0, 40, predicted=36, reported=8) == 28
    assert m.capacity_tokens == 36 and m.size_tokens <= 36
    assert models.reconcile(0, 40, predicted=36, reported=0) == 36 and m.capacity_tokens == 32  # floor: half
    # a hit larger than modelled grows it back, never past what the worker reports
    models.reconcile(0, 40, predicted=0, reported=36)
    assert m.capacity_tokens == 64 and models.capacity(0, w) == 64


def test_scheduler_kv_model_matches_the_engine_with_ample_kv_and_learns_under_pressure() -> None:
    # Ample KV: every engine-reported hit equals the model's prediction (nothing over-estimated).
    # Under pressure running sequences pin blocks, so the engine keeps less than the model's LRU
    # would: the reported hits fall short of the model's (reconciliation then adjusts the modelled
    # capacity, tested above), while admission keeps the reported capacity.
    for cap, expect_gap in ((100_000, False), (1024, True)):
        pool = _pool(_SlowSim(0, block_size=16, kv_capacity_tokens=cap))
        try:
            fast = accelerate(_debate(HeliumChatModel(pool=pool, max_tokens=8)), config=HeliumConfig(policy="helium"))
            asyncio.run(fast.abatch(_inputs(6, seed=3)))
            sched = scheduler_for(pool)
            over = sched.totals["kv_model_overestimated_tokens"]
            model_cap = sched.models.get(0, pool.worker(0)).capacity_tokens
            assert (over > 0) == expect_gap, over
            # the modelled capacity moves (down on gaps, back up on larger hits) within its bounds;
            # admission keeps what the worker reports
            assert cap // 2 <= model_cap <= cap and sched.models.capacity(0, pool.worker(0)) == cap
            if not expect_gap:
                assert model_cap == cap
        finally:
            pool.shutdown()


def test_the_loop_prior_yields_to_the_live_rows_evidence() -> None:
    # A looping app is expected to re-read its rows until a live row's later wave shows it does
    # not (wave 2 reads none of the row's own blocks): then no holding, before any row ended.
    book = RowReuseBook(2)
    book.expect_rereads("app")
    book.observe("app", 1, [(0, (1, 2, 5, 6), 1), (1, (1, 2, 7, 8), 1)])
    assert book.expects_rereads("app") and book.prior("app", own_tokens=4, wave_steps=1).revisit_tokens == 4
    book.call_done(1, 0)
    book.observe("app", 1, [(0, (1, 2, 9, 9), 1)])   # row 0, wave 2: a new prompt, no re-read
    assert not book.expects_rereads("app")
    assert book.prior("app", own_tokens=4, wave_steps=1).revisit_tokens == 0


def test_scheduler_learns_a_slower_worker_and_gives_it_less_work() -> None:
    # Worker 1 takes 4x as long for everything (a server on slower hardware, or sharing its
    # cores). After one batch the scheduler has learned it from the service times the workers
    # report, and helium's next batch sends it fewer calls; two equal workers stay at 1.0.
    from helium_lc.schedule.cost import CostModel

    slow = CostModel(prefill_base_s=0.04, prefill_s_per_token=2.28e-3, decode_step_base_s=0.064,
                     decode_s_per_seq=0.004)
    for workers, unequal in (((SimWorker(0, block_size=16), SimWorker(1, block_size=16, cost=slow)), True),
                             ((SimWorker(0, block_size=16), SimWorker(1, block_size=16)), False)):
        pool = _pool(*workers)
        try:
            fast = accelerate(_map_reduce(HeliumChatModel(pool=pool, max_tokens=8)), config=HeliumConfig(policy="helium"))
            asyncio.run(fast.abatch(_inputs(8, seed=11)))
            sched = scheduler_for(pool)
            s0, s1 = (sched.speeds.slowdown(w, [0, 1]) for w in (0, 1))
            before = [pool.worker(w).stats().num_requests for w in (0, 1)]
            asyncio.run(fast.abatch(_inputs(8, seed=12)))
            n0, n1 = (pool.worker(w).stats().num_requests - before[w] for w in (0, 1))
            assert n0 + n1 == 24
            text, now = scheduler_text(sched), sched.worker_slowdowns()
            if unequal:
                assert s1 > 1.4 and s0 < 0.75, (s0, s1)
                assert (f"learned worker speeds (time per unit of estimated work, relative): worker 0 {now[0]:.2f}x, "
                        f"worker 1 {now[1]:.2f}x") in text
                # measured 17/7 to 23/1; 12/12 without the learned speeds (how arrivals group into
                # plans varies with the machine's load, so only a wide margin is asserted)
                assert n0 - n1 >= 6, (n0, n1)
            else:
                assert (s0, s1) == (1.0, 1.0)  # identical workers: planned exactly as without speeds
                assert "learned worker speeds" not in text
        finally:
            pool.shutdown()
