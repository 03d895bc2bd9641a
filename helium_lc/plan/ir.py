"""The query plan IR: operators (LLM calls first-class) in a networkx graph.

A :class:`QueryPlan` is a ``networkx.DiGraph`` whose nodes are operator ids with the
:class:`Operator` stored under the ``op`` attribute. Edges carry a ``kind``:

- ``data``: state flows from one operator to the next (a plain LangGraph edge),
- ``conditional`` / ``send`` / ``command``: routing decided at run time,
- ``join``: one of several edges a node waits for (LangGraph ``waiting_edges``),
- ``result``: an operator inside a node (LLM call, subgraph output) feeds that node,
- ``sequence``: the n-th LLM call of a node may depend on the (n-1)-th.

LangGraph graphs may loop. Loops are kept as edges marked ``back_edge=True``; the
*DAG view* (:meth:`QueryPlan.dag`) leaves them out, and :meth:`QueryPlan.lint` checks
that view is acyclic.

Example:
    >>> plan = QueryPlan()
    >>> plan.add_operator(Operator("input", OperatorKind.INPUT, "input", Purity.PURE))
    >>> plan.add_operator(Operator("node:a", OperatorKind.NODE, "a", Purity.PURE))
    >>> plan.add_operator(Operator("output", OperatorKind.OUTPUT, "output", Purity.PURE))
    >>> plan.add_edge("input", "node:a"); plan.add_edge("node:a", "output")
    >>> plan.lint()
    >>> plan.topological_order()
    ['input', 'node:a', 'output']
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import networkx as nx

from helium_lc.plan.template import PromptTemplate

__all__ = ["OperatorKind", "Purity", "Operator", "QueryPlan", "PlanError", "EDGE_KINDS", "worst_purity"]

EDGE_KINDS = frozenset({"data", "control", "conditional", "send", "command", "join", "result", "sequence"})


class PlanError(ValueError):
    """A query plan breaks an invariant; the message names the operator and the fix."""


class OperatorKind(str, enum.Enum):
    INPUT = "input"
    NODE = "node"
    LLM_CALL = "llm_call"
    TOOL_CALL = "tool_call"
    ROUTER = "router"
    OUTPUT = "output"
    CACHE_FETCH = "cache_fetch"


class Purity(str, enum.Enum):
    """How repeatable an operator is. Unknown code is treated as SIDE_EFFECT.

    PURE: output is a function of inputs. SEEDED: random but seeded (repeatable).
    SAMPLED: random (never merged, never dropped). SIDE_EFFECT: touches the world.
    """

    PURE = "pure"
    SEEDED = "seeded"
    SAMPLED = "sampled"
    SIDE_EFFECT = "side_effect"

    @property
    def rank(self) -> int:
        return _PURITY_RANK[self]


_PURITY_RANK = {Purity.PURE: 0, Purity.SEEDED: 1, Purity.SAMPLED: 2, Purity.SIDE_EFFECT: 3}


def worst_purity(purities: Iterable[Purity]) -> Purity:
    """The least repeatable of ``purities`` (PURE for none)."""
    return max(purities, key=lambda p: p.rank, default=Purity.PURE)


@dataclass(frozen=True)
class Operator:
    """One step of a query plan.

    ``reads``/``writes`` are state keys; ``None`` means unknown (= all keys).
    ``graph_path`` is the subgraph prefix ('' at top level, ``"inner"`` inside node
    ``inner``). ``parent`` is the id of the NODE an LLM call or tool call runs inside.
    ``analysable=False`` comes with a ``reason``.
    """

    op_id: str
    kind: OperatorKind
    name: str
    purity: Purity = Purity.SIDE_EFFECT
    reads: frozenset[str] | None = None
    writes: frozenset[str] | None = None
    template: PromptTemplate | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    analysable: bool = True
    reason: str = ""
    graph_path: str = ""
    parent: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.op_id, str) or not self.op_id:
            raise PlanError(f"An operator needs a non-empty string op_id, got {self.op_id!r}.")
        object.__setattr__(self, "kind", OperatorKind(self.kind))
        object.__setattr__(self, "purity", Purity(self.purity))
        for name in ("reads", "writes"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, frozenset):
                if isinstance(value, str):
                    raise PlanError(f"Operator {self.op_id}: {name} must be a set of keys, not a string.")
                object.__setattr__(self, name, frozenset(value))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        if not self.analysable and not self.reason:
            raise PlanError(f"Operator {self.op_id} is marked not analysable; give a reason.")

    def __hash__(self) -> int:
        return hash((self.op_id, self.kind))

    def with_(self, **changes: Any) -> "Operator":
        """A copy with ``changes`` applied (dataclasses.replace)."""
        return replace(self, **changes)


class QueryPlan:
    """A workflow as a graph of :class:`Operator` s (see the module docstring).

    ``metadata`` holds graph-level facts from capture: ``input_keys``,
    ``output_keys``, ``channels`` (key -> reducer description) per graph path.
    """

    def __init__(self, graph: nx.DiGraph | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        self.graph: nx.DiGraph = graph if graph is not None else nx.DiGraph()
        self.metadata: dict[str, Any] = dict(metadata or {})

    # -- construction -------------------------------------------------------------
    def add_operator(self, op: Operator) -> None:
        """Add ``op``; raises PlanError if its id is taken."""
        if op.op_id in self.graph:
            raise PlanError(f"Operator id {op.op_id!r} already exists; use replace_operator to change it.")
        self.graph.add_node(op.op_id, op=op)

    def replace_operator(self, op: Operator) -> None:
        """Swap the operator stored under ``op.op_id`` keeping its edges."""
        if op.op_id not in self.graph:
            raise PlanError(f"No operator {op.op_id!r} to replace; add it first.")
        self.graph.nodes[op.op_id]["op"] = op

    def remove_operator(self, op_id: str, *, reconnect: bool = False) -> None:
        """Remove an operator. With ``reconnect``, link each predecessor to each successor.

        A new edge takes the outgoing edge's kind (``result``/``sequence`` become
        ``data``) and is a back edge if either edge it replaces was one, so the DAG
        view stays acyclic. Existing edges are left as they are.
        """
        if op_id not in self.graph:
            raise PlanError(f"No operator {op_id!r} to remove.")
        if reconnect:
            for p, _, e_in in list(self.graph.in_edges(op_id, data=True)):
                for _, s, e_out in list(self.graph.out_edges(op_id, data=True)):
                    if p == op_id or s == op_id or p == s or self.graph.has_edge(p, s):
                        continue
                    kind = e_out.get("kind", "data")
                    if kind in ("result", "sequence"):
                        kind = "data"
                    back = bool(e_in.get("back_edge") or e_out.get("back_edge"))
                    self.graph.add_edge(p, s, kind=kind, back_edge=back)
        self.graph.remove_node(op_id)

    def add_edge(self, src: str, dst: str, kind: str = "data", *, back_edge: bool = False, **attrs: Any) -> None:
        """Add an edge of ``kind`` (one of EDGE_KINDS); both endpoints must exist."""
        if kind not in EDGE_KINDS:
            raise PlanError(f"Unknown edge kind {kind!r}; use one of {sorted(EDGE_KINDS)}.")
        for end in (src, dst):
            if end not in self.graph:
                raise PlanError(f"Edge {src} -> {dst}: no operator {end!r}; add it before the edge.")
        self.graph.add_edge(src, dst, kind=kind, back_edge=back_edge, **attrs)

    # -- queries -------------------------------------------------------------------
    def op(self, op_id: str) -> Operator:
        """The operator with id ``op_id``."""
        try:
            return self.graph.nodes[op_id]["op"]
        except KeyError:
            raise PlanError(f"No operator {op_id!r} in the plan.") from None

    def operators(self) -> list[Operator]:
        """All operators in topological order."""
        return [self.op(i) for i in self.topological_order()]

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __contains__(self, op_id: object) -> bool:
        return op_id in self.graph

    def llm_operators(self) -> list[Operator]:
        """LLM_CALL operators in topological order."""
        return [op for op in self.operators() if op.kind is OperatorKind.LLM_CALL]

    def dag(self) -> nx.DiGraph:
        """A view without back edges (loops cut)."""
        return nx.subgraph_view(self.graph, filter_edge=lambda u, v: not self.graph.edges[u, v].get("back_edge"))

    def topological_order(self) -> list[str]:
        """Operator ids in dependency order, ties broken by op_id (deterministic)."""
        try:
            return list(nx.lexicographical_topological_sort(self.dag()))
        except nx.NetworkXUnfeasible:
            raise PlanError("The plan's DAG view has a cycle; mark one edge of each loop back_edge=True.") from None

    def copy(self) -> "QueryPlan":
        """An independent copy (operators are immutable and shared)."""
        return QueryPlan(self.graph.copy(), metadata={k: v for k, v in self.metadata.items()})

    def mark_back_edges(self) -> None:
        """Recompute ``back_edge`` flags by a deterministic DFS from the INPUT operators.

        An edge to an operator still on the DFS stack closes a loop and is marked.
        """
        for u, v in self.graph.edges:
            self.graph.edges[u, v]["back_edge"] = False
        roots = sorted(i for i in self.graph if self.op(i).kind is OperatorKind.INPUT)
        roots += sorted(i for i in self.graph if i not in roots)
        state: dict[str, int] = {}  # 1 = on stack, 2 = done
        for root in roots:
            if root in state:
                continue
            state[root] = 1
            stack = [(root, iter(sorted(self.graph.successors(root))))]
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                elif state.get(nxt) == 1:
                    self.graph.edges[node, nxt]["back_edge"] = True
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(sorted(self.graph.successors(nxt)))))

    # -- checks --------------------------------------------------------------------
    def lint(self) -> None:
        """Raise :class:`PlanError` unless the plan is well formed.

        Checks: every graph node holds an Operator whose id matches; edge kinds are
        known; the DAG view is acyclic; each graph path has exactly one INPUT and one
        OUTPUT; each LLM_CALL/TOOL_CALL names an existing NODE parent at its level.
        """
        levels: dict[str, dict[OperatorKind, int]] = {}
        for op_id, data in self.graph.nodes(data=True):
            op = data.get("op")
            if not isinstance(op, Operator):
                raise PlanError(f"Graph node {op_id!r} has no Operator under 'op'; use add_operator.")
            if op.op_id != op_id:
                raise PlanError(f"Graph node {op_id!r} holds operator {op.op_id!r}; ids must match.")
            counts = levels.setdefault(op.graph_path, {})
            counts[op.kind] = counts.get(op.kind, 0) + 1
        for u, v, data in self.graph.edges(data=True):
            if data.get("kind") not in EDGE_KINDS:
                raise PlanError(f"Edge {u} -> {v} has unknown kind {data.get('kind')!r}.")
        if not nx.is_directed_acyclic_graph(self.dag()):
            cycle = nx.find_cycle(self.dag())
            raise PlanError(f"The plan's DAG view has a cycle {cycle}; mark a back edge (mark_back_edges()).")
        for path, counts in sorted(levels.items()):
            for kind in (OperatorKind.INPUT, OperatorKind.OUTPUT):
                if counts.get(kind, 0) != 1:
                    where = f"subgraph {path!r}" if path else "the top level"
                    raise PlanError(f"{where} has {counts.get(kind, 0)} {kind.name} operators; it needs exactly one.")
        for op_id in self.graph:
            op = self.op(op_id)
            if op.kind in (OperatorKind.LLM_CALL, OperatorKind.TOOL_CALL):
                if op.parent is None or op.parent not in self.graph:
                    raise PlanError(f"{op.kind.name} {op_id!r} has no parent NODE (parent={op.parent!r}).")
                parent = self.op(op.parent)
                if parent.kind is not OperatorKind.NODE or parent.graph_path != op.graph_path:
                    raise PlanError(f"{op_id!r}: parent {op.parent!r} must be a NODE at the same level.")
