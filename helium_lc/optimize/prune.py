"""Rule ``prune``: drop deterministic operators whose results nobody uses.

What it does: computes which state keys are *live* per graph level: the requested
outputs (``output_keys``, default the output schema's keys) plus every key read by
an operator that is kept. Non-droppable operators are always kept: SIDE_EFFECT and
SAMPLED ones, unknown writes, routers, INPUT/OUTPUT. A PURE/SEEDED NODE is kept if
it writes a live key; an LLM call (or cache fetch) is kept if the node it feeds is
kept; a subgraph level lives and dies with its node. Iterates to a fixpoint, then
removes the rest, reconnecting predecessors to successors. Liveness is by key over
the whole level, not by position, so a key read anywhere (even upstream, through a
loop) keeps its writers: conservative, never wrong.

Only NODEs that :func:`is_contractible` are dropped, so that ``lower()`` can rebuild
the LangGraph graph without them.

Before/after (output keys = [a]; node ``b`` is pure and writes ``b`` nobody reads)::

    input = INPUT pure writes=[a,b,q]          input = INPUT pure writes=[a,b,q]
    node:a = NODE pure reads=[q] writes=[a]    node:a = NODE pure reads=[q] writes=[a] <- input
    node:b = NODE pure reads=[a] writes=[b]    output = OUTPUT pure reads=[a] <- node:a
    output = OUTPUT pure reads=[a] <- node:b

Invariants: never removes SIDE_EFFECT/SAMPLED/unknown-writes operators, routers, or
INPUT/OUTPUT of a live level; the plan still lints. Needs nothing before it.

Example:
    >>> Prune(output_keys=["answer"]).name
    'prune'
"""

from __future__ import annotations

from typing import Iterable

from helium_lc.optimize.base import INNER_KINDS, is_contractible, subgraph_node_id
from helium_lc.plan.ir import Operator, OperatorKind, Purity, QueryPlan

__all__ = ["Prune"]

_DROPPABLE_PURITY = frozenset({Purity.PURE, Purity.SEEDED})
_ALL = "*"


class Prune:
    """See the module docstring. ``output_keys`` overrides the top level's outputs."""

    name = "prune"

    def __init__(self, output_keys: Iterable[str] | None = None) -> None:
        if isinstance(output_keys, str):
            raise TypeError("output_keys must be a collection of state keys, e.g. ['answer'], not a string.")
        self.output_keys = None if output_keys is None else frozenset(output_keys)

    def _droppable(self, plan: QueryPlan, op: Operator) -> bool:
        if op.purity not in _DROPPABLE_PURITY:
            return False
        if op.kind in INNER_KINDS:
            return True
        return op.kind is OperatorKind.NODE and op.writes is not None and is_contractible(plan, op.op_id)

    def apply(self, plan: QueryPlan) -> list[str]:
        ops = {i: plan.op(i) for i in plan.graph}
        outputs: dict[str, frozenset[str] | None] = {}
        for op in ops.values():
            if op.kind is OperatorKind.OUTPUT:
                outputs[op.graph_path] = op.reads
        if self.output_keys is not None:
            outputs[""] = self.output_keys
        kept = {i for i, op in ops.items() if not self._droppable(plan, op)}
        while True:
            live: dict[str, set[str]] = {lvl: set(keys) if keys is not None else {_ALL}
                                         for lvl, keys in outputs.items()}
            for i in kept:
                op = ops[i]
                if op.kind is OperatorKind.OUTPUT:
                    continue
                live.setdefault(op.graph_path, set()).update(op.reads if op.reads is not None else {_ALL})
            new_kept = set(kept)
            for i, op in ops.items():
                if i in kept:
                    continue
                if op.kind in INNER_KINDS:
                    if any(d.get("kind") == "result" and s in kept
                           for _, s, d in plan.graph.out_edges(i, data=True)):
                        new_kept.add(i)
                elif op.writes and (op.writes & live.get(op.graph_path, set()) or _ALL in live.get(op.graph_path, ())):
                    new_kept.add(i)
            if new_kept == kept:
                break
            kept = new_kept
        # A subgraph level lives and dies with its NODE.
        dead = {i for i in ops if i not in kept}
        changed = True
        while changed:
            changed = False
            for i, op in ops.items():
                holder = subgraph_node_id(op.graph_path)
                if i not in dead and holder is not None and holder in dead:
                    dead.add(i)
                    changed = True
        descriptions = []
        for i in sorted(dead, key=lambda x: (ops[x].kind in INNER_KINDS, x), reverse=True):
            plan.remove_operator(i, reconnect=ops[i].kind is OperatorKind.NODE)
        for i in sorted(dead):
            op = ops[i]
            why = "its writes are never read" if op.kind is OperatorKind.NODE else "it only fed a dropped operator"
            descriptions.append(f"dropped {i}: {why}")
        return descriptions
