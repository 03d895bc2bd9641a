"""Canonical text and mermaid renderings of a :class:`QueryPlan`.

The text form is deterministic (operators in topological order, ties by id, keys
sorted) so that optimizer tests compare plans as text and ``explain()`` prints the
same plan the same way every time. One line per operator::

    node:a = NODE pure reads=[q] writes=[a] <- input

Fields: kind, purity, reads/writes (``*`` = unknown), ``prefix=<chars>c[/<tokens>t]``
for templates, ``learned`` for learned templates,
``!unanalysable(<reason>)``, then the incoming edges (``kind`` shown unless ``data``,
``~`` marks a back edge).

Example:
    >>> from helium_lc.plan.ir import Operator, OperatorKind, Purity, QueryPlan
    >>> p = QueryPlan()
    >>> p.add_operator(Operator("input", OperatorKind.INPUT, "input", Purity.PURE, writes={"q"}))
    >>> p.add_operator(Operator("output", OperatorKind.OUTPUT, "output", Purity.PURE, reads={"q"}))
    >>> p.add_edge("input", "output")
    >>> print(to_text(p))
    input = INPUT pure writes=[q]
    output = OUTPUT pure reads=[q] <- input
"""

from __future__ import annotations

from typing import Callable

from helium_lc.plan.ir import Operator, OperatorKind, QueryPlan

__all__ = ["to_text", "to_mermaid", "format_operator"]


def _keys(keys: frozenset[str] | None) -> str:
    return "*" if keys is None else "[" + ",".join(sorted(keys)) + "]"


def format_operator(plan: QueryPlan, op: Operator, count_tokens: Callable[[str], int] | None = None) -> str:
    """One canonical line for ``op`` (see the module docstring)."""
    parts = [f"{op.op_id} = {op.kind.name} {op.purity.value}"]
    if op.kind is not OperatorKind.INPUT:
        if op.reads is None or op.reads:
            parts.append(f"reads={_keys(op.reads)}")
    if op.kind is not OperatorKind.OUTPUT and (op.writes is None or op.writes):
        parts.append(f"writes={_keys(op.writes)}")
    if op.template is not None:
        prefix = op.template.static_prefix()
        size = f"prefix={len(prefix)}c"
        if count_tokens is not None:
            size += f"/{count_tokens(prefix)}t"
        parts.append(size)
        if op.template.learned:
            parts.append("learned")
    if not op.analysable:
        parts.append(f"!unanalysable({op.reason})")
    preds = []
    for src in sorted(plan.graph.predecessors(op.op_id)):
        data = plan.graph.edges[src, op.op_id]
        label = src
        kind = data.get("kind", "data")
        if kind != "data":
            label += f"({kind})"
        if data.get("back_edge"):
            label = "~" + label
        preds.append(label)
    line = " ".join(parts)
    if preds:
        line += " <- " + ", ".join(preds)
    return line


def to_text(plan: QueryPlan, count_tokens: Callable[[str], int] | None = None) -> str:
    """The canonical multi-line rendering: one operator per line, topological order.

    ``count_tokens`` (e.g. ``lambda s: len(tok.encode(s))``) adds static-prefix
    token counts.
    """
    return "\n".join(format_operator(plan, op, count_tokens) for op in plan.operators())


_SHAPES = {
    OperatorKind.INPUT: ("([", "])"), OperatorKind.OUTPUT: ("([", "])"),
    OperatorKind.LLM_CALL: ("[[", "]]"), OperatorKind.ROUTER: ("{", "}"),
    OperatorKind.CACHE_FETCH: ("[(", ")]"), OperatorKind.TOOL_CALL: ("[/", "/]"),
    OperatorKind.NODE: ("[", "]"),
}


def to_mermaid(plan: QueryPlan) -> str:
    """A ``flowchart TD`` mermaid diagram; back edges dotted, edge kinds as labels."""
    order = plan.topological_order()
    ids = {op_id: f"n{i}" for i, op_id in enumerate(order)}
    lines = ["flowchart TD"]
    for op_id in order:
        op = plan.op(op_id)
        left, right = _SHAPES[op.kind]
        label = op_id.replace('"', "'")
        lines.append(f'    {ids[op_id]}{left}"{label}"{right}')
    for u, v in sorted(plan.graph.edges):
        data = plan.graph.edges[u, v]
        kind = data.get("kind", "data")
        arrow = "-.->" if data.get("back_edge") else "-->"
        label = "" if kind == "data" else f"|{kind}|"
        lines.append(f"    {ids[u]} {arrow}{label} {ids[v]}")
    return "\n".join(lines)
