"""A cap on the calls in flight to one backend, shared by threads and event loops.

``HeliumConfig(max_in_flight_per_backend=N)`` gives each backend (an OpenAI-compatible base
URL, or a chat-model class and model name) a :class:`Gate` of N slots per accelerated graph:
a call that reaches its model (not a prompt-cache or dedup hit) holds a slot while the model
works. Sync nodes wait in their thread, async nodes on their event loop; a waiter that is
cancelled gives its place up. For rate-limited providers behind ``route=`` or other providers.

Example:
    >>> gate = Gate(1)
    >>> with gate.hold():
    ...     gate.in_use
    1
    >>> gate.in_use
    0
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Any, AsyncIterator, Iterator

__all__ = ["Gate", "backend_key"]


class Gate:
    """``limit`` slots; :meth:`hold` (threads) and :meth:`ahold` (coroutines) take one, FIFO."""

    def __init__(self, limit: int) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"a gate needs a positive integer limit, got {limit!r}.")
        self.limit = limit
        self._lock = threading.Lock()
        self._used = 0
        self._waiters: deque[Any] = deque()  # threading.Event | (loop, future)

    @property
    def in_use(self) -> int:
        return self._used

    def _release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if isinstance(waiter, threading.Event):
                    waiter.set()  # the slot passes to it
                    return
                loop, fut = waiter
                if not loop.is_closed():
                    loop.call_soon_threadsafe(self._grant, fut)
                    return
            self._used -= 1

    def _grant(self, fut: "asyncio.Future[None]") -> None:
        if fut.done():  # cancelled meanwhile: pass the slot on
            self._release()
        else:
            fut.set_result(None)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            if self._used < self.limit:
                self._used += 1
                event = None
            else:
                event = threading.Event()
                self._waiters.append(event)
        if event is not None:
            event.wait()
        try:
            yield
        finally:
            self._release()

    @contextlib.asynccontextmanager
    async def ahold(self) -> AsyncIterator[None]:
        fut: asyncio.Future[None] | None = None
        with self._lock:
            if self._used < self.limit:
                self._used += 1
            else:
                fut = asyncio.get_running_loop().create_future()
                self._waiters.append((asyncio.get_running_loop(), fut))
        if fut is not None:
            try:
                await fut
            except asyncio.CancelledError:
                with self._lock:
                    queued = any(w[1] is fut for w in self._waiters if isinstance(w, tuple))
                    if queued:
                        self._waiters = deque(w for w in self._waiters if not (isinstance(w, tuple) and w[1] is fut))
                if not queued and fut.done() and not fut.cancelled():
                    self._release()  # granted just before the cancellation: give it back
                raise
        try:
            yield
        finally:
            self._release()


def backend_key(model: Any) -> str:
    """Which backend a chat model calls: its base URL if it has one, else class and model name.

    Example:
        >>> class Client:
        ...     openai_api_base = "http://gpu:8000/v1/"
        >>> backend_key(Client())
        'http://gpu:8000/v1'
    """
    for attr in ("openai_api_base", "base_url"):
        url = getattr(model, attr, None)
        if isinstance(url, str) and url:
            return url.rstrip("/")
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or ""
    return f"{type(model).__name__}:{name}"
