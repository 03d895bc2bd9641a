"""Radix KV cache (block size 4, a dozen blocks) and Templated Radix Tree, by hand."""

import random

import pytest

from helium_lc.schedule.lower_bound import lower_bound_tokens
from helium_lc.schedule.radix import KVCacheFullError, RadixCache, common_prefix_len
from helium_lc.schedule.snapshot import PendingCall
from helium_lc.schedule.trt import TemplatedRadixTree

A = (1, 2, 3, 4)       # one block each
B = (5, 6, 7, 8)
C = (9, 10, 11, 12)
D = (13, 14, 15, 16)


def test_match_counts_whole_blocks_only():
    cache = RadixCache(block_size=4, capacity_tokens=48)
    # insert A B + 3 loose tokens: only the 2 full blocks become resident
    assert cache.insert(A + B + (0, 0, 0)).num_new_tokens == 8
    assert cache.size_tokens == 8
    # A B C: 8 resident; A + half of B: only A (a partial block never hits)
    assert cache.peek(A + B + C) == 8
    assert cache.peek(A + (5, 6)) == 4
    assert cache.match(A + C).num_matched_tokens == 4


def test_insert_shares_prefix_and_splits():
    cache = RadixCache(block_size=4)
    cache.insert(A + B + C)            # 12 tokens resident
    r = cache.insert(A + B + D)        # A B shared, D new: 4 more
    assert (r.num_cached_tokens, r.num_new_tokens, cache.size_tokens) == (8, 4, 16)
    assert cache.peek(A + B + C) == 12 and cache.peek(A + B + D) == 12


def test_evict_is_lru_over_unlocked_leaves():
    cache = RadixCache(block_size=4, capacity_tokens=16)   # 4 blocks
    cache.insert(A + B)      # oldest leaf: B (under A)
    cache.insert(A + C)      # newer leaf: C; A shared -> 3 blocks
    assert cache.size_tokens == 12
    # evicting one block takes the least recently used leaf: B
    assert cache.evict(1) == 4
    assert cache.peek(A + B) == 4 and cache.peek(A + C) == 8
    # insert A D B: 2 new blocks (D, B) fill the 4-block cache exactly; nothing evicted
    cache.insert(A + D + B)
    assert cache.size_tokens == 16 and cache.peek(A + C) == 8
    # one more block E: the LRU leaf is C (inserted before D B; peek does not refresh)
    E = (17, 18, 19, 20)
    cache.insert(E)
    assert cache.peek(A + C) == 4 and cache.peek(A + D + B) == 12 and cache.peek(E) == 4


def test_locked_entries_are_not_evicted():
    cache = RadixCache(block_size=4, capacity_tokens=12)
    m = cache.insert(A + B + C)                 # full: 3 blocks
    cache.lock(m.node)
    assert cache.locked_tokens == 12 and cache.evict(4) == 0
    with pytest.raises(KVCacheFullError):
        cache.insert(D)                         # nothing unlocked to make room
    cache.unlock(m.node)
    assert cache.insert(D).num_new_tokens == 4  # now C (the leaf tail) is trimmed
    assert cache.peek(A + B + C) == 8
    with pytest.raises(ValueError):
        cache.unlock(m.node)


def test_lower_bound_counts_shared_blocks_once_plus_tails():
    # A B twice (8 distinct tokens), A C (4 more), and tails of 1 + 0 + 2 tokens
    prompts = [A + B + (0,), A + B, A + C + (7, 7)]
    assert lower_bound_tokens(prompts, block_size=4) == 8 + 4 + 3


def _calls():
    # 3 templates x 2 rows: two share the system block A and differ after it; one starts with D
    t1, t2, t3 = (A + B, "q"), (A + C, "q"), (D, "q", "answer")
    calls = []
    for r in range(2):
        q = (100 + r,)
        calls.append(PendingCall(f"t1/r{r}", A + B + q, template_key=t1, row=r))
        calls.append(PendingCall(f"t2/r{r}", A + C + q, template_key=t2, row=r))
        calls.append(PendingCall(f"t3/r{r}", D + q + (7,), template_key=t3, row=r, deps=(f"t1/r{r}", f"t2/r{r}")))
    return calls


def test_trt_three_templates_two_rows():
    trt = TemplatedRadixTree.build(_calls())
    # 3 distinct templates, 6 leaves (calls), 4 dependency edges (E')
    assert (trt.num_templates, len(trt.calls), trt.num_dependency_edges) == (3, 6, 4)
    assert trt.static_prefix_tokens("t2/r1") == A + C
    assert trt.static_prefix_tokens("t3/r0") == D
    # the two A-templates hang under one shared node of 4 tokens
    groups = trt.prefix_groups()
    assert [g.prefix_tokens for g in groups] == [A + B, A + C, D]
    assert groups[0].call_ids == ("t1/r0", "t1/r1")
    assert trt.to_text() == "\n".join([
        "TRT: 3 templates, 6 calls, 4 dependency edges",
        "root",
        "├─ [4 tok]",
        "│  ├─ [4 tok, {q}] -> 2 calls: t1/r0, t1/r1",
        "│  └─ [4 tok, {q}] -> 2 calls: t2/r0, t2/r1",
        "└─ [4 tok, {q}, {answer}] -> 2 calls: t3/r0, t3/r1",
    ])


def test_common_prefix_len_matches_a_token_by_token_scan():
    # the binary search on slices against the obvious loop: prefixes, equal, empty, one-off ends
    def scan(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n
    rng = random.Random(7)
    for _ in range(3000):
        a = tuple(rng.randrange(3) for _ in range(rng.randrange(40)))
        b = tuple(rng.randrange(3) for _ in range(rng.randrange(40)))
        if rng.random() < 0.5:
            b = a[:rng.randrange(len(a) + 1)] + b
        assert common_prefix_len(a, b) == scan(a, b) == common_prefix_len(b, a), (a, b)
    assert common_prefix_len([1, 2, 3], (1, 2, 3)) == 3 and common_prefix_len((), ()) == 0


def test_peek_is_the_longest_whole_block_prefix_of_anything_inserted():
    # unbounded (nothing evicted): what is resident for q is its longest block-aligned common
    # prefix with any inserted sequence, however the tree split its nodes
    rng = random.Random(11)
    for bs in (1, 2, 4):
        cache, inserted = RadixCache(block_size=bs), []
        for _ in range(200):
            base = rng.choice(inserted) if inserted and rng.random() < 0.7 else ()
            t = base[:rng.randrange(len(base) + 1)] + tuple(rng.randrange(3) for _ in range(rng.randrange(1, 30)))
            q = rng.choice(inserted + [t])
            q = q[:rng.randrange(len(q) + 1)] + tuple(rng.randrange(3) for _ in range(rng.randrange(4)))
            want = max((common_prefix_len(q, s) // bs * bs for s in inserted), default=0)
            assert cache.peek(q) == want, (bs, q)
            cache.insert(t)
            inserted.append(t)
