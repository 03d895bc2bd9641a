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
- ``short``: the same agents with a short per-row question behind a shared system prompt
  (placement should not matter much here: the check is that helium never loses).

Prefix caches are reset before every run; systems alternate within each repeat; the report is
the median makespan, its min-max, the computed (not cached) prompt tokens and the ratio of each
baseline's makespan to helium's (> 1: helium faster).

Run (starts its own servers; ~5 min on 2 cores):
    .venv/bin/python benchmarks/remote_servers.py [--rows 8] [--repeats 3] [--servers URL,URL]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

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


def inputs(workload: str, rows: int) -> list[dict[str, Any]]:
    if workload == "conversations":
        return [{"doc": document(r, 900), "answers": []} for r in range(rows)]
    return [{"doc": f"Question {r}: which {WORDS[r % len(WORDS)]} matters most?", "answers": []}
            for r in range(rows)]


def run_system(system: str, app: Any, pool: Any, url: str, xs: list[dict[str, Any]]) -> dict[str, Any]:
    from helium_lc import accelerate

    pool.reset_prefix_cache()
    pool.reset_stats()
    t0 = time.perf_counter()
    if system == "plain_one_server":
        out = app.batch(xs, return_exceptions=True)
        # plain traffic does not pass through the pool: read the servers' own counters
        computed = None
    else:
        fast = accelerate(app, route={url: pool}, policy=POLICY[system], dedup=False, prompt_cache=False,
                          progress=False)
        out = fast.batch(xs, return_exceptions=True)
        computed = pool.stats()["num_computed_prompt_tokens"]
    wall = time.perf_counter() - t0
    failed = sum(isinstance(o, BaseException) for o in out)
    per_server = [w.stats().num_requests for w in pool.workers]
    return {"wall_s": wall, "failed": failed, "computed_prompt_tokens": computed, "per_server": per_server}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--servers", default=None, help="URLs of running servers (dev mode); default: start two")
    ap.add_argument("--workloads", default="conversations,short")
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
        app = build(llm)
        results: dict[str, Any] = {"rows": args.rows, "repeats": args.repeats, "servers": len(urls), "workloads": {}}
        for workload in args.workloads.split(","):
            xs = inputs(workload, args.rows)
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS}
            run_system("helium", app, pool, url, xs)  # warm-up (imports, connections), not reported
            for rep in range(args.repeats):
                order = SYSTEMS if rep % 2 == 0 else tuple(reversed(SYSTEMS))
                for system in order:
                    runs[system].append(run_system(system, app, pool, url, xs))
            summary = {}
            for system, rs in runs.items():
                walls = [r["wall_s"] for r in rs]
                comp = [r["computed_prompt_tokens"] for r in rs if r["computed_prompt_tokens"] is not None]
                summary[system] = {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
                                   "computed_prompt_tokens": statistics.median(comp) if comp else None,
                                   "failed": sum(r["failed"] for r in rs), "per_server": rs[-1]["per_server"]}
            base = summary["helium"]["median_s"]
            for system in summary:
                summary[system]["ratio_vs_helium"] = summary[system]["median_s"] / base
            results["workloads"][workload] = {"systems": summary, "runs": runs}
            print(f"\n== {workload}: {args.rows} rows x 2 agents x 3 turns, {len(urls)} servers, "
                  f"median of {args.repeats} (min-max)")
            print(f"{'system':<18} {'makespan s':>18} {'computed prompt tok':>20} {'x helium':>9}  per server")
            for system, s in summary.items():
                comp = "-" if s["computed_prompt_tokens"] is None else f"{s['computed_prompt_tokens']:.0f}"
                print(f"{system:<18} {s['median_s']:6.2f} ({s['min_s']:.2f}-{s['max_s']:.2f}) {comp:>20} "
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
