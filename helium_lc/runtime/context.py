"""The active accelerated run: a contextvar-held :class:`Runtime`, and where each call comes from.

An :class:`~helium_lc.accelerate.AcceleratedGraph` creates one ``Runtime`` per run
(``invoke``, ``batch``, ``stream``...) and makes it current with :func:`activate`
while LangGraph executes. LangGraph copies contexts into its executor threads, so
sync nodes see it too. Outside a run :func:`current_runtime` is ``None`` and nothing
in helium_lc touches a chat-model call.

While a run is active, every chat-model call is tagged with a
:class:`~helium_lc.engine.types.RequestOrigin`: the LangGraph node, step and
checkpoint namespace (from the run metadata), the input row (set per input by
``batch``) and the call's ordinal among the calls of that (row, namespace, node, step).

``HeliumChatModel`` sends its engine requests through :meth:`Runtime.dispatch`, which
stamps the origin on the request and lets the scheduler pick worker and priority.

Example:
    >>> from helium_lc.cache import MemoryPromptCache, SingleFlight
    >>> from helium_lc.config import HeliumConfig
    >>> rt = Runtime(HeliumConfig(), MemoryPromptCache(), SingleFlight())
    >>> current_runtime() is None
    True
    >>> with activate(rt, row=2):
    ...     o1 = rt.begin_call({"langgraph_node": "a", "langgraph_step": 1})
    ...     o2 = rt.begin_call({"langgraph_node": "a", "langgraph_step": 1})
    ...     current_runtime() is rt
    True
    >>> (o1.node, o1.step, o1.row, o1.ordinal), o2.ordinal
    (('a', 1, 2, 0), 1)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import itertools
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterator, Mapping

from helium_lc.cache.prompt_cache import PromptCache
from helium_lc.cache.singleflight import SingleFlight
from helium_lc.config import HeliumConfig
from helium_lc.engine.loop import CancelScope
from helium_lc.engine.types import GenerationChunk, GenerationRequest, GenerationResult, RequestOrigin
from helium_lc.plan.learned import LearnedPlan, node_path
from helium_lc.runtime.limits import Gate, backend_key
from helium_lc.runtime.stats import RunStats, StatsRecorder

__all__ = ["Runtime", "current_runtime", "current_row", "current_origin", "activate", "call_origin_scope", "new_app_key"]

_RUNTIME: contextvars.ContextVar["Runtime | None"] = contextvars.ContextVar("helium_runtime", default=None)
_ROW: contextvars.ContextVar[int | None] = contextvars.ContextVar("helium_row", default=None)
# The origin of the chat-model call being intercepted right now (read by dispatch), plus a
# flag holder dispatch sets so the interception knows the engine reported the tokens.
_CALL: contextvars.ContextVar["_CallScope | None"] = contextvars.ContextVar("helium_call", default=None)


@dataclasses.dataclass
class _CallScope:
    origin: RequestOrigin
    num_engine_results: int = 0


def current_runtime() -> "Runtime | None":
    """The runtime of the accelerated run this code executes in, or None outside any."""
    return _RUNTIME.get()


def current_row() -> int | None:
    """The batch input row this code runs for (None outside ``batch`` or outside a run)."""
    return _ROW.get()


def current_origin() -> RequestOrigin | None:
    """The origin of the chat-model call being intercepted in this context, if any."""
    scope = _CALL.get()
    return scope.origin if scope is not None else None


@contextlib.contextmanager
def activate(runtime: "Runtime", *, row: int | None = None) -> Iterator["Runtime"]:
    """Make ``runtime`` (and input ``row``) current in this context until the block ends."""
    t_rt, t_row = _RUNTIME.set(runtime), _ROW.set(row)
    try:
        yield runtime
    finally:
        _ROW.reset(t_row)
        _RUNTIME.reset(t_rt)


def bind_context(runtime: "Runtime", *, row: int | None = None) -> contextvars.Context:
    """A copy of the current context with ``runtime`` and ``row`` set (for tasks and threads)."""
    ctx = contextvars.copy_context()
    ctx.run(_RUNTIME.set, runtime)
    ctx.run(_ROW.set, row)
    return ctx


@contextlib.contextmanager
def call_origin_scope(origin: RequestOrigin) -> Iterator[_CallScope]:
    """Mark ``origin`` as the call in progress (so :meth:`Runtime.dispatch` can tag requests)."""
    scope = _CallScope(origin)
    token = _CALL.set(scope)
    try:
        yield scope
    finally:
        _CALL.reset(token)


def _run_metadata(metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if metadata and "langgraph_node" in metadata:
        return metadata
    try:
        from langchain_core.runnables.config import ensure_config
        return ensure_config().get("metadata") or {}
    except Exception:  # noqa: BLE001 - metadata is best effort
        return metadata or {}


class Runtime:
    """State of one accelerated run: config, shared cache and single-flight, counters.

    ``cache`` and ``single_flight`` are shared by all runs of one accelerated graph (so
    a second batch is served from the first one's results); the counters are this run's.
    """

    def __init__(self, config: HeliumConfig, cache: PromptCache, single_flight: SingleFlight,
                 gates: "dict[str, Gate] | None" = None, learned: "LearnedPlan | None" = None,
                 is_routed: "Callable[[Any], bool] | None" = None, app_key: Any = None) -> None:
        self.config = config
        #: Names the app to the schedulers (call sites and row evidence are learned per app): the
        #: accelerated graph's own key, the same for all its runs; a process-unique one otherwise.
        self.app_key = app_key if app_key is not None else new_app_key()
        #: Whether an OpenAI-compatible client that ``config.route`` maps is served by a helium_lc
        #: transport this run (the accelerated graph passes the integration's check; the runtime
        #: never imports integrations).
        self.is_routed: Callable[[Any], bool] = is_routed or (lambda model: False)
        #: The accelerated graph's learned plan: fed with every engine request of this run, and
        #: the source of call-site prefixes for the schedulers this run uses.
        self.learned = learned
        self._tokenizers: dict[int, str] = {}  # id(pool) -> identity of its tokenizer
        self._scheduler_pools: list[tuple[Any, Any]] = []  # (scheduler, pool) this run seeded
        #: Per-backend in-flight caps (``max_in_flight_per_backend``), shared like the cache.
        self.gates: dict[str, Gate] = gates if gates is not None else {}
        self.cache = cache
        self.single_flight = single_flight
        self.recorder = StatsRecorder()
        self.started_s = time.perf_counter()
        self._lock = threading.Lock()
        self._ordinals: dict[tuple[Any, ...], int] = {}
        self._sched_state: tuple[Any, Any] | None = None  # (ScheduleOptions, RunTicket), made on first use
        self._schedulers: list[Any] = []  # the RuntimeSchedulers this run's requests went through
        #: Set by ``abatch`` before any call: it reports every row's end (``row_finished``), which
        #: lets row-major policies admit input rows as the KV cache allows.
        self.signals_rows = False
        #: Blocking engine calls of this run (sync nodes' threads); cancelled when the run ends,
        #: so a cancelled or failed run leaves no engine request running.
        self.cancel_scope = CancelScope()

    def gate_for(self, model: Any) -> "Gate | None":
        """The in-flight cap of ``model``'s backend (None: no cap configured)."""
        limit = self.config.max_in_flight_per_backend
        if limit is None:
            return None
        key = backend_key(model)
        return self.gates.get(key) or self.gates.setdefault(key, Gate(limit))  # setdefault: atomic

    # -- origins --------------------------------------------------------------------------------
    def begin_call(self, metadata: Mapping[str, Any] | None = None) -> RequestOrigin:
        """Count one requested chat-model call and return its origin.

        ``metadata`` is the call's run metadata (``run_manager.metadata``); when it lacks
        the LangGraph keys they are read from the current runnable config.
        """
        meta = _run_metadata(metadata)
        node, step = meta.get("langgraph_node"), meta.get("langgraph_step")
        ns = meta.get("langgraph_checkpoint_ns")
        row = _ROW.get()
        key = (row, ns, node, step)
        with self._lock:
            ordinal = self._ordinals.get(key, 0)
            self._ordinals[key] = ordinal + 1
        self.recorder.add(num_llm_calls_requested=1)
        return RequestOrigin(node=node, step=step if isinstance(step, int) else None,
                             checkpoint_ns=ns, ordinal=ordinal, row=row,
                             operator_id=f"{node_path(ns, node)}#{ordinal}" if node else None)

    # -- engine requests ------------------------------------------------------------------------
    def prepare_request(self, request: GenerationRequest) -> tuple[GenerationRequest, int | None]:
        """Stamp the origin on ``request``; return it with the worker to use (None: pool's choice).

        Worker and priority of requests sent to a ``WorkerPool`` are chosen later, by the
        pool's :class:`~helium_lc.runtime.scheduler.RuntimeScheduler` in :meth:`dispatch`.
        """
        origin = request.origin
        if origin is None:
            origin = current_origin() or self.begin_call(None)
        return dataclasses.replace(request, origin=origin), None

    def _scheduling(self, pool: Any) -> "tuple[Any, Any, Any] | None":
        """(scheduler, options, this run's ticket) for a ``WorkerPool``; None for other pools."""
        from helium_lc.engine.pool import WorkerPool
        from helium_lc.runtime.scheduler import RunTicket, ScheduleOptions, scheduler_for

        if not isinstance(pool, WorkerPool):
            return None
        with self._lock:
            if self._sched_state is None:
                # Call sites are learned per app (``self.app_key``: one per accelerated graph; never
                # an id() that a later object could reuse).
                self._sched_state = (ScheduleOptions.from_config(self.config),
                                     RunTicket(self.app_key, self.recorder, signals_rows=self.signals_rows))
            state = self._sched_state
            scheduler = scheduler_for(pool)
            first_use = scheduler not in self._schedulers
            if first_use:
                self._schedulers.append(scheduler)
        if first_use and self.learned is not None:
            # what earlier runs (of this process or, through a saved plan, of another) learned
            from helium_lc.runtime.sched_model import RowReuse

            tok = self._tokenizer_of(pool)
            prior = self.learned.row_reuse_for(tok)
            self._scheduler_pools.append((scheduler, pool))
            scheduler.seed(state[1].app_key, self.learned.static_prefixes(tok),
                           RowReuse(int(prior["rows"]), prior["own_tokens"], prior["revisit_tokens"],
                                    prior["decode_steps"]) if prior else None,
                           rows_loop=bool(self.learned.looping_nodes),
                           remaining_s=self.learned.remaining_work(_call_work_s(scheduler)))
        return (scheduler, *state)

    def teach_plan(self) -> None:
        """Copy into the learned plan what this run's schedulers learned of the app's rows."""
        if self.learned is None or self._sched_state is None:
            return
        app_key = self._sched_state[1].app_key
        for scheduler, pool in list(self._scheduler_pools):
            est = scheduler.row_reuse(app_key)
            if est is not None and est.rows:
                self.learned.set_row_reuse(self._tokenizer_of(pool), dataclasses.asdict(est))

    def _tokenizer_of(self, pool: Any) -> str:
        """A short identity of the pool's model (tokenizer included): learned prefixes are token ids."""
        key = id(pool)
        tok = self._tokenizers.get(key)
        if tok is None:
            import hashlib
            import json

            ident = pool.identity() if hasattr(pool, "identity") else {"pool": type(pool).__qualname__}
            tok = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
            self._tokenizers[key] = tok
        return tok

    @property
    def schedulers(self) -> list[Any]:
        """The RuntimeSchedulers this run's requests went through."""
        with self._lock:
            return list(self._schedulers)

    def row_finished(self, row: int | None = None) -> None:
        """Input ``row`` of this run ended (None: the whole run); its schedulers may admit others."""
        with self._lock:
            state, schedulers = self._sched_state, list(self._schedulers)
        if state is not None:
            for scheduler in schedulers:
                scheduler.row_done(state[1], row)

    async def dispatch(self, pool: Any, request: GenerationRequest) -> GenerationResult:
        """Send ``request`` to ``pool`` on behalf of this run (what HeliumChatModel calls).

        Requests to a ``WorkerPool`` go through its cache-aware scheduler (policy, placement,
        priority and warming from this run's ``HeliumConfig``); anything else with an
        ``agenerate`` method is called directly.
        """
        req, worker_id = self.prepare_request(request)
        t0 = time.perf_counter()
        sched = self._scheduling(pool)
        if sched is None:
            result = await pool.agenerate(req, worker_id=worker_id)
        else:
            scheduler, options, ticket = sched
            result = await scheduler.agenerate(req, options=options, ticket=ticket)
        self.record_engine_result(result, req, pool, t0)
        return result

    def dispatch_blocking(self, pool: Any, request: GenerationRequest, *,
                          timeout_s: float | None = None) -> GenerationResult:
        """:meth:`dispatch` for sync callers (blocks this thread; never call it on an event loop).

        After ``timeout_s`` the request is cancelled (for a ``WorkerPool``: aborted in its
        engine) and ``TimeoutError`` is raised.
        """
        req, worker_id = self.prepare_request(request)
        t0 = time.perf_counter()
        sched = self._scheduling(pool)
        if sched is None:
            result = pool.generate(req, worker_id=worker_id, timeout_s=timeout_s, cancel_scope=self.cancel_scope)
        else:
            scheduler, options, ticket = sched
            result = scheduler.generate(req, options=options, ticket=ticket, timeout_s=timeout_s,
                                        cancel_scope=self.cancel_scope)
        self.record_engine_result(result, req, pool, t0)
        return result

    async def dispatch_stream(self, pool: Any, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """:meth:`dispatch`, streamed: text deltas as the engine decodes them, the result last."""
        req, worker_id = self.prepare_request(request)
        t0 = time.perf_counter()
        sched = self._scheduling(pool)
        if sched is None:
            pieces = pool.astream(req, worker_id=worker_id)
        else:
            scheduler, options, ticket = sched
            pieces = scheduler.astream(req, options=options, ticket=ticket)
        async for piece in pieces:
            if piece.result is not None:
                self.record_engine_result(piece.result, req, pool, t0)
            yield piece

    def dispatch_stream_blocking(self, pool: Any, request: GenerationRequest, *,
                                 timeout_s: float | None = None) -> Iterator[GenerationChunk]:
        """:meth:`dispatch_stream` for sync callers (never on an event loop); ``timeout_s`` as
        in :meth:`dispatch_blocking`."""
        req, worker_id = self.prepare_request(request)
        t0 = time.perf_counter()
        sched = self._scheduling(pool)
        if sched is None:
            pieces = pool.stream(req, worker_id=worker_id, timeout_s=timeout_s, cancel_scope=self.cancel_scope)
        else:
            scheduler, options, ticket = sched
            pieces = scheduler.stream(req, options=options, ticket=ticket, timeout_s=timeout_s,
                                      cancel_scope=self.cancel_scope)
        for piece in pieces:
            if piece.result is not None:
                self.record_engine_result(piece.result, req, pool, t0)
            yield piece

    def record_engine_result(self, result: GenerationResult, request: GenerationRequest | None = None,
                             pool: Any = None, started_s: float | None = None) -> None:
        """Count one finished engine request (prompt and KV-cached prompt tokens); with its
        ``request`` and ``pool``, fold it into the learned plan's profile of its call site."""
        self.recorder.add(num_engine_requests=1, num_prompt_tokens=result.num_prompt_tokens,
                          num_cached_prompt_tokens=result.num_cached_prompt_tokens)
        scope = _CALL.get()
        if scope is not None:
            scope.num_engine_results += 1
        origin = request.origin if request is not None else None
        if self.learned is not None and origin is not None and origin.node and pool is not None:
            self.learned.observe(origin.checkpoint_ns, origin.node, origin.ordinal, row=origin.row,
                                 prompt=request.prompt_token_ids, output_tokens=result.num_output_tokens,  # type: ignore[union-attr]
                                 latency_s=time.perf_counter() - started_s if started_s is not None else 0.0,
                                 tokenizer=self._tokenizer_of(pool))

    # -- summary --------------------------------------------------------------------------------
    def stats(self, *, num_rows: int, num_failed_rows: int) -> RunStats:
        """This run's counters, with wall time since the runtime was created."""
        return self.recorder.snapshot(wall_s=time.perf_counter() - self.started_s,
                                      num_rows=num_rows, num_failed_rows=num_failed_rows)


def _call_work_s(scheduler: Any) -> "Callable[[Any], float]":
    """Seconds of one call of a profiled site (its mean prompt, uncached, and output) under the
    scheduler's cost model; a site never profiled: the default output estimate, no prompt."""
    cost, default_out = scheduler.cost, scheduler.profile.default_tokens

    def work(profile: Any) -> float:
        if profile is None or not profile.num_calls:
            return cost.decode_s(default_out, 1)
        return cost.work_s(int(profile.prompt_tokens / profile.num_calls), max(1, round(profile.mean_output_tokens)), 1)
    return work


_APP_KEYS = itertools.count(1)


def new_app_key() -> str:
    """A process-unique name for an app (an accelerated graph) in the schedulers' books."""
    return f"app-{next(_APP_KEYS)}"
