"""Debate: agents solve a math problem, then revise over rounds after reading each other's answers.

After multi-agent debate (Du et al.): each round, every agent answers in parallel; from round 2 on,
an agent's prompt is its own conversation so far plus the other agents' latest answers, so each
round *extends the same conversation* (the previous round's prompt is a prefix of the next one).
A conditional edge loops until ``num_rounds`` rounds are done; a plain Python node then takes the
majority final answer.

Graph::

    START --Send x num_agents--> agent --> end_round --(round < num_rounds: Send x num_agents)--> agent
                                                     \\--(else)--> conclude --> END

LLM calls per input: ``num_agents * num_rounds``. Nodes are sync (``invoke`` and ``ainvoke`` both work).
Each round takes two LangGraph steps: past 11 rounds, raise ``recursion_limit`` in the run config.

Example:
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> graph = build(FakeListChatModel(responses=["Answer: 4"]), num_rounds=2)
    >>> graph.invoke({"question": "What is 2 + 2?"})["consensus"]
    '4'

Run on helium_lc: ``python -m examples.workloads.debate`` (from the repository root).
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from ._common import message_text, resolve_params
from .data import load_math

NAME = "debate"
IS_ASYNC = False
DEFAULTS: dict[str, Any] = {"num_agents": 3, "num_rounds": 2, "data_source": "auto"}

#: The ``iterate`` benchmark's edit: one more debate round; round 1's calls are the same calls.
ITERATE_EDIT: tuple[dict[str, Any], dict[str, Any]] = ({"num_rounds": 1}, {"num_rounds": 2})

PERSONAS: tuple[str, ...] = (
    "a careful accountant who checks every arithmetic step twice",
    "a mathematics teacher who first restates the problem in simple terms",
    "an engineer who estimates the answer first and then computes it exactly",
    "a puzzle enthusiast who looks for the trick in the wording",
    "a statistician who writes down every quantity before combining them",
)

SYSTEM_PROMPT = """You take part in a debate between several agents who solve the same math word \
problem. Reason step by step, show the arithmetic, and keep the explanation under 120 words. When \
you see the other agents' answers, check their reasoning as carefully as your own: change your \
answer if they convinced you, and keep it if you still believe it is right. Always finish with a \
last line of the form 'Answer: <number>'."""


class DebateState(TypedDict, total=False):
    question: str
    round: int
    answers: Annotated[list[dict[str, Any]], operator.add]  # {"round", "agent", "text"}
    final_answers: list[str]
    consensus: str


class AgentTask(TypedDict):
    question: str
    agent: int
    round: int
    answers: list[dict[str, Any]]


def num_llm_calls(**params: Any) -> int:
    """LLM calls per input for these parameters."""
    p = resolve_params(NAME, DEFAULTS, params)
    return p["num_agents"] * p["num_rounds"]


def agent_messages(task: AgentTask) -> list[BaseMessage]:
    """The conversation agent ``task['agent']`` sees in round ``task['round']`` (0-based)."""
    me = task["agent"]
    by_round: dict[int, dict[int, str]] = {}
    for a in task["answers"]:
        by_round.setdefault(a["round"], {})[a["agent"]] = a["text"]
    messages: list[BaseMessage] = [
        SystemMessage(SYSTEM_PROMPT),
        HumanMessage(f"Problem: {task['question']}\n\nYou are agent {me + 1}, "
                     f"{PERSONAS[me]}. Solve the problem."),
    ]
    for r in range(task["round"]):
        answers = by_round[r]
        others = "\n\n".join(f"Agent {k + 1}: {answers[k]}" for k in sorted(answers) if k != me)
        messages.append(AIMessage(answers[me]))
        messages.append(HumanMessage(
            f"These are the other agents' answers in round {r + 1}:\n\n{others}\n\n"
            "Using their reasoning as additional advice, give your updated solution."))
    return messages


def _extract_number(text: str) -> str:
    match = re.search(r"answer:\s*\$?(-?[\d,]*\.?\d+)", text, flags=re.IGNORECASE)
    if match:
        return match.group(1).replace(",", "")
    numbers = re.findall(r"-?\d+(?:\.\d+)?", text)
    return numbers[-1] if numbers else text.strip()[:40]


def build(llm: BaseChatModel, **params: Any) -> CompiledStateGraph:
    """The Debate graph over ``llm`` (see module docstring for the shape)."""
    p = resolve_params(NAME, DEFAULTS, params)
    if p["num_agents"] > len(PERSONAS):
        raise ValueError(f"{NAME}: num_agents can be at most {len(PERSONAS)}, got {p['num_agents']}.")
    num_agents, num_rounds = p["num_agents"], p["num_rounds"]

    def dispatch(state: DebateState) -> list[Send]:
        return [Send("agent", AgentTask(question=state["question"], agent=i,
                                        round=state.get("round", 0),
                                        answers=list(state.get("answers", []))))
                for i in range(num_agents)]

    def agent(task: AgentTask) -> dict[str, Any]:
        reply = llm.invoke(agent_messages(task))
        return {"answers": [{"round": task["round"], "agent": task["agent"],
                             "text": message_text(reply)}]}

    def end_round(state: DebateState) -> dict[str, Any]:
        return {"round": state.get("round", 0) + 1}

    def next_step(state: DebateState) -> list[Send] | str:
        return dispatch(state) if state["round"] < num_rounds else "conclude"

    def conclude(state: DebateState) -> dict[str, Any]:
        last = [a for a in state["answers"] if a["round"] == num_rounds - 1]
        finals = [_extract_number(a["text"]) for a in sorted(last, key=lambda a: a["agent"])]
        return {"final_answers": finals, "consensus": Counter(finals).most_common(1)[0][0]}

    graph = StateGraph(DebateState)
    graph.add_node("agent", agent)
    graph.add_node("end_round", end_round)
    graph.add_node("conclude", conclude)
    graph.add_conditional_edges(START, dispatch, ["agent"])
    graph.add_edge("agent", "end_round")
    graph.add_conditional_edges("end_round", next_step, ["agent", "conclude"])
    graph.add_edge("conclude", END)
    return graph.compile()


def make_inputs(num_inputs: int, seed: int = 0, **params: Any) -> list[dict[str, Any]]:
    """``num_inputs`` math word problems (GSM8K when installed)."""
    p = resolve_params(NAME, DEFAULTS, params)
    return [{"question": m.question} for m in load_math(num_inputs, seed=seed, prefer=p["data_source"])]


if __name__ == "__main__":
    from helium_lc import HeliumChatModel

    app = build(HeliumChatModel(max_tokens=128))
    for row, out in enumerate(app.batch(make_inputs(2))):
        print(f"--- input {row}: {out['question']}\n{out['final_answers']} -> {out['consensus']}\n")
