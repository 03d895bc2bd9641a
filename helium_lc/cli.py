"""``helium-lc`` command line: ``provision``, ``demo``, ``calibrate``, ``bench``.

Example:
    $ helium-lc provision      # convert the default model once (idempotent)
    $ helium-lc demo           # run the demo app on the default engine and model
    $ helium-lc calibrate      # fit the scheduler's cost model to this machine's engine (~1 min)
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helium-lc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("provision", help="find or create the converted default model folder")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--cache-dir", default=None)
    d = sub.add_parser("demo", help="run the demo LangGraph app on a real vLLM pool")
    d.add_argument("--num-workers", type=int, default=1)
    d.add_argument("--no-progress", action="store_true")
    c = sub.add_parser("calibrate", help="measure the engine, fit the scheduler's cost model, store it")
    c.add_argument("--num-workers", type=int, default=1, help="pool size the profile is for (default 1)")
    c.add_argument("--repeats", type=int, default=2)
    c.add_argument("--no-save", action="store_true", help="print the fit and its error, store nothing")
    sub.add_parser("bench", help="run the benchmarks (see benchmarks/README.md); other options go to benchmarks/run.py",
                   add_help=False)
    args, rest = parser.parse_known_args(argv)
    if rest and args.cmd != "bench":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    if args.cmd == "provision":
        from helium_lc.engine.model import ensure_default_model
        path = ensure_default_model(args.cache_dir, progress=not args.quiet)
        if not args.quiet:
            print(path)
        return 0
    if args.cmd == "demo":
        from helium_lc.demo import run_demo
        return run_demo(num_workers=args.num_workers, progress=not args.no_progress)
    if args.cmd == "calibrate":
        from helium_lc.engine.calibration import measure_cost_model, save_profile
        from helium_lc.engine.pool import WorkerPool
        with WorkerPool(num_workers=args.num_workers) as pool:
            result = measure_cost_model(pool, repeats=args.repeats)
            print(result.summary())
            from helium_lc.schedule.cost import CostModel, error_report
            base = error_report(CostModel(block_size=pool.block_size), result.held_out_samples)
            print(f"built-in defaults on the same held-out groups: mean {base.mean_abs_pct_error:.1f}%, "
                  f"worst {base.max_abs_pct_error:.1f}%")
            if not args.no_save:
                print(f"stored: {save_profile(pool, result)}")
        return 0
    if args.cmd == "bench":
        import runpy
        from pathlib import Path
        script = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
        if not script.exists():
            print(f"benchmarks/run.py not found next to the package ({script}); run from a source checkout.", file=sys.stderr)
            return 2
        sys.argv = [str(script), *rest]
        runpy.run_path(str(script), run_name="__main__")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
