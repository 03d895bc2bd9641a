"""Cache-aware scheduling: radix KV model, TRT, cost model, policies, simulator core, MILP.

Module map:
- ``radix``: per-worker radix tree of resident KV (block aligned; lock, LRU evict).
- ``trt``: Templated Radix Tree of a batch (templates -> calls; dependency edges).
- ``cost``: ``CostModel`` (prefill/decode time), ``OutputLengthProfile``, ``calibrate``.
- ``snapshot``: ``PendingCall``, ``WorkerView``, ``Snapshot`` in; ``Assignment`` out.
- ``policies``: pure policies (helium, fifo, random, lspf, prefix_affinity, opwise) by name.
- ``lower_bound``: fewest prompt tokens any schedule must prefill.
- ``virtual_engine``: one simulated worker (continuous batching in virtual time).
- ``batch_sim``: ``simulate()`` a planned batch over N simulated workers.
- ``workloads``: synthetic MapRed / Debate batches.
- ``milp``: exact tiny schedules (PuLP/CBC) for optimality gaps.

Example:
    >>> from helium_lc.schedule import get_policy, Snapshot, PendingCall, WorkerView
    >>> get_policy("fifo")(Snapshot(calls=(PendingCall("c", (1, 2)),), workers=(WorkerView(0),))).order
    {0: ('c',)}
"""

from helium_lc.schedule.cost import CostModel, OutputLengthProfile, calibrate, error_report
from helium_lc.schedule.lower_bound import lower_bound_tokens
from helium_lc.schedule.policies import POLICIES, HeliumOptions, get_policy
from helium_lc.schedule.radix import KVCacheFullError, RadixCache
from helium_lc.schedule.snapshot import Assignment, PendingCall, Snapshot, WorkerView
from helium_lc.schedule.trt import TemplatedRadixTree

__all__ = ["CostModel", "OutputLengthProfile", "calibrate", "error_report", "lower_bound_tokens",
           "POLICIES", "HeliumOptions", "get_policy", "KVCacheFullError", "RadixCache", "Assignment",
           "PendingCall", "Snapshot", "WorkerView", "TemplatedRadixTree"]
