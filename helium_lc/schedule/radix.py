"""A token-level radix tree of *resident* KV cache, aligned to the engine's KV block size.

One ``RadixCache`` models one worker's prefix cache: which prompt prefixes are resident,
which are in use (locked) and which would be evicted next (least recently used unlocked
leaves). It is the KV cache of the simulator and the per-worker "model of what was sent"
that the cost model and the policies consult. Only full blocks count, exactly as vLLM's
prefix caching does: a prompt of 10 tokens with block size 4 can hit at most 8 tokens.

Every node holds a run of tokens whose length is a multiple of the block size; children
are keyed by their first block. Each method's docstring says what it mutates.

Example:
    >>> cache = RadixCache(block_size=4, capacity_tokens=48)
    >>> cache.insert((1, 2, 3, 4, 5, 6, 7, 8, 9)).num_new_tokens   # 9 tokens -> 2 full blocks
    8
    >>> cache.peek((1, 2, 3, 4, 5, 6, 0, 0))                         # second block differs
    4
    >>> cache.size_tokens
    8
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Iterator, Sequence


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences (a binary search on
    slices: O(log n) comparisons at C speed, not a Python loop over the tokens).

    Example:
        >>> common_prefix_len((1, 2, 3, 4), [1, 2, 9]), common_prefix_len((), (1,))
        (2, 0)
    """
    a, b = tuple(a), tuple(b)
    n = min(len(a), len(b))
    if n and a[n - 1] == b[n - 1] and a[:n] == b[:n]:  # one is a prefix of the other (a learned prefix)
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo]; the answer is in [lo, hi]
    while lo < hi:  # each step compares (copies) only the untested half
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def lcp_aligned(a: Sequence[int], b: Sequence[int], block_size: int) -> int:
    """Length of the common prefix of ``a`` and ``b`` in whole blocks.

    Example:
        >>> lcp_aligned((1, 2, 3, 4, 5), (1, 2, 3, 9), 2)
        2
    """
    n = common_prefix_len(a, b)
    return n - n % block_size


class KVCacheFullError(RuntimeError):
    """The cache cannot make room because the resident entries are locked (in use)."""


class _Node:
    """One radix node: a block-aligned run of tokens (``key``) below its parent."""

    __slots__ = ("key", "children", "parent", "ref_count", "last_access", "node_id")

    def __init__(self, key: tuple[int, ...], parent: "_Node | None", node_id: int) -> None:
        self.key = key
        self.children: dict[tuple[int, ...], _Node] = {}
        self.parent = parent
        self.ref_count = 0
        self.last_access = 0
        self.node_id = node_id


@dataclass(frozen=True)
class MatchResult:
    """How many leading tokens are resident, and the node where the match ends.

    ``node`` is an opaque handle: pass it to ``lock``/``unlock``. It is the root when
    nothing matched.
    """

    num_matched_tokens: int
    node: _Node


@dataclass(frozen=True)
class InsertResult:
    """Outcome of an insert: tokens already resident, tokens added, and the last node."""

    num_cached_tokens: int
    num_new_tokens: int
    node: _Node


class RadixCache:
    """Resident KV prefixes of one worker, block aligned, with locking and LRU eviction.

    Args:
        block_size: KV block size in tokens (vLLM CPU default is 16).
        capacity_tokens: the most tokens held; ``None`` means unbounded. Rounded down to
            whole blocks.
    """

    def __init__(self, block_size: int = 16, capacity_tokens: int | None = None) -> None:
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}.")
        if capacity_tokens is not None and (not isinstance(capacity_tokens, int) or capacity_tokens < 0):
            raise ValueError(
                f"capacity_tokens must be None (unbounded) or an integer >= 0, got {capacity_tokens!r}.")
        self.block_size = block_size
        self.capacity_tokens = (None if capacity_tokens is None
                                else capacity_tokens - capacity_tokens % block_size)
        self._ids = itertools.count(1)
        self._root = _Node((), None, 0)
        self._root.ref_count = 1  # the root is never evicted
        self._clock = 0
        self._size_tokens = 0
        self._locked_tokens = 0
        self._lru: list[tuple[int, int, _Node]] = []

    # ----------------------------------------------------------------- queries
    @property
    def size_tokens(self) -> int:
        """Tokens resident (shared prefixes counted once)."""
        return self._size_tokens

    @property
    def locked_tokens(self) -> int:
        """Tokens resident and in use (not evictable)."""
        return self._locked_tokens

    @property
    def evictable_tokens(self) -> int:
        """Tokens resident and not locked."""
        return self._size_tokens - self._locked_tokens

    @property
    def free_tokens(self) -> int | None:
        """Room left before eviction is needed; ``None`` when unbounded."""
        return None if self.capacity_tokens is None else self.capacity_tokens - self._size_tokens

    def peek(self, tokens: Sequence[int]) -> int:
        """Return the number of leading tokens resident (whole blocks). Mutates nothing."""
        return self._walk(tuple(tokens))[0]

    def aligned(self, num_tokens: int) -> int:
        """``num_tokens`` rounded down to whole blocks. Mutates nothing."""
        return num_tokens - num_tokens % self.block_size

    # ---------------------------------------------------------------- mutators
    def match(self, tokens: Sequence[int]) -> MatchResult:
        """Find the resident prefix of ``tokens``.

        Mutates: refreshes the LRU stamp of every node on the matched path, and splits a
        node when the match ends inside it (content is unchanged) so that the returned
        node ends exactly where the match ends.
        """
        num, node, child, offset = self._walk(tuple(tokens))
        if child is not None:
            node = self._split(child, offset)
        self._touch(node)
        return MatchResult(num, node)

    def insert(self, tokens: Sequence[int]) -> InsertResult:
        """Make the full blocks of ``tokens`` resident.

        Mutates: adds at most one node (and may split one), refreshes LRU stamps on the
        path, and, when the capacity would be exceeded, evicts least recently used
        unlocked leaves (never the path being extended).

        Raises:
            KVCacheFullError: the new blocks do not fit even after evicting everything
                unlocked. Nothing is inserted in that case.
        """
        key = tuple(tokens)
        key = key[: self.aligned(len(key))]
        found = self.match(key)
        num_new = len(key) - found.num_matched_tokens
        if num_new == 0:
            return InsertResult(found.num_matched_tokens, 0, found.node)
        if self.capacity_tokens is not None and self._size_tokens + num_new > self.capacity_tokens:
            self.lock(found.node)
            try:
                self.evict(self._size_tokens + num_new - self.capacity_tokens)
            finally:
                self.unlock(found.node)
            if self._size_tokens + num_new > self.capacity_tokens:
                raise KVCacheFullError(
                    f"cannot insert {num_new} tokens: {self._locked_tokens} of "
                    f"{self.capacity_tokens} capacity tokens are locked by running requests. "
                    "Unlock finished requests first, or give the cache more capacity.")
        leaf = _Node(key[found.num_matched_tokens:], found.node, next(self._ids))
        found.node.children[leaf.key[: self.block_size]] = leaf
        self._size_tokens += num_new
        self._touch(leaf)
        return InsertResult(found.num_matched_tokens, num_new, leaf)

    def lock(self, node: _Node) -> None:
        """Protect ``node`` and its ancestors from eviction. Mutates reference counts."""
        while node is not None:
            if node.ref_count == 0:
                self._locked_tokens += len(node.key)
            node.ref_count += 1
            node = node.parent

    def unlock(self, node: _Node) -> None:
        """Undo one ``lock(node)``. Mutates reference counts; a freed leaf becomes evictable."""
        start = node
        while node is not None:
            if node.ref_count <= 0:
                raise ValueError("unlock() without a matching lock(): the node is not locked.")
            node.ref_count -= 1
            if node.ref_count == 0:
                self._locked_tokens -= len(node.key)
            node = node.parent
        if start.ref_count == 0 and not start.children:
            self._push(start)

    def evict(self, num_tokens: int) -> int:
        """Free at least ``num_tokens`` (rounded up to blocks) from unlocked LRU leaves.

        Mutates: trims or removes leaves, oldest first; a parent left childless becomes a
        leaf and a candidate in turn. Returns the number of tokens freed, which is less
        than asked only when everything unlocked is gone.
        """
        bs = self.block_size
        need_blocks = -(-num_tokens // bs)
        freed = 0
        while need_blocks > 0 and self._lru:
            stamp, _, node = heapq.heappop(self._lru)
            if (node.parent is None or node.children or node.ref_count
                    or node.last_access != stamp):
                continue  # stale entry
            num_blocks = len(node.key) // bs
            take = min(num_blocks, need_blocks)
            need_blocks -= take
            freed += take * bs
            self._size_tokens -= take * bs
            if take == num_blocks:
                parent = node.parent
                del parent.children[node.key[:bs]]
                node.parent = None
                if parent is not self._root and not parent.children and parent.ref_count == 0:
                    self._push(parent)
            else:
                node.key = node.key[: len(node.key) - take * bs]
                heapq.heappush(self._lru, (node.last_access, node.node_id, node))
        if len(self._lru) > 64 and len(self._lru) > 8 * max(1, self._size_tokens // bs):
            self._compact()
        return freed

    def segments(self) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Every node's (tokens before it, its own tokens), parents before children. Mutates nothing."""
        stack: list[tuple[_Node, tuple[int, ...]]] = [(self._root, ())]
        while stack:
            node, path = stack.pop()
            for child in node.children.values():
                yield path, child.key
                stack.append((child, path + child.key))

    def reset(self) -> int:
        """Evict everything unlocked (like vLLM's ``reset_prefix_cache``). Returns tokens freed."""
        return self.evict(self.evictable_tokens)

    # ---------------------------------------------------------------- internals
    def _walk(self, tokens: tuple[int, ...]) -> tuple[int, _Node, _Node | None, int]:
        """(matched tokens, last fully matched node, partially matched child, offset in it)."""
        bs = self.block_size
        end = len(tokens) - len(tokens) % bs
        node, pos = self._root, 0
        while pos < end:
            child = node.children.get(tokens[pos:pos + bs])
            if child is None:
                break
            klen = len(child.key)
            if pos + klen <= end and tokens[pos:pos + klen] == child.key:
                pos += klen
                node = child
                continue
            # the first block matched (the child's key); whole blocks past it, by binary search
            m = bs + lcp_aligned(tokens[pos + bs:end], child.key[bs:klen], bs)
            return pos + m, node, child, m
        return pos, node, None, 0

    def _split(self, child: _Node, offset: int) -> _Node:
        parent = child.parent
        assert parent is not None
        mid = _Node(child.key[:offset], parent, next(self._ids))
        mid.ref_count = child.ref_count
        mid.last_access = child.last_access
        parent.children[mid.key[: self.block_size]] = mid
        child.key = child.key[offset:]
        child.parent = mid
        mid.children[child.key[: self.block_size]] = child
        return mid

    def _touch(self, node: _Node) -> None:
        self._clock += 1
        stamp = self._clock
        leaf = node
        while node is not None and node is not self._root:
            node.last_access = stamp
            node = node.parent
        if leaf is not self._root and not leaf.children and leaf.ref_count == 0:
            self._push(leaf)

    def _push(self, node: _Node) -> None:
        heapq.heappush(self._lru, (node.last_access, node.node_id, node))

    def _compact(self) -> None:
        self._lru = [e for e in self._lru
                     if e[2].parent is not None and not e[2].children and e[2].ref_count == 0
                     and e[2].last_access == e[0]]
        heapq.heapify(self._lru)
