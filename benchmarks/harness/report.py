"""Write benchmark results: ``results.json`` (everything) and ``results.md`` (the tables).

Example:
    >>> fmt(1.23456), fmt(None), fmt(True), fmt(0.5, pct=True)
    ('1.235', '-', 'yes', '50.0%')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_results", "markdown_report", "fmt"]

_COLUMNS = (("makespan_s", "makespan s", False), ("speedup_vs_langgraph", "speedup", False),
            ("p50_latency_s", "p50 s", False), ("p95_latency_s", "p95 s", False),
            ("num_llm_calls_sent", "calls sent", False), ("num_prompt_tokens", "prompt tok", False),
            ("num_cached_prompt_tokens", "cached tok", False), ("cache_hit_rate", "hit rate", True),
            ("computed_over_lower_bound", "computed/LB", False), ("planning_s", "plan s", False),
            ("prompts_in_plain_fraction", "prompts in plain", True),
            ("num_cache_hits", "calls reused", False), ("num_cache_misses", "calls computed", False))


def fmt(v: Any, pct: bool = False) -> str:
    """A table cell: 4 significant digits, '-' for missing, yes/no for booleans."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.4g}"
    return str(v)


def _cell_table(cells: list[dict[str, Any]], fidelity: dict[str, Any], key: str) -> list[str]:
    head = ["workload", "system", *[c[1] for c in _COLUMNS], "outputs = plain"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        fid = fidelity.get(cell["workload"], {}).get(key, {})
        for name, med in cell["median"].items():
            eq = fid.get(name) if name in fid else None
            row = [cell["workload"], name, *[fmt(med.get(k), pct) for k, _, pct in _COLUMNS], fmt(eq)]
            lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown_report(results: dict[str, Any]) -> str:
    """The Markdown tables of a results dict (regimes, sweeps, many workers, fidelity)."""
    out = [f"# Benchmark results: profile `{results['profile']}`", "",
           f"Started {results.get('started', '?')}, took {fmt(results.get('wall_s'))} s; model "
           f"`{results.get('model', '?')}`, KV block size {results.get('block_size', '?')} tokens. "
           "Medians over repeats; speedup = langgraph's median makespan / the system's, same run.", ""]
    fidelity = results.get("fidelity", {})
    for regime, data in results.get("regimes", {}).items():
        out += [f"## Regime `{regime}`", ""]
        if regime == "second-batch":
            out += ["A second batch of *new* inputs after a first one (caches kept): nothing repeats exactly.", ""]
        if regime == "iterate":
            edits = "; ".join(f"{c['workload']}: {c['edit']['before'] or 'defaults'} -> {c['edit']['after']}"
                              for c in data["cells"])
            out += ["The same inputs again after an edit (first version unmeasured, edited version measured; "
                    f"helium's prompt cache in a SQLite file). Edits: {edits}.", ""]
        if regime == "day-2":
            out += ["The same rows on the next day (day 1 unmeasured, day 2 measured; helium's prompt cache in "
                    "a SQLite file): prices and news change, static data (company profile, quarterly report) "
                    "does not.", ""]
        if regime == "kv-pressure":
            kv = ", ".join(f"{c['workload']}: {c['kv_capacity_tokens']} tokens "
                           f"({fmt(c['kv_fraction_of_unique'], pct=True)} of unique)" for c in data["cells"])
            out += [f"KV cache per engine: {kv}.", ""]
        out += _cell_table(data["cells"], fidelity, {"second-batch": "second_batch", "iterate": "iterate", "day-2": "day2"}.get(
            regime, "same_batch"))
        gm = data.get("geomean_speedup", {})
        out += ["", "Geometric-mean speedup over workloads: "
                + ", ".join(f"{n} {fmt(v)}x" for n, v in gm.items()), ""]
    for title, key, label in (("Batch-size sweep", "batch_sweep", "num_inputs"),
                              ("Prefix sweep (prefix_sweep workload)", "prefix_sweep", "params")):
        rows = results.get(key) or []
        if not rows:
            continue
        out += [f"## {title}", "", f"| {label} | system | makespan s | speedup | hit rate |", "|---|---|---|---|---|"]
        for r in rows:
            lab = r[label] if label == "num_inputs" else ", ".join(f"{k}={v}" for k, v in r[label].items())
            for n, med in r["median"].items():
                out.append(f"| {lab} | {n} | {fmt(med['makespan_s'])} | {fmt(med['speedup_vs_langgraph'])} | "
                           f"{fmt(med['cache_hit_rate'], pct=True)} |")
        out.append("")
    mw = results.get("many_workers") or {}
    if mw:
        out += ["## Regime `many-workers` (simulated, virtual seconds)", "",
                "| workload | workers | policy | calls | makespan s | speedup vs fifo | computed/LB | plan s |",
                "|---|---|---|---|---|---|---|---|"]
        for w, rows in mw.items():
            for r in rows:
                out.append(f"| {w} | {r['num_workers']} | {r['policy']} | {r['num_calls']} | {fmt(r['makespan_s'])} | "
                           f"{fmt(r['speedup_vs_fifo'])} | {fmt(r['computed_over_lower_bound'])} | "
                           f"{fmt(r['planning_s'])} |")
        out.append("")
    if fidelity:
        out += ["## Outputs equal to plain LangGraph (DeterministicChatModel)", "",
                "| workload | same batch: systems equal | second batch (helium, caches kept) |", "|---|---|---|"]
        for w, f in fidelity.items():
            same = f.get("same_batch", {})
            ok = sum(bool(v) for v in same.values())
            out.append(f"| {w} | {ok}/{len(same)} | {fmt(f.get('second_batch', {}).get('helium'))} |")
        out.append("")
    return "\n".join(out)


def write_results(results: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json`` and ``results.md`` under ``out_dir`` (created); returns the paths."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": d / "results.json", "markdown": d / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str))
    paths["markdown"].write_text(markdown_report(results))
    return paths
