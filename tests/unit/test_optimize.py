"""Tests of the rewrite rule (prune), the driver, and lowering."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from helium_lc.capture import capture
from helium_lc.optimize import (
    Prune, default_rules, lower, optimize,
)
from helium_lc.plan import OperatorKind, PlanError, to_text


class Echo(BaseChatModel):
    temperature: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kw: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="re:" + str(messages[-1].content)))])


llm = Echo()
hot = Echo(temperature=1.0)


class S(TypedDict):
    q: str
    a: str
    b: str
    dead: str


def answer(state: S) -> dict:
    return {"a": llm.invoke(f"Answer: {state['q']}").content}


def also_answer(state: S) -> dict:
    return {"b": llm.invoke(f"Answer: {state['q']}").content}


def unused(state: S) -> dict:
    return {"dead": llm.invoke(f"Ignore: {state['a']}").content}


def unused_hot(state: S) -> dict:
    return {"dead": hot.invoke(f"Ignore: {state['a']}").content}


def intro(state: S) -> dict:
    return {"b": llm.invoke("Say hello.").content}


class Out(TypedDict):
    a: str


def chain_app(dead_fn: Any = unused, checkpointer: Any = None) -> Any:
    """input -> answer -> <dead_fn> -> END, output schema = [a]."""
    g = StateGraph(S, output_schema=Out)
    g.add_node("answer", answer)
    g.add_node("dead_node", dead_fn)
    g.add_edge(START, "answer")
    g.add_edge("answer", "dead_node")
    g.add_edge("dead_node", END)
    return g.compile(checkpointer=checkpointer)


def test_prune_drops_dead_pure_node_and_its_llm_call() -> None:
    plan = capture(chain_app())
    result = optimize(plan, [Prune()])
    # dead_node writes "dead", nobody reads it and the output is only [a]:
    # both the node and its greedy LLM call go; answer now feeds the output
    assert to_text(result.plan) == "\n".join([
        "input = INPUT pure writes=[a,b,dead,q]",
        "llm:answer#0 = LLM_CALL pure prefix=8c <- input",
        "node:answer = NODE pure reads=[q] writes=[a] <- input, llm:answer#0(result)",
        "output = OUTPUT pure reads=[a] <- node:answer",
    ])
    assert [c.description for c in result.changes] == [
        "dropped llm:dead_node#0: it only fed a dropped operator",
        "dropped node:dead_node: its writes are never read",
    ]
    # 6 operators (input, 2 llm, 2 nodes, output) -> 4
    assert result.changes[0].before_count == 6 and result.changes[0].after_count == 4
    assert len(plan) == 6  # optimize works on a copy


def test_prune_keeps_sampled_and_requested_outputs() -> None:
    # a sampled call is never dropped, even when dead
    assert optimize(capture(chain_app(unused_hot)), [Prune()]).changes == ()
    # asking for "dead" keeps the node that writes it
    assert optimize(capture(chain_app()), [Prune(output_keys=["a", "dead"])]).changes == ()
    with pytest.raises(TypeError, match="not a string"):
        Prune(output_keys="a")


def test_lowering_gives_same_final_state_without_dead_node() -> None:
    app = chain_app(checkpointer=InMemorySaver())
    pruned = optimize(capture(app), [Prune()]).plan
    lowered = lower(pruned, app)
    assert lowered is not app and "dead_node" not in lowered.builder.nodes
    assert lowered.checkpointer is app.checkpointer
    cfg = {"configurable": {"thread_id": "t1"}}
    # same output (output schema = [a]) from both graphs
    assert lowered.invoke({"q": "2+2"}, cfg) == app.invoke({"q": "2+2"}, {"configurable": {"thread_id": "t2"}})
    assert lowered.invoke({"q": "x"}, {"configurable": {"thread_id": "t3"}}) == {"a": "re:Answer: x"}
    # nothing pruned -> the same object comes back
    assert lower(capture(app), app) is app


def _twin_app() -> Any:
    g = StateGraph(S)
    g.add_node("answer", answer)
    g.add_node("also_answer", also_answer)
    g.add_edge(START, "answer")
    g.add_edge(START, "also_answer")
    return g.compile()


def test_rules_are_disabled_by_name_and_a_typo_is_an_error() -> None:
    g = StateGraph(S)
    g.add_node("intro", intro)
    g.add_node("answer", answer)
    g.add_edge(START, "intro")
    g.add_edge(START, "answer")
    plan = capture(g.compile())
    assert optimize(plan, disabled={"prompt_cache", "prune"}).changes == ()
    with pytest.raises(ValueError, match="Unknown rule"):
        optimize(plan, disabled={"prunne"})


def test_driver_lints_after_each_rule() -> None:
    class Breaker:
        name = "breaker"

        def apply(self, plan: Any) -> list[str]:
            plan.graph.remove_node("output")
            return ["removed output"]

    with pytest.raises(PlanError, match="rule 'breaker'"):
        optimize(capture(_twin_app()), [Breaker()])
