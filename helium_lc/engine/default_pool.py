"""The process-wide default ``WorkerPool``: the default model, settings from the environment.

``HeliumChatModel()`` and the OpenAI front end use it when given no pool; tests and apps can
replace it (``set_default_pool``).

Example:
    >>> pool = get_default_pool(start=False)   # start=False: no engine is started for it
    >>> pool is get_default_pool(start=False)  # one per process
    True
"""

from __future__ import annotations

import threading

from helium_lc.engine.pool import WorkerPool

__all__ = ["get_default_pool", "set_default_pool"]

_default_pool: WorkerPool | None = None
_default_lock = threading.Lock()


def get_default_pool(*, start: bool = True) -> WorkerPool:
    """The process-wide shared pool (default model, settings from the environment).

    ``start=False`` returns it without starting its engines (e.g. to read its ``identity()``).
    """
    global _default_pool
    with _default_lock:
        if _default_pool is None or _default_pool.closed:
            _default_pool = WorkerPool(start=False)
        pool = _default_pool
    return pool.start() if start else pool


def set_default_pool(pool: WorkerPool | None) -> None:
    """Make ``pool`` the shared default (e.g. a two-worker pool, or one in tests)."""
    global _default_pool
    with _default_lock:
        _default_pool = pool
