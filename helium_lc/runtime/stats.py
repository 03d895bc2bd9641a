"""Run metrics: what an accelerated run asked for, what it sent, and what it saved.

:class:`RunStats` is the frozen summary of one run (``fast.last_run_stats()``) or of
all runs so far (``fast.stats()``, summed with ``+``). :class:`StatsRecorder` is the
thread-safe counter the runtime updates while a run is active.

Example:
    >>> rec = StatsRecorder()
    >>> rec.add(num_llm_calls_requested=3, num_llm_calls_sent=1, num_cache_hits=2)
    >>> s = rec.snapshot(wall_s=0.5, num_rows=1, num_failed_rows=0)
    >>> s.num_llm_calls_saved, (s + s).num_llm_calls_requested
    (2, 6)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

__all__ = ["RunStats", "StatsRecorder"]


@dataclass(frozen=True)
class RunStats:
    """Counters of one accelerated run (or a sum of runs).

    Attributes:
        num_llm_calls_requested: chat-model calls the graph's nodes made.
        num_llm_calls_sent: calls that reached a model or engine (the rest were served).
        num_cache_hits: calls answered from the prompt cache (on a re-run: calls reused).
        num_cache_misses: deterministic calls the prompt cache did not hold, so they were computed
            (on a re-run after an edit: calls recomputed).
        num_dedup_hits: calls that shared an identical in-flight call's result.
        num_sampled_calls: non-deterministic calls (never cached or deduplicated).
        num_uncacheable_calls: deterministic calls whose prompt had no canonical form.
        num_prompt_tokens: prompt tokens of the calls sent (engine results, else usage metadata).
        num_cached_prompt_tokens: of those, tokens the engines found in their KV cache.
        num_engine_requests: requests dispatched to a WorkerPool.
        planning_s: CPU seconds the scheduler spent planning this run's requests (its thread's
            CPU time less garbage-collection pauses: ``runtime.planning_clock``; sum over
            planning rounds; a round shared by concurrent runs counts for each).
        num_warm_requests: prefix warm-ups the scheduler issued for this run.
        num_oversized_requests: requests larger than every worker's KV cache (a warning:
            served without being modelled as cached).
        wall_s: wall time of the run (sum over runs).
        num_rows: inputs run.
        num_failed_rows: inputs whose run raised.
        first_cache_miss_node: the graph node of the run's first prompt-cache miss -- after an edit,
            where recomputation began (None when every cacheable call was served; a sum keeps
            the earliest run's).
    """

    num_llm_calls_requested: int = 0
    num_llm_calls_sent: int = 0
    num_cache_hits: int = 0
    num_cache_misses: int = 0
    num_dedup_hits: int = 0
    num_sampled_calls: int = 0
    num_uncacheable_calls: int = 0
    num_prompt_tokens: int = 0
    num_cached_prompt_tokens: int = 0
    num_engine_requests: int = 0
    planning_s: float = 0.0
    num_warm_requests: int = 0
    num_oversized_requests: int = 0
    wall_s: float = 0.0
    num_rows: int = 0
    num_failed_rows: int = 0
    first_cache_miss_node: str | None = None

    @property
    def num_llm_calls_saved(self) -> int:
        """Calls the graph asked for that never reached a model."""
        return self.num_cache_hits + self.num_dedup_hits

    def __add__(self, other: "RunStats") -> "RunStats":
        if not isinstance(other, RunStats):
            return NotImplemented
        summed = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)
                  if f.name != "first_cache_miss_node"}
        return RunStats(**summed, first_cache_miss_node=self.first_cache_miss_node or other.first_cache_miss_node)

    def summary(self) -> str:
        """One line for logs: requested/sent/hits/dedup/sampled and wall time."""
        return (f"{self.num_rows} rows ({self.num_failed_rows} failed): "
                f"{self.num_llm_calls_requested} LLM calls requested, {self.num_llm_calls_sent} sent, "
                f"{self.num_cache_hits} cache hits, {self.num_cache_misses} misses"
                f"{' (first in node ' + repr(self.first_cache_miss_node) + ')' if self.first_cache_miss_node else ''}, "
                f"{self.num_dedup_hits} dedup hits, "
                f"{self.num_sampled_calls} sampled; {self.wall_s:.3f} s")


_COUNTERS = tuple(f.name for f in fields(RunStats)
                  if f.name not in ("wall_s", "num_rows", "num_failed_rows", "first_cache_miss_node"))


class StatsRecorder:
    """Thread-safe counters of one run; ``snapshot`` freezes them into a :class:`RunStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {name: 0.0 if name.endswith("_s") else 0 for name in _COUNTERS}
        self._first_miss_node: str | None = None

    def add(self, **deltas: float) -> None:
        """Add ``deltas`` to the named counters (names as in :class:`RunStats`)."""
        with self._lock:
            for name, delta in deltas.items():
                if name not in self._counts:
                    raise KeyError(f"unknown run counter {name!r}; known: {', '.join(_COUNTERS)}.")
                self._counts[name] += delta

    def cache_miss(self, node: str | None) -> None:
        """Count one prompt-cache miss; the first one's node is kept."""
        with self._lock:
            self._counts["num_cache_misses"] += 1
            if self._first_miss_node is None:
                self._first_miss_node = node or "(outside any node)"

    def get(self, name: str) -> float:
        """The current value of one counter."""
        with self._lock:
            return self._counts[name]

    def snapshot(self, *, wall_s: float, num_rows: int, num_failed_rows: int) -> RunStats:
        """The counters so far as a frozen :class:`RunStats`."""
        with self._lock:
            return RunStats(**self._counts, wall_s=wall_s, num_rows=num_rows,
                            num_failed_rows=num_failed_rows, first_cache_miss_node=self._first_miss_node)
