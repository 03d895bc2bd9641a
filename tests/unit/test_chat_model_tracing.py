"""What LangSmith sees of a HeliumChatModel call (simulated engine)."""

from __future__ import annotations

from typing import Any

import pytest

from helium_lc import HeliumChatModel
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.sim import SimWorker


@pytest.fixture(scope="module")
def pool() -> Any:
    p = WorkerPool(workers=[SimWorker(0, block_size=4)])
    yield p
    p.shutdown()


def test_ls_params_name_the_provider_the_served_model_and_the_calls_sampling(pool: WorkerPool) -> None:
    llm = HeliumChatModel(pool=pool, max_tokens=7, stop=["\n\n"])
    params = llm._get_ls_params(temperature=0.5, max_tokens=3)
    assert params["ls_provider"] == "helium_lc" and params["ls_model_type"] == "chat"
    assert params["ls_model_name"] == pool.model_path.name  # the served model, not "default"
    assert (params["ls_temperature"], params["ls_max_tokens"], params["ls_stop"]) == (0.5, 3, ["\n\n"])
    assert HeliumChatModel(model="my-model", pool=pool)._get_ls_params()["ls_model_name"] == "my-model"


def test_tracing_never_starts_a_pool() -> None:
    unstarted = WorkerPool(workers=[SimWorker(0)], start=False)
    assert HeliumChatModel(pool=unstarted)._get_ls_params()["ls_model_name"] == "default"
    assert not unstarted.started


def test_usage_reports_cached_prompt_tokens(pool: WorkerPool) -> None:
    llm = HeliumChatModel(pool=pool, max_tokens=3)
    prompt = "a long shared context " * 20
    llm.invoke(prompt)
    usage = llm.invoke(prompt).usage_metadata
    assert usage["input_token_details"]["cache_read"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


# -- per-run stats reach callbacks (the custom event RUN_STATS_EVENT) ---------------------------
class _StatsHandler:
    """A callback handler that records helium_lc's run-stats events and the root runs it saw."""

    def __init__(self) -> None:
        from langchain_core.callbacks import BaseCallbackHandler

        events: list[tuple[str, Any, Any]] = []
        roots: list[Any] = []

        class Handler(BaseCallbackHandler):
            def on_custom_event(self, name: str, data: Any, *, run_id: Any, **kw: Any) -> None:
                events.append((name, data, run_id))

            def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, parent_run_id: Any = None,
                               **kw: Any) -> None:
                if parent_run_id is None:
                    roots.append(run_id)

        self.handler, self.events, self.roots = Handler(), events, roots


def _two_call_app() -> Any:
    from typing import TypedDict

    from langgraph.graph import START, StateGraph

    from helium_lc.testing import DeterministicChatModel

    class S(TypedDict, total=False):
        q: str
        a: str
        b: str

    model = DeterministicChatModel()
    return (StateGraph(S)
            .add_node("one", lambda s: {"a": model.invoke(s["q"]).content})
            .add_node("two", lambda s: {"b": model.invoke(s["q"]).content})   # the same call: a cache hit
            .add_edge(START, "one").add_edge("one", "two").compile())


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "batch", "stream"])
def test_a_runs_stats_reach_its_callbacks_as_a_custom_event_on_its_root_run(how: str) -> None:
    import asyncio

    from helium_lc import accelerate
    from helium_lc.accelerate import RUN_STATS_EVENT

    fast = accelerate(_two_call_app())
    rec = _StatsHandler()
    cfg: Any = {"callbacks": [rec.handler]}
    rows = 3 if how == "batch" else 1
    if how == "invoke":
        fast.invoke({"q": "x"}, cfg)
    elif how == "ainvoke":
        asyncio.run(fast.ainvoke({"q": "x"}, cfg))
    elif how == "batch":
        fast.batch([{"q": f"x{i}"} for i in range(rows)], cfg)
    else:
        list(fast.stream({"q": "x"}, cfg))
    assert len(rec.events) == 1, rec.events            # one event per run (a batch is one run)
    name, data, run_id = rec.events[0]
    stats = fast.last_run_stats()
    assert name == RUN_STATS_EVENT and stats is not None
    assert data["num_rows"] == rows and data["num_llm_calls_requested"] == 2 * rows
    assert data["num_cache_hits"] + data["num_dedup_hits"] == rows == stats.num_llm_calls_saved
    assert sorted(data["run_ids"]) == sorted(str(r) for r in rec.roots)   # the graph's own root runs
    assert str(run_id) in data["run_ids"]


def test_a_caller_run_id_is_kept_and_a_failing_handler_never_fails_the_run() -> None:
    import uuid

    from langchain_core.callbacks import BaseCallbackHandler

    from helium_lc import accelerate

    class Broken(BaseCallbackHandler):
        raise_error = True

        def on_custom_event(self, *a: Any, **kw: Any) -> None:
            raise RuntimeError("handler bug")

    fast = accelerate(_two_call_app())
    rec = _StatsHandler()
    mine = uuid.uuid4()
    out = fast.invoke({"q": "x"}, {"callbacks": [rec.handler, Broken()], "run_id": mine})
    assert out["a"] == out["b"] and rec.roots == [mine]
    assert rec.events and rec.events[0][2] == mine
