"""Example LangGraph graphs for fidelity tests (accelerated run == plain run).

Plain LangGraph code that knows nothing of helium_lc. Each case has a builder taking a
chat model and returning a compiled graph, and a function giving 3-6 inputs. The
registry :data:`GRAPHS` maps a name to a :class:`GraphCase`.

Example:
    >>> from helium_lc.testing import DeterministicChatModel
    >>> case = GRAPHS["fan_out_join"]
    >>> graph = case.build(DeterministicChatModel())
    >>> out = graph.invoke(case.inputs()[0], config=case.config(0))
    >>> sorted(out)
    ['a_answer', 'b_answer', 'c_answer', 'final', 'question']
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, Send
from pydantic import BaseModel, Field

__all__ = ["GraphCase", "GRAPHS"]


@dataclass(frozen=True)
class GraphCase:
    """One example graph: how to build it, what to feed it, how to configure a run."""

    name: str
    build: Callable[[BaseChatModel], Any]
    inputs: Callable[[], list[dict[str, Any]]]
    needs_thread_id: bool = False
    uses_tools: bool = False
    description: str = ""

    def config(self, row: int) -> dict[str, Any]:
        """The run config for input ``row`` (a thread id when the graph checkpoints)."""
        if self.needs_thread_id:
            return {"configurable": {"thread_id": f"{self.name}-{row}"}}
        return {}


def _text(message: Any) -> str:
    return message.content if isinstance(message.content, str) else str(message.content)


# --------------------------------------------------------------------------- fan_out_join
class FanOutState(TypedDict, total=False):
    question: str
    a_answer: str
    b_answer: str
    c_answer: str
    final: str


def build_fan_out_join(model: BaseChatModel) -> Any:
    """START -> (a, b, c) in parallel -> join (waits for all three) -> END."""
    system = SystemMessage("You are a panel of careful experts. Answer in one sentence.")

    def expert(role: str) -> Callable[[FanOutState], dict[str, str]]:
        def node(state: FanOutState) -> dict[str, str]:
            reply = model.invoke([system, HumanMessage(f"As the {role}: {state['question']}")])
            return {f"{role}_answer": _text(reply)}
        return node

    def join(state: FanOutState) -> dict[str, str]:
        joined = "\n".join(f"{r}: {state[f'{r}_answer']}" for r in "abc")  # type: ignore[literal-required]
        reply = model.invoke([system, HumanMessage(f"Combine these answers:\n{joined}")])
        return {"final": _text(reply)}

    g = StateGraph(FanOutState)
    for role in "abc":
        g.add_node(role, expert(role))
        g.add_edge(START, role)
    g.add_node("join", join)
    g.add_edge(["a", "b", "c"], "join")
    g.add_edge("join", END)
    return g.compile()


def inputs_fan_out_join() -> list[dict[str, Any]]:
    return [{"question": q} for q in (
        "Why is the sky blue?", "What causes tides?", "How do vaccines work?")]


# --------------------------------------------------------------------------- conditional_loop
class LoopState(TypedDict, total=False):
    task: str
    max_rounds: int
    num_rounds: int
    draft: str
    critique: str


def build_conditional_loop(model: BaseChatModel) -> Any:
    """draft -> critique -> (back to draft until approved or max_rounds) -> END."""

    def draft(state: LoopState) -> dict[str, Any]:
        prompt = f"Write a short paragraph: {state['task']}"
        if state.get("critique"):
            prompt += f"\nPrevious draft: {state['draft']}\nCritique: {state['critique']}"
        reply = model.invoke([HumanMessage(prompt)])
        return {"draft": _text(reply), "num_rounds": state.get("num_rounds", 0) + 1}

    def critique(state: LoopState) -> dict[str, str]:
        reply = model.invoke([SystemMessage("You are a strict editor. Say APPROVED if good."),
                              HumanMessage(f"Critique this draft: {state['draft']}")])
        return {"critique": _text(reply)}

    def route(state: LoopState) -> Literal["draft", "__end__"]:
        if "APPROVED" in state["critique"] or state["num_rounds"] >= state["max_rounds"]:
            return END
        return "draft"

    g = StateGraph(LoopState)
    g.add_node("draft", draft)
    g.add_node("critique", critique)
    g.add_edge(START, "draft")
    g.add_edge("draft", "critique")
    g.add_conditional_edges("critique", route)
    return g.compile()


def inputs_conditional_loop() -> list[dict[str, Any]]:
    return [{"task": "explain photosynthesis", "max_rounds": 1},
            {"task": "explain inflation", "max_rounds": 2},
            {"task": "explain recursion", "max_rounds": 3}]


# --------------------------------------------------------------------------- send_map_reduce
class MapReduceState(TypedDict, total=False):
    topic: str
    passages: list[str]
    summaries: Annotated[list[str], operator.add]
    report: str


class PassageState(TypedDict):
    topic: str
    passage: str


def build_send_map_reduce(model: BaseChatModel) -> Any:
    """START -> Send(summarize) per passage (operator.add) -> reduce -> END."""

    def fan_out(state: MapReduceState) -> list[Send]:
        return [Send("summarize", {"topic": state["topic"], "passage": p})
                for p in state["passages"]]

    def summarize(state: PassageState) -> dict[str, list[str]]:
        reply = model.invoke([SystemMessage(f"Summarize passages about {state['topic']}."),
                              HumanMessage(state["passage"])])
        return {"summaries": [_text(reply)]}

    def reduce(state: MapReduceState) -> dict[str, str]:
        reply = model.invoke([HumanMessage("Write a report from:\n" + "\n".join(state["summaries"]))])
        return {"report": _text(reply)}

    g = StateGraph(MapReduceState)
    g.add_node("summarize", summarize)
    g.add_node("reduce", reduce)
    g.add_conditional_edges(START, fan_out, ["summarize"])
    g.add_edge("summarize", "reduce")
    g.add_edge("reduce", END)
    return g.compile()


def inputs_send_map_reduce() -> list[dict[str, Any]]:
    return [
        {"topic": "rivers", "passages": ["The Nile flows north.", "The Amazon is wide.",
                                         "The Danube crosses ten countries."]},
        {"topic": "stars", "passages": ["Stars fuse hydrogen.", "Neutron stars are dense."]},
        {"topic": "bread", "passages": ["Yeast makes dough rise.", "Sourdough uses a starter.",
                                        "Flatbreads need no yeast.", "Rye bread is dense."]},
    ]


# --------------------------------------------------------------------------- subgraph
class DocState(TypedDict, total=False):
    subject: str
    outline: str
    body: str
    title: str


def build_subgraph(model: BaseChatModel) -> Any:
    """Outer: inner_writer (a compiled graph: outline -> expand) -> title -> END."""

    def outline(state: DocState) -> dict[str, str]:
        return {"outline": _text(model.invoke(f"Outline an article on {state['subject']}"))}

    def expand(state: DocState) -> dict[str, str]:
        return {"body": _text(model.invoke(f"Expand this outline: {state['outline']}"))}

    inner = StateGraph(DocState)
    inner.add_node("outline", outline)
    inner.add_node("expand", expand)
    inner.add_edge(START, "outline")
    inner.add_edge("outline", "expand")
    inner.add_edge("expand", END)

    def title(state: DocState) -> dict[str, str]:
        return {"title": _text(model.invoke(f"Give a title for: {state['body']}"))}

    outer = StateGraph(DocState)
    outer.add_node("inner_writer", inner.compile())
    outer.add_node("title", title)
    outer.add_edge(START, "inner_writer")
    outer.add_edge("inner_writer", "title")
    outer.add_edge("title", END)
    return outer.compile()


def inputs_subgraph() -> list[dict[str, Any]]:
    return [{"subject": s} for s in ("honeybees", "volcanoes", "the printing press")]


# --------------------------------------------------------------------------- react_agent
@tool
def lookup_capital(country: str) -> str:
    """Return the capital city of a country."""
    return f"The capital of {country} is {country[:3].title()}ville."


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def build_react_agent(model: BaseChatModel) -> Any:
    """A prebuilt ReAct agent with two tools (langchain's create_agent when installed)."""
    try:
        from langchain.agents import create_agent  # type: ignore[import-not-found]
    except ImportError:
        create_agent = None
    if create_agent is not None:
        return create_agent(model, [lookup_capital, multiply])
    from langgraph.prebuilt import create_react_agent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return create_react_agent(model, [lookup_capital, multiply])


def inputs_react_agent() -> list[dict[str, Any]]:
    return [{"messages": [HumanMessage(q)]} for q in (
        "What is the capital of Peru?", "What is 6 times 7?", "Capital of Japan, then 3*3?")]


# --------------------------------------------------------------------------- messages_chat
def build_messages_chat(model: BaseChatModel) -> Any:
    """MessagesState: assistant -> user follow-up -> assistant -> END (two turns)."""

    def assistant(state: MessagesState) -> dict[str, list[Any]]:
        return {"messages": [model.invoke(state["messages"])]}

    def follow_up(state: MessagesState) -> dict[str, list[Any]]:
        return {"messages": [HumanMessage("Thanks. Can you say more about that?")]}

    g = StateGraph(MessagesState)
    g.add_node("assistant", assistant)
    g.add_node("follow_up", follow_up)
    g.add_node("assistant_again", assistant)
    g.add_edge(START, "assistant")
    g.add_edge("assistant", "follow_up")
    g.add_edge("follow_up", "assistant_again")
    g.add_edge("assistant_again", END)
    return g.compile()


def inputs_messages_chat() -> list[dict[str, Any]]:
    system = SystemMessage("You are a friendly tutor.")
    return [{"messages": [system, HumanMessage(q)]} for q in (
        "What is a prime number?", "How do magnets work?", "Why do cats purr?")]


# --------------------------------------------------------------------------- structured_output
class Verdict(BaseModel):
    """A sentiment verdict."""

    label: Literal["positive", "negative", "neutral"]
    confidence: int = Field(ge=0, le=100, description="confidence in percent")
    reason: str


class ReviewState(TypedDict, total=False):
    review: str
    verdict: dict[str, Any]
    reply: str


def build_structured_output(model: BaseChatModel) -> Any:
    """classify (with_structured_output(Verdict)) -> respond -> END."""
    classifier = model.with_structured_output(Verdict)

    def classify(state: ReviewState) -> dict[str, Any]:
        verdict = classifier.invoke(f"Classify the sentiment of this review: {state['review']}")
        return {"verdict": verdict.model_dump()}  # type: ignore[union-attr]

    def respond(state: ReviewState) -> dict[str, str]:
        v = state["verdict"]
        reply = model.invoke(f"Reply to a {v['label']} review ({v['reason']}): {state['review']}")
        return {"reply": _text(reply)}

    g = StateGraph(ReviewState)
    g.add_node("classify", classify)
    g.add_node("respond", respond)
    g.add_edge(START, "classify")
    g.add_edge("classify", "respond")
    g.add_edge("respond", END)
    return g.compile()


def inputs_structured_output() -> list[dict[str, Any]]:
    return [{"review": r} for r in (
        "Great phone, battery lasts days.", "Arrived broken.", "It is a chair.")]


# --------------------------------------------------------------------------- duplicate_calls
class DupState(TypedDict, total=False):
    document: str
    left: str
    right: str
    merged: str


DUP_SYSTEM = "You summarise documents in one sentence."


def build_duplicate_calls(model: BaseChatModel) -> Any:
    """START -> (left, right) send the *identical* prompt -> merge -> END."""

    def summarise(slot: str) -> Callable[[DupState], dict[str, str]]:
        def node(state: DupState) -> dict[str, str]:
            reply = model.invoke([SystemMessage(DUP_SYSTEM),
                                  HumanMessage(f"Summarise: {state['document']}")])
            return {slot: _text(reply)}
        return node

    def merge(state: DupState) -> dict[str, str]:
        reply = model.invoke(f"Merge: {state['left']} | {state['right']}")
        return {"merged": _text(reply)}

    g = StateGraph(DupState)
    g.add_node("left", summarise("left"))
    g.add_node("right", summarise("right"))
    g.add_node("merge", merge)
    g.add_edge(START, "left")
    g.add_edge(START, "right")
    g.add_edge(["left", "right"], "merge")
    g.add_edge("merge", END)
    return g.compile()


def inputs_duplicate_calls() -> list[dict[str, Any]]:
    a, b = "Cats sleep sixteen hours a day.", "The moon orbits the earth."
    return [{"document": d} for d in (a, b, a, a)]  # rows 0, 2, 3 repeat one input


# --------------------------------------------------------------------------- command_routing
class TicketState(TypedDict, total=False):
    question: str
    triage_note: str
    answer: str
    team: str


def build_command_routing(model: BaseChatModel) -> Any:
    """triage returns Command(goto=billing|support, update=...) -> that team -> END."""

    def triage(state: TicketState) -> Command[Literal["billing", "support"]]:
        note = _text(model.invoke(f"Triage this ticket: {state['question']}"))
        team = "billing" if any(w in state["question"].lower() for w in ("invoice", "refund")) \
            else "support"
        return Command(goto=team, update={"triage_note": note})

    def team_node(team: str) -> Callable[[TicketState], dict[str, str]]:
        def node(state: TicketState) -> dict[str, str]:
            reply = model.invoke([SystemMessage(f"You work in {team}."),
                                  HumanMessage(f"{state['question']}\nNote: {state['triage_note']}")])
            return {"answer": _text(reply), "team": team}
        return node

    g = StateGraph(TicketState)
    g.add_node("triage", triage)
    g.add_node("billing", team_node("billing"))
    g.add_node("support", team_node("support"))
    g.add_edge(START, "triage")
    g.add_edge("billing", END)
    g.add_edge("support", END)
    return g.compile()


def inputs_command_routing() -> list[dict[str, Any]]:
    return [{"question": q} for q in (
        "My invoice is wrong.", "The app crashes on start.", "I want a refund.")]


# --------------------------------------------------------------------------- checkpointed
class CountedChat(MessagesState):
    num_turns: int


def build_checkpointed(model: BaseChatModel) -> Any:
    """MessagesState chat with InMemorySaver (needs a thread_id): chat -> END."""

    def chat(state: CountedChat) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])],
                "num_turns": state.get("num_turns", 0) + 1}

    g = StateGraph(CountedChat)
    g.add_node("chat", chat)
    g.add_edge(START, "chat")
    g.add_edge("chat", END)
    return g.compile(checkpointer=InMemorySaver())


def inputs_checkpointed() -> list[dict[str, Any]]:
    return [{"messages": [HumanMessage(q)]} for q in (
        "Remember the number 7.", "My name is Ada.", "Plan a picnic.")]


# --------------------------------------------------------------------------- registry
GRAPHS: dict[str, GraphCase] = {c.name: c for c in (
    GraphCase("fan_out_join", build_fan_out_join, inputs_fan_out_join,
              description="3 parallel experts joined by a waiting edge"),
    GraphCase("conditional_loop", build_conditional_loop, inputs_conditional_loop,
              description="draft/critique loop, up to max_rounds"),
    GraphCase("send_map_reduce", build_send_map_reduce, inputs_send_map_reduce,
              description="Send fan-out over passages, operator.add, reduce"),
    GraphCase("subgraph", build_subgraph, inputs_subgraph,
              description="a compiled inner graph used as a node"),
    GraphCase("react_agent", build_react_agent, inputs_react_agent, uses_tools=True,
              description="prebuilt ReAct agent with 2 tools"),
    GraphCase("messages_chat", build_messages_chat, inputs_messages_chat,
              description="MessagesState, two assistant turns"),
    GraphCase("structured_output", build_structured_output, inputs_structured_output,
              uses_tools=True, description="with_structured_output(Pydantic) then a reply"),
    GraphCase("duplicate_calls", build_duplicate_calls, inputs_duplicate_calls,
              description="two parallel nodes send one identical prompt; rows repeat"),
    GraphCase("command_routing", build_command_routing, inputs_command_routing,
              description="a node returns Command(goto=..., update=...)"),
    GraphCase("checkpointed", build_checkpointed, inputs_checkpointed, needs_thread_id=True,
              description="InMemorySaver checkpointer; needs a thread_id"),
)}
