"""Sync-node map-reduce, written the plain way: plain ``app.batch`` vs ``accelerate(app).batch``.

Most LangGraph apps use ``def`` nodes that call ``llm.invoke``. This benchmark builds one in
the shape of the sync-concurrency issue: a long shared system prompt, a ``Send`` fan-out of
8 experts per input (2 of them duplicates of others, so dedup has work), a judge; 8 inputs;
``HeliumChatModel(max_tokens=24)`` on the default pool. The same graph with ``async def``
nodes runs too (plain ``abatch`` vs accelerated ``abatch``), to show the async path did not
get slower. Systems alternate within each repeat; the report gives the median makespan,
its min-max, the peak calls in flight at the engines, and ratios against the plain run of
the same variant.

Run:
    .venv/bin/python benchmarks/sync_nodes.py [--inputs 8] [--repeats 3] [--max-tokens 24]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import statistics
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Callable, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

SYSTEM = (
    "You are one member of a panel of analysts who review questions for an engineering team. "
    "Every analyst receives the same question and writes a short, independent answer from their "
    "own point of view; a judge later reads all answers and picks the best one. Rules for every "
    "analyst: answer in at most two sentences; be concrete and name the tools, numbers or facts "
    "involved; do not repeat the question; do not mention the other analysts; if the question is "
    "ambiguous, state the reading you chose; prefer practical advice over theory; write plain "
    "English without lists or headings. ") * 3
#: 8 experts per input; the last two repeat the first two (the same prompt, so the same call).
ROLES = ("engineer", "professor", "writer", "reviewer", "operator", "designer", "engineer", "professor")
QUESTIONS = [f"How should a team of {n} engineers roll out a risky database migration?" for n in range(3, 40)]


class PanelState(TypedDict, total=False):
    question: str
    answers: Annotated[list, operator.add]
    verdict: str


def build(llm: Any, *, sync_nodes: bool) -> Any:
    """The panel graph over ``llm``, with ``def`` nodes (``sync_nodes``) or ``async def`` ones."""

    def fan_out(state: PanelState) -> list[Send]:
        return [Send("expert", {"question": state["question"], "role": r, "i": i}) for i, r in enumerate(ROLES)]

    def expert_messages(task: dict) -> list[tuple[str, str]]:
        return [("system", SYSTEM), ("human", f"As the panel's {task['role']}: {task['question']}")]

    def judge_messages(state: PanelState) -> list[tuple[str, str]]:
        listing = "\n".join(f"[{i}] {a}" for i, a in sorted(state["answers"]))
        return [("system", "You are the judge of an analyst panel."),
                ("human", f"Question: {state['question']}\nAnswers:\n{listing}\nBest answer number:")]

    def expert(task: dict) -> dict:
        return {"answers": [(task["i"], llm.invoke(expert_messages(task)).content)]}

    def judge(state: PanelState) -> dict:
        return {"verdict": llm.invoke(judge_messages(state)).content}

    async def aexpert(task: dict) -> dict:
        return {"answers": [(task["i"], (await llm.ainvoke(expert_messages(task))).content)]}

    async def ajudge(state: PanelState) -> dict:
        return {"verdict": (await llm.ainvoke(judge_messages(state))).content}

    g = StateGraph(PanelState)
    g.add_node("expert", expert if sync_nodes else aexpert)
    g.add_node("judge", judge if sync_nodes else ajudge)
    g.add_conditional_edges(START, fan_out, ["expert"])
    g.add_edge("expert", "judge")
    g.add_edge("judge", END)
    return g.compile()


class PeakInFlight:
    """Samples the pool's running requests every 5 ms while attached."""

    def __init__(self, pool: Any) -> None:
        self.pool, self.peak, self._stop = pool, 0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(w["num_running"] for w in self.pool.stats()["workers"]))
            time.sleep(0.005)

    def __enter__(self) -> "PeakInFlight":
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--out", default="benchmarks/results/sync_nodes.json")
    args = ap.parse_args()

    from helium_lc import HeliumChatModel, accelerate
    from helium_lc.engine.default_pool import get_default_pool

    pool = get_default_pool().start()
    llm = HeliumChatModel(pool=pool, max_tokens=args.max_tokens)
    inputs = [{"question": q} for q in QUESTIONS[:args.inputs]]
    apps = {v: build(llm, sync_nodes=v == "sync") for v in ("sync", "async")}
    runs: dict[str, Callable[[], Any]] = {}
    for variant, app in apps.items():
        fast = accelerate(app, progress=False)
        fifo = accelerate(app, policy="fifo", dedup=False, prompt_cache=False, progress=False)
        if variant == "sync":
            runs["sync/plain app.batch"] = lambda app=app: app.batch(inputs)
            runs["sync/accelerate fifo, no dedup"] = lambda fifo=fifo: (fifo.clear_cache(), fifo.batch(inputs))
            runs["sync/accelerate"] = lambda fast=fast: (fast.clear_cache(), fast.batch(inputs))
        else:
            runs["async/plain app.abatch"] = lambda app=app: asyncio.run(app.abatch(inputs))
            runs["async/accelerate"] = lambda fast=fast: (fast.clear_cache(), asyncio.run(fast.abatch(inputs)))
    runs["sync/plain app.batch"]()  # warm-up: engine compile paths, tokenizer
    times: dict[str, list[float]] = {n: [] for n in runs}
    peaks: dict[str, int] = {n: 0 for n in runs}
    names = list(runs)
    for rep in range(args.repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]  # rotate: no fixed position
        for name in order:
            pool.reset_prefix_cache()
            with PeakInFlight(pool) as peak:
                t0 = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - t0)
            peaks[name] = max(peaks[name], peak.peak)
            print(f"  rep {rep} {name}: {times[name][-1]:.2f} s, peak {peak.peak} in flight", flush=True)
    report: dict[str, Any] = {"inputs": args.inputs, "repeats": args.repeats, "max_tokens": args.max_tokens,
                              "experts_per_input": len(ROLES), "systems": {}}
    print(f"\n{'system':34} {'median s':>9} {'min-max s':>12} {'peak':>5} {'vs plain':>9}")
    for name in names:
        base = "sync/plain app.batch" if name.startswith("sync") else "async/plain app.abatch"
        med, base_med = statistics.median(times[name]), statistics.median(times[base])
        # Noise: the ratio's range over repeats, each repeat's pair measured back to back.
        ratios = [b / t for b, t in zip(times[base], times[name])]
        report["systems"][name] = {"median_s": med, "times_s": times[name], "peak_in_flight": peaks[name],
                                   "speedup_vs_plain": base_med / med,
                                   "speedup_range": [min(ratios), max(ratios)]}
        print(f"{name:34} {med:9.2f} {min(times[name]):5.2f}-{max(times[name]):<6.2f} {peaks[name]:5d} "
              f"{base_med / med:8.2f}x (per repeat {min(ratios):.2f}-{max(ratios):.2f}x)")
    print(f"\nsync accelerated vs async plain: "
          f"{statistics.median(times['async/plain app.abatch']) / statistics.median(times['sync/accelerate']):.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
