"""Rule ``cse``: merge LLM calls that compute the same thing.

What it does: walks operators in topological order and gives each mergeable one a
signature (kind, graph level, sorted ids of its inputs after earlier merges, its own
content: purity, params incl. model identity and sampling, template). Operators whose
signature hashes match are compared in full, then merged into the one with the
smallest id: the survivor takes the others' outgoing edges and lists their ids in
``aliases`` (the runtime maps their calls to it). Repeats to a fixpoint, since a merge
can make downstream signatures equal.

Mergeable: LLM_CALL, TOOL_CALL and CACHE_FETCH operators that are PURE or SEEDED,
analysable, and whose template is exact (a learned template says nothing about
equality). NODEs are never merged: ``lower()`` only removes nodes. Two calls with
the same template and inputs can still render different text (e.g. a node formats
``state["q"][:10]``); the plan-level merge is a prediction, and the runtime's dedup
must compare the rendered prompt before sharing a result.

Before/after (two nodes call the same greedy prompt on the same input)::

    llm:a#0 = LLM_CALL pure prefix=4c <- input       llm:a#0 = LLM_CALL pure prefix=4c aliases=[llm:b#0] <- input
    llm:b#0 = LLM_CALL pure prefix=4c <- input       node:a = NODE ... <- input, llm:a#0(result)
    node:a = NODE ... <- input, llm:a#0(result)      node:b = NODE ... <- input, llm:a#0(result)
    node:b = NODE ... <- input, llm:b#0(result)

Invariants: never merges SAMPLED or SIDE_EFFECT operators; the plan still lints.
Nothing must run before it; running ``prune`` first makes it cheaper.

Example:
    >>> CommonSubexpressionElimination().name
    'cse'
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from helium_lc.plan.ir import Operator, OperatorKind, Purity, QueryPlan

__all__ = ["CommonSubexpressionElimination"]

_MERGEABLE_KINDS = frozenset({OperatorKind.LLM_CALL, OperatorKind.TOOL_CALL, OperatorKind.CACHE_FETCH})
_MERGEABLE_PURITY = frozenset({Purity.PURE, Purity.SEEDED})


class CommonSubexpressionElimination:
    """See the module docstring."""

    name = "cse"

    @staticmethod
    def mergeable(op: Operator) -> bool:
        """True if ``op`` may be merged with an equal operator."""
        return (op.kind in _MERGEABLE_KINDS and op.purity in _MERGEABLE_PURITY and op.analysable
                and (op.template is None or op.template.is_exact))

    def _signature(self, plan: QueryPlan, op: Operator) -> tuple[Any, ...]:
        inputs = tuple(sorted((p, plan.graph.edges[p, op.op_id].get("kind", "data"))
                              for p in plan.graph.predecessors(op.op_id)))
        return (op.graph_path, inputs, op.content_key())

    def _merge_once(self, plan: QueryPlan) -> list[str]:
        buckets: dict[int, list[tuple[tuple[Any, ...], str]]] = defaultdict(list)
        for op_id in plan.topological_order():
            op = plan.op(op_id)
            if self.mergeable(op):
                sig = self._signature(plan, op)
                buckets[hash(sig)].append((sig, op_id))
        descriptions = []
        for entries in buckets.values():
            groups: list[list[str]] = []
            sigs: list[tuple[Any, ...]] = []
            for sig, op_id in entries:  # a hash match is confirmed by comparing full content
                for k, other in enumerate(sigs):
                    if other == sig:
                        groups[k].append(op_id)
                        break
                else:
                    sigs.append(sig)
                    groups.append([op_id])
            for group in groups:
                if len(group) < 2:
                    continue
                keep, *others = sorted(group)
                for other in others:
                    self._fold(plan, keep, other)
                    descriptions.append(f"merged {other} into {keep}")
        return descriptions

    @staticmethod
    def _fold(plan: QueryPlan, keep: str, other: str) -> None:
        for _, succ, data in list(plan.graph.out_edges(other, data=True)):
            if succ != keep and not plan.graph.has_edge(keep, succ):
                plan.graph.add_edge(keep, succ, **data)
        survivor = plan.op(keep)
        gone = plan.op(other)
        plan.replace_operator(survivor.with_(aliases=survivor.aliases | gone.aliases | {other}))
        plan.remove_operator(other)

    def apply(self, plan: QueryPlan) -> list[str]:
        descriptions: list[str] = []
        while True:
            step = self._merge_once(plan)
            if not step:
                return descriptions
            descriptions.extend(step)
