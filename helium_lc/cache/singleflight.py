"""Single-flight: identical in-flight deterministic calls share one computation.

The first caller of a key (the *leader*) computes; callers arriving while it runs
(*followers*) wait for the leader's outcome instead of computing again. The entry is
removed when the leader finishes, so a later call computes afresh (the prompt cache,
not this class, remembers finished results). Sync callers (``do``, any thread) and
async callers (``ado``, any event loop) share one table, so a thread can follow a
coroutine and the other way round.

Outcomes:
- the leader returns a value: every follower gets the same value object;
- the leader raises an ``Exception``: every follower gets that exception;
- the leader is *cancelled* (``asyncio.CancelledError``, ``KeyboardInterrupt`` or any
  other ``BaseException`` that is not an ``Exception``): the leader re-raises it, and the
  followers are not cancelled -- they **retry**: one of them becomes the new leader and
  the rest follow it. So a cancelled leader never hangs or cancels its followers.
- a follower that is cancelled stops waiting; the leader and other followers go on.

Only use it for deterministic calls: merging sampled calls changes results.
``do`` blocks its thread: never call it from a coroutine (use ``ado``).

Example:
    >>> sf = SingleFlight()
    >>> sf.do("k", lambda: 41 + 1)
    42
    >>> sf.num_leaders, sf.num_followers, sf.num_in_flight
    (1, 0, 0)
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, Hashable, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class _LeaderCancelled(Exception):
    """Set on the shared future when the leader was cancelled: followers retry."""


class SingleFlight:
    """Deduplicate concurrent calls by key (thread-safe, loop-agnostic)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[Hashable, Future[Any]] = {}
        self.num_leaders = 0     # computations started
        self.num_followers = 0   # calls that waited for a leader instead (dedup hits)

    @property
    def num_in_flight(self) -> int:
        """Keys being computed right now."""
        with self._lock:
            return len(self._in_flight)

    def reset_stats(self) -> None:
        """Zero ``num_leaders`` and ``num_followers`` (in-flight calls are untouched)."""
        with self._lock:
            self.num_leaders = self.num_followers = 0

    def _join(self, key: Hashable) -> tuple[Future[Any], bool]:
        """Return (future, is_leader), registering a new future when none is in flight."""
        with self._lock:
            fut = self._in_flight.get(key)
            if fut is not None:
                self.num_followers += 1
                return fut, False
            fut = Future()
            # RUNNING state: a follower's cancelled asyncio wrapper cannot cancel it.
            fut.set_running_or_notify_cancel()
            self._in_flight[key] = fut
            self.num_leaders += 1
            return fut, True

    def _finish(self, key: Hashable, fut: Future[Any], *, result: Any = None,
                error: BaseException | None = None) -> None:
        with self._lock:
            if self._in_flight.get(key) is fut:
                del self._in_flight[key]
        if error is None:
            fut.set_result(result)
        elif isinstance(error, Exception):
            fut.set_exception(error)
        else:  # cancellation of the leader: followers retry
            fut.set_exception(_LeaderCancelled())

    def do(self, key: Hashable, fn: Callable[[], T]) -> T:
        """Run ``fn()`` once for all concurrent callers of ``key`` (blocking)."""
        while True:
            fut, is_leader = self._join(key)
            if is_leader:
                try:
                    result = fn()
                except BaseException as exc:
                    self._finish(key, fut, error=exc)
                    raise
                self._finish(key, fut, result=result)
                return result
            try:
                return fut.result()
            except _LeaderCancelled:
                continue

    async def ado(self, key: Hashable, coro_fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``coro_fn()`` once for all concurrent callers of ``key``."""
        while True:
            fut, is_leader = self._join(key)
            if is_leader:
                try:
                    result = await coro_fn()
                except BaseException as exc:
                    self._finish(key, fut, error=exc)
                    raise
                self._finish(key, fut, result=result)
                return result
            try:
                return await asyncio.wrap_future(fut)
            except _LeaderCancelled:
                continue
