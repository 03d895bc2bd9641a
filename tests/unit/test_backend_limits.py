"""HeliumConfig.max_in_flight_per_backend: at most N calls in flight to one backend."""

from __future__ import annotations

import asyncio
import operator
import threading
import time
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from helium_lc import HeliumConfig, accelerate
from helium_lc.runtime.limits import Gate
from helium_lc.testing import DeterministicChatModel


class S(TypedDict):
    topics: list[str]
    notes: Annotated[list[str], operator.add]


def _app(model: DeterministicChatModel, *, sync: bool) -> Any:
    def ask(t: dict[str, Any]) -> dict[str, Any]:
        return {"notes": [model.invoke(f"About {t['topic']}").content]}

    async def aask(t: dict[str, Any]) -> dict[str, Any]:
        return {"notes": [(await model.ainvoke(f"About {t['topic']}")).content]}

    g = StateGraph(S)
    g.add_node("ask", ask if sync else aask)
    g.add_conditional_edges(START, lambda s: [Send("ask", {"topic": t}) for t in s["topics"]], ["ask"])
    g.add_edge("ask", END)
    return g.compile()


@pytest.mark.parametrize("sync", [True, False])
def test_calls_in_flight_to_a_backend_are_capped(sync: bool) -> None:
    inputs = [{"topics": [f"t{r}-{i}" for i in range(4)], "notes": []} for r in range(3)]  # 12 distinct calls
    free = DeterministicChatModel(latency_s=0.05)
    accelerate(_app(free, sync=sync)).batch(inputs)
    assert free.max_in_flight > 2  # without a cap they overlap
    capped = DeterministicChatModel(latency_s=0.05)
    out = accelerate(_app(capped, sync=sync), config=HeliumConfig(max_in_flight_per_backend=2)).batch(inputs)
    assert capped.max_in_flight == 2 and capped.num_calls == 12
    assert all(len(o["notes"]) == 4 for o in out)


def test_cache_hits_take_no_slot_and_bad_caps_are_refused() -> None:
    model = DeterministicChatModel(latency_s=0.02)
    fast = accelerate(_app(model, sync=True), config=HeliumConfig(max_in_flight_per_backend=1))
    inp = [{"topics": ["a", "b"], "notes": []}]
    fast.batch(inp)
    fast.batch(inp)
    assert fast.last_run_stats().num_cache_hits == 2 and model.num_calls == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_in_flight_per_backend"):
            HeliumConfig(max_in_flight_per_backend=bad)


def test_gate_is_fifo_across_threads_and_loops_and_survives_cancellation() -> None:
    gate = Gate(1)
    order: list[str] = []

    async def waiter(name: str, hold_s: float) -> None:
        async with gate.ahold():
            order.append(name)
            await asyncio.sleep(hold_s)

    def thread_user() -> None:
        with gate.hold():
            order.append("thread")

    async def main() -> None:
        first = asyncio.ensure_future(waiter("a", 0.05))
        await asyncio.sleep(0.01)
        cancelled = asyncio.ensure_future(waiter("cancelled", 0))
        await asyncio.sleep(0.01)
        t = threading.Thread(target=thread_user)
        t.start()
        time.sleep(0.01)
        cancelled.cancel()  # gives its place up
        await first
        await asyncio.to_thread(t.join)
        async with gate.ahold():
            order.append("last")

    asyncio.run(main())
    assert order == ["a", "thread", "last"] and gate.in_use == 0
