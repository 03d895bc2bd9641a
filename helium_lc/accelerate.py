"""``accelerate(app)``: the same LangGraph app, doing less LLM work.

At construction the compiled graph is captured into a query plan, optimized
(``prune``; see ``helium_lc.optimize``) and lowered back to a compiled graph
when whole nodes were dropped. What capture cannot analyse is noted (``fast.notes``)
and still runs. At run time LangGraph's Pregel executes the (lowered) graph while a
:class:`~helium_lc.runtime.context.Runtime` is current, so every chat-model call is
intercepted (``helium_lc.runtime.intercept``): deterministic calls are served from the
prompt cache or shared with an identical in-flight call; sampled calls pass through.

:class:`AcceleratedGraph` is a langchain-core ``Runnable`` usable wherever ``app`` was:
``invoke``/``ainvoke``, ``batch``/``abatch`` (all inputs concurrently on one event loop,
``return_exceptions`` honoured, a progress bar for large batches), ``stream``/``astream``
(every stream mode), ``get_graph``, ``with_config``, ``get_state``/``update_state``.

Example:
    >>> from typing import TypedDict, Sequence
    >>> from langgraph.graph import StateGraph, START
    >>> from helium_lc.testing import DeterministicChatModel
    >>> class S(TypedDict):
    ...     q: str
    ...     a: str
    >>> model = DeterministicChatModel()
    >>> app = (StateGraph(S).add_node("ask", lambda s: {"a": model.invoke(s["q"]).content})
    ...        .add_edge(START, "ask").compile())
    >>> fast = accelerate(app)
    >>> outs = fast.batch([{"q": "hi"}, {"q": "hi"}, {"q": "yo"}])
    >>> outs[0] == outs[1] == app.invoke({"q": "hi"}), model.num_calls   # 2 calls by fast + 1 plain
    (True, 3)
    >>> s = fast.last_run_stats()
    >>> s.num_llm_calls_requested, s.num_llm_calls_sent, s.num_cache_hits + s.num_dedup_hits
    (3, 2, 1)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import uuid
import weakref
from typing import Any, AsyncIterator, Iterable, Iterator, Mapping, Sequence

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_callback_manager_for_config, get_config_list

from helium_lc.cache.prompt_cache import MemoryPromptCache, PromptCache, SQLitePromptCache
from helium_lc.cache.singleflight import SingleFlight
from helium_lc.config import HeliumConfig
from helium_lc.plan.learned import LearnedPlan
from helium_lc.runtime.batch import run_rows, run_sync, want_progress
from helium_lc.runtime.context import Runtime, bind_context, new_app_key
from helium_lc.runtime.intercept import install
from helium_lc.runtime.stats import RunStats
from helium_lc.runtime.threads import wide_default_executor

__all__ = ["accelerate", "AcceleratedGraph", "RUN_STATS_EVENT"]

#: Name of the custom callback event that carries a finished run's :class:`RunStats`.
RUN_STATS_EVENT = "helium_lc_run_stats"

log = logging.getLogger("helium_lc")


def _check_app(app: Any) -> None:
    from langgraph.graph.state import CompiledStateGraph, StateGraph

    if isinstance(app, AcceleratedGraph):
        raise TypeError("accelerate() got a graph that is already accelerated; pass the original "
                        "compiled graph (fast.app), or use the accelerated one as it is.")
    if isinstance(app, StateGraph):
        raise TypeError("accelerate() got an uncompiled StateGraph builder; call .compile() on it "
                        "first (with your checkpointer, if any) and pass the result.")
    if not isinstance(app, CompiledStateGraph):
        raise TypeError(f"accelerate() needs a compiled LangGraph StateGraph (the result of "
                        f"StateGraph(...).compile() or a prebuilt agent such as create_agent), got "
                        f"{type(app).__module__}.{type(app).__qualname__}.")


def accelerate(app: Any, *, config: HeliumConfig | None = None,
               output_keys: Iterable[str] | None = None, servers: Sequence[str] | None = None,
               **options: Any) -> "AcceleratedGraph":
    """Wrap a compiled ``StateGraph`` so that it runs with less LLM work, same results.

    Args:
        app: a compiled LangGraph ``StateGraph`` (or a prebuilt agent built on one).
        config: the options (:class:`~helium_lc.config.HeliumConfig`); default all on.
        output_keys: the state keys the caller reads (default: the output schema's keys);
            pure nodes that only feed other keys are pruned. A key that is not in the graph's
            state is refused (a misspelt key would prune the wrong nodes).
        servers: URLs of your vLLM OpenAI-compatible servers (``["http://gpu1:8000", ...]``):
            one :class:`~helium_lc.engine.pool.WorkerPool` over them, and every OpenAI-compatible
            client of the app whose base URL is one of them (``<url>/v1``) is routed to it, so
            helium_lc's scheduler places every call across all servers. For clients that point
            at a balancer in front of them, build the pool yourself:
            ``route={"http://balancer/v1": WorkerPool(servers=[...])}``.
        **options: ``HeliumConfig`` fields overriding ``config``, e.g. ``route={...}``,
            ``prompt_cache=False``.

    Raises:
        TypeError: ``app`` is not a compiled LangGraph graph.
        ValueError: an option is invalid (the message names it and the fix).
    """
    _check_app(app)
    cfg = config if config is not None else HeliumConfig()
    if not isinstance(cfg, HeliumConfig):
        raise TypeError(f"config must be a helium_lc.HeliumConfig, got {type(cfg).__name__}.")
    if options:
        unknown = set(options) - {f.name for f in dataclasses.fields(HeliumConfig)}
        if unknown:
            raise TypeError(f"accelerate() got unknown option(s) {sorted(unknown)}; options are "
                            f"HeliumConfig fields: {sorted(f.name for f in dataclasses.fields(HeliumConfig))}.")
        cfg = dataclasses.replace(cfg, **options)
    if servers is not None:
        from helium_lc.engine.pool import WorkerPool

        pool = WorkerPool(servers=servers)
        routes = {f"{w.base_url}/v1": pool for w in pool.workers}  # type: ignore[attr-defined]
        cfg = dataclasses.replace(cfg, route={**routes, **cfg.route})
    return AcceleratedGraph(app, cfg, output_keys=output_keys)


def _row_limit(max_concurrency: int | None, max_rows_in_flight: int | None) -> int | None:
    """Rows of a batch that may run at once: the smaller of the two limits that are set."""
    limits = [n for n in (max_concurrency, max_rows_in_flight) if n is not None]
    return min(limits) if limits else None


def _check_inputs(inputs: Any) -> None:
    if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes, Mapping)):
        raise TypeError(f"batch()/abatch() take a list of inputs (one per row), got {type(inputs).__name__}; "
                        "for one input use invoke(x), or pass [x].")


def _with_run_id(config: RunnableConfig | None) -> RunnableConfig:
    """``config`` with a root ``run_id`` (the caller's, else a new one), so the run's stats event
    can name the run it belongs to; LangGraph uses it as its root run's id."""
    cfg: RunnableConfig = dict(config or {})  # type: ignore[assignment]
    if cfg.get("run_id") is None:
        cfg["run_id"] = uuid.uuid4()
    return cfg


def _report_stats(stats: RunStats, configs: Sequence[RunnableConfig]) -> None:
    """Send ``stats`` to the callback handlers of ``configs`` as the custom event
    :data:`RUN_STATS_EVENT` (``on_custom_event``), once per distinct set of handlers, with
    the ``run_id`` of its first run; ``data`` is the stats' fields plus ``run_ids``, the root
    run ids the stats cover. Handlers without ``on_custom_event`` ignore it; a handler that
    raises is logged, never fails the run."""
    groups: dict[tuple[Any, ...], list[RunnableConfig]] = {}
    for cfg in configs:
        cbs = cfg.get("callbacks")
        if cbs:  # a list of handlers or a callback manager (copied per row by get_config_list)
            handlers = cbs if isinstance(cbs, list) else getattr(cbs, "handlers", [cbs])
            key = (*map(id, handlers), getattr(cbs, "parent_run_id", None))
            groups.setdefault(key, []).append(cfg)
    for group in groups.values():
        data = {**dataclasses.asdict(stats), "run_ids": [str(c["run_id"]) for c in group]}
        try:
            get_callback_manager_for_config(group[0]).on_custom_event(
                RUN_STATS_EVENT, data, run_id=group[0]["run_id"])
        except Exception as exc:  # noqa: BLE001 - reporting must never fail a finished run
            log.warning("helium_lc: a callback handler failed on %s: %s", RUN_STATS_EVENT, exc)


def _check_output_keys(app: Any, output_keys: Iterable[str] | None) -> tuple[str, ...] | None:
    """``output_keys`` as a tuple, refusing names that are no state key of ``app`` (pruning would
    otherwise keep or drop the wrong nodes silently)."""
    if output_keys is None:
        return None
    keys = (output_keys,) if isinstance(output_keys, str) else tuple(output_keys)
    channels = getattr(app, "channels", None)
    if isinstance(channels, Mapping):
        known = sorted(k for k in channels if not k.startswith("__") and not k.startswith("branch:"))
        unknown = [k for k in keys if k not in channels]
        if unknown:
            raise ValueError(f"accelerate(output_keys=...) names {unknown}, which are not state keys of this graph; "
                             f"its state keys are {known}.")
    return keys


class AcceleratedGraph(Runnable[Any, Any]):
    """A compiled graph run under the helium_lc runtime (see the module docstring).

    Attributes:
        app: the graph given to :func:`accelerate`.
        graph: the graph that runs (``app`` itself unless nodes were pruned).
        config: the :class:`HeliumConfig` in force.
        plan: the optimized query plan (None if capture failed; see ``notes``).
        captured_plan: the plan before optimization.
        optimize_result: what each rule changed (None if capture failed).
        notes: what could not be analysed and why (it still runs).
    """

    def __init__(self, app: Any, config: HeliumConfig, *, output_keys: Iterable[str] | None = None) -> None:
        self.app = app
        self.config = config
        self.output_keys = _check_output_keys(app, output_keys)
        self.graph: Any = app
        self.plan: Any = None
        self.captured_plan: Any = None
        self.optimize_result: Any = None
        self.notes: list[str] = []
        self._prepare()
        self._cache: PromptCache = (SQLitePromptCache(config.cache_path) if config.cache_path
                                    else MemoryPromptCache())
        self._single_flight = SingleFlight()
        self._gates: dict[str, Any] = {}  # per-backend in-flight caps, shared by this graph's runs
        self._stats_lock = threading.Lock()
        self._last: RunStats | None = None
        self._total = RunStats()
        self._schedulers: "weakref.WeakSet[Any]" = weakref.WeakSet()  # pools' schedulers runs went through
        #: LLM nodes from capture joined with call-site profiles from runs; with ``cache_path`` it is
        #: saved next to the cache (``<cache_path>.plan.json``) and loaded by later processes.
        self.learned_plan = LearnedPlan.from_query_plan(self.captured_plan)
        #: this graph's name in the schedulers' books (what they learn of its call sites and rows)
        self.app_key = new_app_key()
        self._plan_path = f"{config.cache_path}.plan.json" if config.cache_path else None
        if self._plan_path is not None:
            self.learned_plan.merge_saved(self._plan_path)
        install()

    def _prepare(self) -> None:
        """Capture -> optimize -> lower, once. Never fails the graph: problems become notes."""
        from helium_lc.capture import capture
        from helium_lc.optimize import default_rules, lower, optimize

        try:
            self.captured_plan = capture(self.app, trace=self.config.trace_capture)
            rules = default_rules(self.output_keys)
            self.optimize_result = optimize(self.captured_plan, rules,
                                            disabled=self.config.effective_disabled_rules)
            self.plan = self.optimize_result.plan
            self.graph = lower(self.plan, self.app)
        except Exception as exc:  # noqa: BLE001 - the graph must still run unoptimized
            log.warning("helium_lc could not analyse this graph (%s: %s); it runs unoptimized, "
                        "with LLM-call caching and dedup only.", type(exc).__name__, exc)
            self.notes.append(f"plan: capture/optimize failed ({type(exc).__name__}: {exc}); "
                              "the graph runs as given")
            self.graph = self.app
            return
        for op in self.captured_plan.operators():
            if not op.analysable:
                self.notes.append(f"{op.op_id}: {op.reason or 'not analysable'}")

    # -- Runnable surface -----------------------------------------------------------------------
    @property
    def InputType(self) -> Any:  # noqa: N802 - Runnable API name
        return self.graph.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return self.graph.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.graph.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.graph.get_output_schema(config)

    def get_graph(self, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The drawable graph of the graph that runs (LangGraph's ``get_graph``)."""
        return self.graph.get_graph(config, **kwargs)

    @property
    def checkpointer(self) -> Any:
        return self.graph.checkpointer

    def get_state(self, config: RunnableConfig, **kwargs: Any) -> Any:
        return self.graph.get_state(config, **kwargs)

    async def aget_state(self, config: RunnableConfig, **kwargs: Any) -> Any:
        return await self.graph.aget_state(config, **kwargs)

    def get_state_history(self, config: RunnableConfig, **kwargs: Any) -> Iterator[Any]:
        return self.graph.get_state_history(config, **kwargs)

    def update_state(self, config: RunnableConfig, values: Any, as_node: str | None = None, **kwargs: Any) -> Any:
        return self.graph.update_state(config, values, as_node, **kwargs)

    async def aupdate_state(self, config: RunnableConfig, values: Any, as_node: str | None = None,
                            **kwargs: Any) -> Any:
        return await self.graph.aupdate_state(config, values, as_node, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Anything else a compiled graph offers (nodes, builder, ...), read from the graph that runs.
        if name.startswith("_") or name in ("app", "graph"):
            raise AttributeError(name)
        return getattr(self.graph, name)

    # -- runs -----------------------------------------------------------------------------------
    def _check_configs(self, configs: Sequence[RunnableConfig]) -> None:
        from langgraph.checkpoint.base import BaseCheckpointSaver

        if not isinstance(self.graph.checkpointer, BaseCheckpointSaver):
            return
        thread_ids = []
        for i, cfg in enumerate(configs):
            thread_id = (cfg.get("configurable") or {}).get("thread_id")
            if thread_id is None:
                where = f" (input {i})" if len(configs) > 1 else ""
                raise ValueError(
                    f"This graph has a checkpointer, so each run needs a thread_id{where}; pass "
                    "config={'configurable': {'thread_id': '<conversation id>'}} (for batch: a list "
                    "of configs, one thread_id per input).")
            thread_ids.append(thread_id)
        if len(set(thread_ids)) < len(thread_ids):
            raise ValueError("Two inputs of this batch share a thread_id, so their checkpoints would "
                             "overwrite each other; give each input its own thread_id (pass a list of configs).")

    def schedulers(self) -> list[Any]:
        """The ``RuntimeScheduler`` of every pool this graph's runs sent requests to."""
        with self._stats_lock:
            return list(self._schedulers)

    def _runtime(self) -> Runtime:
        is_routed = None
        if self.config.route:
            from helium_lc.integrations.openai_transport import is_routed
        return Runtime(self.config, self._cache, self._single_flight, self._gates, learned=self.learned_plan,
                       is_routed=is_routed, app_key=self.app_key)

    def _sync_config(self, config: RunnableConfig | None) -> RunnableConfig:
        """``config`` for LangGraph's sync ``invoke``/``stream``, whose per-run thread pool
        LangGraph sizes by ``max_concurrency`` (default ``cores + 4``): unless the caller set
        one, ``max_sync_threads`` threads (started on demand)."""
        cfg: RunnableConfig = dict(config or {})  # type: ignore[assignment]
        cfg.setdefault("max_concurrency", self.config.max_sync_threads)
        return cfg

    def _routes(self) -> contextlib.AbstractContextManager[Any]:
        """Point ``ChatOpenAI`` clients that ``config.route`` maps at their pool for the run."""
        if not self.config.route:
            return contextlib.nullcontext()
        from helium_lc.integrations.openai_transport import route_openai
        return route_openai(dict(self.config.route))

    def _finish(self, rt: Runtime, num_rows: int, num_failed_rows: int,
                configs: Sequence[RunnableConfig] = ()) -> None:
        rt.cancel_scope.cancel()  # threads of a cancelled or failed run stop waiting; their requests abort
        rt.row_finished(None)
        stats = rt.stats(num_rows=num_rows, num_failed_rows=num_failed_rows)
        with self._stats_lock:
            self._schedulers.update(rt.schedulers)
            self._last = stats
            self._total = self._total + stats
        log.debug("helium_lc run: %s", stats.summary())
        try:
            rt.teach_plan()
        except Exception as exc:  # noqa: BLE001 - a pool shut down meanwhile: nothing to learn
            log.debug("helium_lc: no row-reuse evidence for the learned plan: %s", exc)
        self.learned_plan.finish_batch(num_rows)
        if self._plan_path is not None and stats.num_engine_requests:
            try:
                self.learned_plan.save(self._plan_path)
            except OSError as exc:  # the plan is an optimisation: never fail a finished run over it
                log.warning("helium_lc: could not save the learned plan to %s: %s", self._plan_path, exc)
        _report_stats(stats, configs)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._check_configs([config or {}])
        config = _with_run_id(config)
        rt = self._runtime()
        failed = 1
        try:
            with self._routes():
                out = bind_context(rt).run(self.graph.invoke, input, self._sync_config(config), **kwargs)
            failed = 0
            return out
        finally:
            self._finish(rt, 1, failed, [config])

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self._check_configs([config or {}])
        config = _with_run_id(config)
        rt = self._runtime()
        failed = 1
        try:
            loop = asyncio.get_running_loop()
            with self._routes(), wide_default_executor(loop, self.config.max_sync_threads):
                out = await loop.create_task(self.graph.ainvoke(input, config, **kwargs), context=bind_context(rt))
            failed = 0
            return out
        finally:
            self._finish(rt, 1, failed, [config])

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """``abatch`` on one event loop (all inputs concurrently); see :meth:`abatch`."""
        _check_inputs(inputs)
        if not inputs:
            return []
        return run_sync(self.abatch(inputs, config, return_exceptions=return_exceptions, **kwargs))

    async def abatch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None,
                     *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Run every input concurrently on this event loop.

        Sync nodes share ``HeliumConfig.max_sync_threads`` threads (started on demand), so
        the calls in flight are limited by the graph and the batch, not by the host's cores.
        ``max_concurrency`` in the config limits how many inputs run at once (and, as in
        LangGraph, how many tasks of one step run at once); ``HeliumConfig.max_rows_in_flight``
        (default 1024) bounds it too, so very large batches stay within memory. With ``return_exceptions=True``
        a row whose run raises returns the exception and the other rows finish; otherwise
        the first error cancels the other rows and is raised.

        Example:
            >>> fast.batch(inputs, config={"max_concurrency": 4})   # doctest: +SKIP
        """
        _check_inputs(inputs)
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        self._check_configs(configs)
        configs = [_with_run_id(c) for c in configs]
        rt = self._runtime()
        rt.signals_rows = True
        contexts = [bind_context(rt, row=i) for i in range(len(inputs))]

        async def row(i: int, x: Any) -> Any:
            try:
                return await self.graph.ainvoke(x, configs[i], **kwargs)
            finally:
                rt.row_finished(i)

        outs: list[Any] = []
        try:
            with self._routes(), wide_default_executor(asyncio.get_running_loop(), self.config.max_sync_threads):
                outs = await run_rows(row, inputs, return_exceptions=return_exceptions, contexts=contexts,
                                      progress=want_progress(self.config.progress, len(inputs)),
                                      max_concurrency=_row_limit(configs[0].get("max_concurrency"),
                                                                 self.config.max_rows_in_flight))
            return outs
        finally:
            num_failed = sum(isinstance(o, BaseException) for o in outs) if outs else len(inputs)
            self._finish(rt, len(inputs), num_failed, configs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        """LangGraph's ``stream`` (any ``stream_mode``) under the runtime."""
        self._check_configs([config or {}])
        config = _with_run_id(config)
        rt = self._runtime()
        ctx = bind_context(rt)
        routes = self._routes()
        routes.__enter__()
        it = ctx.run(self.graph.stream, input, self._sync_config(config), **kwargs)
        failed = 1
        try:
            while True:
                try:
                    item = ctx.run(next, it)
                except StopIteration:
                    break
                yield item
            failed = 0
        finally:
            ctx.run(it.close)
            routes.__exit__(None, None, None)
            self._finish(rt, 1, failed, [config])

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        """LangGraph's ``astream`` (any ``stream_mode``) under the runtime."""
        self._check_configs([config or {}])
        config = _with_run_id(config)
        rt = self._runtime()
        ctx = bind_context(rt)
        loop = asyncio.get_running_loop()
        scope = contextlib.ExitStack()  # routes and threads for as long as the stream is consumed
        scope.enter_context(self._routes())
        scope.enter_context(wide_default_executor(loop, self.config.max_sync_threads))
        ait = self.graph.astream(input, config, **kwargs)

        async def step() -> Any:
            return await ait.__anext__()

        async def close() -> None:
            await ait.aclose()

        failed = 1
        try:
            while True:
                try:
                    item = await loop.create_task(step(), context=ctx)
                except StopAsyncIteration:
                    break
                yield item
            failed = 0
        finally:
            await loop.create_task(close(), context=ctx)
            scope.close()
            self._finish(rt, 1, failed, [config])

    # -- metrics and cache ----------------------------------------------------------------------
    def last_run_stats(self) -> RunStats | None:
        """Counters of the most recently finished run (None before the first run)."""
        with self._stats_lock:
            return self._last

    def stats(self) -> RunStats:
        """Counters summed over every run of this accelerated graph."""
        with self._stats_lock:
            return self._total

    def clear_cache(self) -> None:
        """Forget every prompt-cache entry (for SQLite: in the file, for all processes)."""
        self._cache.clear()

    @property
    def prompt_cache(self) -> PromptCache:
        """The prompt cache this graph's runs share."""
        return self._cache

    def __repr__(self) -> str:
        return f"AcceleratedGraph({getattr(self.app, 'name', type(self.app).__name__)!r}, config={self.config!r})"

