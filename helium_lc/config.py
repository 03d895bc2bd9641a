"""``HeliumConfig``: the frozen, validated options of :func:`helium_lc.accelerate`.

Every optimisation can be switched off on its own, for comparisons and debugging:
``prompt_cache`` (exact results of deterministic calls), ``dedup`` (identical in-flight
calls share one model call), ``prune`` (the plan rewrite), ``warm`` (prefill
static prefixes on the engines). ``route`` maps an OpenAI-compatible client's
``base_url`` or model name to a :class:`~helium_lc.engine.pool.WorkerPool`.

Example:
    >>> cfg = HeliumConfig(prompt_cache=False, disabled_rules={"prune"})
    >>> cfg.prompt_cache, sorted(cfg.disabled_rules), cfg.policy
    (False, ['prune'], 'helium')
    >>> HeliumConfig(policy="fastest")
    Traceback (most recent call last):
    ...
    ValueError: unknown scheduling policy 'fastest'; choose one of: cache_aware, fifo, helium, lspf, opwise, prefix_affinity, random, round_robin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

__all__ = ["HeliumConfig", "policy_names", "rule_names"]

_FALLBACK_POLICIES = ("fifo", "helium", "lspf", "opwise", "prefix_affinity", "random")
_FALLBACK_RULES = ("prompt_cache", "prune")


def policy_names() -> tuple[str, ...]:
    """Names of the scheduling policies (from the registry when it imports)."""
    try:
        from helium_lc.schedule.policies import POLICIES
    except Exception:  # noqa: BLE001 - the scheduler package is optional here
        return _FALLBACK_POLICIES
    return tuple(sorted(POLICIES))


def rule_names() -> tuple[str, ...]:
    """Names of the optimizer rules that ``disabled_rules`` may list."""
    try:
        from helium_lc.optimize.driver import RULE_NAMES
    except Exception:  # noqa: BLE001
        return _FALLBACK_RULES
    return tuple(sorted(RULE_NAMES))


def _check_bool(name: str, value: Any, *, allow_none: bool = False) -> None:
    if isinstance(value, bool) or (allow_none and value is None):
        return
    expected = "True, False or None" if allow_none else "True or False"
    raise ValueError(f"HeliumConfig.{name} must be {expected}, got {value!r}.")


@dataclass(frozen=True)
class HeliumConfig:
    """Options of an accelerated graph (validated on construction).

    Attributes:
        policy: scheduling policy name (see :func:`policy_names`).
        prompt_cache: serve repeated deterministic calls from the prompt cache.
        cache_path: a SQLite file for a cache shared across processes (None: in memory).
        dedup: identical in-flight deterministic calls share one model call.
        prune: drop plan operators (pure nodes) whose results nobody reads.
        warm: prefill static prompt prefixes on the engines before a batch.
        warm_threshold_tokens: only warm prefixes at least this long.
        row_gate: under row-major policies (``helium``), for an app whose rows were seen
            re-reading their own context in later calls (a debate's rounds), start a batch's
            input rows only as the engines' KV caches hold their working sets (plus as many
            as the cost model says pay for themselves in decode batching), so that a row's
            later calls find its context resident. No effect when the KV cache holds the
            batch, nor on an app's first batch. How many requests each engine runs or queues
            is the pool's setting (``max_num_seqs``).
        progress: progress bar for batches; None = on for batches of more than 4 inputs on a TTY.
        max_sync_threads: threads for sync code (sync nodes, sync tools, sync chat models) of
            a run, shared by all its rows; started on demand. The calls in flight are limited
            by the graph, the batch and ``max_concurrency`` in the RunnableConfig, not by the
            host's core count (asyncio's default executor has ``cores + 4`` threads).
        max_in_flight_per_backend: at most this many calls in flight to each backend (an
            OpenAI-compatible base URL, or a chat-model class and model name) across the runs of
            one accelerated graph, e.g. for a rate-limited provider; cache and dedup hits take
            no slot. None (default): no cap (a WorkerPool applies its own ``max_num_seqs``).
        max_rows_in_flight: at most this many input rows of one ``batch``/``abatch`` run at
            once (default 1024; None: all at once); the rest wait their turn, in input order, so a
            batch of 100,000 rows holds 1024 rows' states in memory, not 100,000. 1024 rows keep
            16 engines at ``max_num_seqs=64`` busy even with one call in flight per row.
            ``max_concurrency`` in the RunnableConfig, when smaller, wins.
        route: ``base_url`` or model name of an OpenAI-compatible client -> WorkerPool.
        trace_capture: let capture run nodes on placeholder state (runs user code; opt-in).
        disabled_rules: optimizer rule names to skip (see :func:`rule_names`).
    """

    policy: str = "helium"
    prompt_cache: bool = True
    cache_path: str | None = None
    dedup: bool = True
    prune: bool = True
    warm: bool = True
    warm_threshold_tokens: int = 192  # = helium_lc.schedule.policies.helium.WARM_MIN_TOKENS (a test checks)
    row_gate: bool = True
    progress: bool | None = None
    max_sync_threads: int = 256
    max_in_flight_per_backend: int | None = None
    max_rows_in_flight: int | None = 1024
    route: Mapping[str, Any] = field(default_factory=dict)
    trace_capture: bool = False
    disabled_rules: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.policy not in (names := policy_names()):
            raise ValueError(f"unknown scheduling policy {self.policy!r}; choose one of: "
                             f"{', '.join(names)}.")
        for name in ("prompt_cache", "dedup", "prune", "warm", "row_gate", "trace_capture"):
            _check_bool(name, getattr(self, name))
        _check_bool("progress", self.progress, allow_none=True)
        if self.cache_path is not None:
            if not isinstance(self.cache_path, (str, os.PathLike)) or not os.fspath(self.cache_path):
                raise ValueError(f"HeliumConfig.cache_path must be a file path or None, got "
                                 f"{self.cache_path!r}.")
            object.__setattr__(self, "cache_path", os.fspath(self.cache_path))
        if not isinstance(self.warm_threshold_tokens, int) or isinstance(self.warm_threshold_tokens, bool) \
                or self.warm_threshold_tokens < 0:
            raise ValueError(f"HeliumConfig.warm_threshold_tokens must be an integer >= 0, got "
                             f"{self.warm_threshold_tokens!r}.")
        cap = self.max_in_flight_per_backend
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            raise ValueError(f"HeliumConfig.max_in_flight_per_backend must be an integer >= 1 or None, got {cap!r}; "
                             "e.g. 8 for a provider that allows 8 concurrent requests.")
        rows = self.max_rows_in_flight
        if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
            raise ValueError(f"HeliumConfig.max_rows_in_flight must be an integer >= 1 or None, got {rows!r}; "
                             "e.g. 1024 (the default).")
        if not isinstance(self.max_sync_threads, int) or isinstance(self.max_sync_threads, bool) \
                or self.max_sync_threads < 1:
            raise ValueError(f"HeliumConfig.max_sync_threads must be an integer >= 1, got "
                             f"{self.max_sync_threads!r}; e.g. 256 (threads start on demand).")
        self._validate_route()
        self._validate_rules()

    def _validate_route(self) -> None:
        if not isinstance(self.route, Mapping):
            raise ValueError(f"HeliumConfig.route must map a base_url or model name to a WorkerPool, "
                             f"got {type(self.route).__name__}; e.g. route={{'http://gpu:8000/v1': pool}}.")
        for key, pool in self.route.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"HeliumConfig.route keys must be non-empty strings (a base_url or a "
                                 f"model name), got {key!r}.")
            if not callable(getattr(pool, "agenerate", None)):
                raise ValueError(f"HeliumConfig.route[{key!r}] must be a WorkerPool (something with "
                                 f"an agenerate method), got {type(pool).__name__}.")
        object.__setattr__(self, "route", MappingProxyType(dict(self.route)))

    def _validate_rules(self) -> None:
        rules: Iterable[Any] = self.disabled_rules
        if isinstance(rules, str):
            raise ValueError(f"HeliumConfig.disabled_rules must be a set of rule names, got the string "
                             f"{rules!r}; write disabled_rules={{{rules!r}}}.")
        rules = frozenset(rules)
        known = rule_names()
        if "cse" in rules and "cse" not in known:
            raise ValueError("HeliumConfig.disabled_rules lists 'cse', a rule that no longer exists: identical "
                             "calls share one model call at run time; switch that off with dedup=False "
                             "(and prompt_cache=False).")
        if unknown := sorted(r for r in rules if r not in known):
            raise ValueError(f"HeliumConfig.disabled_rules has unknown rule name(s) {unknown}; "
                             f"known rules: {', '.join(known)}.")
        object.__setattr__(self, "disabled_rules", rules)

    @property
    def effective_disabled_rules(self) -> frozenset[str]:
        """``disabled_rules`` plus the rules switched off by ``prune=False`` / ``prompt_cache=False``."""
        off = set(self.disabled_rules)
        if not self.prune:
            off.add("prune")
        if not self.prompt_cache:
            off.add("prompt_cache")
        return frozenset(off)

    @property
    def use_prompt_cache(self) -> bool:
        """Whether the runtime serves calls from the prompt cache."""
        return self.prompt_cache and "prompt_cache" not in self.disabled_rules
