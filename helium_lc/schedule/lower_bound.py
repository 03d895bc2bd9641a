"""The fewest prompt tokens any schedule must prefill for a batch.

Every distinct full KV block of the batch's prompt tree must be computed at least once,
and every prompt's last partial block is never cached (prefix caching keeps full blocks
only), so

    lower_bound_tokens = block_size * (distinct full-block prefixes) + sum(len(p) % block_size)

Resident blocks on a worker before the batch are not subtracted (pass ``resident`` to do so
for a single worker).

Example:
    >>> lower_bound_tokens([(1, 2, 3, 4, 5, 6), (1, 2, 3, 4, 7)], block_size=4)
    7
"""

from __future__ import annotations

from typing import Iterable, Sequence

from helium_lc.schedule.radix import RadixCache


def lower_bound_tokens(prompts: Iterable[Sequence[int]], block_size: int = 16,
                       resident: RadixCache | None = None) -> int:
    """Unique tokens of the prompt tree (whole blocks) plus every prompt's partial tail.

    Here: prompt 1 has one full block (1,2,3,4) and a 2-token tail; prompt 2 shares that
    block and has a 1-token tail: 4 + 2 + 1 = 7.
    """
    tree = RadixCache(block_size=block_size)
    tails = 0
    for p in prompts:
        p = tuple(p)
        tails += len(p) % block_size
        tree.insert(p)
    total = tree.size_tokens + tails
    if resident is not None:
        total -= _resident_overlap(tree, resident)
    return total


def _resident_overlap(tree: RadixCache, resident: RadixCache) -> int:
    """Full-block tokens of ``tree`` already resident in ``resident``."""
    overlap = 0
    for path, key in tree.segments():
        overlap += max(0, resident.peek(path + key) - len(path))
    return overlap
