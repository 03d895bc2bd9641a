"""``helium-lc explain MODULE:ATTR``: finds the graph, prints its plan, writes mermaid/PNG."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from helium_lc.cli import TargetError, load_graph, main

AGENT = textwrap.dedent('''
    from typing import TypedDict
    from langchain_core.messages import HumanMessage
    from langgraph.graph import START, StateGraph
    from helium_lc.testing import DeterministicChatModel

    llm = DeterministicChatModel()

    class S(TypedDict):
        q: str
        a: str

    def answer(state: S):
        return {"a": llm.invoke([HumanMessage(f"Answer briefly: {state['q']}")]).content}

    builder = StateGraph(S).add_node("answer", answer).add_edge(START, "answer")
    graph = builder.compile()

    def make_graph():
        return builder.compile()

    def needs_llm(llm):
        return builder.compile()

    not_a_graph = 3
''')


@pytest.fixture
def agent_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_agent_cli.py"
    path.write_text(AGENT)
    return path


def test_explain_a_graph_in_a_file_prints_its_plan_and_writes_mermaid(agent_file: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    mermaid = tmp_path / "plan.mmd"
    assert main(["explain", f"{agent_file}:graph", "--mermaid", str(mermaid)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("== helium_lc plan (") and "node:answer" in out
    assert "llm:answer#0 = LLM_CALL pure prefix=16c" in out  # the call site's static prefix was captured
    assert mermaid.read_text().startswith("flowchart")


def test_module_form_builder_and_factory_resolve_to_graphs(agent_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(agent_file.parent))
    from langgraph.pregel import Pregel

    for attr in ("graph", "builder", "make_graph"):
        assert isinstance(load_graph(f"my_agent_cli:{attr}"), Pregel), attr
    sys.modules.pop("my_agent_cli", None)


@pytest.mark.parametrize("attr, message", [
    ("missing", r"has no attribute 'missing'; its public names include \[.*'graph'"),
    ("needs_llm", r"function that needs arguments"),
    ("not_a_graph", r"is a int, not a compiled LangGraph graph"),
])
def test_bad_targets_get_an_error_that_says_what_to_pass(agent_file: Path, attr: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        load_graph(f"{agent_file}:{attr}")


def test_cli_reports_bad_targets_with_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "no_such_module_xyz:graph"]) == 2
    assert "cannot import 'no_such_module_xyz'" in capsys.readouterr().err
    assert main(["explain", "just_a_module"]) == 2
    assert "is not MODULE:ATTR" in capsys.readouterr().err
