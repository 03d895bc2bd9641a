"""``helium-lc bench``: run the benchmark harness and write JSON, Markdown and PNG results.

Usage (from the repository root):
    python -m helium_lc.cli bench [--profile cpu|quick|gpu] [--workloads mapred,debate]
        [--systems langgraph,helium] [--regimes ample,kv-pressure] [--repeats N]
        [--num-inputs N] [--model DIR] [--engine vllm|sim] [--out DIR] [--no-sweeps] [--no-progress]

Systems named with ``--systems`` run in every regime (a profile may otherwise measure some
systems in some regimes only).

Results go to ``benchmarks/results/<profile>-<timestamp>/`` unless ``--out`` names a folder.
``--engine sim`` runs on simulated workers (seconds; a check of the harness, not a measurement).
See ``benchmarks/README.md`` for what every system, regime and column means.

Example:
    $ python -m helium_lc.cli bench --profile quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.plots import make_plots  # noqa: E402
from benchmarks.harness.pools import sim_pool_factory, vllm_pool_factory  # noqa: E402
from benchmarks.harness.profiles import PROFILES, REGIMES  # noqa: E402
from benchmarks.harness.report import write_results  # noqa: E402
from benchmarks.harness.runner import run_benchmark  # noqa: E402
from benchmarks.harness.systems import SYSTEMS  # noqa: E402


def _csv(text: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else None


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="helium-lc bench", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    ap.add_argument("--workloads", help="comma-separated workload names (default: the profile's)")
    ap.add_argument("--systems", help=f"comma-separated, from: {','.join(SYSTEMS)} (langgraph always runs)")
    ap.add_argument("--regimes", help=f"comma-separated, from: {','.join(REGIMES)}")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--num-inputs", type=int)
    ap.add_argument("--model", help="model folder for the engines (gpu profile: e.g. a Qwen3-8B folder)")
    ap.add_argument("--engine", choices=("vllm", "sim"), default="vllm")
    ap.add_argument("--kv-cache-gib", type=float, help="KV cache per engine outside kv-pressure "
                    "(default: the profile's; cpu 0.5, gpu 16)")
    ap.add_argument("--out", help="output folder (default: benchmarks/results/<profile>-<timestamp>)")
    ap.add_argument("--no-sweeps", action="store_true", help="skip the batch-size and prefix sweeps")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        profile = PROFILES[args.profile].with_overrides(
            workloads=_csv(args.workloads), regimes=_csv(args.regimes), repeats=args.repeats,
            num_inputs=args.num_inputs, model=args.model, ample_kv_cache_gib=args.kv_cache_gib,
            # systems named on the command line run in every regime
            regime_systems={} if args.systems else None,
            batch_sizes=() if args.no_sweeps else None, prefix_sweep=() if args.no_sweeps else None)
    except ValueError as exc:
        ap.error(str(exc))
    factory = (sim_pool_factory() if args.engine == "sim"
               else vllm_pool_factory(profile.model, ample_kv_cache_gib=profile.ample_kv_cache_gib,
                                      max_num_seqs=64))
    out = Path(args.out) if args.out else (Path(__file__).resolve().parent / "results"
                                           / f"{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    results = run_benchmark(profile, pool_factory=factory, systems=_csv(args.systems),
                            progress=not args.no_progress)
    results["engine"] = args.engine
    paths = write_results(results, out)
    plots = make_plots(results, out)
    print(paths["markdown"].read_text())
    print(f"\nwrote {paths['json']}, {paths['markdown']} and {len(plots)} plots to {out}")
    return out


if __name__ == "__main__":
    main()
