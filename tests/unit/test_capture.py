"""Tests of LangGraph capture: structure, call sites, templates, purity, bad input."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, Send


class EchoModel(BaseChatModel):
    temperature: float = 0.0
    seed: int | None = None
    model_name: str = "echo"

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kw: Any) -> ChatResult:
        text = "echo:" + str(messages[-1].content)[-20:]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


llm = EchoModel()
hot = EchoModel(temperature=0.8)
prompt = ChatPromptTemplate.from_messages([("system", "You are an expert on {topic}."), ("human", "Q: {question}")])
chain = prompt | llm


class FanState(TypedDict):
    question: str
    answers: Annotated[list, operator.add]
    summary: str


def expert_a(state: FanState) -> dict:
    msg = llm.invoke([("system", "You are expert A."), ("human", f"Answer: {state['question']}")])
    return {"answers": [msg.content]}


def expert_b(state: FanState) -> dict:
    msg = chain.invoke({"topic": "cats", "question": state["question"]})
    return {"answers": [msg.content]}


def summarise(state: FanState) -> dict:
    text = "\n".join(state["answers"])
    return {"summary": llm.invoke(f"Summarise:\n{text}").content}


def fan_graph():
    g = StateGraph(FanState)
    g.add_node("expert_a", expert_a)
    g.add_node("expert_b", expert_b)
    g.add_node("summarise", summarise)
    g.add_edge(START, "expert_a")
    g.add_edge(START, "expert_b")
    g.add_edge(["expert_a", "expert_b"], "summarise")
    g.add_edge("summarise", END)
    return g.compile()


class LoopState(TypedDict):
    draft: str
    rounds: int


def write(state: LoopState) -> dict:
    return {"draft": llm.invoke(f"Improve: {state['draft']}").content, "rounds": state["rounds"] + 1}


def after_write(state: LoopState) -> Literal["write", "__end__"]:
    return "write" if state["rounds"] < 2 else END


def loop_graph():
    g = StateGraph(LoopState)
    g.add_node("write", write)
    g.add_edge(START, "write")
    g.add_conditional_edges("write", after_write)
    return g.compile()


class MapState(TypedDict):
    topics: list[str]
    jokes: Annotated[list, operator.add]


class JokeState(TypedDict):
    topic: str


def fan_out(state: MapState):
    return [Send("joke", {"topic": t}) for t in state["topics"]]


def joke(state: JokeState) -> dict:
    return {"jokes": [hot.invoke(f"Joke about {state['topic']}").content]}


def map_graph():
    g = StateGraph(MapState)
    g.add_node("joke", joke)
    g.add_conditional_edges(START, fan_out)
    return g.compile()


def chat(state: MessagesState) -> dict:
    return {"messages": [llm.invoke([SystemMessage("Be kind."), *state["messages"]])]}


def chat_graph():
    g = StateGraph(MessagesState)
    g.add_node("chat", chat)
    g.add_edge(START, "chat")
    return g.compile()


class CmdState(TypedDict):
    x: int


def decide(state: CmdState) -> Command[Literal["big", "small"]]:
    return Command(update={"x": state["x"]}, goto="big" if state["x"] > 5 else "small")


def big(state: CmdState) -> dict:
    return {"x": state["x"] * 10}


def small(state: CmdState) -> dict:
    print("small!")
    return {"x": 0}


def cmd_graph():
    g = StateGraph(CmdState)
    g.add_node("decide", decide)
    g.add_node("big", big)
    g.add_node("small", small)
    g.add_edge(START, "decide")
    return g.compile()


def sub_graph():
    inner = StateGraph(LoopState)
    inner.add_node("write", write)
    inner.add_edge(START, "write")
    g = StateGraph(LoopState)
    g.add_node("inner", inner.compile())
    g.add_node("post", lambda s: {"rounds": s["rounds"] + 100})
    g.add_edge(START, "inner")
    g.add_edge("inner", "post")
    return g.compile()


# ---------------------------------------------------------------------------------------
import pytest
from hypothesis import given, settings, strategies as st

from helium_lc.capture import capture, mark_pure
from helium_lc.plan import OperatorKind, Purity, to_mermaid, to_text


def test_fan_out_join_snapshot_and_templates() -> None:
    plan = capture(fan_graph())
    # START fans out to two experts; the summariser joins them (waiting edge = "join")
    assert to_text(plan) == "\n".join([
        "input = INPUT pure writes=[answers,question,summary]",
        "llm:expert_a#0 = LLM_CALL pure prefix=26c <- input",
        "llm:expert_b#0 = LLM_CALL pure prefix=21c <- input",
        "node:expert_a = NODE pure reads=[question] writes=[answers] <- input, llm:expert_a#0(result)",
        "node:expert_b = NODE pure reads=[question] writes=[answers] <- input, llm:expert_b#0(result)",
        "llm:summarise#0 = LLM_CALL pure prefix=11c <- node:expert_a(join), node:expert_b(join)",
        "node:summarise = NODE pure reads=[answers] writes=[summary] "
        "<- llm:summarise#0(result), node:expert_a(join), node:expert_b(join)",
        "output = OUTPUT pure reads=[answers,question,summary] <- node:summarise",
    ])
    # inline tuple messages: "You are expert A." + "\n" + "Answer: " = 26 chars
    a = plan.op("llm:expert_a#0").template
    assert a.static_prefix() == "You are expert A.\nAnswer: " and a.placeholders() == ("question",)
    # chain.invoke: the template comes from the ChatPromptTemplate inside `prompt | llm`
    assert plan.op("llm:expert_b#0").template.placeholders() == ("topic", "question")
    assert plan.op("llm:expert_a#0").params["model"] == "echo"
    assert plan.metadata["levels"][""]["channels"]["answers"] == "reducer:add"


def test_conditional_loop_marks_back_edge() -> None:
    plan = capture(loop_graph())
    # the router's Literal annotation gives targets {write, END}; router -> write closes the loop
    assert plan.graph.edges["router:after_write", "node:write"]["back_edge"] is True
    assert plan.graph.edges["router:after_write", "output"]["kind"] == "conditional"
    assert plan.op("router:after_write").reads == frozenset({"rounds"})
    assert plan.op("router:after_write").analysable


def test_send_map_reduce_and_sampled_purity() -> None:
    plan = capture(map_graph())
    # fan_out returns Send("joke", ...) packets: edge kind "send", target found in the source
    assert plan.graph.edges["router:fan_out", "node:joke"]["kind"] == "send"
    # temperature 0.8 -> SAMPLED, and the node inherits its LLM call's purity
    assert plan.op("llm:joke#0").purity is Purity.SAMPLED
    assert plan.op("node:joke").purity is Purity.SAMPLED


def test_messages_state_chat_template() -> None:
    plan = capture(chat_graph())
    t = plan.op("llm:chat#0").template
    assert t.describe() == "system:'Be kind.' | messages:'{{messages}}'"
    assert t.static_prefix() == "Be kind."
    assert plan.metadata["levels"][""]["channels"]["messages"] == "reducer:add_messages"


def test_command_routing_and_side_effect_detection() -> None:
    plan = capture(cmd_graph())
    # Command[Literal["big", "small"]] return annotation -> "command" edges
    assert plan.graph.edges["node:decide", "node:big"]["kind"] == "command"
    assert plan.op("node:decide").writes == frozenset({"x"})
    # print() is not on the allow-list -> SIDE_EFFECT; mark_pure would override it
    assert plan.op("node:small").purity is Purity.SIDE_EFFECT
    assert "print" in plan.op("node:small").params["notes"][0]


def test_subgraph_is_captured_with_prefix() -> None:
    plan = capture(sub_graph())
    assert "inner/llm:write#0" in plan and "inner/input" in plan
    assert plan.op("inner/llm:write#0").parent == "inner/node:write"
    # the subgraph's output feeds its node in the parent graph
    assert plan.graph.edges["inner/output", "node:inner"]["kind"] == "result"
    assert "flowchart TD" in to_mermaid(plan)


def test_unknown_reads_marked_and_traced() -> None:
    class S(TypedDict):
        a: str
        b: str

    def helper(s: Any) -> str:
        return s["a"]

    def node(state: S) -> dict:
        return {"b": helper(state)}

    app = StateGraph(S).add_node("n", node).add_edge(START, "n").compile()
    op = capture(app).op("node:n")
    # state escapes into helper(): reads unknown, the node is unanalysable and impure
    assert op.reads is None and not op.analysable and "reads unknown" in op.reason
    assert op.purity is Purity.SIDE_EFFECT
    # tracing runs the node once on placeholder state and records the key helper() read
    assert capture(app, trace=True).op("node:n").reads == frozenset({"a"})
    mark_pure(helper)
    assert capture(app).op("node:n").purity is Purity.PURE


def test_unreachable_template_is_learned() -> None:
    class S(TypedDict):
        q: str

    msgs_builder = lambda q: [("human", q)]  # noqa: E731

    def node(state: S) -> dict:
        return {"q": llm.invoke(msgs_builder(state["q"])).content}

    op = capture(StateGraph(S).add_node("n", node).add_edge(START, "n").compile()).op("llm:n#0")
    assert op.template is not None and op.template.learned


def test_bad_input_errors() -> None:
    g = StateGraph(CmdState)
    with pytest.raises(TypeError, match=r"call \.compile\(\)"):
        capture(g)
    with pytest.raises(TypeError, match="got builtins.dict"):
        capture({})


_NAMES = ["n0", "n1", "n2", "n3", "n4"]


def _node_fn(name: str) -> Any:
    def fn(state: dict) -> dict:
        return {"log": [name]}
    return fn


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.data())
def test_capture_never_raises_on_random_graphs(num_nodes: int, data: st.DataObject) -> None:
    class S(TypedDict):
        log: Annotated[list, operator.add]

    names = _NAMES[:num_nodes]
    g = StateGraph(S)
    for n in names:
        g.add_node(n, _node_fn(n))
    g.add_edge(START, names[0])
    for i, n in enumerate(names):
        later = names[i + 1:]
        if later and data.draw(st.booleans()):
            targets = data.draw(st.lists(st.sampled_from(later), min_size=1, unique=True))
            g.add_conditional_edges(n, lambda s, t=targets: t[0], targets)
        else:
            for t in data.draw(st.lists(st.sampled_from(later), unique=True)) if later else []:
                g.add_edge(n, t)
    plan = capture(g.compile())
    plan.lint()
    assert sum(op.kind is OperatorKind.NODE for op in plan.operators()) == num_nodes
