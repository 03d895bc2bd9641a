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


__all__ = ["POLICIES", "Policy", "get_policy", "helium", "HeliumOptions", "fifo", "random_policy",
           "lspf", "prefix_affinity", "opwise"]
