"""LangGraph -> QueryPlan capture: graph structure, call sites, templates, purity.

Example:
    >>> from typing import TypedDict
    >>> from langgraph.graph import StateGraph, START
    >>> class S(TypedDict):
    ...     x: int
    >>> app = StateGraph(S).add_node("f", lambda s: {"x": 1}).add_edge(START, "f").compile()
    >>> [op.op_id for op in capture(app).operators()]
    ['input', 'node:f', 'output']
"""

from helium_lc.capture.graph import capture, mark_pure
from helium_lc.capture.trace import trace_reads

__all__ = ["capture", "mark_pure", "trace_reads"]
