"""Simulated scaling from 1 to 64 workers on a synthetic MapRed or Debate batch.

Usage:  .venv/bin/python benchmarks/sim_scaling.py [--workload mapred|debate] [--num-calls 100000]
                                                   [--workers 1,2,4,8,16,32,64] [--kv-capacity-tokens N]
                                                   [--policies fifo,round_robin,cache_aware,helium]

For each worker count and policy (default: helium and fifo with least-queue placement; the
routers round_robin and cache_aware with ``--policies``) it prints the
virtual makespan, the prompt tokens computed against the lower bound, the planning time
per 1,000 calls (wall clock), and helium's speed-up over fifo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helium_lc.engine.sim import simulate  # noqa: E402
from helium_lc.schedule.workloads import debate, mapred  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=("mapred", "debate"), default="mapred")
    ap.add_argument("--num-calls", type=int, default=100_000)
    ap.add_argument("--workers", default="1,2,4,8,16,32,64")
    ap.add_argument("--kv-capacity-tokens", type=int, default=None)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--policies", default="fifo,helium",
                    help="comma-separated, fifo first (the baseline); e.g. fifo,round_robin,cache_aware,helium")
    args = ap.parse_args(argv)
    if "fifo" not in args.policies.split(","):
        ap.error("--policies must include fifo (the baseline the speed-ups are measured against)")
    calls = (mapred(max(1, args.num_calls // 15)) if args.workload == "mapred"
             else debate(max(1, args.num_calls // 6)))
    print(f"{args.workload}: {len(calls)} calls, KV capacity {args.kv_capacity_tokens or 'unbounded'} tokens/worker")
    print(f"{'workers':>7} {'policy':>11} {'makespan_s':>11} {'computed/LB':>11} {'plan_ms/1k':>10} {'speedup':>8}")
    rows = []
    for w in (int(x) for x in args.workers.split(",")):
        res = {p: simulate(p, calls, w, block_size=args.block_size, kv_capacity_tokens=args.kv_capacity_tokens)
               for p in args.policies.split(",")}
        for p, r in res.items():
            speed = res["fifo"].makespan_s / r.makespan_s
            print(f"{w:>7} {p:>11} {r.makespan_s:11.1f} {r.prefill_over_lower_bound:11.3f} "
                  f"{1000 * r.planning_s / len(calls) * 1000:10.1f} {speed:8.2f}x")
            rows.append({"workers": w, "policy": p, "makespan_s": r.makespan_s,
                         "computed_over_lb": r.prefill_over_lower_bound, "speedup": speed})
    return rows


if __name__ == "__main__":
    main()
