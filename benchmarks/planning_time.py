"""Online planning time per 1,000 calls, through the real runtime, on simulated workers.

Each workload of ``examples/workloads`` runs through ``accelerate(app)`` with a
``HeliumChatModel`` on a pool of ``SimWorker`` s (no model weights; virtual time), so the
scheduler plans exactly as it does on engines: the gather window, the row gate, the snapshot
and the policy. Reported: the run's ``planning_s`` (what ``last_run_stats().planning_s`` counts:
the scheduler thread's CPU time less garbage-collection pauses, ``runtime/planning_clock.py``)
per 1,000 calls sent, median of ``--repeats`` runs, each on a fresh pool. Issue 13's target is
<= 50 ms per 1,000 calls. Also reported, because it is work the scheduler needs but does not do
on its own thread: the CPU time the callers' threads spend hashing prompts for the row book and
the row gate (``PromptBlocks.of`` at submission, timed here by wrapping it), per 1,000 calls.

Run (from the repository root, ~1 min):
    .venv/bin/python benchmarks/planning_time.py [--workers 1,2] [--rows 8] [--repeats 3]
                                                 [--workloads debate,mapred,parallel,trading,prefix_sweep]
                                                 [--kv-capacity-tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))


class _HashTimer:
    """Wraps ``PromptBlocks.of`` (called on the callers' threads) and sums its CPU time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total_s = 0.0

    def __enter__(self) -> "_HashTimer":
        from helium_lc.runtime.sched_model import PromptBlocks
        self.original = PromptBlocks.__dict__["of"]
        of = self.original.__func__

        def timed(cls: type, prompt: Any, block_size: int) -> Any:
            t0 = time.thread_time()
            try:
                return of(cls, prompt, block_size)
            finally:
                with self.lock:
                    self.total_s += time.thread_time() - t0
        PromptBlocks.of = classmethod(timed)  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        from helium_lc.runtime.sched_model import PromptBlocks
        PromptBlocks.of = self.original  # type: ignore[method-assign]


def planning_ms_per_1k(workload: str, num_workers: int, rows: int, kv_capacity_tokens: int) -> tuple[float, float]:
    """(planning, caller-thread hashing) in ms per 1,000 calls sent, for one run."""
    from helium_lc import HeliumChatModel, HeliumConfig, WorkerPool, accelerate
    from helium_lc.engine.sim import SimWorker
    from workloads import WORKLOADS

    wl = WORKLOADS[workload]
    pool = WorkerPool(workers=[SimWorker(i, block_size=16, kv_capacity_tokens=kv_capacity_tokens)
                               for i in range(num_workers)])
    try:
        fast = accelerate(wl.build(HeliumChatModel(pool=pool, max_tokens=16)),
                          config=HeliumConfig(progress=False, prompt_cache=False))
        xs = wl.make_inputs(rows, seed=0)
        with _HashTimer() as hashing:
            if wl.IS_ASYNC:
                asyncio.run(fast.abatch(xs))
            else:
                fast.batch(xs)
        stats = fast.last_run_stats()
        n = max(1, stats.num_llm_calls_sent)
        return 1e6 * stats.planning_s / n, 1e6 * hashing.total_s / n
    finally:
        pool.shutdown()


def main(argv: list[str] | None = None) -> dict[str, dict[int, tuple[float, float]]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="debate,mapred,parallel,trading,prefix_sweep")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kv-capacity-tokens", type=int, default=65536)
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]
    print(f"{'workload':<14}" + "".join(f"{f'{n} worker(s)':>16}" for n in counts)
          + "   (ms per 1,000 calls: planning on the scheduler's thread + hashing on the callers')")
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for workload in args.workloads.split(","):
        out[workload] = {}
        for n in counts:
            planning_ms_per_1k(workload, n, 2, args.kv_capacity_tokens)  # warm-up: imports, first plans
            runs = [planning_ms_per_1k(workload, n, args.rows, args.kv_capacity_tokens) for _ in range(args.repeats)]
            out[workload][n] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        print(f"{workload:<14}" + "".join(f"{f'{out[workload][n][0]:.0f} + {out[workload][n][1]:.0f}':>16}"
                                          for n in counts), flush=True)
    return out


if __name__ == "__main__":
    main()
