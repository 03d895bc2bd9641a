"""Cost model, calibration and output-length profiles, with hand-checkable numbers."""

import pytest

from helium_lc.schedule.cost import CostModel, OutputLengthProfile, calibrate, error_report
from helium_lc.schedule.radix import RadixCache


def test_uncached_tokens_follow_the_resident_blocks():
    m = CostModel(prefill_base_s=0.0, prefill_s_per_token=0.01, decode_step_base_s=0.1,
                  decode_s_per_seq=0.0, block_size=4)
    cache = RadixCache(block_size=4)
    cache.insert((1, 2, 3, 4, 5, 6, 7, 8))
    prompt = (1, 2, 3, 4, 5, 6, 7, 8, 9, 9)      # 8 resident, 2 to compute
    assert m.num_uncached_tokens(prompt, cache) == 2
    # 2 tokens * 0.01 + 3 output tokens * 0.1 s
    assert m.estimate_call_s(prompt, 3, cache) == pytest.approx(0.32)
    assert m.estimate_call_s(prompt, 3, None) == pytest.approx(0.1 + 0.3)


def test_decode_share_shrinks_with_batch():
    m = CostModel(decode_step_base_s=0.016, decode_s_per_seq=0.001)
    # alone: 10 steps of 17 ms; in a batch of 32 each step is 48 ms but shared by 32
    assert m.work_s(0, 10, 1) == pytest.approx(0.17)
    assert m.work_s(0, 10, 32) == pytest.approx(10 * 0.048 / 32)


def test_validation_messages():
    with pytest.raises(ValueError, match="prefill_s_per_token"):
        CostModel(prefill_s_per_token=-1)
    with pytest.raises(ValueError, match="block_size"):
        CostModel(block_size=0)


def test_calibrate_recovers_constants_and_reports_error():
    truth = CostModel(prefill_base_s=0.02, prefill_s_per_token=0.0005, decode_step_base_s=0.015,
                      decode_s_per_seq=0.002)
    samples = [(n, o, b, truth.prefill_s(n) + truth.decode_s(o, b))
               for n in (0, 100, 1000) for o in (5, 50) for b in (1, 8, 32)]
    fitted = calibrate(samples)
    assert fitted.prefill_s_per_token == pytest.approx(0.0005, rel=1e-6)
    assert fitted.decode_s_per_seq == pytest.approx(0.002, rel=1e-6)
    assert error_report(fitted, samples).mean_abs_pct_error < 1e-6
    # a model that ignores batching is off on the batched samples
    assert error_report(CostModel(), samples).mean_abs_pct_error > 5
    with pytest.raises(ValueError, match="at least 2"):
        calibrate(samples[:1])


def test_output_length_profile_mean_percentile_default():
    p = OutputLengthProfile(default_tokens=50, statistic="p90")
    assert p.estimate("x") == 50                 # unseen -> default
    for n in range(1, 11):                       # 1..10
        p.record("x", n)
    assert p.estimate("x") == 9                  # numpy p90 of 1..10 = 9.1
    mean = OutputLengthProfile(statistic="mean")
    mean.record("y", 3)
    mean.record("y", 5)
    assert mean.estimate("y") == 4 and mean.num_samples("y") == 2
    with pytest.raises(ValueError, match="statistic"):
        OutputLengthProfile(statistic="median")
