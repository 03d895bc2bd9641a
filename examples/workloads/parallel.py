"""Parallel: several experts each analyse every chunk of a document, then a writer combines the notes.

Fan-out over expert x chunk with ``Send``; all analyses of one input run in parallel. For a given
chunk, every expert's prompt starts with the same system prompt and the same chunk; only the last
line (the expert's angle) differs. The paper's Parallel uses 7 experts over 6 chunks.

Graph::

    START --Send x (num_experts * num_chunks)--> analyze --> write --> END

LLM calls per input: ``num_experts * num_chunks + 1``. Nodes are async: use ``ainvoke``/``abatch``.

Example:
    >>> import asyncio
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> graph = build(FakeListChatModel(responses=["note"]), num_experts=2, num_chunks=2)
    >>> inputs = make_inputs(1, num_chunks=2, data_source="bundled")
    >>> asyncio.run(graph.ainvoke(inputs[0]))["report"]
    'note'

Run on helium_lc: ``python -m examples.workloads.parallel`` (from the repository root).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from ._common import message_text, resolve_params
from .data import chunk_words, load_documents

NAME = "parallel"
IS_ASYNC = True
DEFAULTS: dict[str, Any] = {"num_experts": 3, "num_chunks": 3, "chunk_words": 120,
                            "data_source": "auto"}

#: (expert, what they extract). The paper uses 7 experts.
EXPERTS: tuple[tuple[str, str], ...] = (
    ("key-facts analyst", "list the three most important facts in this passage."),
    ("terminology expert", "define the technical terms this passage uses or assumes."),
    ("beginner's advocate", "say what a newcomer would find confusing here and why."),
    ("practitioner", "say how someone would apply this passage in real work."),
    ("critic", "point out gaps, ambiguities or questionable claims in this passage."),
    ("question writer", "write two quiz questions that this passage answers."),
    ("connector", "say how this passage relates to the rest of the document's topic."),
)

ANALYST_SYSTEM = """You are one of several analysts who each read the same passage from a longer \
document and write short notes on it from their own angle. A writer will later turn all notes into \
a study guide for the whole document. Write at most four sentences, be concrete, and do not \
repeat the passage."""

WRITER_SYSTEM = """You are a writer who turns analysts' notes on the parts of a document into a \
short, well-organised study guide of at most 200 words."""


class ParallelState(TypedDict, total=False):
    title: str
    chunks: list[str]
    notes: Annotated[list[dict[str, Any]], operator.add]  # {"chunk", "expert_index", "expert", "text"}
    report: str


class AnalysisTask(TypedDict):
    title: str
    chunk: str
    chunk_index: int
    num_chunks: int
    expert_index: int


def num_llm_calls(**params: Any) -> int:
    """LLM calls per input for these parameters."""
    p = resolve_params(NAME, DEFAULTS, params)
    return p["num_experts"] * p["num_chunks"] + 1


def build(llm: BaseChatModel, **params: Any) -> CompiledStateGraph:
    """The Parallel graph over ``llm``; the chunk count comes from each input's ``chunks``."""
    p = resolve_params(NAME, DEFAULTS, params)
    if p["num_experts"] > len(EXPERTS):
        raise ValueError(f"{NAME}: num_experts can be at most {len(EXPERTS)}, got {p['num_experts']}.")
    experts = EXPERTS[:p["num_experts"]]

    def assign(state: ParallelState) -> list[Send]:
        chunks = state["chunks"]
        return [Send("analyze", AnalysisTask(title=state["title"], chunk=chunk, chunk_index=c,
                                             num_chunks=len(chunks), expert_index=e))
                for c, chunk in enumerate(chunks) for e in range(len(experts))]

    async def analyze(task: AnalysisTask) -> dict[str, Any]:
        role, instruction = experts[task["expert_index"]]
        user = (f"Document: {task['title']}\nPassage {task['chunk_index'] + 1} of "
                f"{task['num_chunks']}:\n{task['chunk']}\n\nYou are the {role}: {instruction}")
        reply = await llm.ainvoke([SystemMessage(ANALYST_SYSTEM), HumanMessage(user)])
        return {"notes": [{"chunk": task["chunk_index"], "expert_index": task["expert_index"],
                           "expert": role, "text": message_text(reply)}]}

    async def write(state: ParallelState) -> dict[str, Any]:
        notes = sorted(state["notes"], key=lambda n: (n["chunk"], n["expert_index"]))
        listing = "\n\n".join(f"[passage {n['chunk'] + 1}, {n['expert']}]\n{n['text']}" for n in notes)
        user = f"Document: {state['title']}\n\nAnalysts' notes:\n{listing}\n\nWrite the study guide."
        reply = await llm.ainvoke([SystemMessage(WRITER_SYSTEM), HumanMessage(user)])
        return {"report": message_text(reply)}

    graph = StateGraph(ParallelState)
    graph.add_node("analyze", analyze)
    graph.add_node("write", write)
    graph.add_conditional_edges(START, assign, ["analyze"])
    graph.add_edge("analyze", "write")
    graph.add_edge("write", END)
    return graph.compile()


def make_inputs(num_inputs: int, seed: int = 0, **params: Any) -> list[dict[str, Any]]:
    """``num_inputs`` documents, each split into ``num_chunks`` chunks of ``chunk_words`` words."""
    p = resolve_params(NAME, DEFAULTS, params)
    docs = load_documents(num_inputs, seed=seed, min_words=p["num_chunks"] * p["chunk_words"],
                          prefer=p["data_source"])
    return [{"title": d.title, "chunks": chunk_words(d.text, p["num_chunks"], p["chunk_words"])}
            for d in docs]


if __name__ == "__main__":
    import asyncio

    from helium_lc import HeliumChatModel

    app = build(HeliumChatModel(max_tokens=96))
    for row, out in enumerate(asyncio.run(app.abatch(make_inputs(2)))):
        print(f"--- input {row}: {out['title']}\n{out['report']}\n")
