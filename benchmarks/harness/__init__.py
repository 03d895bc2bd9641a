"""The benchmark harness: systems, metrics, runner, report and plots (see ``benchmarks/README.md``).

Modules: ``metrics`` (medians, percentiles, order of systems), ``recorder`` (engine requests and
per-input end times), ``pools`` (real or simulated engines per regime), ``systems`` (what is
compared, one measured batch), ``fidelity`` (outputs equal to plain), ``simulated`` (many
workers), ``profiles`` (cpu / quick / gpu), ``runner`` (the whole benchmark), ``report`` (JSON and
Markdown), ``plots`` (PNG figures).

Example (simulated engines, a few seconds):
    >>> from benchmarks.harness import PROFILES, run_benchmark, sim_pool_factory   # doctest: +SKIP
    >>> results = run_benchmark(PROFILES["quick"], pool_factory=sim_pool_factory())  # doctest: +SKIP
"""
