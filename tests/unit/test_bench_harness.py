"""The benchmark harness end to end on simulated engines, and its statistics on hand-made numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.harness.metrics import geomean, median, percentile, summarize, system_order  # noqa: E402
from benchmarks.harness.plots import make_plots  # noqa: E402
from benchmarks.harness.pools import PoolSpec, sim_pool_factory  # noqa: E402
from benchmarks.harness.profiles import PROFILES, BenchProfile  # noqa: E402
from benchmarks.harness.recorder import CallRecord, trace_to_calls  # noqa: E402
from benchmarks.harness.report import markdown_report, write_results  # noqa: E402
from benchmarks.harness.runner import kv_pressure_spec, run_benchmark  # noqa: E402
from benchmarks.harness.systems import select_systems  # noqa: E402


def test_median_and_percentiles_by_hand() -> None:
    # Odd count: the middle value; even count: the mean of the middle two.
    assert median([5.0, 1.0, 3.0]) == 3.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    # p95 of 1..4: rank 0.95 * 3 = 2.85 -> 3 + 0.85 * (4 - 3) = 3.85.
    assert percentile([4.0, 2.0, 1.0, 3.0], 95) == pytest.approx(3.85)
    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_system_order_alternates_every_other_repeat() -> None:
    # Repeat 0 runs as listed, repeat 1 reversed, repeat 2 as listed again.
    names = ["langgraph", "helium", "lspf"]
    assert system_order(names, 0) == names
    assert system_order(names, 1) == ["lspf", "helium", "langgraph"]
    assert system_order(names, 2) == names


def test_summarize_takes_medians_and_all_of_booleans() -> None:
    # Three repeats: makespans 3, 1, 2 -> median 2; one repeat had unequal outputs -> False;
    # a metric missing in one repeat is the median of the others; None is skipped.
    reps = [{"makespan_s": 3.0, "eq": True, "plan": 0.1}, {"makespan_s": 1.0, "eq": False, "plan": None},
            {"makespan_s": 2.0, "eq": True}]
    assert summarize(reps) == {"makespan_s": 2.0, "eq": False, "plan": 0.1}


def test_baseline_always_selected_and_unknown_system_named() -> None:
    assert [s.name for s in select_systems(["helium"])] == ["langgraph", "helium"]
    with pytest.raises(ValueError, match="unknown system.*'fast'"):
        select_systems(["fast"])


def test_kv_pressure_pool_holds_fraction_but_one_sequence() -> None:
    # 10,000 unique tokens at 10% = 1,000 tokens, but the longest sequence is 1,500 tokens:
    # max_model_len rounds up to 1,504 (47 blocks of 32), KV = that plus one block = 1,536.
    spec = kv_pressure_spec(10_000, 1_500, 0.1, 32)
    assert (spec.max_model_len, spec.kv_capacity_tokens) == (1504, 1536)
    with pytest.raises(ValueError, match="must hold one full"):
        PoolSpec(kv_capacity_tokens=100, max_model_len=200)


def test_trace_to_calls_dependencies_follow_steps_and_prefix_is_block_aligned() -> None:
    def rec(row: int, node: str, step: int, prompt: tuple[int, ...]) -> CallRecord:
        return CallRecord(row, node, step, prompt, 0, 0.0, 1.0, 1.0, 0, 3)

    # Row 0: two experts in step 1, a summary in step 2 (depends on both); row 1: one expert.
    # The experts share 6 leading tokens -> static prefix cut to 4 (block size 4).
    records = [rec(0, "expert", 1, (1, 2, 3, 4, 5, 6, 7)), rec(0, "expert", 1, (1, 2, 3, 4, 5, 6, 8)),
               rec(0, "summary", 2, (9, 9, 9)), rec(1, "expert", 1, (1, 2, 3, 4, 5, 6, 9))]
    calls = trace_to_calls(records, block_size=4)
    # canonical arrival order: step, then row (row 1's expert before row 0's step-2 summary)
    assert [c.prompt_token_ids[-1] for c in calls] == [7, 8, 9, 9]
    assert calls[3].deps == ("c0", "c1") and calls[0].deps == () and calls[2].deps == ()
    assert calls[0].static_prefix_tokens == (1, 2, 3, 4)
    assert calls[3].static_prefix_tokens == ()  # a node called once has no shared prefix
    assert calls[3].est_output_tokens == 3
    # the order calls happened to be recorded in does not change the batch
    assert trace_to_calls(records[::-1], block_size=4) == calls


def test_profile_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown or no workloads"):
        BenchProfile("x", ("nope",))
    with pytest.raises(ValueError, match="regimes"):
        PROFILES["quick"].with_overrides(regimes=("hot",))


@pytest.fixture(scope="module")
def sim_results() -> dict:
    # Two small workloads x 2 inputs on 2 simulated workers, two regimes, two repeats, 2 systems.
    profile = PROFILES["quick"].with_overrides(
        workloads=("mapred", "reflect"), regimes=("ample", "many-workers"), num_inputs=2, repeats=2,
        num_workers=2, max_output_tokens=4, sim_num_inputs=2, sim_worker_counts=(2,), batch_sizes=(),
        prefix_sweep=(), workload_params={"mapred": {"num_experts": 2, "data_source": "bundled"},
                                          "reflect": {"data_source": "bundled"}})
    return run_benchmark(profile, pool_factory=sim_pool_factory(), systems=["helium"],
                         progress=False)


def test_end_to_end_on_simulated_workers(sim_results: dict, tmp_path: Path) -> None:
    cells = sim_results["regimes"]["ample"]["cells"]
    assert [c["workload"] for c in cells] == ["mapred", "reflect"]
    for cell in cells:
        med = cell["median"]
        assert set(med) == {"langgraph", "helium"}
        # Two repeats per system were measured; the median makespan is the mean of the two.
        for name, reps in cell["repeats"].items():
            assert len(reps) == 2
            assert med[name]["makespan_s"] == pytest.approx((reps[0]["makespan_s"] + reps[1]["makespan_s"]) / 2)
        # Speedups are against this run's own langgraph median.
        assert med["langgraph"]["speedup_vs_langgraph"] == 1.0
        assert med["helium"]["speedup_vs_langgraph"] == pytest.approx(
            med["langgraph"]["makespan_s"] / med["helium"]["makespan_s"])
    # mapred with 2 experts: 3 calls per input, 2 inputs -> 6 engine calls for the plain run; the
    # shared system prompt means some prompt tokens came from the KV cache.
    mapred = cells[0]["median"]["langgraph"]
    assert mapred["num_llm_calls_sent"] == 6
    assert 0 < mapred["num_cached_prompt_tokens"] < mapred["num_prompt_tokens"]
    assert mapred["lower_bound_tokens"] <= mapred["num_computed_prompt_tokens"]
    # Outputs of every accelerated system equal the plain ones (deterministic model).
    assert sim_results["fidelity"]["mapred"]["same_batch"] == {"helium": True}
    assert sim_results["fidelity"]["reflect"]["second_batch"] == {"helium": True}
    # The simulator regime has one row per policy with fifo as its own baseline.
    rows = sim_results["many_workers"]["mapred"]
    assert {r["policy"] for r in rows} >= {"fifo", "helium"}
    assert [r["speedup_vs_fifo"] for r in rows if r["policy"] == "fifo"] == [1.0]
    # Files: JSON round-trips, Markdown has the table, plots are PNGs.
    paths = write_results(sim_results, tmp_path)
    assert json.loads(paths["json"].read_text())["profile"] == "quick"
    md = paths["markdown"].read_text()
    assert "| mapred | helium |" in md and "Regime `many-workers`" in md
    plots = make_plots(sim_results, tmp_path)
    names = {p.name for p in plots}
    assert {"speedup.png", "cache_hits.png", "timeline.png", "many_workers.png"} <= names
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)


def test_regime_systems_limit_what_a_regime_measures() -> None:
    # ample measures only langgraph and lspf although helium was asked for too; the systems
    # named in the profile's regime_systems are intersected with the selection.
    profile = PROFILES["quick"].with_overrides(
        workloads=("mapred",), regimes=("ample",), num_inputs=1, repeats=1, max_output_tokens=2,
        batch_sizes=(), prefix_sweep=(), regime_systems={"ample": ("lspf",)},
        workload_params={"mapred": {"num_experts": 2, "data_source": "bundled"}})
    assert profile.systems_for("ample", ["langgraph", "lspf", "helium"]) == ["langgraph", "lspf"]
    assert profile.systems_for("kv-pressure", ["langgraph", "helium"]) == ["langgraph", "helium"]
    res = run_benchmark(profile, pool_factory=sim_pool_factory(), systems=["lspf", "helium"], progress=False)
    assert set(res["regimes"]["ample"]["cells"][0]["median"]) == {"langgraph", "lspf"}
    with pytest.raises(ValueError, match="regime_systems names unknown regimes"):
        profile.with_overrides(regime_systems={"warm": ("helium",)})


def test_iterate_regime_reuses_the_calls_before_the_edit() -> None:
    # mapred with 2 experts, 2 inputs: the edit changes the summariser's instruction, so helium's
    # measured run reuses the 4 expert calls from the persistent cache and computes the 2 summaries;
    # plain LangGraph computes all 6 calls again. Outputs equal the plain edited run.
    profile = PROFILES["quick"].with_overrides(
        workloads=("mapred", "reflect"), regimes=("iterate",), num_inputs=2, repeats=1, max_output_tokens=4,
        batch_sizes=(), prefix_sweep=(), workload_params={"mapred": {"num_experts": 2, "data_source": "bundled"},
                                                          "reflect": {"data_source": "bundled"}})
    res = run_benchmark(profile, pool_factory=sim_pool_factory(), systems=["helium"], progress=False)
    cells = res["regimes"]["iterate"]["cells"]
    assert [c["workload"] for c in cells] == ["mapred"]  # reflect defines no edit
    med = cells[0]["median"]
    assert med["helium"]["num_cache_hits"] == 4 and med["helium"]["num_cache_misses"] == 2
    assert med["helium"]["num_llm_calls_sent"] == 2 and med["langgraph"]["num_llm_calls_sent"] == 6
    assert cells[0]["edit"]["after"] == {"summary_instruction": "Answer in at most three sentences."}
    assert res["fidelity"]["mapred"]["iterate"] == {"helium": True}
    assert "Regime `iterate`" in markdown_report(res) and "calls reused" in markdown_report(res)


def test_day2_regime_reuses_the_static_analyst_calls_of_day_1() -> None:
    # trading, smallest shape (1 trader, 1 risk round: 12 calls per row), 2 rows: on day 2 prices and
    # news change, so only the fundamentals analyst (profile + quarterly report, no date) repeats:
    # helium computes 11 of 12 calls per row, plain LangGraph all 12. Day 2 equals a plain day-2 run.
    params = {"num_traders": 1, "num_risk_rounds": 1, "data_source": "bundled"}
    profile = PROFILES["quick"].with_overrides(
        workloads=("trading", "mapred"), regimes=("day-2",), num_inputs=2, repeats=1, max_output_tokens=4,
        batch_sizes=(), prefix_sweep=(), workload_params={"trading": params,
                                                          "mapred": {"num_experts": 2, "data_source": "bundled"}})
    res = run_benchmark(profile, pool_factory=sim_pool_factory(), systems=["helium"], progress=False)
    cells = res["regimes"]["day-2"]["cells"]
    assert [c["workload"] for c in cells] == ["trading"]  # mapred defines no next day
    med = cells[0]["median"]
    assert med["helium"]["num_cache_hits"] == 2 and med["helium"]["num_cache_misses"] == 22
    assert med["langgraph"]["num_llm_calls_sent"] == 24 and med["helium"]["num_llm_calls_sent"] == 22
    assert res["fidelity"]["trading"]["day2"] == {"helium": True}
    assert "Regime `day-2`" in markdown_report(res)
