"""Run many inputs of a graph concurrently on one event loop, and call async code from sync code.

:func:`run_rows` starts one task per input (no thread cap, so the runtime sees every
concurrent LLM call at once; ``max_concurrency`` rows at a time when given), each in its
own context with the runtime and its row index set. With ``return_exceptions=True`` a row that raises returns its exception and
the other rows finish; otherwise the first error cancels the rest and is raised.
:func:`run_sync` runs a coroutine from sync code, on a helper thread when this thread
already runs an event loop (e.g. inside Jupyter), keeping the caller's contextvars.

Example:
    >>> import asyncio
    >>> async def double(i, x):
    ...     await asyncio.sleep(0)
    ...     if x < 0:
    ...         raise ValueError("negative")
    ...     return 2 * x
    >>> out = run_sync(run_rows(double, [1, -1, 3], return_exceptions=True))
    >>> out[0], type(out[1]).__name__, out[2]
    (2, 'ValueError', 6)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import threading
from typing import Any, Awaitable, Callable, Coroutine, Sequence, TypeVar

__all__ = ["run_rows", "run_sync", "want_progress"]

T = TypeVar("T")

#: Batches with more inputs than this get a progress bar when ``progress`` is None (auto).
AUTO_PROGRESS_MIN_ROWS = 4


def want_progress(setting: bool | None, num_rows: int) -> bool:
    """Whether to show a progress bar: the flag, or auto (> 4 rows and stderr is a TTY)."""
    if setting is not None:
        return setting
    return num_rows > AUTO_PROGRESS_MIN_ROWS and sys.stderr.isatty()


async def run_rows(fn: Callable[[int, Any], Awaitable[T]], inputs: Sequence[Any], *,
                   return_exceptions: bool = False, progress: bool = False,
                   contexts: Sequence[contextvars.Context] | None = None,
                   max_concurrency: int | None = None) -> list[T | BaseException]:
    """Await ``fn(i, inputs[i])`` for every row concurrently; results in input order.

    ``contexts[i]`` (optional) is the context row ``i``'s task runs in; with
    ``max_concurrency`` at most that many rows run at once (in input order).
    """
    if max_concurrency is not None and (not isinstance(max_concurrency, int) or max_concurrency < 1):
        raise ValueError(f"max_concurrency must be a positive integer or None, got {max_concurrency!r}.")
    bar = _progress_bar(len(inputs)) if progress else None
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(max_concurrency) if max_concurrency else contextlib.nullcontext()

    async def one(i: int, x: Any) -> T | BaseException:
        try:
            async with gate:
                return await fn(i, x)
        except Exception as exc:
            if not return_exceptions:
                raise
            return exc
        finally:
            if bar is not None:
                bar.update(1)

    tasks = [loop.create_task(one(i, x), context=contexts[i] if contexts else None)
             for i, x in enumerate(inputs)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar
        return None
    return tqdm(total=total, desc="helium_lc", unit="input")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code (works when a loop already runs here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = ctx.run(asyncio.run, coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="helium_lc-batch", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
