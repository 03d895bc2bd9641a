"""The runtime of accelerated runs: context, interception, batch execution, metrics.

- :mod:`~helium_lc.runtime.context`: ``Runtime`` (one per run) and ``current_runtime()``.
- :mod:`~helium_lc.runtime.dispatch`: where an engine request goes (the run's scheduler or the pool).
- :mod:`~helium_lc.runtime.intercept`: the contextvar-gated hook on chat models' generate path.
- :mod:`~helium_lc.runtime.batch`: all inputs of a batch on one event loop.
- :mod:`~helium_lc.runtime.stats`: ``RunStats``.

Example:
    >>> current_runtime() is None
    True
"""

from helium_lc.runtime.context import Runtime, activate, current_origin, current_row, current_runtime
from helium_lc.runtime.stats import RunStats

__all__ = ["Runtime", "RunStats", "activate", "current_origin", "current_row", "current_runtime"]
