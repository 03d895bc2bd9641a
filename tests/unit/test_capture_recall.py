"""Capture sees the LLM nodes of agents written the way public agents are written (issue 13, item 2).

Before these rules capture found 13 of the 30 LLM nodes of `benchmarks/capture_recall.py`'s graphs
(factory-built nodes whose prompts sit at column 0 did not parse; calls through a helper, a chain
built in the node, `llm.bind_tools(...).invoke` and prebuilt agents' model nodes were not seen).
"""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import START, StateGraph

from benchmarks.capture_recall import measure
from examples import agents
from examples.workloads import trading
from helium_lc.capture import capture
from helium_lc.plan.ir import OperatorKind, Purity
from helium_lc.testing import DeterministicChatModel


@pytest.mark.parametrize("name", sorted(agents.BUILDERS))
def test_every_llm_node_of_the_agent_shapes_is_found(name: str) -> None:
    r = measure(name, agents.BUILDERS[name], agents.INPUTS[name](2))
    assert r["llm_nodes"] and r["recall"] == 1.0, r


def test_every_llm_node_of_the_trading_desk_is_found_through_its_helper() -> None:
    params = {"num_traders": 2, "num_risk_rounds": 1, "data_source": "bundled"}
    r = measure("trading", lambda llm: trading.build(llm, **params), trading.make_inputs(2, **params))
    assert len(r["llm_nodes"]) == 10 and r["recall"] == 1.0, r


class S(TypedDict, total=False):
    q: str
    a: str


def _one_node_plan(fn: Any) -> Any:
    return capture(StateGraph(S).add_node("n", fn).add_edge(START, "n").compile())


def _llm_ops(plan: Any) -> list[Any]:
    return [op for op in plan.operators() if op.kind is OperatorKind.LLM_CALL]


def test_a_factory_node_with_a_prompt_at_column_0_parses() -> None:
    llm = DeterministicChatModel()

    def make() -> Any:
        def node(state: S) -> dict[str, Any]:
            text = f"""Answer briefly.
Question: {state['q']}"""
            return {"a": llm.invoke([HumanMessage(text)]).content}
        return node

    plan = _one_node_plan(make())
    node = plan.op("node:n")
    assert node.analysable and node.reads == frozenset({"q"}) and node.writes == frozenset({"a"})
    assert len(_llm_ops(plan)) == 1


def test_a_bind_with_a_non_constant_temperature_counts_as_sampled() -> None:
    llm = DeterministicChatModel()
    temperature = 0.0

    def fixed(state: S) -> dict[str, Any]:
        return {"a": llm.bind(temperature=0).invoke(state["q"]).content}

    def varying(state: S) -> dict[str, Any]:
        t = temperature + len(state["q"])
        return {"a": llm.bind(temperature=t).invoke(state["q"]).content}

    # DeterministicChatModel has no temperature field: bind(temperature=0) makes the call PURE
    assert [op.purity for op in _llm_ops(_one_node_plan(fixed))] == [Purity.PURE]
    assert [op.purity for op in _llm_ops(_one_node_plan(varying))] == [Purity.SAMPLED]


def test_tool_node_reads_and_writes_its_messages_and_is_a_side_effect() -> None:
    plan = capture(agents.build_tool_loop(DeterministicChatModel()))
    tools = plan.op("node:tools")
    assert tools.reads == frozenset({"messages"}) and tools.writes == frozenset({"messages"})
    assert tools.purity is Purity.SIDE_EFFECT and tools.params["tools"] == ("company_facts", "latest_price")


def test_a_prebuilt_agents_model_node_is_an_llm_node_of_unknown_sampling() -> None:
    # create_agent's model node picks (and may re-bind) its model at run time: the call is found
    # from the node's closure and counted as sampled, so no rewrite ever prunes or merges it.
    from integrations.create_agent import build_agent

    plan = capture(build_agent(DeterministicChatModel()))
    ops = [op for op in _llm_ops(plan) if op.parent == "node:model"]
    assert len(ops) == 1 and ops[0].purity is Purity.SAMPLED
