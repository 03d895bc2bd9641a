"""Capture a compiled LangGraph ``StateGraph`` into a :class:`QueryPlan`.

Reads ``app.builder``: ``nodes`` (StateNodeSpec: runnable, ``ends`` for ``Command``
routing), ``edges``, ``waiting_edges`` (joins), ``branches`` (conditional edges with
targets from ``path_map``/``Literal`` annotations, else from ``Send("x")``
constants, else "any node", marked), ``channels`` (reducers) and the input/output
schemas. A node whose runnable is itself a compiled graph is captured recursively
under the path prefix ``<node>/``. Each node's LLM call sites become LLM_CALL
operators ``llm:<node>#<ordinal>`` wired ``preds -> llm -> node``.

Never raises on a valid compiled graph: what cannot be analysed is kept and marked
``analysable=False`` with a reason.

Example:
    >>> from typing import TypedDict
    >>> from langgraph.graph import StateGraph, START, END
    >>> class S(TypedDict):
    ...     x: int
    >>> def inc(state: S) -> dict:
    ...     return {"x": state["x"] + 1}
    >>> app = StateGraph(S).add_node("inc", inc).add_edge(START, "inc").compile()
    >>> from helium_lc.plan import to_text
    >>> print(to_text(capture(app)))
    input = INPUT pure writes=[x]
    node:inc = NODE pure reads=[x] writes=[x] <- input
    output = OUTPUT pure reads=[x] <- node:inc
"""

from __future__ import annotations

from typing import Any

from helium_lc.capture.objects import (
    PURE_MARK, find_chat_model, find_chat_prompt, function_namespace, is_llm_runnable,
    model_identity, model_purity, node_function, reachable_chat_models,
)
from helium_lc.capture.source import FunctionFacts, analyse_function
from helium_lc.plan.ir import Operator, OperatorKind, Purity, QueryPlan, worst_purity
from helium_lc.plan.template import PromptTemplate, template_from_chat_prompt

__all__ = ["capture", "mark_pure"]

START, END = "__start__", "__end__"


def mark_pure(fn: Any) -> Any:
    """Declare a node, router or helper function free of side effects (opt-in).

    Capture then treats its code as PURE (its LLM calls keep their own purity), and
    calls to it from other nodes do not make those nodes impure.
    """
    setattr(fn, PURE_MARK, True)
    return fn


def _check_app(app: Any) -> None:
    from langgraph.graph.state import CompiledStateGraph, StateGraph

    if isinstance(app, StateGraph):
        raise TypeError("capture() got an uncompiled StateGraph; call .compile() on it first and pass the result.")
    if not isinstance(app, CompiledStateGraph):
        raise TypeError(
            f"capture() needs a compiled LangGraph StateGraph (the result of StateGraph(...).compile()), "
            f"got {type(app).__module__}.{type(app).__qualname__}."
        )


def capture(app: Any, *, trace: bool = False) -> QueryPlan:
    """Build the query plan of a compiled LangGraph ``StateGraph``.

    ``trace=True`` additionally runs each node whose reads static analysis could not
    determine once on placeholder state, with chat models stubbed (see
    ``helium_lc.capture.trace``), to record the keys it reads.
    """
    _check_app(app)
    plan = QueryPlan(metadata={"levels": {}})
    _capture_level(plan, app, "", trace)
    plan.mark_back_edges()
    plan.lint()
    return plan


def _channel_desc(channel: Any) -> str:
    op = getattr(channel, "operator", None)
    if op is not None:
        return "reducer:" + str(getattr(op, "__name__", type(op).__name__)).lstrip("_")
    return type(channel).__name__


def _schema_keys(builder: Any, schema: Any) -> frozenset[str]:
    return frozenset(k for k in builder.schemas.get(schema, {}) if k in builder.channels)


def _capture_level(plan: QueryPlan, app: Any, prefix: str, trace: bool) -> None:
    builder = app.builder
    pid = (lambda s: f"{prefix}/{s}") if prefix else (lambda s: s)
    try:
        input_keys = _schema_keys(builder, builder.input_schema)
        output_keys = _schema_keys(builder, builder.output_schema)
    except Exception:  # noqa: BLE001 - unusual schemas: fall back to all channels
        input_keys = output_keys = frozenset(builder.channels)
    plan.metadata["levels"][prefix] = {
        "input_keys": sorted(input_keys), "output_keys": sorted(output_keys),
        "channels": {k: _channel_desc(c) for k, c in sorted(builder.channels.items())},
    }
    plan.add_operator(Operator(pid("input"), OperatorKind.INPUT, "input", Purity.PURE,
                               reads=frozenset(), writes=input_keys, graph_path=prefix))
    plan.add_operator(Operator(pid("output"), OperatorKind.OUTPUT, "output", Purity.PURE,
                               reads=output_keys, writes=frozenset(), graph_path=prefix))
    node_ids = {name: pid(f"node:{name}") for name in builder.nodes}
    node_ids[START], node_ids[END] = pid("input"), pid("output")
    llm_ops: dict[str, list[Operator]] = {}
    subgraphs: list[str] = []
    command_targets: dict[str, frozenset[str] | None] = {}

    for name in sorted(builder.nodes):
        spec = builder.nodes[name]
        sub = spec.runnable
        if getattr(sub, "builder", None) is not None and _is_compiled(sub):
            _capture_level(plan, sub, pid(name), trace)
            inner = [plan.op(i) for i in plan.graph if plan.op(i).graph_path.startswith(pid(name))]
            levels = plan.metadata["levels"][pid(name)]
            plan.add_operator(Operator(
                node_ids[name], OperatorKind.NODE, name, worst_purity(o.purity for o in inner),
                reads=frozenset(levels["input_keys"]), writes=frozenset(levels["output_keys"]),
                params={"subgraph": True}, graph_path=prefix))
            subgraphs.append(name)
            continue
        op, llms, goto = _node_operators(name, spec.runnable, node_ids[name], prefix, trace)
        plan.add_operator(op)
        for llm in llms:
            plan.add_operator(llm)
        llm_ops[name] = llms
        command_targets[name] = goto

    # plain edges and joins
    for src, dst in sorted(builder.edges):
        plan.add_edge(node_ids[src], node_ids[dst], "data")
    for starts, dst in sorted(builder.waiting_edges):
        for src in starts:
            plan.add_edge(node_ids[src], node_ids[dst], "join", join=",".join(starts))
    # Command routing: declared ends, else constant goto targets found in the source
    for name in sorted(builder.nodes):
        ends = builder.nodes[name].ends
        targets = list(ends) if ends else sorted(command_targets.get(name) or ())
        for dst in targets:
            if dst in node_ids and not plan.graph.has_edge(node_ids[name], node_ids[dst]):
                plan.add_edge(node_ids[name], node_ids[dst], "command")
    # conditional edges
    names = [n for branches in builder.branches.values() for n in branches]
    for src in sorted(builder.branches):
        for bname in sorted(builder.branches[src]):
            _add_router(plan, builder, src, bname, names.count(bname) > 1, node_ids, pid, prefix)
    # nodes that end the run implicitly feed the output
    for name in sorted(builder.nodes):
        nid = node_ids[name]
        if plan.graph.out_degree(nid) == 0:
            plan.add_edge(nid, pid("output"), "data")
    # LLM calls run inside their node: node inputs -> llm#0 -> llm#1 ... -> node
    for name, llms in llm_ops.items():
        nid = node_ids[name]
        preds = [(p, dict(plan.graph.edges[p, nid])) for p in sorted(plan.graph.predecessors(nid))]
        for i, llm in enumerate(llms):
            for p, data in preds:
                plan.add_edge(p, llm.op_id, **{k: v for k, v in data.items() if k != "back_edge"})
            plan.add_edge(llm.op_id, nid, "result")
            if i:
                plan.add_edge(llms[i - 1].op_id, llm.op_id, "sequence")
    for name in subgraphs:
        nid = node_ids[name]
        for p in sorted(plan.graph.predecessors(nid)):
            data = dict(plan.graph.edges[p, nid])
            plan.add_edge(p, f"{pid(name)}/input", **{k: v for k, v in data.items() if k != "back_edge"})
        plan.add_edge(f"{pid(name)}/output", nid, "result")


def _is_compiled(obj: Any) -> bool:
    from langgraph.graph.state import CompiledStateGraph

    return isinstance(obj, CompiledStateGraph)


def _analyse(runnable: Any) -> tuple[FunctionFacts | None, str]:
    """Static facts about a node or router runnable, or (None, reason)."""
    fn, bound_self = node_function(runnable)
    if fn is None:
        return None, f"not a Python function ({type(runnable).__name__})"
    try:
        return analyse_function(fn, function_namespace(fn, bound_self), skip_self=bound_self is not None), ""
    except ValueError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - capture never raises on a valid graph
        return None, f"analysis failed: {exc!r}"


def _llm_operator(node: str, nid: str, prefix: str, ordinal: int, model: Any, bound: Any,
                  template: PromptTemplate, **extra: Any) -> Operator:
    ident = model_identity(model, bound)
    llm_id = f"{prefix}/llm:{node}#{ordinal}" if prefix else f"llm:{node}#{ordinal}"
    return Operator(llm_id, OperatorKind.LLM_CALL, f"{node}#{ordinal}", model_purity(ident),
                    reads=frozenset(), writes=frozenset(), template=template,
                    params={**ident, **extra}, graph_path=prefix, parent=nid)


def _node_operators(name: str, runnable: Any, nid: str, prefix: str, trace: bool
                    ) -> tuple[Operator, list[Operator], frozenset[str] | None]:
    """The NODE operator, its LLM_CALL operators, and constant Command targets."""
    # A composed runnable used as a node directly, e.g. `prompt | llm`.
    if is_llm_runnable(runnable) and (found := find_chat_model(runnable)) is not None:
        prompt = find_chat_prompt(runnable)
        template = template_from_chat_prompt(prompt, source_prefix="state.") if prompt else PromptTemplate.unknown()
        llm = _llm_operator(name, nid, prefix, 0, found[0], found[1], template)
        reads = frozenset(getattr(prompt, "input_variables", ())) if prompt else None
        op = Operator(nid, OperatorKind.NODE, name, llm.purity, reads=reads, writes=None,
                      analysable=False, reason="a runnable's output is written as-is; writes unknown",
                      graph_path=prefix)
        return op, [llm], frozenset()
    if (tool_op := _tool_node_operator(name, runnable, nid, prefix)) is not None:
        return tool_op, [], frozenset()
    facts, why = _analyse(runnable)
    if facts is None:
        op = Operator(nid, OperatorKind.NODE, name, Purity.SIDE_EFFECT, None, None,
                      analysable=False, reason=why, graph_path=prefix)
        return op, _unseen_llm_calls(name, runnable, nid, prefix), None
    llms = [_llm_operator(name, nid, prefix, i, cs.model, cs.bound, cs.template,
                          call=f"{cs.receiver}.{cs.method}", **({"in_loop": True} if cs.in_loop else {}))
            for i, cs in enumerate(facts.call_sites)]
    if not llms:
        llms = _unseen_llm_calls(name, runnable, nid, prefix)
    notes = list(facts.notes)
    reads = facts.reads
    if reads is None and trace:
        from helium_lc.capture.trace import trace_reads

        traced = trace_reads(runnable)
        if traced is not None:
            reads = traced
            notes = [n for n in notes if not n.startswith("reads unknown")] + ["reads traced"]
    purity = worst_purity([facts.purity, *(llm.purity for llm in llms)])
    analysable = reads is not None and facts.writes is not None
    reason = "; ".join(n for n in notes if "unknown" in n or "side effect" in n) if not analysable else ""
    op = Operator(nid, OperatorKind.NODE, name, purity, reads, facts.writes,
                  params={"notes": tuple(notes)} if notes else {},
                  analysable=analysable, reason=reason or ("; ".join(notes) if not analysable else ""),
                  graph_path=prefix)
    return op, llms, facts.goto_targets


def _unseen_llm_calls(name: str, runnable: Any, nid: str, prefix: str) -> list[Operator]:
    """One LLM_CALL per chat model the node can reach but whose call its source does not show
    (library-built nodes that pick the model at run time, e.g. ``create_agent``'s model node).
    How the model is configured at call time is unknown, so the call counts as sampled (never
    pruned or merged); its template is learned at run time."""
    fn, bound_self = node_function(runnable)
    models = reachable_chat_models(fn, bound_self) if fn is not None else []
    return [_llm_operator(name, nid, prefix, i, model, {"temperature": "<unknown>"}, PromptTemplate.unknown(),
                          call="(not visible in the source: the model is reached from the node's closure)")
            for i, model in enumerate(models)]


def _tool_node_operator(name: str, runnable: Any, nid: str, prefix: str) -> Operator | None:
    """LangGraph's prebuilt ``ToolNode``: reads and appends to its messages key and runs tools
    (side effects assumed). Tools that inject the graph state read more: reads unknown then."""
    try:
        from langgraph.prebuilt import ToolNode
    except ImportError:  # pragma: no cover - langgraph without prebuilt
        return None
    if not isinstance(runnable, ToolNode):
        return None
    key = getattr(runnable, "_messages_key", "messages")  # no public accessor in langgraph
    injected = getattr(runnable, "_injected_args", None)
    reads_state = injected is None or any(getattr(a, "state", None) for a in injected.values())
    tools = sorted(getattr(runnable, "tools_by_name", None) or {})
    return Operator(nid, OperatorKind.NODE, name, Purity.SIDE_EFFECT,
                    reads=None if reads_state else frozenset({key}), writes=frozenset({key}),
                    params={"prebuilt": "ToolNode", "tools": tuple(tools)},
                    analysable=not reads_state,
                    reason=("ToolNode: a tool reads the injected graph state" if reads_state else ""),
                    graph_path=prefix)


def _add_router(plan: QueryPlan, builder: Any, src: str, bname: str, ambiguous: bool,
                node_ids: dict[str, str], pid: Any, prefix: str) -> None:
    branch = builder.branches[src][bname]
    rid = pid(f"router:{src}.{bname}" if ambiguous else f"router:{bname}")
    facts, why = _analyse(branch.path)
    uses_send = bool(facts and facts.uses_send)
    kind = "send" if uses_send else "conditional"
    inferred = False
    if branch.ends:
        targets = sorted(set(branch.ends.values()))
    elif facts is not None and uses_send and facts.send_targets:
        targets = sorted(facts.send_targets)
    else:
        targets = sorted([n for n in builder.nodes if n != src] + [END])
        inferred = True
    reasons = []
    if facts is None:
        reasons.append(why)
    if inferred:
        reasons.append("targets unknown (no path_map or Literal return annotation): assuming any node")
    reads = facts.reads if facts else None
    if facts and facts.reads is None:
        reasons.append("reads unknown")
    plan.add_operator(Operator(
        rid, OperatorKind.ROUTER, bname, facts.purity if facts else Purity.SIDE_EFFECT,
        reads=reads, writes=frozenset(), params={"source": src, "send": uses_send},
        analysable=not reasons, reason="; ".join(reasons), graph_path=prefix))
    plan.add_edge(node_ids[src], rid, "data")
    for dst in targets:
        if dst in node_ids:
            plan.add_edge(rid, node_ids[dst], kind, inferred=inferred)
