"""Where an engine request goes: through the active run's scheduler, or straight to the pool.

The one place that decides it, for every client of a pool (``HeliumChatModel``, the
OpenAI-compatible transport): inside an accelerated run (:func:`~helium_lc.runtime.context.current_runtime`)
requests go through :class:`~helium_lc.runtime.context.Runtime` (origin, scheduler, counters);
outside one they go to the pool. Whole or streamed, sync or async, the same rule.

Timeouts: after ``timeout_s`` the request is cancelled, which aborts it in its engine, and
``TimeoutError`` is raised (the caller words the message).

Example (a simulated pool, no run active):
    >>> from helium_lc.engine.pool import WorkerPool
    >>> from helium_lc.engine.sim import SimWorker
    >>> from helium_lc.engine.types import GenerationRequest, SamplingSpec
    >>> with WorkerPool(workers=[SimWorker(0)]) as pool:
    ...     req = GenerationRequest((1, 2, 3), SamplingSpec(max_tokens=3))
    ...     [c.result is not None for c in stream(pool, req)][-1], generate(pool, req).num_output_tokens
    (True, 3)
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator

from helium_lc.engine.types import GenerationChunk, GenerationRequest, GenerationResult
from helium_lc.runtime.context import current_runtime

__all__ = ["generate", "agenerate", "stream", "astream"]


def _check_thread(pool: Any, what: str) -> None:
    loop = getattr(pool, "engine_loop", None)
    if loop is not None and loop.on_loop():
        raise RuntimeError(f"{what} was called on the helium engine loop, where it would block it; "
                           "use the async API there (ainvoke / astream / the async OpenAI client).")


def generate(pool: Any, request: GenerationRequest, *, timeout_s: float | None = None) -> GenerationResult:
    """Run ``request`` to completion, blocking this thread (never call it on an event loop)."""
    _check_thread(pool, "a blocking generate")
    runtime = current_runtime()
    if runtime is not None:
        return runtime.dispatch_blocking(pool, request, timeout_s=timeout_s)
    return pool.generate(request, timeout_s=timeout_s)


async def agenerate(pool: Any, request: GenerationRequest, *, timeout_s: float | None = None) -> GenerationResult:
    """Run ``request`` to completion from any event loop."""
    runtime = current_runtime()
    coro = runtime.dispatch(pool, request) if runtime is not None else pool.agenerate(request)
    if not timeout_s:
        return await coro
    return await asyncio.wait_for(coro, timeout_s)


def stream(pool: Any, request: GenerationRequest, *, timeout_s: float | None = None) -> Iterator[GenerationChunk]:
    """Text deltas of ``request`` as they are decoded (blocking); the last chunk carries the result.

    ``timeout_s`` bounds the whole stream."""
    _check_thread(pool, "a blocking stream")
    runtime = current_runtime()
    if runtime is not None:
        yield from runtime.dispatch_stream_blocking(pool, request, timeout_s=timeout_s)
    else:
        yield from pool.stream(request, timeout_s=timeout_s)


async def astream(pool: Any, request: GenerationRequest, *,
                  timeout_s: float | None = None) -> AsyncIterator[GenerationChunk]:
    """:func:`stream` from any event loop."""
    runtime = current_runtime()
    pieces = runtime.dispatch_stream(pool, request) if runtime is not None else pool.astream(request)
    if not timeout_s:
        async for piece in pieces:
            yield piece
        return
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while True:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            try:
                piece = await asyncio.wait_for(pieces.__anext__(), remaining)  # cancels (aborts) on expiry
            except StopAsyncIteration:
                return
            yield piece
    finally:
        await pieces.aclose()
