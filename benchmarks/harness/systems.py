"""The systems compared, and how one system runs one batch and is measured.

Every system runs the same compiled graph on the same ``WorkerPool`` and model:

- ``sequential``: ``ainvoke`` one input after another (the paper's QueryWise baseline);
- ``langgraph``: plain ``app.abatch`` (the baseline of every speedup), least-outstanding routing,
  vLLM prefix caching on;
- ``lspf`` / ``prefix_affinity``: ``accelerate`` with only a serving-layer scheduling policy
  (no prompt cache, dedup, rewrites or warming): schedulers without workflow knowledge;
- ``helium``: ``accelerate`` with everything on;
- ablations: ``helium-no-prune``, ``helium-no-cache`` (no prompt cache), ``helium-no-cas``
  (FIFO instead of cache-aware scheduling), ``helium-no-warm``.

``measure_batch`` runs one batch under a ``CallRecorder`` and returns a :class:`BatchMeasure`
(makespan, per-input latency, outputs, engine requests, pool counters, ``RunStats``);
``BatchMeasure.metrics(block_size)`` flattens it into the numbers the report shows.

Example:
    >>> SYSTEMS["helium-no-cas"].config.policy, SYSTEMS["lspf"].config.prompt_cache
    ('fifo', False)
    >>> [s.name for s in select_systems(["helium", "langgraph"])]
    ['langgraph', 'helium']
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from helium_lc.config import HeliumConfig
from helium_lc.schedule.lower_bound import lower_bound_tokens

from .metrics import percentile
from .recorder import ROW_METADATA_KEY, CallRecord, CallRecorder, RowTimer

__all__ = ["SystemSpec", "SYSTEMS", "BASELINE", "select_systems", "BatchMeasure", "measure_batch",
           "planning_s_of", "pool_counters"]

BASELINE = "langgraph"


@dataclass(frozen=True)
class SystemSpec:
    """One compared system: how it runs (``mode``) and, when accelerated, with which options."""

    name: str
    mode: str
    description: str
    config: HeliumConfig | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("sequential", "plain", "accelerated"):
            raise ValueError(f"system {self.name!r}: mode must be sequential, plain or accelerated, "
                             f"got {self.mode!r}.")
        if (self.mode == "accelerated") != (self.config is not None):
            raise ValueError(f"system {self.name!r}: an accelerated system needs a HeliumConfig, "
                             "and only an accelerated one takes one.")


def _serving_only(policy: str) -> HeliumConfig:
    return HeliumConfig(policy=policy, prompt_cache=False, dedup=False, prune=False,
                        warm=False, progress=False)


SYSTEMS: dict[str, SystemSpec] = {s.name: s for s in (
    SystemSpec("sequential", "sequential", "ainvoke one input after another"),
    SystemSpec("langgraph", "plain", "plain app.abatch, least-outstanding routing, vLLM prefix caching"),
    SystemSpec("lspf", "accelerated", "serving-layer longest-shared-prefix-first only", _serving_only("lspf")),
    SystemSpec("prefix_affinity", "accelerated", "serving-layer prefix-affinity dispatch only",
               _serving_only("prefix_affinity")),
    SystemSpec("helium", "accelerated", "accelerate(), everything on", HeliumConfig(progress=False)),
    SystemSpec("helium-no-prune", "accelerated", "helium without pruning",
               HeliumConfig(prune=False, progress=False)),
    SystemSpec("helium-no-cache", "accelerated", "helium without the prompt cache",
               HeliumConfig(prompt_cache=False, progress=False)),
    SystemSpec("helium-no-cas", "accelerated", "helium with FIFO instead of cache-aware scheduling",
               HeliumConfig(policy="fifo", progress=False)),
    SystemSpec("helium-no-warm", "accelerated", "helium without KV warming",
               HeliumConfig(warm=False, progress=False)),
)}


def select_systems(names: Sequence[str] | None) -> list[SystemSpec]:
    """The named systems in the canonical order, the ``langgraph`` baseline always included."""
    wanted = set(names) if names else set(SYSTEMS)
    unknown = sorted(wanted - set(SYSTEMS))
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; choose from: {', '.join(SYSTEMS)}.")
    wanted.add(BASELINE)
    return [s for n, s in SYSTEMS.items() if n in wanted]


def planning_s_of(run_stats: Any) -> float | None:
    """Planning time from a ``RunStats`` when the runtime reports one (field names vary)."""
    for name in ("planning_s", "plan_s", "schedule_planning_s", "scheduler_planning_s"):
        v = getattr(run_stats, name, None)
        if isinstance(v, (int, float)):
            return float(v)
    return None


@dataclass
class BatchMeasure:
    """Everything measured in one batch of one system."""

    system: str
    makespan_s: float
    latencies_s: list[float]
    outputs: list[Any]
    records: list[CallRecord]
    pool_stats: dict[str, Any]
    run_stats: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self, block_size: int) -> dict[str, Any]:
        """The flat numbers of this batch (see the README for each name)."""
        ps = self.pool_stats
        prompts = [r.prompt_token_ids for r in self.records]
        lb = lower_bound_tokens(prompts, block_size) if prompts else 0
        computed = int(ps.get("num_computed_prompt_tokens", 0))
        prompt_tokens = int(ps.get("num_prompt_tokens", 0))
        cached = int(ps.get("num_cached_prompt_tokens", 0))
        out: dict[str, Any] = {
            "makespan_s": self.makespan_s,
            "p50_latency_s": percentile(self.latencies_s, 50) if self.latencies_s else None,
            "p95_latency_s": percentile(self.latencies_s, 95) if self.latencies_s else None,
            "num_llm_calls_sent": int(ps.get("num_requests", 0)) - int(ps.get("num_warm_requests", 0)),
            "num_warm_requests": int(ps.get("num_warm_requests", 0)),
            "num_prompt_tokens": prompt_tokens,
            "num_cached_prompt_tokens": cached,
            "cache_hit_rate": cached / prompt_tokens if prompt_tokens else 0.0,
            "num_computed_prompt_tokens": computed,
            "lower_bound_tokens": lb,
            "computed_over_lower_bound": computed / lb if lb else None,
            "planning_s": planning_s_of(self.run_stats),
        }
        if self.run_stats is not None:
            out["num_llm_calls_requested"] = self.run_stats.num_llm_calls_requested
            out["num_cache_hits"] = self.run_stats.num_cache_hits
            out["num_cache_misses"] = self.run_stats.num_cache_misses
            requested = self.run_stats.num_llm_calls_requested
            out["calls_reused_fraction"] = self.run_stats.num_cache_hits / requested if requested else 0.0
            out["num_dedup_hits"] = self.run_stats.num_dedup_hits
        out.update(self.extra)
        return out


def _row_configs(n: int, ends: dict[int, float]) -> list[dict[str, Any]]:
    return [{"metadata": {ROW_METADATA_KEY: i}, "callbacks": [RowTimer(i, ends)]} for i in range(n)]


def _run_rows_sync(target: Any, inputs: Sequence[Any], sequential: bool) -> tuple[list[Any], list[float], float]:
    """:func:`_run_rows` the way a user of a sync-node app runs it: ``invoke``/``batch``."""
    ends: dict[int, float] = {}
    configs = _row_configs(len(inputs), ends)
    t0 = time.perf_counter()
    if sequential:
        outs, lat = [], []
        for i, x in enumerate(inputs):
            start = time.perf_counter()
            outs.append(target.invoke(x, configs[i]))
            lat.append(time.perf_counter() - start)
        return outs, lat, time.perf_counter() - t0
    outs = target.batch(list(inputs), configs)
    makespan = time.perf_counter() - t0
    return list(outs), [ends.get(i, t0 + makespan) - t0 for i in range(len(inputs))], makespan


async def _run_rows(target: Any, inputs: Sequence[Any], sequential: bool) -> tuple[list[Any], list[float], float]:
    """Run ``inputs`` through ``target``; returns (outputs, per-input latency, makespan)."""
    ends: dict[int, float] = {}
    configs = _row_configs(len(inputs), ends)
    t0 = time.perf_counter()
    if sequential:
        outs, lat = [], []
        for i, x in enumerate(inputs):
            start = time.perf_counter()
            outs.append(await target.ainvoke(x, configs[i]))
            lat.append(time.perf_counter() - start)
        return outs, lat, time.perf_counter() - t0
    outs = await target.abatch(list(inputs), configs)
    makespan = time.perf_counter() - t0
    lat = [ends.get(i, t0 + makespan) - t0 for i in range(len(inputs))]
    return list(outs), lat, makespan


def measure_batch(system: SystemSpec, target: Any, inputs: Sequence[Any], pool: Any, *,
                  sync_nodes: bool = False) -> BatchMeasure:
    """Run one batch of ``system`` (``target``: the plain app or its accelerated graph) and measure it.

    An app with sync nodes (``sync_nodes``) runs as its users run it, with ``batch`` /
    ``invoke``; an async one with ``abatch`` / ``ainvoke``. Resets nothing: the caller
    decides what starts cold. Pool counters are differenced around the batch so they
    cover exactly it.
    """
    before = pool_counters(pool)
    sequential = system.mode == "sequential"
    with CallRecorder(pool) as rec:
        if sync_nodes:
            outs, lat, makespan = _run_rows_sync(target, inputs, sequential)
        else:
            outs, lat, makespan = asyncio.run(_run_rows(target, inputs, sequential))
    run_stats = target.last_run_stats() if system.mode == "accelerated" else None
    after = pool_counters(pool)
    delta = {k: after[k] - before.get(k, 0) for k in after}
    return BatchMeasure(system.name, makespan, lat, outs, list(rec.records), delta, run_stats)


def pool_counters(pool: Any) -> dict[str, int]:
    """The pool's summed integer counters now (differences of two calls cover a batch; not every
    worker can reset its counters)."""
    return {k: v for k, v in pool.stats().items()
            if isinstance(v, int) and not isinstance(v, bool) and k.startswith("num_")
            and k not in ("num_running", "num_workers_alive")}
