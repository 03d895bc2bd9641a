"""``explain(app_or_fast)``: what helium_lc sees in a graph and what it will do about it.

Prints (and returns) the optimized plan in its canonical text form, what each rewrite
rule changed, what could not be analysed and why (it still runs, with less foresight),
which LLM calls are sampled (never cached or deduplicated), the runtime options and, once
the graph has run on a ``WorkerPool``, the scheduler's last plans (the Templated Radix Tree's
shared prefixes and the planned order of calls per worker).
Static prompt prefixes are shown in characters, and in tokens when a tokenizer is at
hand (``count_tokens``, or a routed WorkerPool's tokenizer). Optionally writes the plan
as mermaid text and as a PNG drawn with matplotlib + networkx (no network access).

Example:
    >>> from typing import TypedDict
    >>> from langgraph.graph import StateGraph, START
    >>> class S(TypedDict):
    ...     x: int
    >>> app = StateGraph(S).add_node("inc", lambda s: {"x": s["x"] + 1}).add_edge(START, "inc").compile()
    >>> import io
    >>> text = explain(app, file=io.StringIO())
    >>> print(text.splitlines()[0]); "node:inc = NODE" in text
    == helium_lc plan (3 operators, 0 LLM calls) ==
    True
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any, Callable

from helium_lc.plan.ir import OperatorKind, Purity, QueryPlan
from helium_lc.plan.render import to_mermaid, to_text

__all__ = ["explain", "scheduler_text", "draw_plan_png"]


def _as_accelerated(app_or_fast: Any) -> Any:
    from helium_lc.accelerate import AcceleratedGraph, accelerate

    if isinstance(app_or_fast, AcceleratedGraph):
        return app_or_fast
    return accelerate(app_or_fast)  # raises a clear TypeError for non-graphs


def _default_token_counter(fast: Any) -> Callable[[str], int] | None:
    """A token counter from a routed pool's tokenizer, when one is already loaded."""
    for pool in fast.config.route.values():
        encode = getattr(pool, "encode", None)
        if encode is None or not getattr(pool, "started", False):
            continue
        try:
            encode("probe")
        except Exception:  # noqa: BLE001 - no tokenizer: characters only
            continue
        return lambda text, _enc=encode: len(_enc(text))
    return None


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"-- {title} --", *(lines or ["(none)"])]


def explain(app_or_fast: Any, *, file: IO[str] | None = None, mermaid_path: str | Path | None = None,
            png_path: str | Path | None = None, count_tokens: Callable[[str], int] | None = None) -> str:
    """Print and return a report of the plan of ``app_or_fast``.

    Args:
        app_or_fast: a compiled ``StateGraph`` (accelerated with default options) or an
            :class:`~helium_lc.accelerate.AcceleratedGraph`.
        file: where to print (default ``sys.stdout``).
        mermaid_path: write the plan as mermaid ``flowchart`` text there.
        png_path: draw the plan to this PNG file.
        count_tokens: ``text -> number of tokens`` for static-prefix lengths.
    """
    fast = _as_accelerated(app_or_fast)
    plan: QueryPlan | None = fast.plan
    count_tokens = count_tokens or _default_token_counter(fast)
    lines: list[str] = []
    if plan is None:
        lines += ["== helium_lc plan: unavailable ==", *fast.notes]
    else:
        llm_ops = plan.llm_operators()
        lines.append(f"== helium_lc plan ({len(plan)} operators, {len(llm_ops)} LLM calls) ==")
        lines.append(to_text(plan, count_tokens))
        lines += _section("rewrites", [] if fast.optimize_result is None or not fast.optimize_result.changes
                          else fast.optimize_result.explain().splitlines())
        if fast.graph is not fast.app:
            lines.append("the graph that runs was rebuilt without the pruned nodes")
        lines += _section("not analysable (still runs; less foresight)", [f"- {n}" for n in fast.notes])
        sampled = [op for op in fast.captured_plan.operators()
                   if op.kind is OperatorKind.LLM_CALL and op.purity is Purity.SAMPLED]
        lines += _section("sampled LLM calls (no prompt cache, no dedup)",
                          [f"- {op.op_id}: sampled decoding, results are never cached or shared"
                           for op in sampled])
        if count_tokens is None:
            lines.append("(static prefixes in characters; pass count_tokens= for token counts)")
    cfg = fast.config
    lines += _section("runtime", [
        f"prompt_cache={'on' if cfg.use_prompt_cache else 'off'}"
        f"{' (sqlite: ' + cfg.cache_path + ')' if cfg.cache_path else ''}, "
        f"dedup={'on' if cfg.dedup else 'off'}, policy={cfg.policy}, "
        f"disabled_rules={sorted(cfg.effective_disabled_rules) or '[]'}",
        "every chat-model call inside a run is intercepted: deterministic calls (temperature 0) "
        "are cached and deduplicated, sampled calls go straight to their model",
    ])
    last = fast.last_run_stats()
    if last is not None:
        lines += _section("last run (prompt cache)", [
            f"{last.num_cache_hits} calls reused from the cache, {last.num_cache_misses} computed"
            + (f"; the first computed call came from node {last.first_cache_miss_node!r}"
               if last.first_cache_miss_node else "; nothing was recomputed"),
        ] if cfg.use_prompt_cache else ["prompt cache off"])
    lines += _section("learned plan (capture + observed call sites; seeds the scheduler)",
                      fast.learned_plan.summary().splitlines())
    schedulers = fast.schedulers()
    lines += _section("scheduler (the last plans: shared prefixes in the TRT, planned order per worker)",
                      [line for sched in schedulers for line in scheduler_text(sched).splitlines()]
                      or ["(no run yet: the plans show here after the first invoke/batch on a WorkerPool)"])
    text = "\n".join(lines)
    print(text, file=file if file is not None else sys.stdout)
    if plan is not None and mermaid_path is not None:
        Path(mermaid_path).write_text(to_mermaid(plan) + "\n", encoding="utf-8")
    if plan is not None and png_path is not None:
        draw_plan_png(plan, png_path)
    return text


_COLOURS = {
    OperatorKind.INPUT: "#b3d9ff", OperatorKind.OUTPUT: "#b3d9ff", OperatorKind.NODE: "#e6e6e6",
    OperatorKind.LLM_CALL: "#ffd699", OperatorKind.ROUTER: "#d9b3ff", OperatorKind.TOOL_CALL: "#c2f0c2",
    OperatorKind.CACHE_FETCH: "#ffb3b3",
}


def scheduler_text(sched: Any) -> str:
    """A ``RuntimeScheduler``'s totals and its last plans: policy, TRT of the planned calls,
    planned order per worker, warm-ups (the largest recent plan and the last one)."""
    from helium_lc.schedule.trt import TemplatedRadixTree

    t = sched.totals
    records = sched.recent_plans()
    lines = [f"RuntimeScheduler: {int(t['num_plans'])} plans, {int(t['num_planned_requests'])} requests, "
             f"planning {1000 * t['planning_s']:.1f} ms, {int(t['num_warm_requests'])} warm-ups, "
             f"{int(t['num_replanned_requests'])} re-planned, {int(t['num_held_requests'])} held by the row gate, "
             f"{len(sched.sites)} call sites learned"]
    slow = sched.worker_slowdowns()
    if any(s != 1.0 for s in slow.values()):
        lines.append("learned worker speeds (time per unit of estimated work, relative): "
                     + ", ".join(f"worker {w} {s:.2f}x" for w, s in sorted(slow.items())))
    if not records:
        return "\n".join(lines) + "\n(no plan yet)"
    big = max(records, key=lambda r: len(r.calls))
    shown = [big] if big is records[-1] else [big, records[-1]]
    for rec in shown:
        lines.append(f"-- plan of {len(rec.calls)} calls, policy {rec.policy}, {1000 * rec.planning_s:.2f} ms")
        lines.append(TemplatedRadixTree.build(rec.calls).to_text())
        for w in sorted(rec.order):
            ids = rec.order[w]
            labels = ", ".join(rec.labels[i] for i in ids[:12]) + (" ..." if len(ids) > 12 else "")  # type: ignore[index]
            lines.append(f"worker {w}: {len(ids)} calls: {labels}")
        for w, n in rec.warmed:
            lines.append(f"warm worker {w}: {n} tokens")
    return "\n".join(lines)


def draw_plan_png(plan: QueryPlan, path: str | Path) -> None:
    """Draw ``plan`` top-down by dependency layer (back edges dashed) into a PNG file."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import networkx as nx

    dag = plan.dag()
    pos: dict[str, tuple[float, float]] = {}
    layers = list(nx.topological_generations(dag))
    for depth, layer in enumerate(layers):
        for i, op_id in enumerate(sorted(layer)):
            pos[op_id] = (i - (len(layer) - 1) / 2, -depth)
    width = max(6.0, 2.2 * max(len(layer) for layer in layers))
    fig, ax = plt.subplots(figsize=(width, max(4.0, 1.2 * len(layers))))
    try:
        g = plan.graph
        back = [(u, v) for u, v in g.edges if g.edges[u, v].get("back_edge")]
        fwd = [(u, v) for u, v in g.edges if not g.edges[u, v].get("back_edge")]
        nx.draw_networkx_edges(g, pos, edgelist=fwd, ax=ax, arrows=True, arrowsize=14,
                               node_size=1400, node_shape="s")
        nx.draw_networkx_edges(g, pos, edgelist=back, ax=ax, arrows=True, style="dashed", arrowsize=14,
                               connectionstyle="arc3,rad=0.3", node_size=1400, node_shape="s")
        colours = [_COLOURS[plan.op(n).kind] for n in g.nodes]
        nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=1400, node_shape="s")
        nx.draw_networkx_labels(g, pos, ax=ax, font_size=7)
        ax.set_axis_off()
        fig.tight_layout()
        fig.savefig(str(path), dpi=110)
    finally:
        plt.close(fig)
