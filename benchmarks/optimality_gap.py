"""Optimality gap of each policy against the exact MILP on small random instances.

Usage:  .venv/bin/python benchmarks/optimality_gap.py [--num-instances 8] [--num-calls 6] [--first-seed 0]

The model (sequential workers, a KV cache that keeps the previous prompt, dependencies)
is stated in ``helium_lc/schedule/milp.py``. Prints one row per instance and the mean and
worst gap per policy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helium_lc.schedule.milp import policy_makespan, random_instance, solve_milp  # noqa: E402

POLICIES = ("helium", "fifo", "lspf", "opwise", "prefix_affinity", "random")


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-instances", type=int, default=8)
    ap.add_argument("--num-calls", type=int, default=6)
    ap.add_argument("--first-seed", type=int, default=0, help="instances use seeds first-seed, first-seed+1, ...")
    ap.add_argument("--time-limit-s", type=float, default=60.0)
    args = ap.parse_args(argv)
    gaps: dict[str, list[float]] = {p: [] for p in POLICIES}
    print(f"{'seed':>4} {'W':>2} {'opt_s':>7} {'solve_s':>7}  " + " ".join(f"{p:>15}" for p in POLICIES))
    for seed in range(args.first_seed, args.first_seed + args.num_instances):
        inst = random_instance(seed, num_calls=args.num_calls)
        t0 = time.perf_counter()
        opt = solve_milp(inst, time_limit_s=args.time_limit_s)
        solve_s = time.perf_counter() - t0
        row = []
        for p in POLICIES:
            g = policy_makespan(inst, p) / opt.makespan_s - 1.0
            gaps[p].append(g)
            row.append(f"{100 * g:14.1f}%")
        print(f"{seed:>4} {inst.num_workers:>2} {opt.makespan_s:7.3f} {solve_s:7.2f}  " + " ".join(row))
    summary = {p: (sum(v) / len(v), max(v)) for p, v in gaps.items()}
    print("mean " + " ".join(f"{p}={100 * m:.1f}%" for p, (m, _) in summary.items()))
    print("worst " + " ".join(f"{p}={100 * w:.1f}%" for p, (_, w) in summary.items()))
    return summary


if __name__ == "__main__":
    main()
