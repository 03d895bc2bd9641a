"""The rule protocol and the plan-shape helpers the rules share.

A rule has a ``name`` (used in config to disable it, and in ``explain``) and an
``apply(plan) -> list[str]`` that rewrites ``plan`` in place and returns one
description per change (empty list: nothing changed).

Example:
    >>> from helium_lc.plan import QueryPlan
    >>> class Noop:
    ...     name = "noop"
    ...     def apply(self, plan): return []
    >>> isinstance(Noop(), Rule)
    True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from helium_lc.plan.ir import OperatorKind, QueryPlan

__all__ = ["Rule", "INNER_KINDS", "level_neighbours", "is_contractible", "subgraph_node_id"]

# Operators that run inside a NODE (wired preds -> op -> node with a "result" edge).
INNER_KINDS = frozenset({OperatorKind.LLM_CALL, OperatorKind.TOOL_CALL, OperatorKind.CACHE_FETCH})


@runtime_checkable
class Rule(Protocol):
    name: str

    def apply(self, plan: QueryPlan) -> list[str]: ...


def level_neighbours(plan: QueryPlan, op_id: str, *, incoming: bool) -> list[tuple[str, str]]:
    """Same-level graph neighbours of ``op_id`` as (id, edge kind), skipping inner operators
    and ``result`` edges (the LLM calls and subgraph of a node are not its neighbours)."""
    op = plan.op(op_id)
    edges = plan.graph.in_edges(op_id, data=True) if incoming else plan.graph.out_edges(op_id, data=True)
    out = []
    for u, v, data in edges:
        other = u if incoming else v
        o = plan.op(other)
        if o.graph_path != op.graph_path or o.kind in INNER_KINDS or data.get("kind") == "result":
            continue
        out.append((other, data.get("kind", "data")))
    return sorted(out)


def is_contractible(plan: QueryPlan, op_id: str) -> bool:
    """True if NODE ``op_id`` can be cut out of its LangGraph graph unambiguously.

    The shape lowering can rebuild: exactly one plain incoming edge; at most one plain
    outgoing edge, to the output or to a node (not a router) that nothing else
    triggers. Joins, conditional/Send/Command edges and routers make it ambiguous.
    """
    ins = level_neighbours(plan, op_id, incoming=True)
    outs = level_neighbours(plan, op_id, incoming=False)
    if len(ins) != 1 or ins[0][1] != "data" or len(outs) > 1:
        return False
    if not outs:
        return True
    succ, kind = outs[0]
    if kind != "data" or plan.op(succ).kind is OperatorKind.ROUTER:
        return False
    if plan.op(succ).kind is OperatorKind.OUTPUT:
        return True
    return [p for p, _ in level_neighbours(plan, succ, incoming=True)] == [op_id]


def subgraph_node_id(graph_path: str) -> str | None:
    """The NODE id that holds subgraph level ``graph_path`` ('' -> None)."""
    if not graph_path:
        return None
    parent, _, last = graph_path.rpartition("/")
    return f"{parent}/node:{last}" if parent else f"node:{last}"
