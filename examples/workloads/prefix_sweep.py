"""Prefix-sharing sweep: synthetic MapRed or Debate with set prompt-part lengths (in tokens).

The paper sweeps system prompt / context / question / output lengths from 1024/128/128/64 up to
2048/2048/2048/1024 tokens. Here each part is made of English words drawn (seeded) from the
bundled corpus, about ``WORDS_PER_TOKEN`` words per token, so the lengths are approximate. The
system prompt is fixed per ``build`` (seed depends only on its length); context and question are
drawn per input. Output length is the chat model's business (``max_tokens``): pass
``output_tokens`` to the model you build, e.g. ``HeliumChatModel(max_tokens=p["output_tokens"])``;
the prompt also asks for about that many words.

- ``pattern="mapred"``: ``num_agents`` agents answer (system + context + question + agent line),
  then one aggregator: ``num_agents + 1`` LLM calls per input.
- ``pattern="debate"``: ``num_agents`` agents over ``num_rounds`` rounds, each round extending
  the agent's conversation with the others' answers: ``num_agents * num_rounds`` calls per input.

Graph: ``START --Send--> agent --> (aggregate | end_round --loop--> agent) --> END``. Nodes are
async: use ``ainvoke``/``abatch``.

Example:
    >>> import asyncio
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> graph = build(FakeListChatModel(responses=["x"]), system_tokens=8)
    >>> asyncio.run(graph.ainvoke(make_inputs(1, context_tokens=8, question_tokens=4)[0]))["result"]
    'x'
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from ._common import message_text, resolve_params, words_for_tokens
from .data import synthetic_text

NAME = "prefix_sweep"
IS_ASYNC = True
DEFAULTS: dict[str, Any] = {"pattern": "mapred", "num_agents": 3, "num_rounds": 2,
                            "system_tokens": 256, "context_tokens": 128, "question_tokens": 32,
                            "output_tokens": 32}

#: The paper's sweep end points, for benchmarks (GPU scale, not for the CPU defaults).
PAPER_SWEEP: tuple[dict[str, int], ...] = (
    {"system_tokens": 1024, "context_tokens": 128, "question_tokens": 128, "output_tokens": 64},
    {"system_tokens": 2048, "context_tokens": 2048, "question_tokens": 2048, "output_tokens": 1024},
)


class SweepState(TypedDict, total=False):
    context: str
    question: str
    round: int
    answers: Annotated[list[dict[str, Any]], operator.add]  # {"round", "agent", "text"}
    result: str


def _check_pattern(p: dict[str, Any]) -> None:
    if p["pattern"] not in ("mapred", "debate"):
        raise ValueError(f"{NAME}: pattern must be 'mapred' or 'debate', got {p['pattern']!r}.")


def num_llm_calls(**params: Any) -> int:
    """LLM calls per input for these parameters."""
    p = resolve_params(NAME, DEFAULTS, params)
    _check_pattern(p)
    if p["pattern"] == "mapred":
        return p["num_agents"] + 1
    return p["num_agents"] * p["num_rounds"]


def system_prompt(system_tokens: int) -> str:
    """The static system prompt of about ``system_tokens`` tokens (same for every build)."""
    filler = synthetic_text(words_for_tokens(system_tokens), seed=1_000_003 + system_tokens)
    return f"You are an assistant in a synthetic benchmark. Background notes: {filler}"


def build(llm: BaseChatModel, **params: Any) -> CompiledStateGraph:
    """A synthetic MapRed or Debate graph over ``llm``."""
    p = resolve_params(NAME, DEFAULTS, params)
    _check_pattern(p)
    system = system_prompt(p["system_tokens"])
    num_agents, num_rounds = p["num_agents"], p["num_rounds"]
    rounds = 1 if p["pattern"] == "mapred" else num_rounds
    ask_len = f"Answer in about {words_for_tokens(p['output_tokens'])} words."

    def messages_for(state: dict[str, Any], agent: int, round_: int) -> list[BaseMessage]:
        messages: list[BaseMessage] = [SystemMessage(system), HumanMessage(
            f"Context: {state['context']}\n\nQuestion: {state['question']}\n\n"
            f"You are agent {agent + 1}. {ask_len}")]
        for r in range(round_):
            mine = {a["agent"]: a["text"] for a in state["answers"] if a["round"] == r}
            others = "\n".join(f"Agent {k + 1}: {t}" for k, t in sorted(mine.items()) if k != agent)
            messages += [AIMessage(mine[agent]),
                         HumanMessage(f"Other agents said:\n{others}\n\nUpdate your answer. {ask_len}")]
        return messages

    def dispatch(state: SweepState) -> list[Send]:
        r = state.get("round", 0)
        return [Send("agent", {"context": state["context"], "question": state["question"],
                               "answers": list(state.get("answers", [])), "agent": i, "round": r})
                for i in range(num_agents)]

    async def agent(task: dict[str, Any]) -> dict[str, Any]:
        reply = await llm.ainvoke(messages_for(task, task["agent"], task["round"]))
        return {"answers": [{"round": task["round"], "agent": task["agent"],
                             "text": message_text(reply)}]}

    async def aggregate(state: SweepState) -> dict[str, Any]:
        listing = "\n".join(f"Agent {a['agent'] + 1}: {a['text']}"
                            for a in sorted(state["answers"], key=lambda a: a["agent"]))
        reply = await llm.ainvoke([SystemMessage(system), HumanMessage(
            f"Question: {state['question']}\n\nAnswers:\n{listing}\n\nCombine them. {ask_len}")])
        return {"result": message_text(reply)}

    def end_round(state: SweepState) -> dict[str, Any]:
        r = state.get("round", 0) + 1
        if r < rounds:
            return {"round": r}
        last = sorted((a for a in state["answers"] if a["round"] == r - 1), key=lambda a: a["agent"])
        return {"round": r, "result": "\n".join(a["text"] for a in last)}

    def next_step(state: SweepState) -> list[Send] | str:
        return dispatch(state) if state["round"] < rounds else END

    graph = StateGraph(SweepState)
    graph.add_node("agent", agent)
    graph.add_conditional_edges(START, dispatch, ["agent"])
    if p["pattern"] == "mapred":
        graph.add_node("aggregate", aggregate)
        graph.add_edge("agent", "aggregate")
        graph.add_edge("aggregate", END)
    else:
        graph.add_node("end_round", end_round)
        graph.add_edge("agent", "end_round")
        graph.add_conditional_edges("end_round", next_step, ["agent", END])
    return graph.compile()


def make_inputs(num_inputs: int, seed: int = 0, **params: Any) -> list[dict[str, Any]]:
    """``num_inputs`` synthetic (context, question) pairs of the requested lengths."""
    p = resolve_params(NAME, DEFAULTS, params)
    _check_pattern(p)
    inputs = []
    for row in range(num_inputs):
        row_seed = 2 * (seed * 100_003 + row)
        inputs.append({
            "context": synthetic_text(words_for_tokens(p["context_tokens"]), seed=row_seed),
            "question": synthetic_text(words_for_tokens(p["question_tokens"]), seed=row_seed + 1) + "?",
        })
    return inputs


if __name__ == "__main__":
    import asyncio

    from helium_lc import HeliumChatModel

    params = dict(DEFAULTS)
    app = build(HeliumChatModel(max_tokens=params["output_tokens"]), **params)
    for row, out in enumerate(asyncio.run(app.abatch(make_inputs(2, **params)))):
        print(f"--- input {row}\n{out['result'][:300]}\n")
