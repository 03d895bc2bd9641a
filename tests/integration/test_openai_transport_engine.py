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
