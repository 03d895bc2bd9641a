"""Threads for sync code under an accelerated run, so the host's core count never caps calls in flight.

LangGraph runs a *sync* node of an async run (``ainvoke``/``abatch``/``astream``) through
the event loop's default executor, and so do sync tools and chat models without an async
implementation. asyncio's default executor has ``min(32, cpu_count + 4)`` threads: six on
a two-core machine, shared by every row of a batch, so at most six LLM calls are ever in
flight where plain ``app.batch`` (a thread per row, each with its own pool) reaches many
more. :func:`wide_default_executor` installs a :class:`~concurrent.futures.ThreadPoolExecutor`
of ``max_workers`` threads as the loop's default executor while runs are active on it and
puts the previous one back when the last run ends. Threads start on demand (an idle one is
reused first), so a large ceiling costs nothing unless the graph is that wide.

Example (20 calls that can only finish together: each waits for all the others, so fewer
threads, e.g. the default executor's six on two cores, would break the barrier after 10 s):
    >>> import asyncio, threading
    >>> async def run_together(n):
    ...     loop = asyncio.get_running_loop()
    ...     barrier = threading.Barrier(n, timeout=10)
    ...     with wide_default_executor(loop, max_workers=64):
    ...         await asyncio.gather(*[loop.run_in_executor(None, barrier.wait) for _ in range(n)])
    ...     return "all together"
    >>> asyncio.run(run_together(20))
    'all together'
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

__all__ = ["wide_default_executor"]


class _Installed:
    __slots__ = ("executor", "previous", "users")

    def __init__(self, executor: ThreadPoolExecutor, previous: ThreadPoolExecutor | None) -> None:
        self.executor, self.previous, self.users = executor, previous, 0


_lock = threading.Lock()
_installed: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Installed]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def wide_default_executor(loop: asyncio.AbstractEventLoop, max_workers: int) -> Iterator[None]:
    """Make ``loop``'s default executor at least ``max_workers`` threads wide for the block.

    Nested and concurrent uses on one loop share one executor (the first one's width);
    the loop's own executor comes back when the last use ends. A loop whose default
    executor is already a wider ``ThreadPoolExecutor`` is left as it is.
    """
    with _lock:
        entry = _installed.get(loop)
        if entry is None:
            previous = _current_default(loop)
            if isinstance(previous, ThreadPoolExecutor) and previous._max_workers >= max_workers:  # noqa: SLF001
                entry = None
            else:
                executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="helium_lc-sync")
                entry = _Installed(executor, previous)
                loop.set_default_executor(executor)
                _installed[loop] = entry
        if entry is not None:
            entry.users += 1
    try:
        yield
    finally:
        if entry is not None:
            with _lock:
                entry.users -= 1
                last = entry.users == 0
                if last:
                    del _installed[loop]
                    if not loop.is_closed():
                        # No previous one: a new executor like the one asyncio would have made.
                        loop.set_default_executor(entry.previous or ThreadPoolExecutor(thread_name_prefix="asyncio"))
            if last:
                # Threads still running (a cancelled row's sync node) finish; new work goes to
                # the loop's own executor.
                entry.executor.shutdown(wait=False)


def _current_default(loop: asyncio.AbstractEventLoop) -> ThreadPoolExecutor | None:
    """The loop's default executor (None: not made yet). asyncio exposes no getter."""
    executor = getattr(loop, "_default_executor", None)
    return executor if isinstance(executor, ThreadPoolExecutor) else None

