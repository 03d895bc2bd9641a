"""The row gate: which input rows of a batch may run now, as the KV cache holds them.

Holding rows back trades decode batching for KV residency, and pays only when rows read their
own context again (a debate's next round re-reads its conversation). The gate admits rows in
arrival order while their KV footprint (``row_footprints``: tokens only that row's prompts
reach, plus outputs) and the blocks rows share fit the live workers' KV capacity; at least one
row always runs. A row once admitted stays admitted until it ends (``row_done``), so its later
calls are never held and find its context still resident instead of evicted by rows that
started after it. With a KV cache that holds the batch every row is admitted at once.

Beyond the rows that fit, the gate admits up to ``best_row_concurrency`` rows, from what the
app's finished rows showed (``RowReuseBook``: re-read tokens and decode steps per row) and the
cost model, or -- before any of its rows ended -- from its plan's prior (the graph loops
through an LLM node: ``RowReuseBook.prior``). An app with neither (a new map-reduce whose
summariser reads only the answers) is never held.

The gate decides; the runtime scheduler holds the calls of rows not admitted and asks again
when a row ends or nothing ran for a while (``force_one``).

Example (block size 16, room for one row's 801 own tokens beside the 16 shared ones; the app
loops through an LLM node and its calls are short, so re-reading a row's context would cost more
than the decode batching holding the second row loses: it waits):
    >>> from helium_lc.runtime.sched_model import RowReuseBook
    >>> from helium_lc.schedule.cost import CostModel
    >>> book = RowReuseBook(16); book.expect_rereads("app")
    >>> gate = RowGate(book, CostModel(block_size=16))
    >>> shared = tuple(range(16))
    >>> calls = [GateCall((1, r), "app", shared + tuple(range(1000 * r, 1000 * r + 800)), 1, r) for r in (0, 1)]
    >>> sorted(gate.admit(calls, capacity_tokens=1024))
    [(1, 0)]
    >>> gate.row_done(1, 0); sorted(gate.admit(calls[1:], capacity_tokens=1024))
    [(1, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

from helium_lc.runtime.sched_model import PromptBlocks, RowReuseBook, best_row_concurrency, row_footprints
from helium_lc.schedule.cost import CostModel

__all__ = ["GateCall", "RowGate"]

RowKey = tuple[int, Hashable]  # (run ticket id, input row)


@dataclass(frozen=True)
class GateCall:
    """One pending call of a row-signalling run, as the gate sees it: its prompt as token ids
    or as ``PromptBlocks`` at the book's ``block_size`` (what the scheduler passes)."""

    row: RowKey
    app_key: Hashable
    prompt: Sequence[int] | PromptBlocks
    est_output_tokens: int
    arrival_seq: int


class RowGate:
    """Admits rows (see module doc). State: the admitted rows and their footprints."""

    def __init__(self, reuse: RowReuseBook, cost: CostModel) -> None:
        self.reuse = reuse
        self.cost = cost
        self.active: dict[RowKey, int] = {}  # admitted row -> KV footprint (tokens)
        self._force = 0  # rows to admit whatever their footprint (stall recovery)

    def rereads(self, app: Hashable) -> bool:
        """Whether the app's finished rows re-read their own context in later waves (at least a
        tenth of it) or, before any of its rows ended, whether its plan's graph loops through an
        LLM node: then row-major priorities and the gate keep that context resident; otherwise
        they only stagger rows (smaller decode batches at the end) and are not used."""
        est = self.reuse.estimate(app)
        if est is None:
            return self.reuse.expects_rereads(app)
        return est.revisit_tokens >= 0.1 * max(1.0, est.own_tokens)

    def admit(self, calls: Iterable[GateCall], capacity_tokens: int) -> set[RowKey]:
        """The rows among ``calls``' that may run now (the admitted ones so far included)."""
        calls = list(calls)
        if not calls:
            return set()
        shared, own = row_footprints(((c.row, c.prompt, c.est_output_tokens) for c in calls),
                                     self.reuse.block_size)
        first_seen: dict[RowKey, int] = {}
        app_of: dict[RowKey, Hashable] = {}
        wave_steps: dict[Hashable, int] = {}  # app -> longest estimated output of its calls here
        for c in calls:
            first_seen.setdefault(c.row, c.arrival_seq)
            app_of[c.row] = c.app_key
            wave_steps[c.app_key] = max(wave_steps.get(c.app_key, 0), c.est_output_tokens)
        for k in own:
            if k in self.active:
                self.active[k] = max(self.active[k], own[k])
        used = shared + sum(self.active.values())
        candidates = sorted((k for k in own if k not in self.active), key=first_seen.__getitem__)
        target: dict[Hashable, int] = {}  # app -> rows to run at once beyond those that fit
        for i, k in enumerate(candidates):
            if self.active and used + own[k] > capacity_tokens:
                app = app_of[k]
                if app not in target:
                    target[app] = self._row_target(app, len(self.active), len(candidates) - i,
                                                   capacity_tokens - shared, own, wave_steps[app])
                if len(self.active) >= target[app]:
                    if not self._force:
                        break
                    self._force -= 1
            self.active[k] = own[k]
            used += own[k]
        self._force = 0
        return {k for k in own if k in self.active}

    def force_one(self) -> None:
        """Admit one more row at the next decision, whatever its footprint (nothing ran for a
        while: the admitted rows may be unable to go on without a held row)."""
        self._force += 1

    def row_done(self, ticket_id: int, row: Hashable | None) -> None:
        """Row ``row`` of run ``ticket_id`` ended (None: every row of it): it leaves the gate."""
        if row is None:
            for key in [k for k in self.active if k[0] == ticket_id]:
                del self.active[key]
        else:
            self.active.pop((ticket_id, row), None)

    def _row_target(self, app: Hashable, active: int, waiting: int, free_tokens: int,
                    own: dict[RowKey, int], wave_steps: int) -> int:
        """Rows to run at once when ``waiting`` more rows do not fit beside ``active`` ones:
        from the app's finished rows, else from its plan's prior (``RowReuseBook.prior``)."""
        own_mean = sum(own.values()) / max(1, len(own))
        est = self.reuse.estimate(app) or self.reuse.prior(app, own_tokens=own_mean, wave_steps=wave_steps)
        if est is None or not self.rereads(app):
            return active + waiting  # no evidence that holding saves anything
        return best_row_concurrency(
            active, active + waiting, decode_steps=est.decode_steps, revisit_tokens=est.revisit_tokens,
            own_tokens=own_mean, free_tokens=max(0, free_tokens),
            step_base_s=self.cost.decode_step_base_s, prefill_s_per_token=self.cost.prefill_s_per_token)
