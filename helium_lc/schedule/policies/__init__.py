"""Scheduling policies: pure functions ``Snapshot -> Assignment``, looked up by name.

Example:
    >>> sorted(POLICIES)
    ['fifo', 'helium', 'lspf', 'opwise', 'prefix_affinity', 'random']
    >>> get_policy("helium").__name__
    'helium'
"""

from __future__ import annotations

from typing import Callable

from helium_lc.schedule.policies.baselines import fifo, lspf, opwise, prefix_affinity, random_policy
from helium_lc.schedule.policies.helium import HeliumOptions, helium
from helium_lc.schedule.snapshot import Assignment, Snapshot

Policy = Callable[[Snapshot], Assignment]

POLICIES: dict[str, Policy] = {
    "helium": helium,
    "fifo": fifo,
    "random": random_policy,
    "lspf": lspf,
    "prefix_affinity": prefix_affinity,
    "opwise": opwise,
}

#: Policies whose order continues across plans row by row: the runtime gives a later call of an
#: earlier input row (a debate's next round, a summariser after its mappers) priority over the
#: still-waiting calls of later rows, so the working set in the KV cache stays a few rows wide
#: (the design's "nested sequences"). The others keep plans in arrival order (first come, first
#: served, as a serving engine does).
ROW_MAJOR: frozenset[str] = frozenset({"helium"})


def get_policy(name: str) -> Policy:
    """The policy registered under ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown scheduling policy {name!r}; choose one of: "
                         f"{', '.join(sorted(POLICIES))}.") from None


__all__ = ["POLICIES", "ROW_MAJOR", "Policy", "get_policy", "helium", "HeliumOptions", "fifo", "random_policy",
           "lspf", "prefix_affinity", "opwise"]
