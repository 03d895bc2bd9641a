"""Simulated worker (Worker protocol) and whole-batch simulation, small enough to check by hand."""

import asyncio

import pytest

from helium_lc.engine.sim import SimWorker, simulate
from helium_lc.engine.types import EngineError, GenerationRequest, SamplingSpec, Worker, WorkerDiedError
from helium_lc.schedule.cost import CostModel
from helium_lc.schedule.snapshot import PendingCall
from helium_lc.schedule.workloads import debate, mapred

COST = CostModel(prefill_base_s=0.0, prefill_s_per_token=0.01, decode_step_base_s=0.01,
                 decode_s_per_seq=0.0, block_size=4)
SYS_A = tuple(range(100, 116))   # 4 blocks of 4
SYS_B = tuple(range(200, 216))


def req(prompt, n=2, priority=0):
    return GenerationRequest(tuple(prompt), SamplingSpec(max_tokens=n), priority=priority)


def test_simworker_is_a_worker_and_counts_cache_hits():
    async def run():
        w = SimWorker(cost=COST, block_size=4, kv_capacity_tokens=48)
        assert isinstance(w, Worker)
        # 1st call: cold, 18 tokens computed; its 4 full blocks become resident
        r1 = await w.generate(req(SYS_A + (1, 1)))
        # 2nd call shares the 16-token prefix: 16 cached, 2 computed
        r2 = await w.generate(req(SYS_A + (2, 2)))
        # same prompt again: deterministic text
        r3 = await w.generate(req(SYS_A + (1, 1)))
        return w, r1, r2, r3

    w, r1, r2, r3 = asyncio.run(run())
    assert (r1.num_cached_prompt_tokens, r2.num_cached_prompt_tokens) == (0, 16)
    assert r3.text == r1.text and r1.num_output_tokens == 2
    s = w.stats()
    assert (s.num_requests, s.num_prompt_tokens, s.num_cached_prompt_tokens) == (3, 54, 32)
    # virtual clock: r1 = 18 tokens * 0.01 + 2 steps * 0.01 = 0.20 s; r2 = 0.02 + 0.02
    assert r1.total_s == pytest.approx(0.20) and r2.total_s == pytest.approx(0.04)


def test_simworker_batches_concurrent_requests_and_warms():
    async def run():
        w = SimWorker(cost=COST, block_size=4, kv_capacity_tokens=64)
        warm = await w.warm(SYS_B)
        rs = await asyncio.gather(*(w.generate(req(SYS_B + (i,), n=3)) for i in range(3)))
        return w, warm, rs

    w, warm, rs = asyncio.run(run())
    # the warm request computed the 16-token prefix; all three then hit it
    assert warm.num_output_tokens == 1 and [r.num_cached_prompt_tokens for r in rs] == [16, 16, 16]
    # submitted together, admitted in one step: same finish time, 3 tokens computed in one prefill
    assert len({round(r.total_s, 9) for r in rs}) == 1
    assert w.stats().num_warm_requests == 1


def test_simworker_abort_and_shutdown():
    async def run():
        w = SimWorker(cost=COST, block_size=4)
        r = req(SYS_A, n=100)
        task = asyncio.ensure_future(w.generate(r))
        await asyncio.sleep(0)
        await w.abort(r.request_id)
        with pytest.raises(EngineError, match="aborted"):
            await task
        await w.shutdown()
        with pytest.raises(WorkerDiedError):
            await w.generate(req(SYS_A))

    asyncio.run(run())


def kv_pressure_calls():
    # two system prompts, arrivals alternate A, B; 6 rows each
    calls = []
    for r in range(6):
        for sys in (SYS_A, SYS_B):
            calls.append(PendingCall(f"{sys[0]}/{r}", sys + (r, r), template_key=(sys, "q"), row=r,
                                     est_output_tokens=4, arrival_seq=len(calls)))
    return calls


def test_helium_beats_fifo_and_lspf_under_kv_pressure():
    # cache of 32 tokens: one 16-token prefix + two running calls (8 reserved each)
    kw = dict(num_workers=1, cost=COST, block_size=4, kv_capacity_tokens=32, max_num_seqs=2)
    helium, fifo, lspf = (simulate(p, kv_pressure_calls(), **kw) for p in ("helium", "fifo", "lspf"))
    # lower bound: each prefix once (2 x 16) + 12 tails of 2 tokens
    assert helium.lower_bound_tokens == 56
    # helium runs all A-calls then all B-calls: each prefix computed once -> exactly the bound
    assert helium.computed_prompt_tokens == 56
    # FIFO alternates prefixes and keeps evicting them
    assert fifo.computed_prompt_tokens > 100 and lspf.computed_prompt_tokens > 56
    assert helium.makespan_s < fifo.makespan_s


def test_helium_beats_fifo_on_two_worker_affinity():
    # arrivals come in pairs A A B B ...: least-queue sends both prefixes to both workers
    calls = []
    for r in range(4):
        for sys in (SYS_A, SYS_A, SYS_B, SYS_B):
            calls.append(PendingCall(f"c{len(calls)}", sys + (len(calls),), template_key=(sys, "q"), row=None,
                                     est_output_tokens=4, arrival_seq=len(calls)))
    kw = dict(num_workers=2, cost=COST, block_size=4, warm=False)
    helium, fifo, lspf = (simulate(p, calls, **kw) for p in ("helium", "fifo", "lspf"))
    # helium: each prefix on one worker (2 x 16) + 16 one-token tails
    assert helium.computed_prompt_tokens == helium.lower_bound_tokens == 48
    # fifo/lspf: both prefixes computed on both workers
    assert fifo.computed_prompt_tokens == lspf.computed_prompt_tokens == 80
    assert helium.makespan_s <= fifo.makespan_s


def test_simulate_workloads_end_to_end():
    # debate: helium keeps each row's conversation on one worker; never below the lower bound
    calls = debate(num_rows=8, system_tokens=32, question_tokens=8, output_tokens=4, role_tokens=4)
    h = simulate("helium", calls, num_workers=2, cost=COST, block_size=4)
    f = simulate("fifo", calls, num_workers=2, cost=COST, block_size=4)
    assert h.lower_bound_tokens <= h.computed_prompt_tokens < f.computed_prompt_tokens
    assert sum(p.num_calls for p in h.per_worker) == len(calls)
    m = simulate("helium", mapred(num_rows=3, num_experts=4, system_tokens=16, question_tokens=4,
                                  output_tokens=2), num_workers=3, cost=COST, block_size=4)
    assert m.num_calls == 15 and m.computed_prompt_tokens >= m.lower_bound_tokens
