"""The runtime scheduler on the real engine: every policy serves an accelerated batch with the
same answers, and a second batch of the same app finds its static prefix cached."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import START, StateGraph

from helium_lc import HeliumChatModel, HeliumConfig, accelerate
from helium_lc.explain import scheduler_text
from helium_lc.runtime.scheduler import scheduler_for

pytestmark = pytest.mark.engine

SYSTEM = "You are a terse assistant. " + " ".join(f"Rule {i}: answer in one short line." for i in range(30))


class S(TypedDict, total=False):
    q: str
    a: str


def _app(pool: Any) -> Any:
    llm = HeliumChatModel(pool=pool, max_tokens=8)

    async def answer(state: S) -> dict[str, Any]:
        return {"a": (await llm.ainvoke([SystemMessage(SYSTEM), HumanMessage(state["q"])])).content}

    return StateGraph(S).add_node("answer", answer).add_edge(START, "answer").compile()


def test_policies_agree_and_static_prefix_is_reused(fresh_pool: Any) -> None:
    # Greedy decoding on one engine: every policy must give the same answers for 4 questions.
    inputs = [{"q": f"What is {i} plus {i}?"} for i in range(4)]
    answers = {}
    for policy in ("fifo", "helium", "lspf"):
        fresh_pool.reset_prefix_cache()
        scheduler_for(fresh_pool).forget_cache_model()
        fast = accelerate(_app(fresh_pool), config=HeliumConfig(policy=policy, prompt_cache=False))
        answers[policy] = [o["a"] for o in asyncio.run(fast.abatch(inputs))]
        assert fast.last_run_stats().num_engine_requests == 4
        # Second batch of the same app: the system prompt (several blocks) is resident now.
        asyncio.run(fast.abatch(inputs))
        assert fast.last_run_stats().num_cached_prompt_tokens >= 4 * 3 * fresh_pool.block_size
    assert answers["helium"] == answers["fifo"] == answers["lspf"]
    assert "worker 0:" in scheduler_text(scheduler_for(fresh_pool))
