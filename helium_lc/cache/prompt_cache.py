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

import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from helium_lc.cache.codec import decode_value, encode_value
from helium_lc.cache.keys import CacheKey

__all__ = ["CacheStats", "CacheFileError", "PromptCache", "MemoryPromptCache", "SQLitePromptCache"]

log = logging.getLogger(__name__)


class CacheFileError(RuntimeError):
    """The prompt-cache file cannot be used; the message names the file and the fix."""


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
    """A thread-safe in-process LRU prompt cache, bounded by entries and by bytes.

    Args:
        max_entries: at most this many entries (least recently used evicted first).
        max_bytes: at most this many bytes of stored text (keys' canonical text plus encoded
            values, counted as UTF-8-ish string lengths); default 256 MiB. One entry larger than
            the whole budget is not stored.
    """

    DEFAULT_MAX_BYTES = 256 * 2**20

    def __init__(self, max_entries: int = 100_000, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive integer, got {max_entries!r}.")
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer (bytes), got {max_bytes!r}; "
                             "e.g. MemoryPromptCache(max_bytes=64 * 2**20).")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # digest -> (canonical_text, encoded value); most recently used last.
        self._entries: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._num_bytes = 0
        self._counters = _Counters()

    @property
    def num_bytes(self) -> int:
        """Bytes held now (the measure ``max_bytes`` bounds)."""
        with self._lock:
            return self._num_bytes

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
                size = len(key.canonical_text) + len(text)
                if size > self.max_bytes:
                    continue  # larger than the whole budget: never held
                old = self._entries.pop(key.digest, None)
                if old is not None:
                    self._num_bytes -= len(old[0]) + len(old[1])
                self._entries[key.digest] = (key.canonical_text, text)
                self._num_bytes += size
            while len(self._entries) > self.max_entries or self._num_bytes > self.max_bytes:
                _, (canonical, value) = self._entries.popitem(last=False)
                self._num_bytes -= len(canonical) + len(value)
                self._counters.num_evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._num_bytes = 0
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

    _COLUMNS = ("digest", "canonical_text", "value_json", "created_s")

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        if busy_timeout_s <= 0:
            raise ValueError(f"busy_timeout_s must be > 0, got {busy_timeout_s!r}.")
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        if os.path.isdir(self.path):
            raise self._file_error("is a folder",
                                   f"pass a file path, e.g. {os.path.join(self.path, 'helium_cache.sqlite')!r}")
        if not os.path.isdir(parent):
            raise FileNotFoundError(
                f"cannot create prompt cache {self.path!r} (cache_path): folder {parent!r} does not exist; "
                "create it first."
            )
        self._lock = threading.Lock()
        self._counters = _Counters()
        self.num_corrupt_rows = 0
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False,
                                         isolation_level=None)  # autocommit; explicit BEGIN below
        except sqlite3.Error as exc:
            raise self._file_error(f"cannot be opened ({exc})",
                                   "check the permissions of the file and its folder, or pass another cache_path") from exc
        try:
            with self._lock:
                self._open_checked()
        except BaseException:
            self._conn.close()
            raise

    def _file_error(self, problem: str, fix: str) -> CacheFileError:
        return CacheFileError(f"The prompt-cache file {self.path!r} (HeliumConfig.cache_path) {problem}; "
                              f"{fix}.")

    def _open_checked(self) -> None:
        """Set the connection up and refuse files that are not (or cannot be) a helium_lc cache."""
        other = "delete it or pass another cache_path"
        try:
            tables = [name for (name,) in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        except sqlite3.DatabaseError as exc:  # a text file, a truncated or corrupt database
            raise self._file_error(f"is not a readable SQLite database ({exc})", other) from exc
        if "prompt_cache" in tables:
            columns = tuple(row[1] for row in self._conn.execute("PRAGMA table_info(prompt_cache)"))
            if columns != self._COLUMNS:
                raise self._file_error(
                    f"has a table prompt_cache with columns {list(columns)}, not a helium_lc cache's "
                    f"{list(self._COLUMNS)}", "pass another cache_path (or delete the file)")
        elif tables:
            raise self._file_error(
                f"is an SQLite database with other tables ({', '.join(sorted(tables)[:5])}), not a helium_lc "
                "prompt cache", "pass a new file path as cache_path")
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(self._SCHEMA)
            self._conn.execute("BEGIN IMMEDIATE")  # a write probe: read-only files fail here, not mid-run
            try:
                self._conn.execute("INSERT OR REPLACE INTO prompt_cache VALUES ('', '', '', 0)")
            finally:
                self._conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            raise self._file_error(
                f"cannot be written ({exc})",
                "make the file and its folder writable (the cache also writes -wal/-shm files next to it) "
                "or pass another cache_path") from exc
        except sqlite3.DatabaseError as exc:
            raise self._file_error(f"is corrupt ({exc})", other) from exc

    def _execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        """Run one statement; SQLite failures become a CacheFileError naming the file."""
        try:
            return self._conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise self._file_error(f"failed a query ({exc})",
                                   "check the file (disk full? permissions? corrupt?) or pass another cache_path") from exc

    def _decode(self, digest: str, text: str) -> Any | None:
        """A stored value, or None (counted as a miss, logged) when the row is corrupt."""
        try:
            return decode_value(text)
        except Exception as exc:  # noqa: BLE001 - any undecodable row is a miss, never a failed call
            with self._lock:
                self.num_corrupt_rows += 1
                self._counters.num_hits -= 1
                self._counters.num_misses += 1
            log.warning("helium_lc: prompt-cache file %r has a corrupt row (digest %s...: %s); "
                        "treated as a miss, the call is recomputed and the row replaced.",
                        self.path, digest[:12], exc)
            return None

    def get(self, key: CacheKey) -> Any | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        found: dict[str, tuple[str, str]] = {}
        wanted = sorted({k.digest for k in keys if k.is_deterministic})
        with self._lock:
            for start in range(0, len(wanted), 500):  # stay under SQLite's variable limit
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for digest, text, value in self._execute(
                        f"SELECT digest, canonical_text, value_json FROM prompt_cache "
                        f"WHERE digest IN ({marks})", chunk):
                    found[digest] = (text, value)
            encoded: list[tuple[str, str] | None] = []
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
                    encoded.append((key.digest, entry[1]))
        return [None if e is None else self._decode(*e) for e in encoded]

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
            self._execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO prompt_cache VALUES (?, ?, ?, ?)", rows)
            except BaseException as exc:
                self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._file_error(f"failed a write ({exc})",
                                           "check the file (disk full? permissions?) or pass another cache_path") from exc
                raise
            self._execute("COMMIT")

    def clear(self) -> None:
        with self._lock:
            self._execute("DELETE FROM prompt_cache")
            self._counters.reset()

    def stats(self) -> CacheStats:
        with self._lock:
            (num_entries,) = self._execute("SELECT COUNT(*) FROM prompt_cache").fetchone()
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
