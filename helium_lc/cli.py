"""``helium-lc`` command line: ``provision``, ``demo``, ``serve``, ``explain``, ``calibrate``, ``bench``.

Example:
    $ helium-lc provision      # convert the default model once (idempotent)
    $ helium-lc demo           # run the demo app on the default engine and model
    $ helium-lc serve          # start two local vLLM OpenAI servers (ports 8001, 8002), one core each
    $ helium-lc demo --servers http://127.0.0.1:8001,http://127.0.0.1:8002   # the demo on them
    $ helium-lc explain my_agent.py:graph --png plan.png   # the plan of a graph (langgraph.json style)
    $ helium-lc calibrate      # fit the scheduler's cost model to this machine's engine (~1 min)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helium-lc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("provision", help="find or create the converted default model folder")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--cache-dir", default=None)
    d = sub.add_parser("demo", help="run the demo LangGraph app on a real vLLM pool")
    d.add_argument("--num-workers", type=int, default=1)
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--servers", default=None, metavar="URL,URL",
                   help="run on these vLLM OpenAI servers (comma-separated) instead of in-process engines")
    v = sub.add_parser("serve", help="start local vLLM OpenAI servers (one core each) and wait; Ctrl-C stops them")
    v.add_argument("--num", type=int, default=2, help="how many servers (default 2)")
    v.add_argument("--port", type=int, default=8001, help="port of the first server; the others follow (default 8001)")
    v.add_argument("--kv-cache-gib", type=float, default=0.5)
    v.add_argument("--max-model-len", type=int, default=4096)
    e = sub.add_parser("explain", help="print the plan helium_lc makes of a compiled graph (no engine needed)",
                       description="Print the plan of the graph at MODULE:ATTR. ATTR may be a compiled graph, an "
                                   "accelerate() result, a StateGraph builder, or a function of no arguments "
                                   "returning one of those. MODULE is a dotted module name or a .py file path.")
    e.add_argument("target", metavar="MODULE:ATTR")
    e.add_argument("--mermaid", metavar="PATH", help="also write the plan as mermaid text")
    e.add_argument("--png", metavar="PATH", help="also draw the plan to a PNG file")
    c = sub.add_parser("calibrate", help="measure the engine, fit the scheduler's cost model, store it")
    c.add_argument("--num-workers", type=int, default=1, help="pool size the profile is for (default 1)")
    c.add_argument("--model", default=None, help="model folder (default: HELIUM_LC_MODEL, else the default model)")
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
        servers = [u.strip() for u in args.servers.split(",") if u.strip()] if args.servers else None
        return run_demo(num_workers=args.num_workers, progress=not args.no_progress, servers=servers)
    if args.cmd == "serve":
        return _serve(args)
    if args.cmd == "explain":
        try:
            graph = load_graph(args.target)
        except TargetError as exc:
            print(f"helium-lc explain: {exc}", file=sys.stderr)
            return 2
        from helium_lc.explain import explain
        explain(graph, mermaid_path=args.mermaid, png_path=args.png)
        return 0
    if args.cmd == "calibrate":
        from helium_lc.engine.calibration import measure_cost_model, save_profile
        from helium_lc.engine.pool import WorkerPool
        with WorkerPool(num_workers=args.num_workers, model=args.model) as pool:
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


def _serve(args: argparse.Namespace) -> int:
    import time

    from helium_lc.engine.local_servers import LocalServers

    servers = LocalServers(args.num, ports=[args.port + i for i in range(args.num)], kv_cache_gib=args.kv_cache_gib,
                           max_model_len=args.max_model_len)
    print(f"starting {args.num} vLLM server(s) with the default model (logs in {servers.log_dir})...", flush=True)
    with servers:
        print("ready: " + ",".join(servers.urls), flush=True)
        print(f"try:   helium-lc demo --servers {','.join(servers.urls)}", flush=True)
        try:
            while all(p.poll() is None for p in servers.procs):
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
    return 0


class TargetError(ValueError):
    """A ``MODULE:ATTR`` that does not name a graph (the message says what to pass instead)."""


def load_graph(target: str) -> Any:
    """The graph named by ``MODULE:ATTR`` (see ``helium-lc explain --help``).

    Example:
        >>> load_graph("helium_lc.demo")
        Traceback (most recent call last):
        ...
        helium_lc.cli.TargetError: 'helium_lc.demo' is not MODULE:ATTR; e.g. myapp.graph:app or path/to/app.py:app.
    """
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"{target!r} is not MODULE:ATTR; e.g. myapp.graph:app or path/to/app.py:app.")
    module = _import(module_name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in vars(module) if not n.startswith("_"))[:20]
            raise TargetError(f"{module_name!r} has no attribute {attr!r}; its public names include {names}.")
        obj = getattr(obj, part)
    return _as_graph(obj, target)


def _import(module_name: str) -> Any:
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name).expanduser().resolve()
        if not path.is_file():
            raise TargetError(f"no such file: {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # so the file's own sibling imports work
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules of the current directory
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetError(f"cannot import {module_name!r} ({exc}); run from the folder that contains it, "
                          "or pass a file path (path/to/app.py:attr).") from exc


def _as_graph(obj: Any, target: str) -> Any:
    from langgraph.graph.state import StateGraph
    from langgraph.pregel import Pregel

    from helium_lc.accelerate import AcceleratedGraph

    if isinstance(obj, (Pregel, AcceleratedGraph)):
        return obj
    if isinstance(obj, StateGraph):
        return obj.compile()
    if callable(obj):
        try:
            made = obj()
        except TypeError as exc:
            raise TargetError(f"{target} is a function that needs arguments ({exc}); point at a compiled graph "
                              "or at a function of no arguments that builds one.") from exc
        if isinstance(made, (Pregel, AcceleratedGraph, StateGraph)):
            return _as_graph(made, target)
        raise TargetError(f"{target}() returned a {type(made).__name__}, not a LangGraph graph.")
    raise TargetError(f"{target} is a {type(obj).__name__}, not a compiled LangGraph graph "
                      "(StateGraph(...).compile()).")


if __name__ == "__main__":
    sys.exit(main())
