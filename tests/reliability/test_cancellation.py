"""Timeouts and cancellation on every path abort the engine request (real engine, shared pool).

Figures checked: a 1 s timeout fires within 8 s (not the ~30 s the call takes) on invoke, batch and
ainvoke of a sync node and on a streamed call, and leaves no request running; cancelling ainvoke
of a sync node (whole or streamed) leaves none running within 1 s.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph

from helium_lc import HeliumChatModel, accelerate

pytestmark = pytest.mark.engine


def _wait_idle(pool, limit_s: float = 10.0) -> int:
    import time

    deadline = time.monotonic() + limit_s
    while pool.stats()["num_running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return pool.stats()["num_running"]


def test_stream_timeout_under_accelerate_aborts_the_request(fresh_pool):
    import time

    llm = HeliumChatModel(max_tokens=1500, timeout=1.0)

    def count(state: MessagesState):
        return {"messages": [llm.invoke(state["messages"])]}

    fast = accelerate(StateGraph(MessagesState).add_node("count", count).add_edge(START, "count").compile(),
                      prompt_cache=False)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timed out after timeout=1 s"):
        for _ in fast.stream({"messages": [HumanMessage("Count from 1 to 2000, separated by commas.")]},
                             stream_mode="messages"):
            pass
    assert time.monotonic() - t0 < 8
    assert _wait_idle(fresh_pool) == 0


@pytest.mark.parametrize("entry", ["invoke", "batch", "ainvoke"])
def test_timeout_fires_under_accelerate_for_sync_nodes_and_aborts_the_request(fresh_pool, entry):
    import time

    llm = HeliumChatModel(max_tokens=1500, timeout=1.0)

    def count(state: MessagesState):
        return {"messages": [llm.invoke(state["messages"])]}

    fast = accelerate(StateGraph(MessagesState).add_node("count", count).add_edge(START, "count").compile(),
                      prompt_cache=False)
    x = {"messages": [HumanMessage("Count from 1 to 2000, separated by commas.")]}
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timed out after timeout=1 s .* aborted"):
        if entry == "invoke":
            fast.invoke(x)
        elif entry == "batch":
            fast.batch([x])
        else:
            asyncio.run(fast.ainvoke(x))
    assert time.monotonic() - t0 < 8  # not the ~30 s that 1500 tokens take
    assert _wait_idle(fresh_pool) == 0  # the engine request was aborted, not left running


@pytest.mark.parametrize("mode", ["whole", "stream"])
def test_cancelling_ainvoke_of_a_sync_node_aborts_its_engine_request(fresh_pool, mode):
    llm = HeliumChatModel(max_tokens=1500)

    def count(state: MessagesState):
        if mode == "stream":
            return {"messages": [sum(llm.stream(state["messages"]), start=AIMessageChunk(content=""))]}
        return {"messages": [llm.invoke(state["messages"])]}

    fast = accelerate(StateGraph(MessagesState).add_node("count", count).add_edge(START, "count").compile(),
                      prompt_cache=False)

    async def cancel_soon():
        task = asyncio.ensure_future(fast.ainvoke({"messages": [HumanMessage("Count from 1 to 2000, separated by commas.")]}))
        await asyncio.sleep(1.5)
        assert fresh_pool.stats()["num_running"] == 1  # the sync node's request is decoding
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())
    # aborted in the engine at once (1500 tokens take several more seconds here)
    assert _wait_idle(fresh_pool, limit_s=1.0) == 0
