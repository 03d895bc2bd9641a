"""Reflect: an expert drafts an answer, two critics review it in parallel, the expert revises.

Graph (static fan-out and a waiting join)::

    START --> draft --> critic_accuracy ---\\
                   \\--> critic_clarity ----+--> revise --> END

LLM calls per input: ``1 + len(CRITICS) + 1 = 4``. Prompts are plain f-strings. The expert's draft
prompt is a prefix of its revision prompt (the revision continues the same conversation). Nodes
are sync (``invoke`` and ``ainvoke`` both work).

Example:
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> graph = build(FakeListChatModel(responses=["fine"]))
    >>> graph.invoke(make_inputs(1, data_source="bundled")[0])["final"]
    'fine'

Run on helium_lc: ``python -m examples.workloads.reflect`` (from the repository root).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Callable, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from ._common import message_text, resolve_params, truncate_words
from .data import load_qa

NAME = "reflect"
IS_ASYNC = False
DEFAULTS: dict[str, Any] = {"context_words": 250, "data_source": "auto"}

EXPERT_SYSTEM = """You are a senior expert who answers questions for colleagues. Use the reference \
text you are given, be accurate and specific, and answer in at most six sentences. When you \
receive reviews of your answer, take every valid point into account and write an improved answer \
that stands on its own."""

#: critic name -> its system prompt.
CRITICS: dict[str, str] = {
    "accuracy": """You are a meticulous fact checker. You review a draft answer against the \
reference text. List every statement that the reference does not support or that is wrong, and \
anything important the draft leaves out. Be brief: at most four bullet points. If the draft is \
fully correct, say so in one sentence.""",
    "clarity": """You are an experienced technical editor. You review a draft answer for a reader \
who is new to the topic. Point out unclear wording, missing definitions, and a better order for \
the explanation. Be brief: at most four bullet points. If the draft is already clear, say so in \
one sentence.""",
}


class ReflectState(TypedDict, total=False):
    question: str
    context: str
    draft: str
    reviews: Annotated[list[dict[str, str]], operator.add]  # {"critic", "text"}
    final: str


def num_llm_calls(**params: Any) -> int:
    """LLM calls per input for these parameters."""
    resolve_params(NAME, DEFAULTS, params)
    return 2 + len(CRITICS)


def _expert_opening(state: ReflectState) -> list[BaseMessage]:
    return [SystemMessage(EXPERT_SYSTEM),
            HumanMessage(f"Reference text:\n{state['context']}\n\nQuestion: {state['question']}")]


def build(llm: BaseChatModel, **params: Any) -> CompiledStateGraph:
    """The Reflect graph over ``llm`` (see module docstring for the shape)."""
    resolve_params(NAME, DEFAULTS, params)

    def draft(state: ReflectState) -> dict[str, Any]:
        return {"draft": message_text(llm.invoke(_expert_opening(state)))}

    def make_critic(name: str, system: str) -> Callable[[ReflectState], dict[str, Any]]:
        def critic(state: ReflectState) -> dict[str, Any]:
            user = (f"Reference text:\n{state['context']}\n\nQuestion: {state['question']}\n\n"
                    f"Draft answer:\n{state['draft']}\n\nYour review:")
            reply = llm.invoke([SystemMessage(system), HumanMessage(user)])
            return {"reviews": [{"critic": name, "text": message_text(reply)}]}
        return critic

    def revise(state: ReflectState) -> dict[str, Any]:
        reviews = sorted(state["reviews"], key=lambda r: r["critic"])
        listing = "\n\n".join(f"Review ({r['critic']}):\n{r['text']}" for r in reviews)
        messages = _expert_opening(state) + [
            AIMessage(state["draft"]),
            HumanMessage(f"Two reviewers commented on your answer.\n\n{listing}\n\n"
                         "Write your improved final answer."),
        ]
        return {"final": message_text(llm.invoke(messages))}

    graph = StateGraph(ReflectState)
    graph.add_node("draft", draft)
    graph.add_node("revise", revise)
    graph.add_edge(START, "draft")
    for name, system in CRITICS.items():
        graph.add_node(f"critic_{name}", make_critic(name, system))
        graph.add_edge("draft", f"critic_{name}")
    graph.add_edge([f"critic_{name}" for name in CRITICS], "revise")
    graph.add_edge("revise", END)
    return graph.compile()


def make_inputs(num_inputs: int, seed: int = 0, **params: Any) -> list[dict[str, Any]]:
    """``num_inputs`` questions with reference text cut to ``context_words`` words."""
    p = resolve_params(NAME, DEFAULTS, params)
    items = load_qa(num_inputs, seed=seed, prefer=p["data_source"])
    return [{"question": it.question, "context": truncate_words(it.context, p["context_words"])}
            for it in items]


if __name__ == "__main__":
    from helium_lc import HeliumChatModel

    app = build(HeliumChatModel(max_tokens=96))
    for row, out in enumerate(app.batch(make_inputs(2))):
        print(f"--- input {row}: {out['question']}\n{out['final']}\n")
