"""Benchmark profiles: how big each run is (``cpu``, ``quick``, ``gpu``).

A profile fixes the workloads, regimes, batch size, output length, repeats and the sweeps.
``with_overrides`` applies the command line's ``--workloads/--regimes/--repeats``.

Example:
    >>> p = PROFILES["quick"].with_overrides(repeats=3)
    >>> p.repeats, p.workloads
    (3, ('mapred', 'debate'))
    >>> PROFILES["cpu"].regimes
    ('ample', 'second-batch', 'iterate', 'day-2', 'kv-pressure', 'many-workers')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

__all__ = ["BenchProfile", "PROFILES", "REGIMES"]

#: Every regime, in the order the runner measures them (real-engine regimes first).
REGIMES: tuple[str, ...] = ("ample", "second-batch", "iterate", "day-2", "kv-pressure", "many-workers")


@dataclass(frozen=True)
class BenchProfile:
    """The size of a benchmark run (validated on construction).

    Attributes:
        name: profile name (used in the output folder name).
        workloads: workload names (``examples.workloads.WORKLOADS``).
        regimes: a subset of :data:`REGIMES`.
        num_inputs: batch size of every measured batch.
        max_output_tokens: ``max_tokens`` of the chat model.
        repeats: measured repeats (system order reversed on odd repeats).
        num_workers: engines of the real-engine pools.
        ample_kv_cache_gib: KV cache per engine in GiB outside ``kv-pressure`` (enough for the batch).
        kv_pressure_fraction: KV cache size as a fraction of the batch's unique prompt tokens.
        sim_worker_counts / sim_num_inputs / sim_block_size: the many-workers regime.
        batch_sizes: batch-size sweep on ``sweep_workload`` (ample; langgraph vs helium); empty: none.
        prefix_sweep: ``prefix_sweep`` parameter sets (ample; langgraph vs helium); empty: none.
        workload_params: per-workload parameter overrides (e.g. a smaller trading workflow).
        model: model folder for real engines (None: the project's default model).
        systems: systems to run (None: all; ``langgraph`` always runs).
        regime_systems: per regime, the only systems measured there (a regime not named runs
            every system); intersected with ``systems``.
    """

    name: str
    workloads: tuple[str, ...]
    regimes: tuple[str, ...] = REGIMES
    num_inputs: int = 6
    max_output_tokens: int = 16
    repeats: int = 2
    num_workers: int = 1
    ample_kv_cache_gib: float = 0.5
    kv_pressure_fraction: float = 0.3
    sim_worker_counts: tuple[int, ...] = (4, 16, 64)
    sim_num_inputs: int = 64
    sim_block_size: int = 16
    batch_sizes: tuple[int, ...] = ()
    sweep_workload: str = "mapred"
    prefix_sweep: tuple[Mapping[str, Any], ...] = ()
    workload_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model: str | None = None
    systems: tuple[str, ...] | None = None
    regime_systems: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from examples.workloads import WORKLOADS

        object.__setattr__(self, "workloads", tuple(self.workloads))
        object.__setattr__(self, "regimes", tuple(self.regimes))
        unknown = sorted(set(self.workloads) - set(WORKLOADS))
        if unknown or not self.workloads:
            raise ValueError(f"profile {self.name!r}: unknown or no workloads {unknown}; "
                             f"choose from: {', '.join(WORKLOADS)}.")
        bad = sorted(set(self.regimes) - set(REGIMES))
        if bad or not self.regimes:
            raise ValueError(f"profile {self.name!r}: unknown or no regimes {bad}; choose from: {', '.join(REGIMES)}.")
        for name in ("num_inputs", "max_output_tokens", "repeats", "num_workers", "sim_num_inputs",
                     "sim_block_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"profile {self.name!r}: {name} must be a positive integer, got {v!r}.")
        if not 0 < self.ample_kv_cache_gib <= 1024:
            raise ValueError(f"profile {self.name!r}: ample_kv_cache_gib must be in (0, 1024], "
                             f"got {self.ample_kv_cache_gib!r}.")
        if not 0 < self.kv_pressure_fraction <= 1:
            raise ValueError(f"profile {self.name!r}: kv_pressure_fraction must be in (0, 1], "
                             f"got {self.kv_pressure_fraction!r}; the issue asks for 0.1-0.5.")
        if any(n < 1 for n in (*self.sim_worker_counts, *self.batch_sizes)):
            raise ValueError(f"profile {self.name!r}: worker counts and batch sizes must be >= 1.")
        if self.sweep_workload not in WORKLOADS:
            raise ValueError(f"profile {self.name!r}: unknown sweep_workload {self.sweep_workload!r}.")
        bad = sorted(set(self.regime_systems) - set(REGIMES))
        if bad:
            raise ValueError(f"profile {self.name!r}: regime_systems names unknown regimes {bad}.")
        object.__setattr__(self, "regime_systems",
                           MappingProxyType({k: tuple(v) for k, v in self.regime_systems.items()}))
        object.__setattr__(self, "workload_params",
                           MappingProxyType({k: dict(v) for k, v in self.workload_params.items()}))

    def params_for(self, workload: str) -> dict[str, Any]:
        """The parameters ``build``/``make_inputs`` get for ``workload`` in this profile."""
        return dict(self.workload_params.get(workload, {}))

    def systems_for(self, regime: str, names: Sequence[str]) -> list[str]:
        """The systems of ``names`` measured in ``regime`` (``langgraph``, the baseline, always).

        Example:
            >>> PROFILES["cpu"].systems_for("kv-pressure", ["sequential", "langgraph", "helium"])
            ['langgraph', 'helium']
        """
        only = self.regime_systems.get(regime)
        return [n for n in names if only is None or n in only or n == "langgraph"]

    def with_overrides(self, **changes: Any) -> "BenchProfile":
        """A copy with the given fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


_ALL = ("mapred", "debate", "reflect", "iterative", "parallel", "trading", "prefix_sweep")
#: A smaller trading workflow for CPU: 4 analysts, 1 bull/bear round, 2 traders with 1 risk round.
_CPU_PARAMS = {"trading": {"num_traders": 2, "num_risk_rounds": 1},
               "iterative": {"num_chunks": 4}}
#: On CPU (2 cores) the profile must stay under 30 minutes: each regime measures the systems that
#: answer its question. ``ample`` runs the serving-layer baseline and the ablations that change the
#: schedule or the cache; ``sequential`` (0.35x), ``prefix_affinity`` (= lspf within 1%),
#: ``helium-no-prune`` and ``helium-no-warm`` (both = helium within noise on one engine, run
#: 2026-11-26) are left to ``--systems`` or the gpu profile. The whole profile took 38.9 minutes with
#: every system in ample (68.6 with every system in every regime).
_CPU_REGIME_SYSTEMS = {"ample": ("langgraph", "lspf", "helium", "helium-no-cache", "helium-no-cas"),
                       "second-batch": ("langgraph", "helium"),
                       "iterate": ("langgraph", "helium"),
                       "day-2": ("langgraph", "helium"),
                       "kv-pressure": ("langgraph", "lspf", "helium")}

PROFILES: dict[str, BenchProfile] = {p.name: p for p in (
    BenchProfile("cpu", _ALL, num_inputs=6, max_output_tokens=16, repeats=2, sim_num_inputs=64,
                 batch_sizes=(2, 4, 8), prefix_sweep=({"system_tokens": 128}, {"system_tokens": 1024}),
                 workload_params=_CPU_PARAMS, regime_systems=_CPU_REGIME_SYSTEMS),
    BenchProfile("quick", ("mapred", "debate"), num_inputs=4, max_output_tokens=16, repeats=1,
                 systems=("langgraph", "lspf", "prefix_affinity", "helium", "helium-no-cas"),
                 sim_num_inputs=32, sim_worker_counts=(4, 16), batch_sizes=(2, 4),
                 prefix_sweep=({"system_tokens": 128}, {"system_tokens": 512})),
    BenchProfile("gpu", _ALL, num_inputs=16, max_output_tokens=512, repeats=3, num_workers=2,
                 ample_kv_cache_gib=16.0,
                 sim_num_inputs=128, sim_worker_counts=(4, 8, 16, 32, 64), batch_sizes=(4, 8, 16, 32),
                 prefix_sweep=({"system_tokens": 1024, "context_tokens": 128, "question_tokens": 128,
                                "output_tokens": 64},
                               {"system_tokens": 2048, "context_tokens": 2048, "question_tokens": 2048,
                                "output_tokens": 1024}),
                 workload_params={"mapred": {"num_experts": 14}}),
)}
