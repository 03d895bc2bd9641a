"""Run a whole benchmark: every workload x regime x system, repeated, on shared engines.

Rules the runner keeps (see ``benchmarks/README.md``):
- every system of a cell runs on the same pool and model; before each system the pool's prefix
  cache is reset and the accelerated graph's prompt cache cleared, so each starts cold;
- systems run in the profile's order on even repeats and reversed on odd ones; the cell reports
  per-metric medians over repeats and speedups against ``langgraph`` measured in the same run;
- ``second-batch``: each system runs batch 1 (unmeasured) then batch 2 of *new inputs* (measured)
  without a reset in between (helium keeps its caches; plain LangGraph only has vLLM's prefix cache);
- ``iterate``: each system runs the workload's first version (unmeasured), then the same inputs on
  the version after the workload's ``ITERATE_EDIT`` (measured); helium's prompt cache persists in
  a SQLite file (``cache_path``) between the two ``AcceleratedGraph`` objects;
- ``day-2``: each system runs day 1's inputs (unmeasured), then the next day's inputs for the same
  rows (measured; the workload's ``DAY2_INPUTS``), with the prompt cache persisted as in ``iterate``;
- ``kv-pressure``: the engine's KV cache holds ``kv_pressure_fraction`` of the batch's unique prompt
  tokens (measured in ``ample``), but at least one full sequence (``max_model_len`` is lowered);
- ``many-workers``: the plain run's calls replayed on 4-64 simulated workers (``simulated.py``).

Example (simulated engines, about ten seconds):
    >>> from benchmarks.harness.pools import sim_pool_factory
    >>> from benchmarks.harness.profiles import PROFILES
    >>> p = PROFILES["quick"].with_overrides(regimes=("ample",), num_inputs=2, batch_sizes=(),
    ...                                      prefix_sweep=())                       # doctest: +SKIP
    >>> res = run_benchmark(p, pool_factory=sim_pool_factory(), progress=False)      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from typing import Any, Callable, Sequence

from helium_lc import HeliumChatModel, accelerate

from .fidelity import check_outputs
from .metrics import geomean, summarize, speedup, system_order
from .pools import PoolFactory, PoolSpec, sim_pool_factory
from .profiles import REGIMES, BenchProfile
from .simulated import run_many_workers, trace_workload
from .systems import BASELINE, SYSTEMS, SystemSpec, measure_batch, select_systems

__all__ = ["run_benchmark", "run_cell", "kv_pressure_spec"]

#: Systems measured in the batch-size and prefix sweeps.
SWEEP_SYSTEMS: tuple[str, ...] = (BASELINE, "helium")


def _workload(name: str) -> Any:
    from examples.workloads import WORKLOADS
    return WORKLOADS[name]


def _prompt_match(records: Sequence[Any], plain_prompts: set[tuple[int, ...]]) -> float | None:
    """Fraction of a system's engine prompts that the plain run of the same repeat also sent."""
    if not records:
        return None
    return sum(r.prompt_token_ids in plain_prompts for r in records) / len(records)


def run_cell(workload: str, params: dict[str, Any], systems: Sequence[SystemSpec], pool: Any, *,
             num_inputs: int, max_output_tokens: int, repeats: int, second_batch: bool = False,
             warm_params: dict[str, Any] | None = None, day_inputs: Sequence[dict[str, Any]] | None = None,
             cache_dir: str | None = None, tick: Callable[[str], None] = lambda _: None,
             keep_timelines: bool = True, warm_up: bool = False) -> dict[str, Any]:
    """Measure every system on one workload and pool; returns per-system repeats, medians, speedups.

    ``second_batch``: an unmeasured batch of other inputs first. ``warm_params`` (the ``iterate``
    regime): an unmeasured run of the same inputs on the app built with ``warm_params`` first --
    the version before the user's edit -- then the measured run of the edited app (``params``);
    accelerated systems keep their prompt cache in a file under ``cache_dir`` shared by both runs
    (a new ``AcceleratedGraph`` over the same ``cache_path``, as after a restart). ``day_inputs``
    (the ``day-2`` regime): ``make_inputs`` parameters of an unmeasured day-1 batch and the measured
    day-2 batch of the same rows, with the prompt cache persisted in the same way. ``warm_up``: one
    untimed plain run of the measured batch first (a new engine's first batches are slower: its
    first measured system would pay for it).
    """
    wl = _workload(workload)
    llm = HeliumChatModel(pool=pool, max_tokens=max_output_tokens)
    app = wl.build(llm, **params)
    sync_nodes = bool(params.get("sync_nodes", not wl.IS_ASYNC))  # run it the way its users would
    batches = [wl.make_inputs(num_inputs, seed=0, **params)]
    if second_batch:
        batches.append(wl.make_inputs(num_inputs, seed=1, **params))
    if warm_params is not None:
        batches.append(batches[0])
    if day_inputs is not None:
        batches = [wl.make_inputs(num_inputs, seed=0, **{**params, **d}) for d in day_inputs]
    persistent = warm_params is not None or day_inputs is not None  # a new graph over a cache file
    warm_app = wl.build(llm, **warm_params) if warm_params is not None else app
    targets: dict[str, Any] = {}
    warm_targets: dict[str, Any] = {}
    capture_s: dict[str, float] = {}
    for s in systems:
        t0 = time.perf_counter()
        config = s.config
        if config is not None and persistent:
            if cache_dir is None:
                raise ValueError("run_cell(warm_params=... or day_inputs=...) needs cache_dir= for the "
                                 "persistent prompt cache.")
            config = dataclasses.replace(config, cache_path=os.path.join(cache_dir, f"{workload}-{s.name}.sqlite"))
        targets[s.name] = accelerate(app, config=config) if config is not None else app
        if config is not None:
            capture_s[s.name] = time.perf_counter() - t0
        warm_targets[s.name] = (accelerate(warm_app, config=config) if config is not None else warm_app) \
            if persistent else targets[s.name]
    per_system: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    timelines: dict[str, list[dict[str, Any]]] = {}
    footprint = {"unique_prompt_tokens": 0, "max_sequence_tokens": 0}
    names = [s.name for s in systems]
    if warm_up:
        measure_batch(SYSTEMS[BASELINE], app, batches[-1], pool, sync_nodes=sync_nodes)
    for rep in range(repeats):
        records_of: dict[str, list[Any]] = {}
        for name in system_order(names, rep):
            spec, target = SYSTEMS[name], targets[name]
            tick(f"{workload}/{name}#{rep}")
            pool.reset_prefix_cache()
            if spec.config is not None:
                target.clear_cache()
            for batch in batches[:-1]:  # second-batch / iterate / day-2 warm-up
                measure_batch(spec, warm_targets[name], batch, pool, sync_nodes=sync_nodes)
            m = measure_batch(spec, target, batches[-1], pool, sync_nodes=sync_nodes)
            metrics = m.metrics(pool.block_size)
            if name in capture_s:
                metrics["capture_s"] = capture_s[name]
            per_system[name].append(metrics)
            records_of[name] = m.records
            if keep_timelines and rep == repeats - 1 and name in SWEEP_SYSTEMS:
                timelines[name] = [r.as_timeline_dict() for r in m.records]
            if name == BASELINE and m.records:
                footprint["unique_prompt_tokens"] = max(footprint["unique_prompt_tokens"], metrics["lower_bound_tokens"])
                footprint["max_sequence_tokens"] = max(footprint["max_sequence_tokens"], max(
                    len(r.prompt_token_ids) + r.num_output_tokens for r in m.records))
        plain = {r.prompt_token_ids for r in records_of.get(BASELINE, [])}
        for name, recs in records_of.items():
            if name != BASELINE and SYSTEMS[name].config is not None:
                per_system[name][-1]["prompts_in_plain_fraction"] = _prompt_match(recs, plain)
    medians = {n: summarize(v) for n, v in per_system.items()}
    base = medians[BASELINE]["makespan_s"]
    for n, med in medians.items():
        med["speedup_vs_langgraph"] = speedup(base, med["makespan_s"])
    return {"workload": workload, "params": params, "num_inputs": num_inputs, "repeats": per_system,
            "median": medians, "timelines": timelines, "footprint": footprint}


def kv_pressure_spec(unique_prompt_tokens: int, max_sequence_tokens: int, fraction: float, block_size: int,
                     num_workers: int = 1) -> PoolSpec:
    """The pool for the kv-pressure regime: ``fraction`` of the unique tokens, at least one sequence.

    Example: 10,000 unique tokens at 30% is 3,000 tokens; the longest sequence is 900 tokens, so
    max_model_len is 928 (whole 32-token blocks) and the KV cache 3,008 tokens (whole blocks).
        >>> kv_pressure_spec(10_000, 900, 0.3, 32)
        PoolSpec(num_workers=1, kv_capacity_tokens=3008, max_model_len=928)
    """
    def up(n: float) -> int:
        return int(math.ceil(n / block_size) * block_size)
    max_len = up(max(16, max_sequence_tokens))
    kv = max(up(fraction * unique_prompt_tokens), max_len + block_size)
    return PoolSpec(num_workers=num_workers, kv_capacity_tokens=kv, max_model_len=max_len)


def _geomeans(cells: Sequence[dict[str, Any]]) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for c in cells:
        for n, med in c["median"].items():
            if med.get("speedup_vs_langgraph"):
                by.setdefault(n, []).append(med["speedup_vs_langgraph"])
    return {n: geomean(v) for n, v in by.items()}


def run_benchmark(profile: BenchProfile, *, pool_factory: PoolFactory, systems: Sequence[str] | None = None,
                  trace_pool_factory: PoolFactory | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``profile`` and return the results (what ``report.write_results`` saves)."""
    specs = select_systems(systems if systems is not None else profile.systems)
    sweep_specs = [SYSTEMS[n] for n in SWEEP_SYSTEMS]
    real = [r for r in profile.regimes if r != "many-workers"]
    specs_of = {r: [SYSTEMS[n] for n in profile.systems_for(r, [s.name for s in specs])] for r in REGIMES}
    n_real = sum(len(_regime_workloads(r, profile.workloads)) * len(specs_of[r]) for r in real)
    n_sweep = len(profile.batch_sizes) + len(profile.prefix_sweep)
    total = (n_real + n_sweep * len(sweep_specs)) * profile.repeats \
        + len(profile.workloads) * ("many-workers" in profile.regimes) + len(profile.workloads)
    bar = _progress(total, progress)

    def tick(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    common = dict(num_inputs=profile.num_inputs, max_output_tokens=profile.max_output_tokens,
                  repeats=profile.repeats)
    results: dict[str, Any] = {"profile": profile.name, "systems": [s.name for s in specs],
                               "regimes": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t_start = time.perf_counter()
    footprints: dict[str, dict[str, int]] = {}
    needs_ample_pool = any(r in real for r in ("ample", "second-batch", "iterate", "day-2", "kv-pressure")) or n_sweep
    pool = pool_factory(PoolSpec(num_workers=profile.num_workers)) if needs_ample_pool else None
    try:
        if pool is not None:
            results["block_size"] = pool.block_size
            results["model"] = str(getattr(pool, "model_path", "") or "")
            _warm_engine(profile, pool)
        for regime in ("ample", "second-batch"):
            if regime not in real:
                continue
            cells = []
            for w in profile.workloads:
                cell = run_cell(w, profile.params_for(w), specs_of[regime], pool, second_batch=regime == "second-batch",
                                tick=tick, **common)
                cells.append(cell)
                if regime == "ample":
                    footprints[w] = cell["footprint"]
            results["regimes"][regime] = {"cells": cells, "geomean_speedup": _geomeans(cells)}
        # regimes whose workloads must declare something (an edit, a next day): skipped when none does
        if "iterate" in real and iterate_workloads(profile.workloads):
            results["regimes"]["iterate"] = _iterate(profile, specs_of["iterate"], pool, tick, common)
        if "day-2" in real and day2_workloads(profile.workloads):
            results["regimes"]["day-2"] = _day2(profile, specs_of["day-2"], pool, tick, common)
        if "kv-pressure" in real:
            for w in profile.workloads:
                if w not in footprints:  # measure the batch's footprint once on the ample pool
                    footprints[w] = run_cell(w, profile.params_for(w), [SYSTEMS[BASELINE]], pool,
                                             num_inputs=profile.num_inputs,
                                             max_output_tokens=profile.max_output_tokens, repeats=1)["footprint"]
        if pool is not None:
            results["batch_sweep"] = _sweep_batch_sizes(profile, sweep_specs, pool, tick)
            results["prefix_sweep"] = _sweep_prefix(profile, sweep_specs, pool, tick)
        block_size = pool.block_size if pool is not None else 16
    finally:
        if pool is not None:
            pool.shutdown()
    if "kv-pressure" in real:
        cells = []
        for w in profile.workloads:
            fp = footprints[w]
            spec = kv_pressure_spec(fp["unique_prompt_tokens"], fp["max_sequence_tokens"],
                                    profile.kv_pressure_fraction, block_size, profile.num_workers)
            kv_pool = pool_factory(spec)
            try:
                cell = run_cell(w, profile.params_for(w), specs_of["kv-pressure"], kv_pool, tick=tick, warm_up=True,
                                **common)
            finally:
                kv_pool.shutdown()
            cell["kv_capacity_tokens"] = spec.kv_capacity_tokens
            cell["kv_fraction_of_unique"] = spec.kv_capacity_tokens / max(1, fp["unique_prompt_tokens"])
            cells.append(cell)
        results["regimes"]["kv-pressure"] = {"cells": cells, "geomean_speedup": _geomeans(cells)}
    if "many-workers" in profile.regimes:
        results["many_workers"] = _many_workers(profile, trace_pool_factory or sim_pool_factory(
            block_size=profile.sim_block_size), tick)
    results["fidelity"] = {}
    for w in profile.workloads:
        tick(f"{w}/fidelity")
        results["fidelity"][w] = {
            "same_batch": check_outputs(_workload(w), profile.params_for(w), profile.num_inputs, specs),
            "second_batch": check_outputs(_workload(w), profile.params_for(w), profile.num_inputs,
                                          [SYSTEMS["helium"]], second_batch=True)}
        if "iterate" in profile.regimes and w in iterate_workloads([w]):
            before, after = _workload(w).ITERATE_EDIT
            base = profile.params_for(w)
            results["fidelity"][w]["iterate"] = check_outputs(
                _workload(w), {**base, **after}, profile.num_inputs, [SYSTEMS["helium"]],
                warm_params={**base, **before})
        if "day-2" in profile.regimes and w in day2_workloads([w]):
            results["fidelity"][w]["day2"] = check_outputs(
                _workload(w), profile.params_for(w), profile.num_inputs, [SYSTEMS["helium"]],
                day_inputs=_workload(w).DAY2_INPUTS)
    bar.close()
    results["wall_s"] = time.perf_counter() - t_start
    return results


def _warm_engine(profile: BenchProfile, pool: Any) -> None:
    """One untimed plain batch of the profile's first workload on a new pool: an engine's first
    batches are slower, and the first measured system would pay for it."""
    w = profile.workloads[0]
    wl, params = _workload(w), profile.params_for(w)
    app = wl.build(HeliumChatModel(pool=pool, max_tokens=profile.max_output_tokens), **params)
    measure_batch(SYSTEMS[BASELINE], app, wl.make_inputs(profile.num_inputs, seed=0, **params), pool,
                  sync_nodes=bool(params.get("sync_nodes", not wl.IS_ASYNC)))


def iterate_workloads(workloads: Sequence[str]) -> list[str]:
    """The workloads that define an edit for the ``iterate`` regime (``ITERATE_EDIT``)."""
    return [w for w in workloads if getattr(_workload(w), "ITERATE_EDIT", None) is not None]


def day2_workloads(workloads: Sequence[str]) -> list[str]:
    """The workloads that define a next day's inputs for the ``day-2`` regime (``DAY2_INPUTS``)."""
    return [w for w in workloads if getattr(_workload(w), "DAY2_INPUTS", None) is not None]


def _regime_workloads(regime: str, workloads: Sequence[str]) -> list[str]:
    return {"iterate": iterate_workloads, "day-2": day2_workloads}.get(regime, list)(workloads)


def _iterate(profile: BenchProfile, specs: list[SystemSpec], pool: Any, tick: Callable[[str], None],
             common: dict[str, Any]) -> dict[str, Any]:
    """The ``iterate`` regime: run, edit one node's prompt or a config field, run the same inputs again."""
    cells = []
    with tempfile.TemporaryDirectory(prefix="helium-iterate-") as cache_dir:
        for w in iterate_workloads(profile.workloads):
            before, after = _workload(w).ITERATE_EDIT
            base = profile.params_for(w)
            cell = run_cell(w, {**base, **after}, specs, pool, warm_params={**base, **before},
                            cache_dir=cache_dir, tick=tick, **common)
            cell["edit"] = {"before": before, "after": after}
            cells.append(cell)
    return {"cells": cells, "geomean_speedup": _geomeans(cells)}


def _day2(profile: BenchProfile, specs: list[SystemSpec], pool: Any, tick: Callable[[str], None],
          common: dict[str, Any]) -> dict[str, Any]:
    """The ``day-2`` regime: the same rows on the next day (static data unchanged), cache persisted."""
    cells = []
    with tempfile.TemporaryDirectory(prefix="helium-day2-") as cache_dir:
        for w in day2_workloads(profile.workloads):
            days = _workload(w).DAY2_INPUTS
            cell = run_cell(w, profile.params_for(w), specs, pool, day_inputs=days, cache_dir=cache_dir,
                            tick=tick, **common)
            cell["days"] = list(days)
            cells.append(cell)
    return {"cells": cells, "geomean_speedup": _geomeans(cells)}


def _sweep_batch_sizes(profile: BenchProfile, specs: list[SystemSpec], pool: Any,
                       tick: Callable[[str], None]) -> list[dict[str, Any]]:
    out = []
    w = profile.sweep_workload
    for n in profile.batch_sizes:
        cell = run_cell(w, profile.params_for(w), specs, pool, num_inputs=n, tick=tick, keep_timelines=False,
                        max_output_tokens=profile.max_output_tokens, repeats=profile.repeats)
        out.append({"workload": w, "num_inputs": n, "median": cell["median"]})
    return out


def _sweep_prefix(profile: BenchProfile, specs: list[SystemSpec], pool: Any,
                  tick: Callable[[str], None]) -> list[dict[str, Any]]:
    out = []
    for point in profile.prefix_sweep:
        params = {**profile.params_for("prefix_sweep"), **point}
        out_tokens = min(profile.max_output_tokens, int(params.get("output_tokens", profile.max_output_tokens)))
        cell = run_cell("prefix_sweep", params, specs, pool, num_inputs=profile.num_inputs, tick=tick,
                        keep_timelines=False, max_output_tokens=out_tokens, repeats=profile.repeats)
        out.append({"params": params, "median": cell["median"]})
    return out


def _many_workers(profile: BenchProfile, trace_pool_factory: PoolFactory,
                  tick: Callable[[str], None]) -> dict[str, Any]:
    trace_pool = trace_pool_factory(PoolSpec(num_workers=1))
    out: dict[str, Any] = {}
    try:
        for w in profile.workloads:
            tick(f"{w}/many-workers")
            calls = trace_workload(_workload(w), profile.params_for(w), profile.sim_num_inputs,
                                   profile.max_output_tokens, trace_pool)
            out[w] = run_many_workers(calls, profile.sim_worker_counts, block_size=trace_pool.block_size)
    finally:
        trace_pool.shutdown()
    return out


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not enabled, desc="bench", unit="run")
