"""Runtime.dispatch: the path HeliumChatModel takes; origins from LangGraph's run metadata."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph import START, StateGraph

from helium_lc.accelerate import accelerate
from helium_lc.engine.types import GenerationRequest, GenerationResult, SamplingSpec
from helium_lc.runtime.context import current_runtime


class FakePool:
    """Answers every request with its prompt length; remembers what it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[GenerationRequest, int | None]] = []

    async def agenerate(self, request: GenerationRequest, *, worker_id: int | None = None) -> GenerationResult:
        self.requests.append((request, worker_id))
        n = request.num_prompt_tokens
        return GenerationResult(request.request_id, f"len={n}", (7,), num_prompt_tokens=n,
                                num_cached_prompt_tokens=n // 2, finish_reason="stop", worker_id=0)


class PoolChat(BaseChatModel):
    """Like HeliumChatModel: one token per character, sent via the runtime when one is active."""

    temperature: float = 0.0
    pool: Any

    @property
    def _llm_type(self) -> str:
        return "pool-chat"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        raise NotImplementedError("async only in this test")

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                         **kwargs: Any) -> ChatResult:
        text = "".join(str(m.content) for m in messages)
        request = GenerationRequest(tuple(ord(c) for c in text), SamplingSpec(max_tokens=4))
        rt = current_runtime()
        result = await (rt.dispatch(self.pool, request) if rt else self.pool.agenerate(request))
        usage = {"input_tokens": 999, "output_tokens": 1, "total_tokens": 1000}  # must not be double counted
        return ChatResult(generations=[ChatGeneration(message=AIMessage(result.text, usage_metadata=usage))])


class S(TypedDict, total=False):
    q: str
    a: str
    b: str


def test_dispatch_tags_origin_and_counts_engine_tokens() -> None:
    # Node "two" makes two different calls in one step; node "one" makes one.
    pool = FakePool()
    model = PoolChat(pool=pool)

    async def one(state: S) -> dict[str, Any]:
        return {"a": (await model.ainvoke(state["q"])).content}

    async def two(state: S) -> dict[str, Any]:
        first = await model.ainvoke("x" + state["q"])
        second = await model.ainvoke("yy" + state["q"])
        return {"b": first.content + second.content}

    app = (StateGraph(S).add_node("one", one).add_node("two", two)
           .add_edge(START, "one").add_edge("one", "two").compile())
    fast = accelerate(app)
    asyncio.run(fast.abatch([{"q": "abc"}, {"q": "de"}]))
    origins = sorted((r.origin.row, r.origin.node, r.origin.step, r.origin.ordinal) for r, _ in pool.requests)
    # row 0 and row 1: "one" at step 1 (ordinal 0), "two" at step 2 (ordinals 0 and 1)
    assert origins == [(0, "one", 1, 0), (0, "two", 2, 0), (0, "two", 2, 1),
                       (1, "one", 1, 0), (1, "two", 2, 0), (1, "two", 2, 1)]
    assert all(w is None for _, w in pool.requests)  # placement left to the pool (no scheduler yet)
    s = fast.last_run_stats()
    # prompt lengths: row 0: 3, 4, 5; row 1: 2, 3, 4 -> 21 tokens; cached n // 2 each: 1+2+2 + 1+1+2 = 9
    assert (s.num_engine_requests, s.num_prompt_tokens, s.num_cached_prompt_tokens) == (6, 21, 9)
    assert s.num_llm_calls_sent == 6


def test_outside_a_run_the_pool_is_called_directly() -> None:
    pool = FakePool()
    msg = asyncio.run(PoolChat(pool=pool).ainvoke("hello"))
    assert msg.content == "len=5" and pool.requests[0][0].origin is None
