"""Load: many rows and many threads at once, with a deterministic model and with simulated engines.

Figures checked: 1,000 concurrent rows finish with the answers of a plain run; 200 threads calling
one accelerated graph finish and leave the pool's queues empty; a 3,000-row batch never has more
than ``max_rows_in_flight`` rows running (so its memory is bounded by that, not by the batch).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from helium_lc import HeliumChatModel, HeliumConfig, WorkerPool, accelerate
from helium_lc.engine.sim import SimWorker
from helium_lc.testing import DeterministicChatModel, normalize_state


class S(TypedDict, total=False):
    q: str
    a: str
    b: str


def build(llm: Any, sync: bool = False, probe: "RowProbe | None" = None) -> Any:
    """Two calls per row; sync nodes (as many users write them) or async ones."""
    def first(state: S) -> dict[str, str]:
        if probe is not None:
            probe.enter()
        return {"a": llm.invoke(f"Answer briefly: {state['q']}").text}

    async def afirst(state: S) -> dict[str, str]:
        if probe is not None:
            probe.enter()
        return {"a": (await llm.ainvoke(f"Answer briefly: {state['q']}")).text}

    def second(state: S) -> dict[str, str]:
        try:
            return {"b": llm.invoke(f"Check: {state['a']}").text}
        finally:
            if probe is not None:
                probe.leave()

    async def asecond(state: S) -> dict[str, str]:
        try:
            return {"b": (await llm.ainvoke(f"Check: {state['a']}")).text}
        finally:
            if probe is not None:
                probe.leave()

    g = StateGraph(S)
    g.add_node("first", first if sync else afirst).add_node("second", second if sync else asecond)
    g.add_edge(START, "first").add_edge("first", "second").add_edge("second", END)
    return g.compile()


class RowProbe:
    """Counts rows between their first node's start and their last node's end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = self.peak = self.total = 0

    def enter(self) -> None:
        with self._lock:
            self.running += 1
            self.total += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


def test_a_thousand_concurrent_rows_finish_with_plain_answers() -> None:
    rows = [{"q": f"question {i % 250}"} for i in range(1000)]  # 4 copies of each: dedup/cache too
    model = DeterministicChatModel(latency_s=0.01)
    fast = accelerate(build(model), config=HeliumConfig(progress=False))
    out = asyncio.run(asyncio.wait_for(fast.abatch(rows), timeout=120))
    plain = asyncio.run(build(DeterministicChatModel()).abatch(rows[:250]))
    assert normalize_state(out) == normalize_state(plain * 4)
    s = fast.last_run_stats()
    assert s.num_rows == 1000 and s.num_failed_rows == 0 and s.num_llm_calls_requested == 2000
    assert model.num_calls == 500 and s.num_llm_calls_saved == 1500  # 250 distinct rows x 2 calls
    assert model.max_in_flight >= 100  # really concurrent


@pytest.fixture(scope="module")
def sim_pool() -> Any:
    pool = WorkerPool(workers=[SimWorker(0, block_size=16), SimWorker(1, block_size=16)])
    yield pool
    pool.shutdown()


def test_two_hundred_threads_on_simulated_engines_leave_empty_queues(sim_pool: Any) -> None:
    llm = HeliumChatModel(pool=sim_pool, max_tokens=4)
    fast = accelerate(build(llm, sync=True), config=HeliumConfig(progress=False))
    with ThreadPoolExecutor(max_workers=200) as ex:
        futures = [ex.submit(fast.invoke, {"q": f"thread {i}"}) for i in range(200)]
        out = [f.result(timeout=120) for f in futures]
    assert all(o["a"] and o["b"] for o in out)
    total = fast.stats()
    assert total.num_rows == 200 and total.num_failed_rows == 0 and total.num_llm_calls_requested == 400
    for wid in sim_pool.alive_worker_ids():
        assert sim_pool.num_outstanding(wid) == 0 and sim_pool.num_waiting(wid) == 0
    assert set(sim_pool.alive_worker_ids()) == {0, 1}


def test_a_large_batch_runs_at_most_max_rows_in_flight_rows_at_once() -> None:
    probe = RowProbe()
    model = DeterministicChatModel(latency_s=0.002)
    fast = accelerate(build(model, sync=True, probe=probe),
                      config=HeliumConfig(progress=False, max_rows_in_flight=200, prompt_cache=False, dedup=False))
    out = fast.batch([{"q": f"row {i}"} for i in range(3000)])
    assert len(out) == 3000 and probe.total == 3000 and probe.running == 0
    assert 100 <= probe.peak <= 200, probe.peak
    # the RunnableConfig's max_concurrency, when smaller, wins
    probe2 = RowProbe()
    fast2 = accelerate(build(DeterministicChatModel(), probe=probe2), config=HeliumConfig(progress=False))
    fast2.batch([{"q": f"row {i}"} for i in range(300)], config={"max_concurrency": 7})
    assert probe2.total == 300 and probe2.peak <= 7
