"""Exact prompt caches for deterministic LLM calls: in memory (LRU) and on disk (SQLite).

Both implement :class:`PromptCache`. Lookups are per key, so a batch can be partly
served (``get_many`` returns ``None`` for each miss). After a digest match the stored
canonical text is compared with the key's, so a hash collision is a miss. Values go
through the JSON codec of :mod:`helium_lc.cache.codec` in *both* backends, so a value
read back is always a fresh copy (mutating it never changes the cache) and anything the
memory cache accepts the SQLite cache accepts too.

Sampled calls (``key.is_deterministic`` False) are never cached: ``put`` raises and
``get`` returns ``None`` (counted in ``num_bypassed``, not as a miss).

Example:
    >>> from langchain_core.messages import AIMessage, HumanMessage
    >>> from helium_lc.cache.keys import chat_call_key
    >>> cache = MemoryPromptCache(max_entries=2)
    >>> key = chat_call_key("m", [HumanMessage("hi")], params={"temperature": 0})
    >>> cache.get(key) is None
    True
    >>> cache.put(key, AIMessage("hello"))
    >>> cache.get(key).content, cache.stats().num_hits, cache.stats().num_misses
    ('hello', 1, 1)
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from helium_lc.cache.codec import decode_value, encode_value
from helium_lc.cache.keys import CacheKey

__all__ = ["CacheStats", "PromptCache", "MemoryPromptCache", "SQLitePromptCache"]


@dataclass(frozen=True)
class CacheStats:
    """Counters of one cache object since creation or ``clear()``.

    ``num_entries`` is the number of stored entries (for SQLite: in the file, across
    processes); the other counters are this object's own lookups.
    """

    num_hits: int
    num_misses: int
    num_entries: int
    num_collisions: int = 0   # digest matched, canonical text differed (counted as misses too)
    num_bypassed: int = 0     # lookups of sampled calls, never served
    num_evictions: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits over hits + misses (0.0 before any lookup)."""
        total = self.num_hits + self.num_misses
        return self.num_hits / total if total else 0.0


@runtime_checkable
class PromptCache(Protocol):
    """What the optimizer and the runtime need from a prompt cache."""

    def get(self, key: CacheKey) -> Any | None:
        """The cached value for ``key``, or None (miss or sampled call). Never mutates entries."""
        ...

    def get_many(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        """``get`` for each key, in order (a batch can be partly served)."""
        ...

    def put(self, key: CacheKey, value: Any) -> None:
        """Store ``value`` under ``key`` (replacing any entry). Raises for sampled calls."""
        ...

    def put_many(self, items: Iterable[tuple[CacheKey, Any]]) -> None:
        """``put`` for each (key, value) pair."""
        ...

    def clear(self) -> None:
        """Remove every entry and reset the counters."""
        ...

    def stats(self) -> CacheStats:
        """Current counters (never mutates)."""
        ...


def _check_storable(key: CacheKey) -> None:
    if not isinstance(key, CacheKey):
        raise TypeError(f"prompt-cache keys must be CacheKey objects, got {type(key).__name__}; "
                        "build one with chat_call_key(...) or token_request_key(...).")
    if not key.is_deterministic:
        raise ValueError(
            "refusing to cache a sampled (non-deterministic) call: its output is not a function "
            "of its prompt. Check key.is_deterministic before put(), or call with temperature=0."
        )


class _Counters:
    """Hit/miss counters shared by both backends (callers hold the cache's lock)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.num_hits = self.num_misses = self.num_collisions = 0
        self.num_bypassed = self.num_evictions = 0

    def stats(self, num_entries: int) -> CacheStats:
        return CacheStats(self.num_hits, self.num_misses, num_entries, self.num_collisions,
                          self.num_bypassed, self.num_evictions)


class MemoryPromptCache:
    """A thread-safe in-process LRU prompt cache holding at most ``max_entries`` entries."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive integer, got {max_entries!r}.")
        self.max_entries = max_entries
        self._lock = threading.Lock()
        # digest -> (canonical_text, encoded value); most recently used last.
        self._entries: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._counters = _Counters()

    def get(self, key: CacheKey) -> Any | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        encoded: list[str | None] = []
        with self._lock:
            for key in keys:
                encoded.append(self._lookup_locked(key))
        return [None if e is None else decode_value(e) for e in encoded]

    def _lookup_locked(self, key: CacheKey) -> str | None:
        c = self._counters
        if not key.is_deterministic:
            c.num_bypassed += 1
            return None
        entry = self._entries.get(key.digest)
        if entry is None or entry[0] != key.canonical_text:
            c.num_misses += 1
            c.num_collisions += entry is not None
            return None
        self._entries.move_to_end(key.digest)
        c.num_hits += 1
        return entry[1]

    def put(self, key: CacheKey, value: Any) -> None:
        self.put_many([(key, value)])

    def put_many(self, items: Iterable[tuple[CacheKey, Any]]) -> None:
        rows = []
        for key, value in items:
            _check_storable(key)
            rows.append((key, encode_value(value)))  # encode outside the lock
        with self._lock:
            for key, text in rows:
                self._entries[key.digest] = (key.canonical_text, text)
                self._entries.move_to_end(key.digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self._counters.num_evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._counters.reset()

    def stats(self) -> CacheStats:
        with self._lock:
            return self._counters.stats(len(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class SQLitePromptCache:
    """A prompt cache in an SQLite file, shared by threads and processes (WAL mode).

    No size limit: delete the file or call ``clear()`` to reclaim space. One connection
    per object, guarded by a lock; other processes coordinate through SQLite's locking
    (``busy_timeout_s``).
    """

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS prompt_cache ("
        " digest TEXT PRIMARY KEY,"
        " canonical_text TEXT NOT NULL,"
        " value_json TEXT NOT NULL,"
        " created_s REAL NOT NULL)"
    )

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        if busy_timeout_s <= 0:
            raise ValueError(f"busy_timeout_s must be > 0, got {busy_timeout_s!r}.")
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(
                f"cannot create prompt cache {self.path!r}: folder {parent!r} does not exist; "
                "create it first."
            )
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False,
                                     isolation_level=None)  # autocommit; explicit BEGIN below
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(self._SCHEMA)

    def get(self, key: CacheKey) -> Any | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        found: dict[str, tuple[str, str]] = {}
        wanted = sorted({k.digest for k in keys if k.is_deterministic})
        with self._lock:
            for start in range(0, len(wanted), 500):  # stay under SQLite's variable limit
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for digest, text, value in self._conn.execute(
                        f"SELECT digest, canonical_text, value_json FROM prompt_cache "
                        f"WHERE digest IN ({marks})", chunk):
                    found[digest] = (text, value)
            encoded: list[str | None] = []
            c = self._counters
            for key in keys:
                if not key.is_deterministic:
                    c.num_bypassed += 1
                    encoded.append(None)
                    continue
                entry = found.get(key.digest)
                if entry is None or entry[0] != key.canonical_text:
                    c.num_misses += 1
                    c.num_collisions += entry is not None
                    encoded.append(None)
                else:
                    c.num_hits += 1
                    encoded.append(entry[1])
        return [None if e is None else decode_value(e) for e in encoded]

    def put(self, key: CacheKey, value: Any) -> None:
        self.put_many([(key, value)])

    def put_many(self, items: Iterable[tuple[CacheKey, Any]]) -> None:
        rows = []
        now_s = time.time()
        for key, value in items:
            _check_storable(key)
            rows.append((key.digest, key.canonical_text, encode_value(value), now_s))
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO prompt_cache VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM prompt_cache")
            self._counters.reset()

    def stats(self) -> CacheStats:
        with self._lock:
            (num_entries,) = self._conn.execute("SELECT COUNT(*) FROM prompt_cache").fetchone()
            return self._counters.stats(int(num_entries))

    def __len__(self) -> int:
        return self.stats().num_entries

    def close(self) -> None:
        """Close the connection (the file stays). The object is unusable afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "SQLitePromptCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
