"""MapRed: a panel of experts answers one question over shared reference text; a summariser combines.

Graph (``Send`` fan-out, one expert task per role, then a join)::

    START --Send x num_experts--> expert --> summarize --> END

LLM calls per input: ``num_experts + 1``. Every expert prompt starts with the same long system
prompt, then the same reference text and question; only the last line (the expert's role) differs,
so a cache-aware scheduler can prefill the shared part once. Experts are async nodes (run the graph
with ``ainvoke``/``abatch``), or, with ``sync_nodes=True``, plain ``def`` nodes calling ``invoke``, as
most apps are written (run it with ``invoke``/``batch``).

Example:
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> import asyncio
    >>> llm = FakeListChatModel(responses=["ok"])
    >>> graph = build(llm, num_experts=2)
    >>> out = asyncio.run(graph.ainvoke(make_inputs(1, data_source="bundled")[0]))
    >>> out["summary"]
    'ok'

Run on helium_lc: ``python -m examples.workloads.mapred`` (from the repository root).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from ._common import message_text, resolve_params, truncate_words
from .data import load_qa

NAME = "mapred"
IS_ASYNC = True
DEFAULTS: dict[str, Any] = {"num_experts": 4, "context_words": 300, "data_source": "auto", "sync_nodes": False,
                            "summary_instruction": ""}

#: The ``iterate`` benchmark's edit: (first run's params, edited run's params) -- the editor's
#: instruction changes, so only the summary call of each input is new.
ITERATE_EDIT: tuple[dict[str, Any], dict[str, Any]] = (
    {}, {"summary_instruction": "Answer in at most three sentences."})

#: (role, what this expert pays attention to). The paper's MapRed uses 14 experts.
ROLES: tuple[tuple[str, str], ...] = (
    ("software engineer", "focus on how this works in practice and on concrete code-level consequences."),
    ("computer science professor", "focus on the underlying concepts and explain them precisely."),
    ("technical writer", "focus on a clear, well-organised explanation a newcomer can follow."),
    ("security reviewer", "focus on risks, pitfalls and what can go wrong."),
    ("performance engineer", "focus on speed, memory use and scalability."),
    ("language designer", "focus on the design trade-offs and why it was done this way."),
    ("open-source maintainer", "focus on compatibility, versions and community practice."),
    ("teacher", "focus on a simple analogy and a short worked example."),
    ("data scientist", "focus on how this matters for data analysis work."),
    ("systems administrator", "focus on installation, configuration and operations."),
    ("historian of computing", "focus on the history and context behind the answer."),
    ("product manager", "focus on the practical impact for users and teams."),
    ("skeptical reviewer", "focus on what the reference text does not settle and on caveats."),
    ("fact checker", "focus strictly on what the reference text supports, citing it."),
)

SYSTEM_PROMPT = """You are a member of a panel of experts that answers questions for a technical \
knowledge base. Several experts with different backgrounds receive the same question and the same \
reference material, and each writes an independent answer from their own point of view. An editor \
later merges the answers, so write an answer that stands on its own.

Guidelines for every panel member:
1. Base your answer on the reference material. If the material does not contain the answer, say \
so plainly and give your best expert judgement, marked as such.
2. Start with a one-sentence direct answer, then give the supporting explanation.
3. Be specific: name the functions, commands, settings or facts involved.
4. Keep the answer short: at most five sentences.
5. Do not repeat the question and do not address the other experts.
6. Write in plain English without headings."""

EXPERT_PROMPT = ChatPromptTemplate.from_messages([
    ("system", SYSTEM_PROMPT),
    ("human", "Reference material:\n{context}\n\nQuestion: {question}\n\n"
              "Answer as the panel's {role}; {focus}"),
])

SUMMARY_SYSTEM = """You are the editor of a technical knowledge base. You receive several expert \
answers to one question and write the single best final answer: correct, complete and concise. \
Resolve disagreements in favour of the answers that the reference material supports."""


SUMMARY_PROMPT = ChatPromptTemplate.from_messages([
    ("system", SUMMARY_SYSTEM),
    ("human", "Question: {question}\n\nExpert answers:\n{listing}\n\nFinal answer:"),
])


class MapRedState(TypedDict, total=False):
    question: str
    context: str
    answers: Annotated[list[dict[str, Any]], operator.add]
    summary: str


class ExpertTask(TypedDict):
    question: str
    context: str
    role: str
    focus: str
    expert_index: int


def num_llm_calls(**params: Any) -> int:
    """LLM calls per input for these parameters."""
    p = resolve_params(NAME, DEFAULTS, params)
    return p["num_experts"] + 1


def build(llm: BaseChatModel, **params: Any) -> CompiledStateGraph:
    """The MapRed graph over ``llm`` (see module docstring for the shape)."""
    p = resolve_params(NAME, DEFAULTS, params)
    if p["num_experts"] > len(ROLES):
        raise ValueError(f"{NAME}: num_experts can be at most {len(ROLES)} (one per role), "
                         f"got {p['num_experts']}.")
    roles = ROLES[:p["num_experts"]]
    expert_chain = EXPERT_PROMPT | llm

    def assign_experts(state: MapRedState) -> list[Send]:
        return [Send("expert", ExpertTask(question=state["question"], context=state["context"],
                                          role=role, focus=focus, expert_index=i))
                for i, (role, focus) in enumerate(roles)]

    summary_prompt = SUMMARY_PROMPT
    if p["summary_instruction"]:
        summary_prompt = ChatPromptTemplate.from_messages([
            ("system", f"{SUMMARY_SYSTEM} {p['summary_instruction']}"), SUMMARY_PROMPT.messages[1]])
    summary_chain = summary_prompt | llm

    def answer(task: ExpertTask, reply: Any) -> dict[str, Any]:
        return {"answers": [{"index": task["expert_index"], "role": task["role"],
                             "text": message_text(reply)}]}

    def summary_input(state: MapRedState) -> dict[str, Any]:
        answers = sorted(state["answers"], key=lambda a: a["index"])
        return {"question": state["question"],
                "listing": "\n\n".join(f"[{a['role']}]\n{a['text']}" for a in answers)}

    async def expert(task: ExpertTask) -> dict[str, Any]:
        return answer(task, await expert_chain.ainvoke(dict(task)))

    async def summarize(state: MapRedState) -> dict[str, Any]:
        return {"summary": message_text(await summary_chain.ainvoke(summary_input(state)))}

    def expert_sync(task: ExpertTask) -> dict[str, Any]:
        return answer(task, expert_chain.invoke(dict(task)))

    def summarize_sync(state: MapRedState) -> dict[str, Any]:
        return {"summary": message_text(summary_chain.invoke(summary_input(state)))}

    graph = StateGraph(MapRedState)
    graph.add_node("expert", expert_sync if p["sync_nodes"] else expert)
    graph.add_node("summarize", summarize_sync if p["sync_nodes"] else summarize)
    graph.add_conditional_edges(START, assign_experts, ["expert"])
    graph.add_edge("expert", "summarize")
    graph.add_edge("summarize", END)
    return graph.compile()


def make_inputs(num_inputs: int, seed: int = 0, **params: Any) -> list[dict[str, Any]]:
    """``num_inputs`` questions with reference text cut to ``context_words`` words."""
    p = resolve_params(NAME, DEFAULTS, params)
    items = load_qa(num_inputs, seed=seed, prefer=p["data_source"])
    return [{"question": it.question,
             "context": truncate_words(it.context, p["context_words"])} for it in items]


if __name__ == "__main__":
    import asyncio

    from helium_lc import HeliumChatModel

    inputs = make_inputs(2)
    app = build(HeliumChatModel(max_tokens=64))
    for row, out in enumerate(asyncio.run(app.abatch(inputs))):
        print(f"--- input {row}: {out['question']}\n{out['summary']}\n")
