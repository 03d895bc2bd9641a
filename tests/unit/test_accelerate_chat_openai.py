"""An unchanged app that uses ChatOpenAI is accelerated onto a helium_lc pool with `route=` only.

The app below is plain LangGraph + langchain-openai code pointing at an OpenAI-compatible server
that does not exist. `accelerate(app, route={base_url: pool})` serves its calls in-process from a
pool of simulated workers (deterministic output per prompt), with dedup of identical calls.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

import pytest
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

from helium_lc import HeliumConfig, accelerate
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.sim import SimWorker

BASE_URL = "http://vllm.internal.example:8000/v1"


class S(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]


def build_app(**client_kwargs):
    llm = ChatOpenAI(base_url=BASE_URL, model="smol", api_key="unused", temperature=0, max_tokens=8,
                     max_retries=0, timeout=5, **client_kwargs)

    def writer(state: S):
        return {"notes": [llm.invoke(f"Write one line about {state['topic']}.").text]}

    async def critic(state: S):
        msg = await llm.ainvoke(f"Write one line about {state['topic']}.")  # same prompt as writer
        return {"notes": [msg.text]}

    g = StateGraph(S)
    g.add_node("writer", writer).add_node("critic", critic)
    g.add_edge(START, "writer").add_edge(START, "critic").add_edge("writer", END).add_edge("critic", END)
    return g.compile()


@pytest.fixture(scope="module")
def sim_pool():
    pool = WorkerPool(workers=[SimWorker(0, block_size=4), SimWorker(1, block_size=4)])
    yield pool
    pool.shutdown()


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
def test_unchanged_chat_openai_app_runs_on_the_pool(sim_pool, api):
    # Some agents force use_responses_api=True for the "openai" provider: same run, same answers.
    app = build_app(use_responses_api=api == "responses")
    fast = accelerate(app, config=HeliumConfig(route={BASE_URL: sim_pool}, progress=False))
    before = sim_pool.stats()["num_requests"]  # (SimWorker counters are not reset between tests)
    out = fast.batch([{"topic": "rivers", "notes": []}, {"topic": "bridges", "notes": []}])
    assert all(len(o["notes"]) == 2 and all(o["notes"]) for o in out)
    # writer and critic send the identical greedy prompt: one engine call per row, shared result
    assert out[0]["notes"][0] == out[0]["notes"][1]
    stats = fast.last_run_stats()
    assert stats.num_llm_calls_requested == 4 and stats.num_llm_calls_sent == 2
    assert sim_pool.stats()["num_requests"] - before == 2


def test_outside_the_accelerated_run_the_client_is_untouched(sim_pool):
    app = build_app()
    fast = accelerate(app, config=HeliumConfig(route={BASE_URL: sim_pool}, progress=False))
    assert len(asyncio.run(fast.ainvoke({"topic": "x", "notes": []}))["notes"]) == 2
    # the plain app still talks to its own (unreachable) endpoint: a connection error, not the pool
    with pytest.raises(Exception) as info:
        asyncio.run(app.ainvoke({"topic": "x", "notes": []}))
    assert "connect" in repr(info.value).lower() or "resolve" in repr(info.value).lower()


def test_astream_honours_route(sim_pool):
    # Without the route the ChatOpenAI calls would go to a host that does not exist and fail.
    fast = accelerate(build_app(), config=HeliumConfig(route={BASE_URL: sim_pool}, progress=False))

    async def main():
        return [c async for c in fast.astream({"topic": "rivers", "notes": []}, stream_mode="values")]

    chunks = asyncio.run(main())
    assert len(chunks[-1]["notes"]) == 2 and all(chunks[-1]["notes"])


def test_both_openai_apis_give_the_same_final_states(sim_pool):
    inputs = [{"topic": "rivers", "notes": []}, {"topic": "bridges", "notes": []}]
    outs = {api: accelerate(build_app(use_responses_api=api), route={BASE_URL: sim_pool}, progress=False).batch(inputs)
            for api in (False, True)}
    assert outs[False] == outs[True]
