"""A private asyncio event loop on a daemon thread: the *engine loop*.

Every engine object (vLLM's ``AsyncLLM`` has background tasks bound to the loop that
created it) lives on this loop. Callers on any thread or any other event loop reach it
through :meth:`EngineLoop.run` (sync), :meth:`EngineLoop.arun` (async) and the two
iterator bridges. This is what makes the pool thread-safe: LangGraph runs sync nodes
on executor threads, and ``abatch`` runs on the caller's loop.

Example:
    >>> import asyncio
    >>> loop = EngineLoop(name="demo")
    >>> async def add(a, b):
    ...     return a + b
    >>> loop.run(add(1, 2))
    3
    >>> loop.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from typing import Any, AsyncIterator, Callable, Coroutine, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class EngineLoop:
    """An event loop running forever on its own daemon thread."""

    def __init__(self, name: str = "helium-engine-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    @property
    def closed(self) -> bool:
        return self.loop.is_closed() or not self._thread.is_alive()

    def on_loop(self) -> bool:
        """True when called from the engine loop's own thread."""
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None,
            cancel_scope: "CancelScope | None" = None) -> T:
        """Run ``coro`` on the engine loop and wait for it from a *different* thread.

        After ``timeout_s`` (or when ``cancel_scope`` is cancelled) the coroutine is cancelled
        and ``TimeoutError`` (``concurrent.futures.CancelledError``) raised.
        """
        if self.on_loop():
            coro.close()
            raise RuntimeError("EngineLoop.run() called from the engine loop itself; await the coroutine instead.")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if cancel_scope is not None:
            cancel_scope.add(fut)
        try:
            return fut.result(timeout_s)
        except BaseException:
            fut.cancel()
            raise
        finally:
            if cancel_scope is not None:
                cancel_scope.discard(fut)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the engine loop from any event loop (cancellation propagates)."""
        if self.on_loop():
            return await coro
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise

    def iterate(self, make_iter: Callable[[], AsyncIterator[T]], timeout_s: float | None = None,
                cancel_scope: "CancelScope | None" = None) -> Iterator[T]:
        """Consume an async iterator that lives on the engine loop, from a sync thread.

        ``timeout_s`` bounds the whole iteration: past it the iterator is cancelled on the loop
        and ``TimeoutError`` raised.
        """
        q: queue.Queue[Any] = queue.Queue()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        async def pump() -> None:
            try:
                async for item in make_iter():
                    q.put(item)
            except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
                q.put(_Raise(exc))
            finally:
                q.put(_DONE)

        fut = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        if cancel_scope is not None:
            cancel_scope.add(fut)
            fut.add_done_callback(lambda f: q.put(_Raise(concurrent.futures.CancelledError())) if f.cancelled() else None)
        try:
            while True:
                try:
                    item = q.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise TimeoutError(f"the stream did not finish within {timeout_s} s") from None
                if item is _DONE:
                    break
                if isinstance(item, _Raise):
                    raise item.exc
                yield item
        finally:
            fut.cancel()
            if cancel_scope is not None:
                cancel_scope.discard(fut)

    async def aiterate(self, make_iter: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Consume an async iterator that lives on the engine loop, from another event loop."""
        if self.on_loop():
            async for item in make_iter():
                yield item
            return
        caller = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for item in make_iter():
                    caller.call_soon_threadsafe(q.put_nowait, item)
            except BaseException as exc:  # noqa: BLE001
                caller.call_soon_threadsafe(q.put_nowait, _Raise(exc))
            finally:
                caller.call_soon_threadsafe(q.put_nowait, _DONE)

        fut = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                item = await q.get()
                if item is _DONE:
                    break
                if isinstance(item, _Raise):
                    raise item.exc
                yield item
        finally:
            fut.cancel()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        """Stop the loop and join its thread. Pending tasks are cancelled."""
        if self.loop.is_closed():
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive() and not self.on_loop():
            try:
                asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(5)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()


class CancelScope:
    """Futures of blocking calls that one owner (e.g. an accelerated run) can cancel together.

    A sync node blocks its thread in :meth:`EngineLoop.run`; cancelling the asyncio task of the
    run does not reach that thread. The run's scope does: :meth:`cancel` cancels every
    registered engine-loop future (which aborts its engine request) and every one registered
    later.

    Example:
        >>> scope = CancelScope(); scope.cancel(); scope.cancelled
        True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: set[concurrent.futures.Future[Any]] = set()
        self.cancelled = False

    def add(self, fut: "concurrent.futures.Future[Any]") -> None:
        with self._lock:
            if not self.cancelled:
                self._futures.add(fut)
                return
        fut.cancel()

    def discard(self, fut: "concurrent.futures.Future[Any]") -> None:
        with self._lock:
            self._futures.discard(fut)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            futures, self._futures = self._futures, set()
        for fut in futures:
            fut.cancel()


class _Raise:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

