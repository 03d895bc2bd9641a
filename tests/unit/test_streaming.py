"""Token streaming under accelerate: per-token chunks through the scheduler (simulated engine).

SimWorker streams one chunk per output token (" w<id>"), so a call of max_tokens=6 that is
streamed must reach LangGraph's ``messages`` stream as several chunks, while the final
state equals the plain run's. Cache and dedup hits stream the stored message in one chunk.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langgraph.graph import END, START, StateGraph

from helium_lc import HeliumChatModel, HeliumConfig, accelerate
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.sim import SimWorker

MAX_TOKENS = 6


class _State(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]


@pytest.fixture(scope="module")
def pool() -> Any:
    p = WorkerPool(workers=[SimWorker(0, block_size=4)])
    yield p
    p.shutdown()


def _app(llm: HeliumChatModel, *, sync: bool) -> Any:
    def ask(state: _State) -> dict[str, Any]:
        return {"notes": [llm.invoke([HumanMessage(f"Tell me about {state['topic']}.")]).content]}

    async def aask(state: _State) -> dict[str, Any]:
        return {"notes": [(await llm.ainvoke([HumanMessage(f"Tell me about {state['topic']}.")])).content]}

    g = StateGraph(_State)
    g.add_node("ask", ask if sync else aask)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    return g.compile()


def _tokens(events: list[Any]) -> list[str]:
    return [msg.content for msg, meta in events if isinstance(msg, AIMessageChunk) and msg.content]


def _messages_with_text(events: list[Any]) -> list[Any]:
    return [msg for msg, meta in events if msg.content]


def _messages(graph: Any, inp: dict[str, Any], sync: bool) -> list[Any]:
    if sync:
        return list(graph.stream(inp, stream_mode="messages"))

    async def collect() -> list[Any]:
        return [e async for e in graph.astream(inp, stream_mode="messages")]
    return asyncio.run(collect())


@pytest.mark.parametrize("sync", [True, False])
def test_messages_mode_streams_each_token_and_the_final_state_is_plain(pool: WorkerPool, sync: bool) -> None:
    llm = HeliumChatModel(pool=pool, max_tokens=MAX_TOKENS)
    app = _app(llm, sync=sync)
    fast = accelerate(app, config=HeliumConfig(prompt_cache=False))
    inp = {"topic": "tides", "notes": []}
    plain_events = _messages(app, inp, sync)
    events = _messages(fast, inp, sync)
    assert len(_tokens(events)) == MAX_TOKENS, events  # one chunk per decoded token
    assert _tokens(events) == _tokens(plain_events)
    assert fast.last_run_stats().num_engine_requests == 1  # it went through the scheduler
    assert asyncio.run(fast.ainvoke(inp)) == asyncio.run(app.ainvoke(inp))


def test_astream_events_stream_each_token(pool: WorkerPool) -> None:
    llm = HeliumChatModel(pool=pool, max_tokens=MAX_TOKENS)
    fast = accelerate(_app(llm, sync=False), config=HeliumConfig(prompt_cache=False))

    async def collect() -> list[str]:
        return [e["data"]["chunk"].content async for e in fast.astream_events({"topic": "moss", "notes": []},
                                                                              version="v2")
                if e["event"] == "on_chat_model_stream" and e["data"]["chunk"].content]

    assert len(asyncio.run(collect())) == MAX_TOKENS


def test_a_cache_hit_streams_the_stored_message_as_one_chunk(pool: WorkerPool) -> None:
    llm = HeliumChatModel(pool=pool, max_tokens=MAX_TOKENS)
    app = _app(llm, sync=True)
    fast = accelerate(app)
    inp = {"topic": "glaciers", "notes": []}
    first = list(fast.stream(inp, stream_mode="messages"))
    again = list(fast.stream(inp, stream_mode="messages"))
    assert fast.last_run_stats().num_cache_hits == 1
    assert len(_tokens(first)) == MAX_TOKENS
    served = _messages_with_text(again)
    assert len(served) == 1 and served[0].content == "".join(_tokens(first))  # the stored message, once
