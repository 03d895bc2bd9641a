"""Sync nodes under accelerate(): calls in flight are limited by the graph and the batch, not the host.

asyncio's default executor has min(32, cores + 4) threads (6 on a 2-core CI machine); a
sync-node fan-out run on it would have at most that many LLM calls in flight.
"""

from __future__ import annotations

import asyncio
import operator
import threading
from typing import Annotated, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from helium_lc import accelerate
from helium_lc.testing import DeterministicChatModel, normalize_state


class S(TypedDict, total=False):
    topic: str
    width: int
    answers: Annotated[list, operator.add]
    verdict: str


def build(model: DeterministicChatModel, *, async_nodes: bool = False):
    """A plain sync map-reduce: `width` experts per input (a Send fan-out), then a judge."""

    def fan_out(state: S):
        return [Send("expert", {"topic": state["topic"], "role": i}) for i in range(state["width"])]

    def expert(state: dict):
        return {"answers": [model.invoke(f"Expert {state['role']}: {state['topic']}").content]}

    async def aexpert(state: dict):
        return {"answers": [(await model.ainvoke(f"Expert {state['role']}: {state['topic']}")).content]}

    def judge(state: S):
        return {"verdict": model.invoke("Judge: " + " | ".join(sorted(state["answers"]))).content}

    g = StateGraph(S)
    g.add_node("expert", aexpert if async_nodes else expert)
    g.add_node("judge", judge)
    g.add_conditional_edges(START, fan_out, ["expert"])
    g.add_edge("expert", "judge")
    g.add_edge("judge", END)
    return g.compile()


def inputs(n: int, width: int = 8) -> list[S]:
    return [{"topic": f"topic {i}", "width": width} for i in range(n)]


def test_batch_of_sync_nodes_has_every_row_fan_out_in_flight():
    # 8 inputs x 8 experts: 64 calls can run at once (the default executor would allow 6).
    model = DeterministicChatModel(latency_s=1.0)  # ample time for 64 threads to start under load
    app = build(model)
    fast = accelerate(app, dedup=False, prompt_cache=False)
    out = fast.batch(inputs(8))
    assert model.max_in_flight >= 48
    model.reset()
    model.latency_s = 0.0  # the plain reference run needs no overlap
    assert [normalize_state(o) for o in out] == [normalize_state(app.invoke(x)) for x in inputs(8)]


def test_single_input_with_a_wide_fan_out_sync_and_async_entry_points():
    # 1 s per call: 40 threads start on demand well within it even on a loaded 2-core CI machine
    # (0.3 s saw only 23 of the 40 calls overlap once under load).
    model = DeterministicChatModel(latency_s=1.0)
    fast = accelerate(build(model), prompt_cache=False)
    fast.invoke(inputs(1, width=40)[0])  # LangGraph's sync runner: its thread pool is widened
    assert model.max_in_flight >= 33
    model.reset()
    asyncio.run(fast.ainvoke(inputs(1, width=40)[0]))  # sync nodes on the loop's executor
    assert model.max_in_flight >= 33
    model.reset()
    list(fast.stream(inputs(1, width=40)[0]))
    assert model.max_in_flight >= 33


def test_max_concurrency_in_the_config_still_limits_the_run():
    # 2 rows at a time, and (as in LangGraph) 2 tasks of a step at a time within a row.
    model = DeterministicChatModel(latency_s=0.05)
    fast = accelerate(build(model), dedup=False, prompt_cache=False)
    fast.batch(inputs(6, width=4), config={"max_concurrency": 2})
    assert 2 <= model.max_in_flight <= 4
    model.reset()
    fast.invoke(inputs(1, width=8)[0], config={"max_concurrency": 3})
    assert model.max_in_flight <= 3


def test_max_sync_threads_caps_sync_nodes():
    model = DeterministicChatModel(latency_s=0.1)
    fast = accelerate(build(model), dedup=False, prompt_cache=False, max_sync_threads=5)
    fast.batch(inputs(4, width=8))
    assert model.max_in_flight == 5


def test_abatch_on_the_callers_loop_gives_its_executor_back():
    model = DeterministicChatModel(latency_s=0.05)
    fast = accelerate(build(model), dedup=False, prompt_cache=False)

    async def main() -> tuple[str, str, int]:
        loop = asyncio.get_running_loop()
        name = lambda: threading.current_thread().name  # noqa: E731
        before = await loop.run_in_executor(None, name)
        await fast.abatch(inputs(4))
        after = await loop.run_in_executor(None, name)
        return before, after, model.max_in_flight

    before, after, peak = asyncio.run(main())
    assert peak >= 24
    assert not before.startswith("helium_lc") and not after.startswith("helium_lc")


def test_async_nodes_are_unaffected():
    model = DeterministicChatModel(latency_s=0.05)
    fast = accelerate(build(model, async_nodes=True), dedup=False, prompt_cache=False)
    fast.batch(inputs(4))
    assert model.max_in_flight >= 24


def test_max_sync_threads_is_validated():
    from helium_lc import HeliumConfig

    with pytest.raises(ValueError, match="max_sync_threads"):
        HeliumConfig(max_sync_threads=0)
