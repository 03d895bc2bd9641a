"""Pools that need their own engines: two workers, shutdown, a worker that dies."""

from __future__ import annotations

import os

import pytest

from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.types import SamplingSpec

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_two_workers_share_load_and_shutdown_leaves_no_process():
    pool = WorkerPool(num_workers=2, kv_cache_gib=0.25, max_model_len=1024, max_num_seqs=8)
    try:
        cores = [w.config.cpu_cores for w in pool.workers]
        assert len(set(cores)) == 2, f"each worker gets its own core(s): {cores}"
        pids = [pid for w in pool.workers for pid in w.engine_processes()]
        assert len(pids) >= 2 and all(_alive(p) for p in pids)
        ids = pool.apply_chat_template([{"role": "user", "content": "Say hi."}])

        import asyncio

        async def burst():
            return await asyncio.gather(*(pool.agenerate(ids, SamplingSpec(max_tokens=4)) for _ in range(8)))

        results = asyncio.run(burst())
        assert {r.worker_id for r in results} == {0, 1}
        per = {s.worker_id: s.num_requests for s in pool.worker_stats()}
        assert per[0] + per[1] == 8 and per[0] >= 2 and per[1] >= 2
        # a request pinned to worker 1 runs there
        assert pool.generate(ids, SamplingSpec(max_tokens=2), worker_id=1).worker_id == 1
    finally:
        pool.shutdown()
    assert not any(_alive(p) for p in pids), "engine processes outlived the pool"
    pool.shutdown()  # idempotent


def test_dead_worker_is_restarted_and_the_caller_is_told():
    pool = WorkerPool(num_workers=1, kv_cache_gib=0.25, max_model_len=1024, max_num_seqs=8)
    try:
        ids = pool.apply_chat_template([{"role": "user", "content": "Say hi."}])
        assert pool.generate(ids, SamplingSpec(max_tokens=2)).num_output_tokens >= 1
        old_pids = pool.workers[0].engine_processes()
        pool.workers[0].kill_engine_process()
        # The next request sees the dead engine, the pool restarts it and retries once.
        r = pool.generate(ids, SamplingSpec(max_tokens=2))
        assert r.num_output_tokens >= 1
        kinds = [e.kind for e in pool.events]
        assert "worker_died" in kinds and "worker_restarted" in kinds
        assert set(pool.workers[0].engine_processes()).isdisjoint(old_pids)
    finally:
        pool.shutdown()
