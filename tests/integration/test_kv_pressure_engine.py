"""Scheduling under KV pressure and cost-model calibration on the real engine.

A one-worker pool whose KV cache holds about a third of a debate batch's unique prompt tokens:
plain first-come-first-served lets every row's round 1 in, and round 2 finds its row context
evicted; helium (row-major priorities + row gate) keeps rows' contexts resident and computes
fewer prompt tokens. The gate holds rows only for an app seen re-reading its rows' context, so
each system first runs an unmeasured batch. Greedy text on vLLM-CPU varies with batch composition, so round-2 prompts
may differ slightly between the runs; the gap asserted is far larger than that.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from examples.workloads import prefix_sweep
from helium_lc import HeliumChatModel, HeliumConfig, WorkerPool, accelerate
from helium_lc.engine.calibration import measure_cost_model
from helium_lc.runtime.scheduler import scheduler_for

pytestmark = [pytest.mark.engine, pytest.mark.slow]

PARAMS = dict(pattern="debate", num_agents=3, num_rounds=2, system_tokens=256, context_tokens=512,
              question_tokens=32, output_tokens=8)
BYTES_PER_TOKEN = 23040  # SmolLM2-135M KV in bf16


def test_helium_computes_fewer_prompt_tokens_than_fifo_under_kv_pressure() -> None:
    gen = {k: v for k, v in PARAMS.items() if k not in ("num_agents", "num_rounds")}
    inputs = prefix_sweep.make_inputs(8, seed=4, **gen)
    first = prefix_sweep.make_inputs(8, seed=5, **gen)  # teaches helium that rows re-read their context
    # ~5.9k unique prompt tokens in the batch; 2,048 tokens of KV (64 blocks of 32)
    with WorkerPool(num_workers=1, kv_cache_gib=2048 * BYTES_PER_TOKEN / 2**30, max_model_len=1280,
                    max_num_seqs=32) as pool:
        computed: dict[str, int] = {}
        for policy in ("fifo", "helium"):
            pool.reset_prefix_cache()
            scheduler_for(pool).forget_cache_model()
            llm = HeliumChatModel(pool=pool, max_tokens=PARAMS["output_tokens"])
            fast = accelerate(prefix_sweep.build(llm, **PARAMS), config=HeliumConfig(policy=policy, prompt_cache=False))
            asyncio.run(fast.abatch(first))
            pool.reset_prefix_cache()
            scheduler_for(pool).forget_cache_model()
            pool.reset_stats()
            outs = asyncio.run(fast.abatch(inputs))
            assert len(outs) == 8 and all(o["result"] for o in outs)
            assert fast.last_run_stats().num_engine_requests == 8 * 3 * 2
            computed[policy] = pool.stats()["num_computed_prompt_tokens"]
    assert computed["helium"] < 0.85 * computed["fifo"], computed


def test_calibration_fits_the_real_engine(pool: Any) -> None:
    result = measure_cost_model(pool, prompt_lengths=(32, 512, 1024), output_tokens=(1, 8),
                                batch_sizes=(1, 3), repeats=2)
    cost = result.cost
    assert cost.prefill_s(1024) > cost.prefill_s(32)
    assert cost.decode_s(8, 1) > 0
    # the fitted model predicts held-out groups far better than a model 10x off. No absolute
    # bound: the held-out set is a second timing of the same groups on a 2-core machine, and its
    # error against the first reached 105% in one CI run where earlier runs stayed under 60%
    from helium_lc.schedule.cost import CostModel, error_report
    wrong = CostModel(prefill_s_per_token=10 * cost.prefill_s_per_token + 1e-3,
                      decode_step_base_s=10 * cost.decode_step_base_s + 0.05)
    assert result.held_out.mean_abs_pct_error < 0.5 * error_report(wrong, result.held_out_samples).mean_abs_pct_error, \
        result.summary()
