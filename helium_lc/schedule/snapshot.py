"""What a scheduling policy sees (``Snapshot``) and what it returns (``Assignment``).

Policies are pure functions ``Snapshot -> Assignment``: no clock, no I/O, no mutation of
the snapshot, so the same snapshot always gives the same assignment and policies can be
compared in the simulator and tested exhaustively.

A *template key* is a tuple of segments: a literal run of token ids (``tuple[int, ...]``)
or a placeholder name (``str``). The leading literal run is the call's *static prefix*.

Example:
    >>> from helium_lc.schedule.cost import CostModel
    >>> from helium_lc.schedule.radix import RadixCache
    >>> call = PendingCall("c0", (1, 2, 3, 4, 9), template_key=((1, 2, 3, 4), "q"), row=0)
    >>> w = WorkerView(worker_id=0, resident=RadixCache(block_size=4))
    >>> snap = Snapshot(calls=(call,), workers=(w,), cost=CostModel(block_size=4))
    >>> a = Assignment(order={0: ("c0",)})
    >>> a.check(snap)   # raises when a call is lost, duplicated or ordered before a dependency
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

from helium_lc.schedule.cost import CostModel, PrefixMatcher

Segment = tuple[int, ...] | str
TemplateKey = tuple[Segment, ...]


def static_prefix_of(template_key: TemplateKey | None) -> tuple[int, ...]:
    """The leading literal tokens of a template, up to its first placeholder."""
    if template_key and not isinstance(template_key[0], str) and (
            len(template_key) == 1 or isinstance(template_key[1], str)):
        return tuple(template_key[0])  # one literal run (the runtime's templates): no copy
    out: list[int] = []
    for seg in template_key or ():
        if isinstance(seg, str):
            break
        out.extend(seg)
    return tuple(out)


@dataclass(frozen=True)
class PendingCall:
    """One LLM call waiting to be placed.

    ``prompt_token_ids`` is the rendered prompt when ``ready``; for a call still waiting
    on ``deps`` it is whatever is known (at least the static prefix). ``deps`` lists
    call ids in the same snapshot that must finish first (ids not in the snapshot count
    as finished). ``call_site`` names the operator for output-length profiles and
    operator-wise policies; it defaults to the template key. ``downstream_s`` is the LLM work
    its row still has after it outside the snapshot (the remaining critical path from the
    workflow's plan; 0 when unknown), which critical-path orderings add to its own.
    """

    call_id: Hashable
    prompt_token_ids: tuple[int, ...]
    template_key: TemplateKey | None = None
    row: int | None = None
    deps: tuple[Hashable, ...] = ()
    est_output_tokens: int = 64
    ready: bool = True
    arrival_seq: int = 0
    call_site: Hashable | None = None
    downstream_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_token_ids, tuple):
            object.__setattr__(self, "prompt_token_ids", tuple(self.prompt_token_ids))
        if not isinstance(self.deps, tuple):
            object.__setattr__(self, "deps", tuple(self.deps))
        if self.est_output_tokens < 1:
            raise ValueError(f"call {self.call_id!r}: est_output_tokens must be >= 1, "
                             f"got {self.est_output_tokens!r}.")
        if self.template_key is not None:
            for seg in self.template_key:
                if not isinstance(seg, (str, tuple)):
                    raise ValueError(f"call {self.call_id!r}: a template segment must be a tuple of "
                                     f"token ids or a placeholder name, got {seg!r}.")

    @property
    def site(self) -> Hashable:
        """The operator this call belongs to (``call_site`` or, failing that, the template)."""
        return self.call_site if self.call_site is not None else self.template_key

    @property
    def static_prefix_tokens(self) -> tuple[int, ...]:
        """Leading literal tokens of the template (empty without a template)."""
        return static_prefix_of(self.template_key)


class _Nothing:
    """An empty resident cache: nothing matches."""

    block_size = 1

    def peek(self, tokens: Sequence[int]) -> int:
        return 0


@dataclass(frozen=True)
class WorkerView:
    """A read-only view of one worker at snapshot time."""

    worker_id: int
    resident: PrefixMatcher = field(default_factory=_Nothing)
    num_running: int = 0
    num_waiting: int = 0
    queued_work_s: float = 0.0
    kv_capacity_tokens: int | None = None
    alive: bool = True
    max_num_seqs: int = 32
    #: seconds this worker takes per second of the cost model's estimate, relative to the other
    #: workers (learned online by the runtime: ``runtime.sched_model.WorkerSpeeds``); policies
    #: that spread estimated work multiply it in. ``queued_work_s`` stays in cost-model seconds.
    slowdown: float = 1.0

    def __post_init__(self) -> None:
        if not self.slowdown > 0:
            raise ValueError(f"worker {self.worker_id}: slowdown must be > 0, got {self.slowdown!r}.")
        if self.max_num_seqs < 1:
            raise ValueError(f"worker {self.worker_id}: max_num_seqs must be >= 1, got {self.max_num_seqs!r}.")
        if self.queued_work_s < 0:
            raise ValueError(f"worker {self.worker_id}: queued_work_s must be >= 0.")


@dataclass(frozen=True)
class Snapshot:
    """Everything a policy may look at. ``seed`` drives the seeded random policy."""

    calls: tuple[PendingCall, ...]
    workers: tuple[WorkerView, ...]
    cost: CostModel = field(default_factory=CostModel)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "calls", tuple(self.calls))
        object.__setattr__(self, "workers", tuple(self.workers))
        ids = [c.call_id for c in self.calls]
        if len(set(ids)) != len(ids):
            dup = sorted({repr(i) for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"Snapshot: call ids must be unique; duplicated: {', '.join(dup)}.")
        wids = [w.worker_id for w in self.workers]
        if len(set(wids)) != len(wids):
            raise ValueError(f"Snapshot: worker ids must be unique, got {wids}.")
        if self.calls and not any(w.alive for w in self.workers):
            raise ValueError("Snapshot: no live worker to place calls on; start or restart a worker.")

    @functools.cached_property
    def live_workers(self) -> tuple[WorkerView, ...]:
        """Workers that can take calls, in worker-id order (computed once)."""
        return tuple(sorted((w for w in self.workers if w.alive), key=lambda w: w.worker_id))


@dataclass(frozen=True)
class Assignment:
    """A policy's decision: per worker, the calls in the order it should run them, and the
    static prefixes to prefill (warm) on each worker before its calls."""

    order: Mapping[int, tuple[Hashable, ...]]
    warm: Mapping[int, tuple[tuple[int, ...], ...]] = field(default_factory=dict)

    def worker_of(self) -> dict[Hashable, int]:
        """Map call id -> worker id."""
        return {cid: w for w, ids in self.order.items() for cid in ids}

    def check(self, snapshot: Snapshot) -> None:
        """Raise ``ValueError`` unless every call is placed exactly once on a live worker and
        every dependency placed on the same worker comes earlier in that worker's order."""
        live = {w.worker_id for w in snapshot.workers if w.alive}
        seen: dict[Hashable, tuple[int, int]] = {}
        for w, ids in self.order.items():
            if ids and w not in live:
                raise ValueError(f"Assignment puts calls on worker {w}, which is not a live worker.")
            for pos, cid in enumerate(ids):
                if cid in seen:
                    raise ValueError(f"Assignment places call {cid!r} twice.")
                seen[cid] = (w, pos)
        missing = [c.call_id for c in snapshot.calls if c.call_id not in seen]
        extra = set(seen) - {c.call_id for c in snapshot.calls}
        if missing or extra:
            raise ValueError(f"Assignment lost calls {missing[:5]!r} / invented calls {sorted(map(repr, extra))[:5]}.")
        for c in snapshot.calls:
            w, pos = seen[c.call_id]
            for d in c.deps:
                if d in seen and seen[d][0] == w and seen[d][1] > pos:
                    raise ValueError(f"Assignment runs {c.call_id!r} before its dependency {d!r} on worker {w}.")
