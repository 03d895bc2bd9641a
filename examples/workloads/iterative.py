"""Iterative: a running summary of a long document, refined chunk by chunk in sequence.

The refine-chain pattern: the first call summarises chunk 1; each later call gets the summary so far
plus the next chunk and returns a refined summary. A conditional edge loops until every chunk is
read, so the calls of one input form a strict chain (no parallelism inside an input).

Graph::

    START --> refine --(index < num_chunks)--> refine
                     \\--(else)--> END

LLM calls per input: ``num_chunks``. Prompts are ChatPromptTemplates with a fixed system prompt
(the shared prefix across all calls and inputs). The node is async: use ``ainvoke``/``abatch``.
Each chunk is one LangGraph step: past 24 chunks, raise ``recursion_limit`` in the run config.

Example:
    >>> import asyncio
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> graph = build(FakeListChatModel(responses=["short summary"]), num_chunks=2)
    >>> asyncio.run(graph.ainvoke(make_inputs(1, num_chunks=2, data_source="bundled")[0]))["summary"]
    'short summary'

Run on helium_lc: ``python -m examples.workloads.iterative`` (from the repository root).
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from ._common import message_text, resolve_params
from .data import chunk_words, load_documents

NAME = "iterative"
IS_ASYNC = True
DEFAULTS: dict[str, Any] = {"num_chunks": 6, "chunk_words": 120, "data_source": "auto"}

SYSTEM_PROMPT = """You are a careful technical summariser. You read a long document one part at a \
time and maintain a running summary of everything read so far. The summary must keep every \
important fact, name and number, drop examples and repetition, and stay under 120 words. Write \
plain prose without headings or bullet points."""

FIRST_PROMPT = ChatPromptTemplate.from_messages([
    ("system", SYSTEM_PROMPT),
    ("human", "Document: {title}\n\nPart 1 of {num_chunks}:\n{chunk}\n\nWrite the summary of this part."),
])

REFINE_PROMPT = ChatPromptTemplate.from_messages([
    ("system", SYSTEM_PROMPT),
    ("human", "Document: {title}\n\nSummary of parts 1 to {index}:\n{summary}\n\n"
              "Part {part} of {num_chunks}:\n{chunk}\n\n"
              "Refine the summary so that it also covers this part."),
])


class IterativeState(TypedDict, total=False):
    title: str
    chunks: list[str]
    index: int      # how many chunks have been read
    summary: str


def num_llm_calls(**params: Any) -> int:
    """LLM calls per input for these parameters."""
    return resolve_params(NAME, DEFAULTS, params)["num_chunks"]


def build(llm: BaseChatModel, **params: Any) -> CompiledStateGraph:
    """The Iterative graph over ``llm``. The number of chunks comes from each input's ``chunks``."""
    resolve_params(NAME, DEFAULTS, params)

    async def refine(state: IterativeState) -> dict[str, Any]:
        index, chunks = state.get("index", 0), state["chunks"]
        values = {"title": state["title"], "num_chunks": len(chunks), "chunk": chunks[index]}
        if index == 0:
            reply = await llm.ainvoke(FIRST_PROMPT.format_messages(**values))
        else:
            reply = await llm.ainvoke(REFINE_PROMPT.format_messages(
                **values, index=index, part=index + 1, summary=state["summary"]))
        return {"summary": message_text(reply), "index": index + 1}

    def more_chunks(state: IterativeState) -> str:
        return "refine" if state["index"] < len(state["chunks"]) else END

    graph = StateGraph(IterativeState)
    graph.add_node("refine", refine)
    graph.add_edge(START, "refine")
    graph.add_conditional_edges("refine", more_chunks, ["refine", END])
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

    app = build(HeliumChatModel(max_tokens=128))
    for row, out in enumerate(asyncio.run(app.abatch(make_inputs(2)))):
        print(f"--- input {row}: {out['title']}\n{out['summary']}\n")
