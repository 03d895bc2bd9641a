"""Tests of the plan IR, prompt templates and canonical rendering (no LangGraph)."""

from __future__ import annotations

import pytest

from helium_lc.plan import (
    Operator, OperatorKind, PlanError, Placeholder, PromptTemplate, Purity, QueryPlan, Static,
    TemplateMessage, template_from_chat_prompt, to_mermaid, to_text,
)


def _chain(*names: str) -> QueryPlan:
    """input -> node:<n1> -> ... -> output."""
    p = QueryPlan()
    p.add_operator(Operator("input", OperatorKind.INPUT, "input", Purity.PURE, writes={"q"}))
    p.add_operator(Operator("output", OperatorKind.OUTPUT, "output", Purity.PURE, reads={"q"}))
    prev = "input"
    for n in names:
        p.add_operator(Operator(f"node:{n}", OperatorKind.NODE, n, Purity.PURE, reads={"q"}, writes={"q"}))
        p.add_edge(prev, f"node:{n}")
        prev = f"node:{n}"
    p.add_edge(prev, "output")
    return p


def test_static_prefix_stops_at_first_placeholder_across_messages() -> None:
    # system is fully static (14 chars), human is "Q: " then {q}: prefix = system + "\n" + "Q: "
    t = PromptTemplate.of(("system", "You are terse."), ("human", "Q: {q} and {r}"))
    assert t.static_prefix() == "You are terse.\nQ: "
    assert t.placeholders() == ("q", "r")
    assert t.render({"q": "1", "r": "2"}) == (("system", "You are terse."), ("human", "Q: 1 and 2"))
    with pytest.raises(KeyError, match="needs values"):
        t.render({"q": "1"})


def test_template_from_chat_prompt_keeps_messages_placeholder() -> None:
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    cpt = ChatPromptTemplate.from_messages(
        [("system", "Be {tone}."), MessagesPlaceholder("history"), ("human", "{{literal}} {q}")])
    t = template_from_chat_prompt(cpt)
    # "{{literal}}" is an escaped brace, so it stays static text
    assert t.messages[2].segments == (Static("{literal} "), Placeholder("q"))
    assert t.messages[1].segments == (Placeholder("history", is_messages=True),)
    assert t.static_prefix() == "Be "
    # the messages placeholder expands to whole messages when rendered
    out = t.render({"tone": "kind", "history": [("human", "hi"), ("ai", "yo")], "q": "x"})
    assert out == (("system", "Be kind."), ("human", "hi"), ("ai", "yo"), ("human", "{literal} x"))


def test_topological_order_is_deterministic_and_back_edges_cut_loops() -> None:
    p = _chain("b", "a")
    # a loop a -> b: the DAG view cuts it once marked
    p.add_edge("node:a", "node:b", "conditional")
    with pytest.raises(PlanError, match="cycle"):
        p.lint()
    p.mark_back_edges()
    p.lint()
    assert p.graph.edges["node:a", "node:b"]["back_edge"] is True
    assert p.topological_order() == ["input", "node:b", "node:a", "output"]


def test_lint_requires_one_input_one_output_and_llm_parent() -> None:
    p = _chain("a")
    p.add_operator(Operator("llm:a#0", OperatorKind.LLM_CALL, "a#0", Purity.PURE, parent="node:zzz"))
    with pytest.raises(PlanError, match="no parent NODE"):
        p.lint()
    p.replace_operator(Operator("llm:a#0", OperatorKind.LLM_CALL, "a#0", Purity.PURE, parent="node:a"))
    p.lint()
    p.add_operator(Operator("output2", OperatorKind.OUTPUT, "output", Purity.PURE))
    with pytest.raises(PlanError, match="2 OUTPUT"):
        p.lint()


def test_remove_with_reconnect_links_preds_to_succs() -> None:
    p = _chain("a", "b")
    p.remove_operator("node:a", reconnect=True)
    assert list(p.graph.successors("input")) == ["node:b"]
    p.lint()


def test_operator_validation_messages() -> None:
    with pytest.raises(PlanError, match="give a reason"):
        Operator("node:x", OperatorKind.NODE, "x", analysable=False)
    with pytest.raises(PlanError, match="not a string"):
        Operator("node:x", OperatorKind.NODE, "x", reads="abc")


def test_text_and_mermaid_rendering() -> None:
    p = _chain("a")
    t = PromptTemplate((TemplateMessage("system", (Static("Hello "), Placeholder("n"))),))
    p.add_operator(Operator("llm:a#0", OperatorKind.LLM_CALL, "a#0", Purity.SAMPLED, template=t,
                            parent="node:a", reads=frozenset(), writes=frozenset()))
    p.add_edge("input", "llm:a#0")
    p.add_edge("llm:a#0", "node:a", "result")
    assert to_text(p, count_tokens=lambda s: len(s.split())) == "\n".join([
        "input = INPUT pure writes=[q]",
        "llm:a#0 = LLM_CALL sampled prefix=6c/1t <- input",
        "node:a = NODE pure reads=[q] writes=[q] <- input, llm:a#0(result)",
        "output = OUTPUT pure reads=[q] <- node:a",
    ])
    mermaid = to_mermaid(p)
    assert mermaid.startswith("flowchart TD")
    assert 'n1[["llm:a#0"]]' in mermaid and "n1 -->|result| n2" in mermaid
