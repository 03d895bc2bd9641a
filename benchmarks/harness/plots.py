"""PNG figures of a results dict (matplotlib, Agg backend; no display needed).

- ``speedup.png``: speedup vs langgraph per workload, one bar per system, one panel per regime;
- ``cache_hits.png``: share of prompt tokens served from the KV cache, per workload and system;
- ``calls_reused.png``: share of requested LLM calls served from the prompt cache (``iterate``);
- ``prefill_vs_bound.png``: computed prefill tokens over the lower bound (1.0 = nothing recomputed);
- ``batch_sweep.png``: makespan and speedup of helium vs langgraph over batch sizes;
- ``prefix_sweep.png``: the same over ``prefix_sweep`` settings;
- ``timeline.png``: per-worker Gantt of engine requests in one run (langgraph and helium);
- ``many_workers.png``: simulated speedup vs fifo over worker counts, per policy.

Figures whose data is missing are skipped. ``make_plots`` returns the files written.

Example:
    >>> make_plots({"regimes": {}}, "/tmp/no-plots")
    []
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["make_plots"]


def _bars(ax: Any, cells: list[dict[str, Any]], key: str, title: str, colors: dict[str, Any]) -> None:
    systems = list(cells[0]["median"])
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        ys = [c["median"].get(s, {}).get(key) or 0.0 for c in cells]
        ax.bar([x + i * width for x in range(len(cells))], ys, width, label=s, color=colors[s])
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(cells))], [c["workload"] for c in cells],
                  rotation=30, ha="right")
    ax.set_title(title)


def _regime_figure(results: dict[str, Any], key: str, ylabel: str, path: Path, baseline_line: bool) -> Path | None:
    regimes = [(r, d["cells"]) for r, d in results.get("regimes", {}).items() if d.get("cells")]
    if not regimes:
        return None
    fig, axes = plt.subplots(1, len(regimes), figsize=(6 * len(regimes), 4.5), squeeze=False)
    # one colour per system in every panel (regimes may measure different systems)
    names = list(dict.fromkeys(s for _, cells in regimes for s in cells[0]["median"]))
    palette = plt.get_cmap("tab10")
    colors = {s: palette(i % 10) for i, s in enumerate(names)}
    for ax, (regime, cells) in zip(axes[0], regimes):
        _bars(ax, cells, key, regime, colors)
        ax.set_ylabel(ylabel)
        if baseline_line:
            ax.axhline(1.0, color="black", linewidth=0.8)
    handles = [matplotlib.patches.Patch(color=colors[s], label=s) for s in names]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sweep_figure(rows: list[dict[str, Any]], label: Any, xlabel: str, path: Path) -> Path | None:
    if not rows:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [label(r) for r in rows]
    for s in rows[0]["median"]:
        a1.plot(xs, [r["median"][s]["makespan_s"] for r in rows], marker="o", label=s)
        a2.plot(xs, [r["median"][s]["speedup_vs_langgraph"] or 0 for r in rows], marker="o", label=s)
    a1.set_ylabel("makespan (s)")
    a2.set_ylabel("speedup vs langgraph")
    for a in (a1, a2):
        a.set_xlabel(xlabel)
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _timeline_figure(results: dict[str, Any], path: Path) -> Path | None:
    for regime, data in results.get("regimes", {}).items():
        for cell in data.get("cells", []):
            tl = {k: v for k, v in cell.get("timelines", {}).items() if v}
            if not tl:
                continue
            fig, axes = plt.subplots(len(tl), 1, figsize=(10, 1.2 + 1.3 * len(tl)), squeeze=False, sharex=True)
            for ax, (system, recs) in zip(axes[:, 0], tl.items()):
                workers = sorted({r["worker_id"] for r in recs})
                for r in recs:
                    y = workers.index(r["worker_id"])
                    ax.broken_barh([(r["start_s"], max(1e-4, r["finish_s"] - r["start_s"]))], (y - 0.4, 0.8),
                                   alpha=0.35, edgecolor="black", linewidth=0.3)
                ax.set_yticks(range(len(workers)), [f"worker {w}" for w in workers])
                ax.set_title(f"{cell['workload']} / {regime} / {system}: {len(recs)} engine requests", fontsize=9)
            axes[-1, 0].set_xlabel("seconds since the batch started (bars: request service, overlapping = batched)")
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            return path
    return None


def _many_workers_figure(mw: dict[str, Any], path: Path) -> Path | None:
    if not mw:
        return None
    fig, axes = plt.subplots(1, len(mw), figsize=(5 * len(mw), 4), squeeze=False)
    for ax, (w, rows) in zip(axes[0], mw.items()):
        for p in dict.fromkeys(r["policy"] for r in rows):
            pts = [(r["num_workers"], r["speedup_vs_fifo"] or 0) for r in rows if r["policy"] == p]
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=p)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{w} (simulated)")
        ax.set_xlabel("workers")
        ax.set_ylabel("speedup vs fifo (least-queue)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write every figure the results have data for into ``out_dir``; returns their paths."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    made = [
        _regime_figure(results, "speedup_vs_langgraph", "speedup vs langgraph", d / "speedup.png", True),
        _regime_figure(results, "cache_hit_rate", "cached / prompt tokens", d / "cache_hits.png", False),
        _regime_figure(results, "calls_reused_fraction", "calls served from the prompt cache / requested",
                       d / "calls_reused.png", False),
        _regime_figure(results, "computed_over_lower_bound", "computed prefill tokens / lower bound",
                       d / "prefill_vs_bound.png", False),
        _sweep_figure(results.get("batch_sweep") or [], lambda r: r["num_inputs"], "batch size (inputs)",
                      d / "batch_sweep.png"),
        _sweep_figure(results.get("prefix_sweep") or [], lambda r: r["params"].get("system_tokens", 0),
                      "system prompt tokens", d / "prefix_sweep.png"),
        _timeline_figure(results, d / "timeline.png"),
        _many_workers_figure(results.get("many_workers") or {}, d / "many_workers.png"),
    ]
    return [p for p in made if p is not None]
