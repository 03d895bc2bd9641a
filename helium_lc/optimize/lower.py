"""Lower an optimized plan back to a LangGraph graph when whole nodes were pruned.

:func:`lower` rebuilds the ``StateGraph`` from a copy of ``app.builder`` without the
NODEs the plan no longer holds (recursing into subgraphs), and compiles it with the
original's checkpointer, store, cache, interrupts, debug flag and name. A removed
node ``n`` is cut out only when that is unambiguous: one plain edge ``p -> n``, no
branches from or (possibly) to ``n``, no joins or Command routes involving it, and
at most one plain edge ``n -> s`` where nothing else triggers ``s``; then
``p -> s`` replaces the pair. Otherwise the node is kept (a warning is logged).
When nothing changes, ``app`` itself is returned.

Step timing: the successor runs one superstep earlier than before. Results are the
same unless the graph relies on step counts (e.g. a recursion limit near its edge).

Example:
    >>> from typing import TypedDict
    >>> from langgraph.graph import StateGraph, START
    >>> from helium_lc.capture import capture
    >>> class S(TypedDict):
    ...     x: int
    >>> app = StateGraph(S).add_node("f", lambda s: {"x": 1}).add_edge(START, "f").compile()
    >>> lower(capture(app), app) is app
    True
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import defaultdict
from typing import Any

from helium_lc.plan.ir import QueryPlan

__all__ = ["lower"]

logger = logging.getLogger(__name__)
START, END = "__start__", "__end__"


def _cut(builder: Any, name: str) -> tuple[str, str | None] | None:
    """(p, s) if node ``name`` can be cut out (s None: it was a sink), else None."""
    ins = [e for e in builder.edges if e[1] == name]
    outs = [e for e in builder.edges if e[0] == name]
    if len(ins) != 1 or len(outs) > 1 or builder.branches.get(name) or builder.nodes[name].ends:
        return None
    if any(name in starts or end == name for starts, end in builder.waiting_edges):
        return None
    for src, branches in builder.branches.items():
        for branch in branches.values():
            if branch.ends is None or name in branch.ends.values():
                return None
    if any(spec.ends and name in spec.ends for spec in builder.nodes.values()):
        return None
    succ = outs[0][1] if outs else None
    if succ is not None and succ != END:
        others = [e for e in builder.edges if e[1] == succ and e[0] != name]
        if others or any(end == succ for _, end in builder.waiting_edges):
            return None
    return ins[0][0], succ


def lower(plan: QueryPlan, app: Any, *, _prefix: str = "") -> Any:
    """A compiled graph without the nodes ``plan`` dropped; ``app`` if none were."""
    builder = app.builder
    pid = (lambda s: f"{_prefix}/{s}") if _prefix else (lambda s: s)
    removed = sorted(n for n in builder.nodes if pid(f"node:{n}") not in plan
                     and not builder.nodes[n].is_error_handler)
    new_nodes = dict(builder.nodes)
    changed = False
    for name, spec in builder.nodes.items():  # subgraphs first
        if name in removed or getattr(spec.runnable, "builder", None) is None:
            continue
        sub = lower(plan, spec.runnable, _prefix=pid(name))
        if sub is not spec.runnable:
            new_nodes[name] = dataclasses.replace(spec, runnable=sub)
            changed = True
    new = copy.copy(builder)
    new.nodes = new_nodes
    new.edges = set(builder.edges)
    new.waiting_edges = set(builder.waiting_edges)
    new.branches = defaultdict(dict, {k: dict(v) for k, v in builder.branches.items()})
    for name in removed:
        cut = _cut(new, name)
        if cut is None:
            logger.warning("lower: kept node %r: removing it from the graph is ambiguous", name)
            continue
        pred, succ = cut
        new.edges = {e for e in new.edges if name not in e}
        if succ is not None:
            new.edges.add((pred, succ))
        del new.nodes[name]
        changed = True
    if not changed:
        return app
    new.compiled = False
    return new.compile(
        checkpointer=app.checkpointer, store=app.store, cache=app.cache,
        interrupt_before=app.interrupt_before_nodes or None,
        interrupt_after=app.interrupt_after_nodes or None,
        debug=app.debug, name=app.name,
    )
