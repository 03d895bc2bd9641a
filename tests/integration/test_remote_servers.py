"""Remote workers against real local `vllm serve` processes (started by the ``servers`` fixture)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, TypedDict

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph

from helium_lc import HeliumChatModel, accelerate
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.remote_worker import RemoteWorker, RemoteWorkerConfig
from helium_lc.engine.types import EngineError
from tests.unit.test_worker_conformance import CONFORMANCE_CHECKS, Harness

pytestmark = pytest.mark.engine


@pytest.fixture
def remote_harness(servers: Any) -> Any:
    loop = asyncio.new_event_loop()
    worker = RemoteWorker(0, RemoteWorkerConfig(servers.urls[0]))
    loop.run_until_complete(worker.start())
    yield Harness(worker, loop.run_until_complete, settle_s=0.3)
    loop.run_until_complete(worker.shutdown())
    loop.close()


@pytest.mark.parametrize("check", CONFORMANCE_CHECKS, ids=lambda f: f.__name__)
def test_remote_worker_conformance(remote_harness: Harness, check: Callable[[Harness], None]) -> None:
    check(remote_harness)


def test_abort_stops_the_request_on_the_server(remote_harness: Harness) -> None:
    import httpx

    from helium_lc.engine.types import GenerationRequest, SamplingSpec

    w = remote_harness.worker
    req = GenerationRequest(tuple(range(3000, 3020)), SamplingSpec(max_tokens=1500))

    def running() -> float:
        text = httpx.get(w.base_url + "/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("vllm:num_requests_running"))

    async def scenario() -> float:
        task = asyncio.ensure_future(w.generate(req))
        await asyncio.sleep(1.0)
        await w.abort(req.request_id)
        with pytest.raises(EngineError, match="aborted"):
            await task
        await asyncio.sleep(0.5)
        return running()

    assert remote_harness.run(scenario()) == 0


class Row(TypedDict, total=False):
    topic: str
    notes: list[str]
    summary: str


def _app(llm: Any) -> Any:
    system = "You are a concise analyst. " + " ".join(f"Rule {i}: be brief." for i in range(30))

    def analyse(state: Row) -> Row:
        notes = [llm.invoke([SystemMessage(system), HumanMessage(f"{angle} view of {state['topic']}?")]).text
                 for angle in ("Economic", "Social")]
        return {"notes": notes}

    def summarise(state: Row) -> Row:
        msgs = [SystemMessage(system), HumanMessage("Summarise: " + " | ".join(state["notes"]))]
        return {"summary": llm.invoke(msgs).text}

    g = StateGraph(Row)
    g.add_node("analyse", analyse).add_node("summarise", summarise)
    g.add_edge(START, "analyse").add_edge("analyse", "summarise").add_edge("summarise", END)
    return g.compile()


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
def test_unchanged_chat_openai_app_runs_on_two_servers(servers: Any, api: str) -> None:
    from langchain_openai import ChatOpenAI

    # The app's client points at server 0, as it would in production; helium_lc routes every
    # call across both servers. Plain, the same client talks to the real server (Chat
    # Completions or its Responses API).
    llm = ChatOpenAI(base_url=servers.urls[0] + "/v1", api_key="x", model=str(_served(servers.urls[0])),
                     temperature=0, max_tokens=8, max_retries=0, use_responses_api=api == "responses")
    app = _app(llm)
    inputs = [{"topic": t} for t in ("tides", "moss", "tides", "glass", "salt", "wind")]
    plain = app.batch(inputs)
    fast = accelerate(app, servers=servers.urls)
    pool = next(iter(fast.config.route.values()))
    pool.reset_stats()
    out = fast.batch(inputs)
    stats = fast.last_run_stats()
    assert stats.num_failed_rows == 0 and all(o["summary"] for o in out)
    assert stats.num_dedup_hits + stats.num_cache_hits >= 3  # "tides" twice: its calls ran once
    per_worker = [w.stats().num_requests for w in pool.workers]
    assert sum(per_worker) == stats.num_engine_requests and min(per_worker) >= 1, per_worker  # both servers
    assert [set(o) for o in out] == [set(p) for p in plain]
    pool.shutdown()


def _served(url: str) -> str:
    import httpx
    return httpx.get(url + "/v1/models").json()["data"][0]["id"]


def test_an_unreachable_server_is_named_in_the_error() -> None:
    from helium_lc.engine.local_servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EngineError, match=rf"{url}.*did not become healthy"):
        WorkerPool(servers=[RemoteWorkerConfig(url, start_timeout_s=1.0)])


def test_killing_a_server_mid_batch_loses_no_row_and_runs_none_twice(servers: Any) -> None:
    from helium_lc.engine.local_servers import LocalServers

    with LocalServers(1, cores=["1"]) as extra:
        pool = WorkerPool(servers=[servers.urls[0], extra.urls[0]])
        llm = HeliumChatModel(pool=pool, max_tokens=24)
        app = _app(llm)
        inputs = [{"topic": f"topic number {i}"} for i in range(24)]
        fast = accelerate(app, prompt_cache=False)
        killed = threading.Event()

        def kill_when_busy() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if pool.workers[1].stats().num_requests >= 4:
                    extra.kill(0)
                    killed.set()
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        out = fast.batch(inputs, return_exceptions=True)
        killer.join()
        assert killed.is_set()
        errors = [o for o in out if isinstance(o, BaseException)]
        assert not errors, errors[:3]
        assert all(len(o["notes"]) == 2 and o["summary"] for o in out)  # each call's result used once
        assert any(e.kind == "worker_died" for e in pool.events)
        pool.shutdown()
