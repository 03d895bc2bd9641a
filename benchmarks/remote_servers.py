"""Routing across real vLLM servers: helium vs the routers users have today.

An unchanged LangGraph app whose ``ChatOpenAI`` points at one server URL runs on two local
``vllm serve`` processes (one core each, 0.25 GiB of KV each, prefix caching on) through
``accelerate(app, route={url: WorkerPool(servers=[...])}, policy=...)``. The systems differ only
in where (and in which order) each call goes:

- ``round_robin``: calls dealt to the servers in turn (a Kubernetes Service);
- ``least_outstanding``: the server with the fewest calls in flight (vLLM's data-parallel balancer);
- ``cache_aware``: longest resident prefix while the load is balanced, else least loaded
  (SGLang-router / llm-d style);
- ``helium``: helium_lc's cost-based placement (resident prefix vs load, row affinity);
- ``plain_one_server``: the plain app against its one URL, no helium_lc (for reference).

Dedup and the prompt cache are off for every helium_lc system, so only placement differs (the
rows are distinct anyway). Workloads, both written the way users write agents (sync nodes, a
``Send`` fan-out, ``ChatOpenAI``):

- ``conversations`` (prefill-heavy): each row carries its own ~1.2k-token document; two agents
  per row each hold a 3-turn conversation about it (8 output tokens per turn);
- ``long_conversations`` (more prefill-heavy): ~1.4k-token documents, 6 turns per agent;
- ``short``: the same agents with a short per-row question behind a shared system prompt
  (placement should not matter much here: the check is that helium never loses);
- ``debate``, ``parallel``, ``mapred``, ``trading``: the benchmark suite's workloads
  (``examples/workloads``, sizes as in run.py's cpu profile) over the same ``ChatOpenAI``
  (16 output tokens), ``--suite-rows`` rows each, ``--suite-repeats`` repeats.

Prefix caches are reset before every run; systems alternate within each repeat; the report is
the median makespan, its min-max, the computed (not cached) prompt tokens, their ratio to the
lower bound (every distinct full block of the prompts sent once) and the ratio of each
baseline's makespan to helium's (> 1: helium faster).

Run (starts its own servers; ~25 min on 2 cores for every workload):
    .venv/bin/python benchmarks/remote_servers.py [--rows 8] [--repeats 3] [--workloads conversations,short]
                                                  [--suite-rows 4] [--suite-repeats 2] [--servers URL,URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))  # the suite's workloads

SYSTEM = ("You are one of two analysts who discuss a document with a moderator. Answer in a few "
          "words, stay on the document, and do not repeat yourself. ")
WORDS = ("river harbour market ledger copper grain tariff engine canal bridge shipment contract "
         "furnace archive census railway quarry textile vineyard mill dock warehouse beacon "
         "charter guild levy orchard foundry timber salt wool barge toll customs").split()
SYSTEMS = ("round_robin", "least_outstanding", "cache_aware", "helium", "plain_one_server")
POLICY = {"round_robin": "round_robin", "least_outstanding": "fifo", "cache_aware": "cache_aware",
          "helium": "helium"}


def document(row: int, num_words: int) -> str:
    rng = random.Random(row)
    return " ".join(rng.choice(WORDS) + ("." if rng.random() < 0.08 else "") for _ in range(num_words))


class State(TypedDict, total=False):
    doc: str
    answers: Annotated[list, operator.add]


def build(llm: Any, *, turns: int = 3) -> Any:
    """Two agents per row, each a multi-turn conversation about the row's document (sync nodes)."""
    def fan_out(state: State) -> list[Send]:
        return [Send("agent", {"doc": state["doc"], "agent": a}) for a in ("A", "B")]

    def agent(task: dict) -> dict:
        messages: list[tuple[str, str]] = [("system", SYSTEM), ("human", f"Document:\n{task['doc']}\n\n"
                                                                          f"You are analyst {task['agent']}. "
                                                                          "What is it about?")]
        out = []
        for t in range(turns):
            reply = llm.invoke(messages).content
            out.append(reply)
            messages += [("ai", reply), ("human", f"Moderator: point {t + 2}, analyst {task['agent']}?")]
        return {"answers": [(task["agent"], out)]}

    g = StateGraph(State)
    g.add_node("agent", agent)
    g.add_conditional_edges(START, fan_out, ["agent"])
    g.add_edge("agent", END)
    return g.compile()


#: this script's own agents: (document words per row or 0 for a short question, turns per agent)
CONVERSATIONS = {"conversations": (900, 3), "long_conversations": (1050, 6), "short": (0, 3)}
#: the benchmark suite's workloads (examples/workloads), as in run.py's cpu profile
SUITE_PARAMS: dict[str, dict[str, Any]] = {"debate": {}, "parallel": {}, "mapred": {},
                                           "trading": {"num_traders": 2, "num_risk_rounds": 1}}


def inputs(workload: str, rows: int) -> list[dict[str, Any]]:
    words, _ = CONVERSATIONS[workload]
    if words:
        return [{"doc": document(r, words), "answers": []} for r in range(rows)]
    return [{"doc": f"Question {r}: which {WORDS[r % len(WORDS)]} matters most?", "answers": []}
            for r in range(rows)]


def workload_app(workload: str, llm: Any, rows: int, suite_rows: int) -> tuple[Any, list[dict[str, Any]], bool, str]:
    """(app, inputs, is_async, shape) of a workload: this script's conversations or a suite workload."""
    if workload in CONVERSATIONS:
        words, turns = CONVERSATIONS[workload]
        return (build(llm, turns=turns), inputs(workload, rows), False,
                f"{rows} rows x 2 agents x {turns} turns" + (f", ~{words * 4 // 3}-token documents" if words else ""))
    from workloads import WORKLOADS

    wl, params = WORKLOADS[workload], SUITE_PARAMS[workload]
    return (wl.build(llm, **params), wl.make_inputs(suite_rows, seed=0, **params), bool(wl.IS_ASYNC),
            f"{suite_rows} rows x {wl.num_llm_calls(**params)} calls (examples/workloads/{workload}.py)")


#: one event loop for every async run (langchain-openai keeps its async HTTP client per process)
_LOOP = asyncio.new_event_loop()


def run_system(system: str, app: Any, pool: Any, url: str, xs: list[dict[str, Any]],
               is_async: bool = False) -> dict[str, Any]:
    from helium_lc import accelerate
    from helium_lc.schedule import lower_bound_tokens

    def run(target: Any) -> list[Any]:
        if is_async:  # async nodes: run the way their users do, on one event loop for the whole run
            return _LOOP.run_until_complete(target.abatch(xs, return_exceptions=True))
        return target.batch(xs, return_exceptions=True)

    pool.reset_prefix_cache()
    pool.reset_stats()
    t0 = time.perf_counter()
    if system == "plain_one_server":
        out = run(app)
        # plain traffic does not pass through the pool: read the servers' own counters
        computed = bound = None
    else:
        prompts: list[tuple[int, ...]] = []
        real_agenerate = pool.agenerate

        async def recording(request: Any, *a: Any, **kw: Any) -> Any:
            prompts.append(request.prompt_token_ids)
            return await real_agenerate(request, *a, **kw)

        pool.agenerate = recording  # instance attribute: records what the scheduler sends
        try:
            out = run(accelerate(app, route={url: pool}, policy=POLICY[system], dedup=False, prompt_cache=False,
                                 progress=False))
        finally:
            del pool.agenerate
        computed = pool.stats()["num_computed_prompt_tokens"]
        bound = lower_bound_tokens(prompts, pool.block_size)
    wall = time.perf_counter() - t0
    errors = [repr(o)[:300] for o in out if isinstance(o, BaseException)]
    failed = len(errors)
    per_server = [w.stats().num_requests for w in pool.workers]
    return {"wall_s": wall, "failed": failed, "errors": errors[:2], "computed_prompt_tokens": computed,
            "bound_tokens": bound, "per_server": per_server}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--servers", default=None, help="URLs of running servers (dev mode); default: start two")
    ap.add_argument("--workloads", default="conversations,long_conversations,short,debate,parallel,mapred,trading")
    ap.add_argument("--suite-rows", type=int, default=4, help="rows of the examples/workloads workloads")
    ap.add_argument("--suite-repeats", type=int, default=2, help="repeats of the examples/workloads workloads")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "remote_servers.json"))
    args = ap.parse_args()

    from langchain_openai import ChatOpenAI

    from helium_lc.engine.local_servers import LocalServers
    from helium_lc.engine.pool import WorkerPool

    servers = None
    if args.servers:
        urls = [u.strip() for u in args.servers.split(",")]
    else:
        servers = LocalServers(2, kv_cache_gib=0.25, max_model_len=4096).start()
        urls = servers.urls
    try:
        pool = WorkerPool(servers=urls)
        served = pool.workers[0].served_model  # type: ignore[attr-defined]
        url = urls[0] + "/v1"
        llm = ChatOpenAI(base_url=url, api_key="x", model=served, temperature=0, max_tokens=8, max_retries=0)
        suite_llm = ChatOpenAI(base_url=url, api_key="x", model=served, temperature=0, max_tokens=16, max_retries=0)
        results: dict[str, Any] = {"rows": args.rows, "suite_rows": args.suite_rows, "repeats": args.repeats,
                                   "servers": len(urls), "workloads": {}}
        for workload in args.workloads.split(","):
            app, xs, is_async, shape = workload_app(workload, llm if workload in CONVERSATIONS else suite_llm,
                                                    args.rows, args.suite_rows)
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS}
            run_system("helium", app, pool, url, xs, is_async)  # warm-up (imports, connections), not reported
            for rep in range(args.repeats if workload in CONVERSATIONS else args.suite_repeats):
                order = SYSTEMS if rep % 2 == 0 else tuple(reversed(SYSTEMS))
                for system in order:
                    runs[system].append(run_system(system, app, pool, url, xs, is_async))
            summary = {}
            for system, rs in runs.items():
                walls = [r["wall_s"] for r in rs]
                comp = [r["computed_prompt_tokens"] for r in rs if r["computed_prompt_tokens"] is not None]
                bounds = [r["bound_tokens"] for r in rs if r["bound_tokens"] is not None]
                summary[system] = {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
                                   "computed_prompt_tokens": statistics.median(comp) if comp else None,
                                   "bound_tokens": statistics.median(bounds) if bounds else None,
                                   "failed": sum(r["failed"] for r in rs), "per_server": rs[-1]["per_server"]}
            base = summary["helium"]["median_s"]
            for system in summary:
                summary[system]["ratio_vs_helium"] = summary[system]["median_s"] / base
            results["workloads"][workload] = {"shape": shape, "systems": summary, "runs": runs}
            print(f"\n== {workload}: {shape}, {len(urls)} servers, median of {len(runs['helium'])} (min-max)",
                  flush=True)
            print(f"{'system':<18} {'makespan s':>18} {'computed prompt tok':>20} {'x bound':>8} {'x helium':>9}  per server")
            for system, s in summary.items():
                comp = "-" if s["computed_prompt_tokens"] is None else f"{s['computed_prompt_tokens']:.0f}"
                xb = "-" if not s["bound_tokens"] else f"{s['computed_prompt_tokens'] / s['bound_tokens']:.2f}"
                print(f"{system:<18} {s['median_s']:6.2f} ({s['min_s']:.2f}-{s['max_s']:.2f}) {comp:>20} {xb:>8} "
                      f"{s['ratio_vs_helium']:9.2f}  {s['per_server']}" + (f"  FAILED {s['failed']}" if s["failed"] else ""))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
        print(f"\nwritten: {args.out}")
        pool.shutdown()
    finally:
        if servers is not None:
            servers.stop()


if __name__ == "__main__":
    main()
