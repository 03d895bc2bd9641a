"""What the runtime scheduler learns and keeps per pool: call-site prefixes, per-worker
KV models, and the warming rule.

Live requests arrive as concrete token ids without a template. ``SiteBook`` learns each
call site's *static prefix* (the longest common prefix of every prompt seen at that site,
across rows and batches) so that the policy's Templated Radix Tree sees real templates:
``(static prefix tokens, "rest")``. A site seen with one prompt only has no known template
yet (its prompt is used as an all-literal template).

``WorkerModels`` holds one ``RadixCache`` per worker: a model of what was sent to it
(block aligned, capacity = the worker's KV capacity, LRU eviction), kept honest with the
cached-token counts the engine reports (``WorkerModels.reconcile``). A restarted worker
(a new worker object under the same id) starts with an empty model.

``WorkerSpeeds`` learns how much slower or faster each worker serves requests than the cost
model predicts, relative to the others (servers on different hardware, or sharing cores with
other work): the policies spread estimated work by it.

``choose_warm_prefixes`` is the warming rule (see its docstring).

Example:
    >>> book = SiteBook()
    >>> book.observe("s", (1, 2, 3, 4, 9)); book.static_prefix("s") is None
    True
    >>> book.observe("s", (1, 2, 3, 4, 8)); book.static_prefix("s")
    (1, 2, 3, 4)
    >>> template_for((1, 2, 3, 4, 8), (1, 2, 3, 4))
    ((1, 2, 3, 4), 'rest')
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Mapping, Sequence

from helium_lc.schedule.radix import KVCacheFullError, RadixCache, common_prefix_len
from helium_lc.schedule.snapshot import TemplateKey

__all__ = ["SiteBook", "WorkerModels", "WorkerSpeeds", "RowReuse", "RowReuseBook", "template_for", "common_prefix_len",
           "choose_warm_prefixes", "row_footprints", "block_keys", "PromptBlocks", "ROW_CHUNK_TOKENS",
           "best_row_concurrency"]


def template_for(prompt: tuple[int, ...], static_prefix: tuple[int, ...] | None) -> TemplateKey | None:
    """The template key of a prompt whose call site has ``static_prefix`` (None: unknown)."""
    if not static_prefix:
        return None
    if len(static_prefix) >= len(prompt):
        return (prompt,)
    return (static_prefix, "rest")


@dataclass
class _Site:
    prefix: tuple[int, ...]
    num_distinct: int = 1
    workers: set[int] = field(default_factory=set)


class SiteBook:
    """Static prefix per call site, learned as the common prefix of its prompts.

    A site key is any hashable; the scheduler uses ``(app_key, node, ordinal)`` so that
    two apps sharing a pool do not mix their templates.
    """

    def __init__(self) -> None:
        self._sites: dict[Hashable, _Site] = {}

    def observe(self, site: Hashable, prompt: tuple[int, ...]) -> None:
        """Fold one prompt into the site's common prefix. Mutates the book."""
        s = self._sites.get(site)
        if s is None:
            self._sites[site] = _Site(prompt)
            return
        m = len(s.prefix)
        if prompt[:m] == s.prefix:  # the common case once the prefix is learned: one comparison
            s.num_distinct += len(prompt) != m
        else:
            s.prefix = s.prefix[:common_prefix_len(s.prefix, prompt)]
            s.num_distinct += 1

    def seed(self, site: Hashable, prefix: tuple[int, ...]) -> None:
        """Know ``prefix`` as the static prefix of a site not seen yet (from a learned plan);
        later prompts fold into it as usual, so a stale seed shrinks to what they share."""
        if site not in self._sites and prefix:
            self._sites[site] = _Site(tuple(prefix), num_distinct=2)

    def static_prefix(self, site: Hashable) -> tuple[int, ...] | None:
        """The site's static prefix once two different prompts were seen, else None."""
        s = self._sites.get(site)
        if s is None or s.num_distinct < 2:
            return None
        return s.prefix

    def note_served(self, site: Hashable, worker_id: int) -> None:
        """Remember that ``worker_id`` served a call of ``site``. Mutates the book."""
        if site in self._sites:
            self._sites[site].workers.add(worker_id)

    def known_prefixes(self, app_key: Any) -> list[tuple[Hashable, tuple[int, ...], frozenset[int]]]:
        """(site, static prefix, workers that served it) for the sites of one app (no workers:
        seeded from a learned plan and not served yet)."""
        out = []
        for site, s in self._sites.items():
            if isinstance(site, tuple) and site and site[0] == app_key and s.num_distinct >= 2 and s.prefix:
                out.append((site, s.prefix, frozenset(s.workers)))
        return out

    def __len__(self) -> int:
        return len(self._sites)


class WorkerModels:
    """One ``RadixCache`` per worker modelling what was sent to it."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._models: dict[int, tuple[int, RadixCache]] = {}
        self._reported: dict[int, int | None] = {}  # worker -> KV capacity the worker reports

    def get(self, worker_id: int, worker: Any) -> RadixCache:
        """The model of ``worker`` (a fresh one when the worker object changed, e.g. restarted)."""
        entry = self._models.get(worker_id)
        if entry is None or entry[0] != id(worker):
            cap = int(getattr(worker, "kv_capacity_tokens", 0) or 0)
            entry = (id(worker), RadixCache(block_size=self.block_size, capacity_tokens=cap or None))
            self._models[worker_id] = entry
            self._reported[worker_id] = entry[1].capacity_tokens
        return entry[1]

    def capacity(self, worker_id: int, worker: Any) -> int | None:
        """The KV capacity the worker reports (block aligned; None: unbounded): what admission
        decisions use. The model's own ``capacity_tokens`` is the effective capacity for
        residency, which :meth:`reconcile` adjusts."""
        self.get(worker_id, worker)
        return self._reported[worker_id]

    def reconcile(self, worker_id: int, prompt_len: int, predicted: int, reported: int) -> int:
        """Fold an engine-reported cached-token count into the worker's model.

        ``predicted`` is what the model expected to be cached when the request was placed
        (before this plan's own sends), ``reported`` what the engine found (``usage`` /
        ``num_cached_prompt_tokens``). The engine always computes a prompt's last token, so at
        most ``prompt_len - 1`` tokens, whole blocks, can hit; beyond that a gap of more than a
        block means the engine had evicted what the model held -- its effective capacity is
        smaller (running sequences' blocks, other clients of a shared server) -- so the
        modelled capacity shrinks by the gap (down to half of the reported capacity) and the
        model evicts to fit; a hit larger than predicted grows it back (up to the reported
        capacity). Returns the tokens over-predicted (0 when the model was right).
        """
        entry = self._models.get(worker_id)
        full = self._reported.get(worker_id)
        if entry is None or full is None:
            return 0
        model, bs = entry[1], self.block_size
        predicted = min(predicted, max(0, prompt_len - 1) // bs * bs)
        gap = predicted - reported
        cap = model.capacity_tokens or full
        if gap > bs:
            cap = max(model.aligned(full // 2), model.aligned(cap - gap))
        elif -gap > bs and cap < full:
            cap = min(full, model.aligned(cap - gap))
        if cap != model.capacity_tokens:
            model.capacity_tokens = cap
            if model.size_tokens > cap:
                model.evict(model.size_tokens - cap)
        return gap if gap > bs else 0

    def forget(self, worker_id: int) -> None:
        """Drop a worker's model (it died; its cache is gone)."""
        self._models.pop(worker_id, None)

    def reset_all(self) -> None:
        """Empty every model (after ``pool.reset_prefix_cache()``)."""
        for _, model in self._models.values():
            model.reset()

    @staticmethod
    def record_sent(model: RadixCache, prompt: Sequence[int]) -> bool:
        """Insert a sent prompt; False when it does not fit the modelled cache at all."""
        try:
            model.insert(prompt)
        except KVCacheFullError:
            return False
        return True


class WorkerSpeeds:
    """Each worker's slowdown relative to the others, learned from service times.

    Every finished request gives a ratio: its service time on the worker (submit to finish)
    over the cost model's estimate (prefill of the tokens the engine computed, plus one decode
    step per output token at the batch it was released into). Each worker keeps a moving mean
    of the log ratio (``alpha``); :meth:`slowdown` is that mean relative to the geometric mean
    over the live workers that have at least ``min_samples`` results, clipped to [1/4, 4], and
    1.0 within ``dead_band`` (servers that differ by less are treated as equal, so noise never
    unbalances a pool of identical servers). With fewer than two such workers it is 1.0: one
    engine, or a pool before its first results, is planned as before. The cost model's own
    absolute error cancels out; only the workers' differences remain.

    Example (worker 1 serves in twice the time worker 0 does):
        >>> speeds = WorkerSpeeds(min_samples=2)
        >>> for _ in range(3):
        ...     speeds.observe(0, 1.0, 1.0); speeds.observe(1, 2.0, 1.0)
        >>> round(speeds.slowdown(0, [0, 1]), 2), round(speeds.slowdown(1, [0, 1]), 2)
        (0.71, 1.41)
        >>> speeds.slowdown(1, [1])  # alone: nothing to compare with
        1.0
    """

    def __init__(self, *, alpha: float = 0.2, min_samples: int = 4, dead_band: float = 0.25) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}.")
        self.alpha = alpha
        self.min_samples = min_samples
        self.dead_band = dead_band
        self._log_ratio: dict[int, float] = {}
        self._samples: dict[int, int] = {}

    def observe(self, worker_id: int, observed_s: float, expected_s: float) -> None:
        """Fold one request's service time (``observed_s``) and the model's ``expected_s`` in."""
        if observed_s <= 0.0 or expected_s <= 0.0:
            return
        x = math.log(min(8.0, max(0.125, observed_s / expected_s)))
        n = self._samples.get(worker_id, 0)
        prev = self._log_ratio.get(worker_id, x)
        self._log_ratio[worker_id] = prev + max(self.alpha, 1.0 / (n + 1)) * (x - prev)
        self._samples[worker_id] = n + 1

    def forget(self, worker_id: int) -> None:
        """Drop what was learned about a worker (it was restarted or replaced)."""
        self._log_ratio.pop(worker_id, None)
        self._samples.pop(worker_id, None)

    def slowdown(self, worker_id: int, live_ids: Iterable[int]) -> float:
        """Seconds this worker takes per second of the cost model's estimate, relative to the
        live workers' geometric mean (1.0 when it cannot be told apart from them)."""
        known = [w for w in live_ids if self._samples.get(w, 0) >= self.min_samples]
        if worker_id not in known or len(known) < 2:
            return 1.0
        rel = math.exp(self._log_ratio[worker_id] - sum(self._log_ratio[w] for w in known) / len(known))
        if abs(rel - 1.0) < self.dead_band:
            return 1.0
        return min(4.0, max(0.25, rel))


def choose_warm_prefixes(candidates: Mapping[int, Iterable[tuple[int, ...]]],
                         tick_prompts: Mapping[int, Sequence[tuple[int, ...]]],
                         models: Mapping[int, RadixCache], *, threshold_tokens: int,
                         block_size: int) -> list[tuple[int, tuple[int, ...]]]:
    """The (worker, prefix) warm-ups worth issuing now.

    Rule: a prefix is cut to whole blocks and warmed on a worker only when the part of it
    that warming would compute there -- its tokens beyond what the worker's model already
    holds *and* beyond what any request submitted to that worker in this same tick shares
    with it -- is at least ``max(threshold_tokens, block_size)`` long, and the prefix takes at
    most half of the worker's modelled KV capacity. A request submitted in the same tick
    prefills the shared part itself, concurrently, so warming it would only make that
    request wait; a prefix already resident needs nothing. Mutates nothing.
    """
    out: list[tuple[int, tuple[int, ...]]] = []
    need = max(threshold_tokens, block_size)
    for w, prefixes in candidates.items():
        model = models.get(w)
        if model is None:
            continue
        seen: set[tuple[int, ...]] = set()
        for p in prefixes:
            p = tuple(p[: len(p) - len(p) % block_size])
            if not p or p in seen:
                continue
            seen.add(p)
            if model.capacity_tokens is not None and 2 * len(p) > model.capacity_tokens:
                continue
            covered = model.peek(p)
            for q in tick_prompts.get(w, ()):
                covered = max(covered, common_prefix_len(p, q))
            if len(p) - covered >= need:
                out.append((w, p))
    return out


#: The row book's and the row gate's unit of KV accounting, in tokens (at least the engine's
#: block size): their footprints are estimates for admission, and hashing a prompt in 64-token
#: chunks costs a quarter of hashing it in 16-token blocks.
ROW_CHUNK_TOKENS = 64


def block_keys(prompt: Sequence[int], block_size: int) -> tuple[int, ...]:
    """Keys of ``prompt``'s full blocks, each naming its whole prefix (a hash chain).

    Example:
        >>> a, b = block_keys((1, 2, 3, 4, 5), 2), block_keys((1, 2, 9, 9), 2)
        >>> len(a), a[0] == b[0], a[1] == b[1]
        (2, True, False)
    """
    prompt = tuple(prompt)
    keys: list[int] = []
    key: Any = None
    for i in range(0, len(prompt) - len(prompt) % block_size, block_size):
        key = hash((key, prompt[i:i + block_size]))
        keys.append(key)
    return tuple(keys)


@dataclass(frozen=True)
class PromptBlocks:
    """A prompt as the row book and the row gate see it: the keys of its full blocks
    (``block_keys``) and the tokens of its partial last block.

    The scheduler computes it once per request, on the caller's thread when the request is
    submitted (its tokens were just made there and are in that core's cache; a first read of a
    long prompt on the engine loop's thread costs several times more), and every plan reads it.

    Example:
        >>> PromptBlocks.of((1, 2, 3, 4, 5), 2).tail_tokens
        1
    """

    keys: tuple[int, ...]
    tail_tokens: int

    @classmethod
    def of(cls, prompt: Sequence[int], block_size: int) -> "PromptBlocks":
        """The blocks of ``prompt`` (token ids) at ``block_size``."""
        return cls(block_keys(prompt, block_size), len(prompt) % block_size)


def _blocks(prompt: "Sequence[int] | PromptBlocks", block_size: int) -> PromptBlocks:
    return prompt if isinstance(prompt, PromptBlocks) else PromptBlocks.of(prompt, block_size)


def row_footprints(calls: Iterable[tuple[Hashable, "Sequence[int] | PromptBlocks", int]],
                   block_size: int) -> tuple[int, dict[Hashable, int]]:
    """KV tokens the rows of a batch need: (shared, {row: own}).

    ``calls`` are (row, prompt, estimated output tokens); a prompt is its token ids or its
    ``PromptBlocks`` at ``block_size``. A full block of the prompt tree that prompts of two or
    more rows pass through (a common system prompt) counts once in ``shared``; a block only one
    row's prompts reach (its context, its conversation) counts in that row's ``own``, together
    with its prompts' partial tail blocks and outputs. Set operations over the block keys, no
    per-block Python loop.

    Example (block size 2; rows 0 and 1 share the block (1, 2)):
        >>> row_footprints([(0, (1, 2, 3, 4), 1), (0, (1, 2, 3, 4, 5), 1), (1, (1, 2, 6, 6), 2)], 2)
        (2, {0: 5, 1: 4})
    """
    reached: dict[Hashable, set[int]] = {}
    extra: dict[Hashable, int] = {}
    for row, prompt, out_tokens in calls:
        blocks = _blocks(prompt, block_size)
        reached.setdefault(row, set()).update(blocks.keys)
        extra[row] = extra.get(row, 0) + blocks.tail_tokens + max(0, out_tokens)
    seen: set[int] = set()
    shared: set[int] = set()
    for keys in reached.values():
        shared |= seen & keys
        seen |= keys
    return block_size * len(shared), {r: block_size * len(b - shared) + extra[r] for r, b in reached.items()}


@dataclass
class RowReuse:
    """Per-row means an app's finished rows showed (see :class:`RowReuseBook`)."""

    rows: int = 0
    own_tokens: float = 0.0      # prompt tokens only this row's prompts reached
    revisit_tokens: float = 0.0  # own tokens the row's later waves read again (once per wave)
    decode_steps: float = 0.0    # sum over the row's waves of the longest estimated output


@dataclass
class _LiveRow:
    app_key: Hashable
    reached: set[int] = field(default_factory=set)  # blocks this row's prompts reached
    reads: Counter[int] = field(default_factory=Counter)  # own block -> waves that read it
    decode_steps: int = 0
    in_flight: int = 0   # calls planned and not finished
    wave_steps: int = 0  # longest estimated output of the current wave
    wave_blocks: set[int] = field(default_factory=set)  # own blocks the current wave read
    waves: int = 0       # waves planned so far


@dataclass
class _RunBlocks:
    """The blocks the live rows of one run reached: a block only one row reached is that row's
    own; once a second row reaches it, it is ``shared`` (for the rest of the run)."""

    seen: set[int] = field(default_factory=set)
    shared: set[int] = field(default_factory=set)


class RowReuseBook:
    """How much an app's input rows re-read their own context, learned from the rows' plans.

    The row gate (``RuntimeScheduler``) trades decode batching for KV residency: holding a row
    back only pays when the admitted rows read their private blocks again in a later *wave* (a
    debate's next round re-reads its conversation) and would find them evicted. A wave starts
    when a row with no call in flight gets a call planned: calls of one wave (a fan-out planned a
    few milliseconds apart) overlap, and the engine pins the blocks of running calls, so holding
    whole rows back cannot help them. This book records, per input row, the full prompt blocks only that row
    reached (``own_tokens``) and how many of them each later wave read again
    (``revisit_tokens``; a block counts once per wave), plus the decode steps the row took
    (each wave: its longest estimated output). When a row ends its numbers join its app's
    running means (the last ``window`` rows weigh most). The bookkeeping is set operations over
    block keys (``PromptBlocks``), no per-block Python loop: it runs at every plan. Its
    ``block_size`` is its unit of accounting; the scheduler uses ``ROW_CHUNK_TOKENS``.

    Example (block size 2; row 0's second wave re-reads its block (5, 6), row 1 never does):
        >>> book = RowReuseBook(2)
        >>> book.observe("app", 1, [(0, (1, 2, 5, 6), 4), (1, (1, 2, 7, 8), 4)])
        >>> book.call_done(1, 0); book.call_done(1, 1)
        >>> book.observe("app", 1, [(0, (1, 2, 5, 6, 9, 9), 2)])
        >>> book.finish(1, None)
        >>> r = book.estimate("app"); (r.rows, r.own_tokens, r.revisit_tokens, r.decode_steps)
        (2, 3.0, 1.0, 5.0)
    """

    def __init__(self, block_size: int, window: int = 64) -> None:
        self.block_size = block_size
        self.window = window
        self._live: dict[tuple[int, Hashable], _LiveRow] = {}
        self._runs: dict[int, _RunBlocks] = {}  # ticket -> the blocks its live rows reached
        self._apps: dict[Hashable, RowReuse] = {}
        self._looping: set[Hashable] = set()  # apps whose graph loops through an LLM node

    def observe(self, app_key: Hashable, ticket: int,
                calls: Iterable[tuple[Hashable, "Sequence[int] | PromptBlocks", int]]) -> None:
        """Record one plan's calls of a run (``ticket``): (row, prompt, estimated output tokens);
        a prompt is its token ids or its ``PromptBlocks`` at this book's ``block_size``."""
        run = self._runs.setdefault(ticket, _RunBlocks())
        touched: dict[Hashable, set[int]] = {}
        steps: dict[Hashable, int] = {}
        count: dict[Hashable, int] = {}
        bs = self.block_size
        for row, prompt, out_tokens in calls:
            live = self._live.get((ticket, row))
            if live is None:
                live = self._live[(ticket, row)] = _LiveRow(app_key)
            blocks = set(_blocks(prompt, bs).keys)
            run.shared |= (blocks & run.seen) - live.reached  # another row reached them first
            run.seen |= blocks
            live.reached |= blocks
            touched.setdefault(row, set()).update(blocks)
            steps[row] = max(steps.get(row, 0), max(0, out_tokens))
            count[row] = count.get(row, 0) + 1
        for row, seen in touched.items():
            live = self._live[(ticket, row)]
            mine = seen - run.shared
            if live.in_flight <= 0:  # a new wave: its reads of the row's earlier blocks may miss
                live.wave_blocks = set()
                live.wave_steps = 0
                live.waves += 1
            # a block of an earlier wave counts once per wave, whichever plan of the wave reads it
            live.reads.update(mine - live.wave_blocks)
            live.wave_blocks |= mine
            live.decode_steps += max(0, steps[row] - live.wave_steps)
            live.wave_steps = max(live.wave_steps, steps[row])
            live.in_flight += count[row]

    def call_done(self, ticket: int, row: Hashable) -> None:
        """A call of row ``row`` of run ``ticket`` that ``observe`` saw has finished."""
        live = self._live.get((ticket, row))
        if live is not None:
            live.in_flight -= 1

    def finish(self, ticket: int, row: Hashable | None) -> None:
        """Row ``row`` of run ``ticket`` ended (None: every row of it); fold it into its app."""
        keys = [k for k in self._live if k[0] == ticket] if row is None else [(ticket, row)]
        run = self._runs.get(ticket, _RunBlocks())
        for k in keys:
            live = self._live.pop(k, None)
            if live is None:
                continue
            # a block a later row also reached is shared, neither own nor a re-read of this row
            mine = live.reads.keys() - run.shared
            own_tokens = self.block_size * len(mine)
            revisit_tokens = self.block_size * (sum(live.reads[b] for b in mine) - len(mine))
            run.seen -= live.reached - run.shared  # memory stays bounded by the rows in flight and the shared blocks
            s = self._apps.setdefault(live.app_key, RowReuse())
            s.rows += 1
            n = min(s.rows, self.window)
            s.own_tokens += (own_tokens - s.own_tokens) / n
            s.revisit_tokens += (revisit_tokens - s.revisit_tokens) / n
            s.decode_steps += (live.decode_steps - s.decode_steps) / n
        if row is None:
            self._runs.pop(ticket, None)

    def estimate(self, app_key: Hashable) -> RowReuse | None:
        """The app's per-row means, or None before any of its rows ended."""
        return self._apps.get(app_key)

    def expect_rereads(self, app_key: Hashable) -> None:
        """The app's graph loops through an LLM node (its plan's topology): until its own rows
        tell otherwise, expect them to re-read their context (:meth:`prior`). Mutates the book."""
        self._looping.add(app_key)

    def expects_rereads(self, app_key: Hashable) -> bool:
        """Whether the app loops through an LLM node (:meth:`expect_rereads`) and its live rows
        have not shown otherwise: once some of them ran a later wave, those waves must have
        re-read at least a tenth of their own blocks."""
        if app_key not in self._looping:
            return False
        ratio = self._live_reread_ratio(app_key)
        return ratio is None or ratio >= 0.1

    def _live_reread_ratio(self, app_key: Hashable) -> float | None:
        """Re-reads per own block over the app's live rows that ran two waves or more (None: none yet)."""
        own = reread = 0
        for live in self._live.values():
            if live.app_key == app_key and live.waves >= 2:
                own += len(live.reads)
                reread += sum(live.reads.values()) - len(live.reads)
        return reread / own if own else None

    def prior(self, app_key: Hashable, *, own_tokens: float, wave_steps: float) -> RowReuse | None:
        """What to assume of an app none of whose rows ended yet: for an app that loops through
        an LLM node, later waves re-read each row's own tokens (``own_tokens``: the mean own
        footprint of the rows at hand) once in all -- or as often as its live rows' later waves
        did, once some ran one -- and a row takes two waves of ``wave_steps`` decode steps;
        otherwise None (no evidence that holding rows saves anything)."""
        if app_key not in self._looping or app_key in self._apps:
            return None
        ratio = self._live_reread_ratio(app_key)
        revisit = own_tokens * (1.0 if ratio is None else ratio)
        return RowReuse(rows=0, own_tokens=own_tokens, revisit_tokens=revisit, decode_steps=2 * wave_steps)

    def seed(self, app_key: Hashable, prior: RowReuse) -> None:
        """Start an app not seen here from ``prior`` (a learned plan's means); its own rows then
        fold in as usual. Mutates the book."""
        if app_key not in self._apps and prior.rows > 0:
            self._apps[app_key] = RowReuse(prior.rows, prior.own_tokens, prior.revisit_tokens, prior.decode_steps)


def best_row_concurrency(lo: int, hi: int, *, decode_steps: float, revisit_tokens: float, own_tokens: float,
                         free_tokens: float, step_base_s: float, prefill_s_per_token: float) -> int:
    """How many rows to run at once, between ``lo`` (those that fit) and ``hi`` (all known).

    Per row, running ``g`` rows together costs ``decode_steps * step_base_s / g`` of fixed
    decode-step time (fewer rows: smaller batches, more steps in all) plus the re-reads that
    miss: ``revisit_tokens * prefill_s_per_token * max(0, 1 - free_tokens / (g * own_tokens))``
    (the share of the rows' own blocks the KV cache cannot hold). Returns the ``g`` of least
    cost (the smallest on ties).

    Example: rows that never re-read their context run all at once; rows that re-read a lot
    run as many as fit:
        >>> kw = dict(decode_steps=32, own_tokens=800, free_tokens=2400, step_base_s=0.03, prefill_s_per_token=3e-4)
        >>> best_row_concurrency(3, 12, revisit_tokens=0, **kw), best_row_concurrency(3, 12, revisit_tokens=2400, **kw)
        (12, 3)
    """
    if hi <= lo:
        return max(lo, hi)
    best, best_cost = lo, float("inf")
    for g in range(lo, hi + 1):
        miss = max(0.0, 1.0 - free_tokens / (g * own_tokens)) if own_tokens > 0 else 0.0
        cost = decode_steps * step_base_s / g + revisit_tokens * prefill_s_per_token * miss
        if cost < best_cost - 1e-12:
            best, best_cost = g, cost
    return best
