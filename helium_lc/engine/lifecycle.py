"""Engine processes end with the program: at interpreter exit, on SIGINT and on SIGTERM.

Every started :class:`~helium_lc.engine.pool.WorkerPool` is tracked here (weakly). Rules:

* **Interpreter exit** (including after ``KeyboardInterrupt``): live pools shut down *before*
  vLLM's own exit hooks run. vLLM registers an ``atexit`` hook that sends SIGTERM to its
  engine-core processes; run first, it left the engine client to find a dead engine and log an
  ``EngineDeadError`` traceback. ``atexit`` runs hooks last-registered first, so the hook here
  is registered again after every engine start.
* **SIGTERM**: Python's default is to die without running exit hooks, which orphaned the
  engine-core processes (alive for minutes, holding the parent's stdout). While a pool is
  live, a SIGTERM handler shuts the pools down and then re-delivers SIGTERM with the default
  action, so the process still ends the way SIGTERM ends it (status -15). It is installed only
  from the main thread and only over the default handler: a handler of your own is kept.

Example:
    >>> import helium_lc.engine.lifecycle as lifecycle
    >>> all(not p.closed for p in lifecycle.live_pools())   # started, not yet shut down
    True
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from typing import Any

log = logging.getLogger("helium_lc.pool")

_pools: "weakref.WeakSet[Any]" = weakref.WeakSet()
_lock = threading.Lock()
_sigterm_installed = False


def live_pools() -> list[Any]:
    """The started pools not yet shut down."""
    return list(_pools)


def track(pool: Any) -> None:
    """Call after a pool's engines started (also after a restart): see the module rules."""
    with _lock:
        _pools.add(pool)
    atexit.unregister(shutdown_all)  # move to the front of the atexit queue (runs LIFO)
    atexit.register(shutdown_all)
    _install_sigterm()


def untrack(pool: Any) -> None:
    with _lock:
        _pools.discard(pool)


def shutdown_all() -> None:
    """Shut every live pool down (best effort: one failing pool does not stop the others)."""
    for pool in live_pools():
        try:
            pool.shutdown()
        except Exception as exc:  # noqa: BLE001
            log.warning("helium_lc: a pool did not shut down cleanly at exit: %s", exc)


def _install_sigterm() -> None:
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the application handles SIGTERM itself
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # pragma: no cover - no signals here (e.g. embedded interpreter)
        return
    _sigterm_installed = True


def _on_sigterm(signum: int, frame: Any) -> None:
    global _sigterm_installed
    # Shut down on another thread with a deadline: the interrupted main thread may hold a
    # pool's lock; engines still running after that are killed.
    stopper = threading.Thread(target=shutdown_all, name="helium-lc-sigterm", daemon=True)
    stopper.start()
    stopper.join(20)
    if stopper.is_alive():
        _kill_engine_processes()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _sigterm_installed = False
    os.kill(os.getpid(), signal.SIGTERM)


def _kill_engine_processes() -> None:
    for pool in live_pools():
        for worker in getattr(pool, "workers", []):
            for pid in getattr(worker, "engine_processes", lambda: [])():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
