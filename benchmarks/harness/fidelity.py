"""Do accelerated runs return exactly what the plain graph returns?

vLLM's greedy text on CPU varies with batch composition, so equality is checked with
``DeterministicChatModel`` (its answer is a pure function of the prompt): each workload runs once
plain and once per accelerated system, and the final states must be equal after
``normalize_state`` (message ids and metadata stripped). ``second_batch=True`` also runs a
second batch on the same accelerated graph (caches kept) and compares it with a cold plain run.

Example:
    >>> from examples.workloads import WORKLOADS
    >>> from benchmarks.harness.systems import SYSTEMS
    >>> check_outputs(WORKLOADS["reflect"], {"data_source": "bundled"}, 1, [SYSTEMS["helium"]])
    {'helium': True}
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from types import ModuleType
from typing import Any, Mapping, Sequence

from helium_lc import accelerate
from helium_lc.testing import DeterministicChatModel, normalize_state

from .systems import SystemSpec

__all__ = ["check_outputs"]


def check_outputs(workload: ModuleType, params: Mapping[str, Any], num_inputs: int,
                  systems: Sequence[SystemSpec], *, second_batch: bool = False,
                  warm_params: Mapping[str, Any] | None = None,
                  day_inputs: Sequence[Mapping[str, Any]] | None = None) -> dict[str, bool]:
    """Per accelerated system, whether its outputs equal the plain graph's (deterministic model).

    With ``second_batch``, the accelerated graph first runs batch 1 (seed 0), then batch 2
    (seed 1) is compared with a plain run of batch 2. With ``warm_params`` (the ``iterate``
    regime), the app built with ``warm_params`` first runs the batch with a persistent prompt
    cache, then the app built with ``params`` runs it on the same cache file. With ``day_inputs``
    (the ``day-2`` regime: ``make_inputs`` parameters of day 1 and day 2), day 1 runs with a
    persistent prompt cache, then a new accelerated graph runs day 2 on the same file and is
    compared with a plain run of day 2.
    """
    app = workload.build(DeterministicChatModel(), **params)
    batch1 = workload.make_inputs(num_inputs, seed=0, **params)
    batch2 = workload.make_inputs(num_inputs, seed=1, **params) if second_batch else batch1
    if day_inputs is not None:
        batch1, batch2 = (workload.make_inputs(num_inputs, seed=0, **{**params, **d}) for d in day_inputs)
    plain = normalize_state(asyncio.run(app.abatch(batch2)))
    out: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="helium-fidelity-") as tmp:
        for spec in systems:
            if spec.config is None:
                continue
            config = spec.config
            if warm_params is not None or day_inputs is not None:
                config = dataclasses.replace(config, cache_path=os.path.join(tmp, f"{spec.name}.sqlite"))
                before = workload.build(DeterministicChatModel(), **(warm_params or params))
                asyncio.run(accelerate(before, config=config).abatch(batch1))
            fast = accelerate(app, config=config)
            if second_batch:
                asyncio.run(fast.abatch(batch1))
            out[spec.name] = normalize_state(asyncio.run(fast.abatch(batch2))) == plain
    return out
