"""The clock planning time is read from: the planning thread's CPU time, less garbage collection.

Organising rule: *planning time is what planning costs the process.* Wall time would also
count the moments the scheduler's thread waits for the GIL while other threads run (vLLM's
output processing in the same process, the graph's node threads), and any cyclic
garbage collection that happens to start while planning runs: Python collects the oldest
generation in one pause proportional to the whole heap (measured here: 0.3-0.4 s with a
workload's 0.5 M live objects), and that pause lands on whichever thread allocates next.
Neither is the planner's work, and counting them made ``RunStats.planning_s`` jump by
seconds from one run to the next. So ``now()`` is ``time.thread_time()`` minus the CPU time
this thread spent inside collections (measured by a ``gc.callbacks`` hook, installed once).

Example:
    >>> t0 = now()
    >>> _ = sum(range(10_000))
    >>> now() - t0 >= 0
    True
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

__all__ = ["now", "install"]


class _GcTime(threading.local):
    total_s = 0.0                 # CPU seconds this thread spent in collections
    started_s: float | None = None


_TLS = _GcTime()
_INSTALL_LOCK = threading.Lock()


def _on_gc(phase: str, info: Any) -> None:
    if phase == "start":
        _TLS.started_s = time.thread_time()
    elif _TLS.started_s is not None:
        _TLS.total_s += time.thread_time() - _TLS.started_s
        _TLS.started_s = None


def install() -> None:
    """Hook the collector (idempotent; ``now()`` calls it)."""
    if _on_gc not in gc.callbacks:
        with _INSTALL_LOCK:
            if _on_gc not in gc.callbacks:
                gc.callbacks.append(_on_gc)


def now() -> float:
    """This thread's CPU seconds outside garbage collection (differences are meaningful)."""
    install()
    return time.thread_time() - _TLS.total_s
