"""The interception hook: inert outside accelerated runs, active inside (threads included)."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langgraph.graph import START, StateGraph

from helium_lc.accelerate import accelerate
from helium_lc.runtime.context import current_row, current_runtime
from helium_lc.runtime.intercept import install, is_installed, resolve_route
from helium_lc.testing import DeterministicChatModel


class S(TypedDict, total=False):
    q: str
    a: str
    seen: list[Any]


def _app(model: DeterministicChatModel, probe: list[Any] | None = None) -> Any:
    def ask(state: S) -> dict[str, Any]:
        if probe is not None:  # what a sync node (run in LangGraph's executor thread) sees
            probe.append((current_runtime() is not None, current_row()))
        return {"a": str(model.invoke(state["q"]).content)}
    return StateGraph(S).add_node("ask", ask).add_edge(START, "ask").compile()


def test_install_is_idempotent_and_keeps_the_original() -> None:
    install()
    hook = BaseChatModel._generate_with_cache
    install()
    assert is_installed() and BaseChatModel._generate_with_cache is hook
    assert hook.__wrapped__ is not hook  # the original is kept for the inert path


def test_inert_outside_runs() -> None:
    # Step 1: an accelerated run caches the answer to "hi".
    model = DeterministicChatModel()
    fast = accelerate(_app(model))
    fast.invoke({"q": "hi"})
    assert model.num_calls == 1
    before = fast.stats()
    # Step 2: the same prompt outside `fast` reaches the model (no cache) and is not counted.
    model.invoke("hi")
    model.invoke("hi")
    assert model.num_calls == 3
    assert fast.stats() == before
    # Step 3: inside `fast` again, it is a cache hit.
    fast.invoke({"q": "hi"})
    assert model.num_calls == 3 and fast.last_run_stats().num_cache_hits == 1


def test_runtime_visible_in_executor_threads_with_row_index() -> None:
    # Sync nodes run in LangGraph's thread pool; the runtime and the batch row reach them.
    probe: list[Any] = []
    fast = accelerate(_app(DeterministicChatModel(), probe))
    fast.invoke({"q": "x"})
    assert probe == [(True, None)]
    probe.clear()
    fast.batch([{"q": "a"}, {"q": "b"}, {"q": "c"}])
    assert sorted(probe) == [(True, 0), (True, 1), (True, 2)]
    # and nothing leaks out of the run
    assert current_runtime() is None


def test_call_kwargs_temperature_makes_a_call_sampled() -> None:
    # The model is greedy, but this call asks for temperature 0.9: not cached, not merged.
    model = DeterministicChatModel()

    def ask(state: S) -> dict[str, Any]:
        return {"a": str(model.invoke(state["q"], temperature=0.9).content)}
    fast = accelerate(StateGraph(S).add_node("ask", ask).add_edge(START, "ask").compile())
    fast.batch([{"q": "same"}, {"q": "same"}])
    s = fast.last_run_stats()
    assert model.num_calls == 2 and s.num_sampled_calls == 2 and s.num_dedup_hits == 0


def test_async_nodes_are_intercepted() -> None:
    # An async node awaiting the model: 3 identical rows -> 1 model call.
    model = DeterministicChatModel(latency_s=0.01)

    async def ask(state: S) -> dict[str, Any]:
        return {"a": str((await model.ainvoke(state["q"])).content)}
    fast = accelerate(StateGraph(S).add_node("ask", ask).add_edge(START, "ask").compile())
    outs = asyncio.run(fast.abatch([{"q": "z"}] * 3))
    assert model.num_calls == 1 and outs[0] == outs[1] == outs[2]
    s = fast.last_run_stats()
    assert (s.num_llm_calls_sent, s.num_dedup_hits + s.num_cache_hits) == (1, 2)


def test_served_results_are_copies() -> None:
    # Mutating one row's message must not change another row's or the cache's.
    model = DeterministicChatModel()
    msgs: list[Any] = []

    def ask(state: S) -> dict[str, Any]:
        m = model.invoke(state["q"])
        msgs.append((m, m.content))
        m.content = "mutated"
        return {"a": "ok"}
    fast = accelerate(StateGraph(S).add_node("ask", ask).add_edge(START, "ask").compile())
    fast.invoke({"q": "p"})
    fast.invoke({"q": "p"})  # served from cache
    (m0, text0), (m1, text1) = msgs
    assert m0 is not m1 and text0 == text1 and text1.startswith("answer-")
    assert fast.last_run_stats().num_cache_hits == 1


def test_resolve_route_by_base_url_then_model_name() -> None:
    class Client:
        openai_api_base = None
        base_url = "http://localhost:8000/v1"
        model_name = "m"
    assert resolve_route(Client(), {"m": 1}) == ("m", 1)
    assert resolve_route(Client(), {"m": 1, "http://localhost:8000/v1/": 2}) == ("http://localhost:8000/v1/", 2)
    assert resolve_route(Client(), {}) is None


def test_cache_and_dedup_hits_are_marked_for_tracing_and_cost_zero() -> None:
    model = DeterministicChatModel(latency_s=0.2)
    msgs: list[Any] = []

    def ask(state: S) -> dict[str, Any]:
        msgs.append(model.invoke(state["q"]))
        return {"a": "ok"}
    fast = accelerate(StateGraph(S).add_node("ask", ask).add_edge(START, "ask").compile())
    fast.batch([{"q": "p"}, {"q": "p"}])  # one computed, one joined in flight
    fast.invoke({"q": "p"})  # served from the prompt cache
    served = [m.response_metadata.get("helium_lc", {}).get("served_from") for m in msgs]
    assert sorted(served, key=str) == [None, "dedup", "prompt_cache"]
    computed = msgs[served.index(None)]
    assert "total_cost" not in computed.usage_metadata
    for m in msgs:
        if m is not computed:
            assert m.usage_metadata["total_cost"] == 0  # langchain-core's mark for cache hits
            assert m.usage_metadata["input_tokens"] == computed.usage_metadata["input_tokens"]
