"""Three agent shapes written the way public LangGraph agents are written, for capture's recall.

Real third-party agents (trading desks, deep-research supervisors, planners with sub-agents)
build their graphs in ways the workloads in ``examples/workloads`` do not:

- ``desk``: **factory-built nodes** (``create_analyst(llm, role)`` returning a nested function)
  whose prompts are multi-line strings at column 0 and whose chains (``prompt | llm``) are built
  inside the node body; a manager node calling ``llm.invoke`` directly.
- ``tool_loop``: a researcher calling ``llm.bind_tools(tools).invoke(messages)`` in a loop with
  LangGraph's prebuilt ``ToolNode`` and ``tools_condition``, then a writer.
- ``supervisor``: a supervisor choosing an expert with ``llm.with_structured_output(Route)``;
  the experts are prebuilt ``langchain.agents.create_agent`` agents used as subgraph nodes.

Each ``build_*(llm)`` returns a compiled graph; ``INPUTS[name](n)`` gives ``n`` inputs. The
shapes know nothing of helium_lc. ``benchmarks/capture_recall.py`` measures how many of their
LLM nodes capture finds.

Example:
    >>> from helium_lc.testing import DeterministicChatModel
    >>> app = build_desk(DeterministicChatModel())
    >>> sorted(app.invoke(INPUTS["desk"](1)[0])["reports"])
    ['market', 'news']
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Callable, Literal, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import BaseModel, Field

__all__ = ["build_desk", "build_tool_loop", "build_supervisor", "BUILDERS", "INPUTS"]

TICKERS = ("ACME", "GLOBX", "INITECH", "UMBRL", "HOOLI", "WAYNE", "STARK", "TYRELL")


# -- desk: factory-built analyst nodes ------------------------------------------------------------
class DeskState(TypedDict, total=False):
    ticker: str
    data: str
    reports: Annotated[dict[str, str], operator.or_]
    decision: str


def create_analyst(llm: BaseChatModel, role: str) -> Callable[[DeskState], dict[str, Any]]:
    """An analyst node, built the way TradingAgents builds its analysts."""
    def analyst_node(state: DeskState) -> dict[str, Any]:
        system = f"""You are the {role} analyst of a trading desk.
Write a short report on the stock below, from the data given only.
End with one line: BULLISH, BEARISH or NEUTRAL."""
        prompt = ChatPromptTemplate.from_messages([("system", system), ("human", "{ticker}: {data}")])
        chain = prompt | llm
        result = chain.invoke({"ticker": state["ticker"], "data": state["data"]})
        return {"reports": {role: result.content}}
    return analyst_node


def create_manager(llm: BaseChatModel) -> Callable[[DeskState], dict[str, Any]]:
    def manager_node(state: DeskState) -> dict[str, Any]:
        reports = "\n\n".join(f"{k}: {v}" for k, v in sorted(state["reports"].items()))
        messages = [SystemMessage("""You are the desk's portfolio manager.
Decide BUY, HOLD or SELL from the analysts' reports, in two sentences."""),
                    HumanMessage(f"{state['ticker']}\n\n{reports}")]
        return {"decision": llm.invoke(messages).content}
    return manager_node


def build_desk(llm: BaseChatModel) -> Any:
    g = StateGraph(DeskState)
    for role in ("market", "news"):
        g.add_node(f"{role}_analyst", create_analyst(llm, role))
        g.add_edge(START, f"{role}_analyst")
    g.add_node("manager", create_manager(llm))
    g.add_edge(["market_analyst", "news_analyst"], "manager")
    g.add_edge("manager", END)
    return g.compile()


# -- tool_loop: a researcher with ToolNode ---------------------------------------------------------
@tool
def company_facts(ticker: str) -> str:
    """Facts about a listed company: sector and size."""
    return f"{ticker.upper()} is a mid-sized industrial company."


@tool
def latest_price(ticker: str) -> str:
    """The last closing price of a ticker."""
    return f"{ticker.upper()} closed at {10 + len(ticker) * 7.5:.2f}."


class LoopState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    summary: str


def build_tool_loop(llm: BaseChatModel) -> Any:
    tools = [company_facts, latest_price]

    def researcher(state: LoopState) -> dict[str, Any]:
        system = SystemMessage("You research stocks. Call the tools for facts, then answer briefly.")
        return {"messages": [llm.bind_tools(tools).invoke([system, *state["messages"]])]}

    def writer(state: LoopState) -> dict[str, Any]:
        notes = "\n".join(str(m.content) for m in state["messages"])
        return {"summary": llm.invoke([SystemMessage("Summarise the research in one sentence."),
                                       HumanMessage(notes)]).content}

    g = StateGraph(LoopState)
    g.add_node("researcher", researcher)
    g.add_node("tools", ToolNode(tools))
    g.add_node("writer", writer)
    g.add_edge(START, "researcher")
    g.add_conditional_edges("researcher", tools_condition, {"tools": "tools", "__end__": "writer"})
    g.add_edge("tools", "researcher")
    g.add_edge("writer", END)
    return g.compile()


# -- supervisor: structured routing over prebuilt experts -----------------------------------------
class Route(BaseModel):
    """Which expert answers the question."""

    expert: Literal["markets", "companies"] = Field(description="the expert to ask")


class SupState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    route: str


def build_supervisor(llm: BaseChatModel) -> Any:
    from langchain.agents import create_agent

    markets = create_agent(llm, [latest_price], system_prompt="You answer questions about prices.")
    companies = create_agent(llm, [company_facts], system_prompt="You answer questions about companies.")

    def supervisor(state: SupState) -> dict[str, Any]:
        router = llm.with_structured_output(Route)
        choice = router.invoke([SystemMessage("Pick the expert for the user's question."), *state["messages"]])
        return {"route": choice.expert if isinstance(choice, Route) else "markets"}

    def pick(state: SupState) -> str:
        return state["route"]

    g = StateGraph(SupState)
    g.add_node("supervisor", supervisor)
    g.add_node("markets", markets)
    g.add_node("companies", companies)
    g.add_edge(START, "supervisor")
    g.add_conditional_edges("supervisor", pick, {"markets": "markets", "companies": "companies"})
    g.add_edge("markets", END)
    g.add_edge("companies", END)
    return g.compile()


BUILDERS: dict[str, Callable[[BaseChatModel], Any]] = {
    "desk": build_desk, "tool_loop": build_tool_loop, "supervisor": build_supervisor}


def _questions(n: int) -> list[dict[str, Any]]:
    return [{"messages": [HumanMessage(f"What does {TICKERS[i % len(TICKERS)]} trade at, and what is it?")]}
            for i in range(n)]


INPUTS: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "desk": lambda n: [{"ticker": TICKERS[i % len(TICKERS)], "data": f"closed up {i + 1}% on volume"}
                       for i in range(n)],
    "tool_loop": _questions,
    "supervisor": _questions,
}
