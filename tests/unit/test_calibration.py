"""Cost-model calibration on a worker (simulated here; the real engine in tests/integration)."""

from __future__ import annotations

import json

import pytest

from helium_lc.engine.calibration import load_profile, measure_cost_model, profile_path, profile_key, save_profile
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.sim import SimWorker
from helium_lc.runtime.scheduler import scheduler_for
from helium_lc.schedule.cost import CostModel


def test_measure_recovers_a_simulated_workers_cost_model_and_profiles_round_trip(tmp_path, monkeypatch) -> None:
    # A SimWorker's clock follows its own CostModel, so fitting measured groups must give back
    # constants close to it, with a small held-out error; a wrong model has a large one.
    truth = CostModel(prefill_base_s=0.02, prefill_s_per_token=4e-4, decode_step_base_s=0.012,
                      decode_s_per_seq=0.003, block_size=16)
    pool = WorkerPool(workers=[SimWorker(0, cost=truth, block_size=16)])
    try:
        result = measure_cost_model(pool, prompt_lengths=(64, 512, 1024), output_tokens=(1, 16),
                                    batch_sizes=(1, 4), repeats=2)
        assert len(result.fit_samples) == len(result.held_out_samples) == 12
        assert result.cost.prefill_s_per_token == pytest.approx(4e-4, rel=0.15)
        assert result.cost.decode_s_per_seq == pytest.approx(0.003, rel=0.3)
        assert result.held_out.mean_abs_pct_error < 10, result.summary()
        from helium_lc.schedule.cost import error_report
        assert error_report(CostModel(prefill_s_per_token=0.005), result.held_out_samples).mean_abs_pct_error > 50
        assert "held-out" in result.summary()

        # stored under the cache dir, keyed by the pool; the scheduler of such a pool uses it
        monkeypatch.setenv("HELIUM_LC_CACHE_DIR", str(tmp_path))
        assert load_profile(pool) is None
        path = save_profile(pool, result)
        assert path == profile_path(profile_key(pool), tmp_path)
        assert json.loads(path.read_text())["cost"]["prefill_s_per_token"] == result.cost.prefill_s_per_token
        assert load_profile(pool) == result.cost
        assert scheduler_for(pool).cost.prefill_s_per_token == result.cost.prefill_s_per_token
        path.write_text("{not json")
        assert load_profile(pool) is None   # unreadable: ignored with a warning
    finally:
        pool.shutdown()


def test_measure_rejects_bad_arguments() -> None:
    pool = WorkerPool(workers=[SimWorker(0)], start=False)
    with pytest.raises(ValueError, match="repeats"):
        measure_cost_model(pool, repeats=0)
    with pytest.raises(ValueError, match="at least 2"):
        measure_cost_model(pool, prompt_lengths=(8,), output_tokens=(1,), batch_sizes=(1,))
