"""An unchanged two-node LangGraph app on ``ChatOpenAI``, served by the real vLLM pool in-process."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from helium_lc.integrations.openai_transport import helium_chat_openai

pytestmark = pytest.mark.engine


class State(TypedDict, total=False):
    question: str
    answer: str
    summary: str
    cached_tokens: int


def build_app(llm):  # the app code: plain ChatOpenAI usage, nothing helium-specific
    def answer(state: State) -> State:
        return {"answer": llm.invoke(state["question"]).content}

    def summarize(state: State) -> State:
        # Streamed over SSE; the usage chunk reports the cached prompt tokens.
        total = None
        for chunk in llm.stream(f"Summarize in three words: {state['answer']}"):
            total = chunk if total is None else total + chunk
        return {"summary": total.content, "cached_tokens": total.usage_metadata["input_token_details"]["cache_read"]}

    g = StateGraph(State)
    g.add_node("answer", answer)
    g.add_node("summarize", summarize)
    g.add_edge(START, "answer")
    g.add_edge("answer", "summarize")
    g.add_edge("summarize", END)
    return g.compile()


def test_two_node_graph_runs_on_the_pool(fresh_pool) -> None:
    llm = helium_chat_openai(fresh_pool, max_tokens=16)
    app = build_app(llm)
    # Sync run: node 1 is a plain completion, node 2 a stream; both return real text.
    out = app.invoke({"question": "What is the capital of France?"})
    assert out["answer"].strip() and out["summary"].strip()
    # Async run of the same question: the first prompt is now in the prefix cache.
    out2 = asyncio.run(app.ainvoke({"question": "What is the capital of France?"}))
    assert out2["answer"] == out["answer"]  # greedy decoding: same text
    assert out2["summary"].strip()
    assert fresh_pool.stats()["num_cached_prompt_tokens"] > 0


def test_routed_chat_openai_streams_tokens_under_accelerate(fresh_pool) -> None:
    from langchain_core.messages import AIMessageChunk
    from langchain_openai import ChatOpenAI

    from helium_lc import accelerate

    llm = ChatOpenAI(base_url="http://my-vllm:8000/v1", api_key="x", model="m", max_tokens=12, temperature=0,
                     max_retries=0, stream_usage=True)
    app = build_app(llm)
    fast = accelerate(app, route={"http://my-vllm:8000/v1": fresh_pool}, prompt_cache=False)
    events = list(fast.stream({"question": "What is the capital of France?"}, stream_mode=["messages", "values"]))
    answer_chunks = [m for mode, (m, meta) in (e for e in events if e[0] == "messages")
                     if meta["langgraph_node"] == "answer" and isinstance(m, AIMessageChunk) and m.content]
    final = [v for mode, v in events if mode == "values"][-1]
    assert len(answer_chunks) >= 3  # token by token through the in-process front end
    assert "".join(str(c.content) for c in answer_chunks) == final["answer"]
    assert fast.last_run_stats().num_engine_requests == 2


def test_no_false_warning_that_a_routed_client_is_not_served(fresh_pool, caplog) -> None:
    from langchain_openai import ChatOpenAI

    from helium_lc import accelerate

    llm = ChatOpenAI(base_url="http://my-vllm:8001/v1", api_key="x", model="m", max_tokens=4, temperature=0,
                     max_retries=0, stream_usage=True)
    with caplog.at_level("WARNING", logger="helium_lc"):
        accelerate(build_app(llm), route={"http://my-vllm:8001/v1": fresh_pool}).invoke({"question": "Hi"})
    assert "no HTTP transport" not in caplog.text
