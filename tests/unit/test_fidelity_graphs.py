"""The fidelity example graphs run plain and are deterministic with DeterministicChatModel."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from helium_lc.testing import DeterministicChatModel, normalize_state
from tests.fidelity.graphs import GRAPHS, GraphCase


def run_sequential(case: GraphCase) -> tuple[list[Any], DeterministicChatModel]:
    model = DeterministicChatModel()
    graph = case.build(model)
    outs = [graph.invoke(x, config=case.config(i)) for i, x in enumerate(case.inputs())]
    return outs, model


def run_concurrent(case: GraphCase) -> tuple[list[Any], DeterministicChatModel]:
    # All rows at once on the async path, with latency so that calls interleave.
    model = DeterministicChatModel(latency_s=0.005)
    graph = case.build(model)
    inputs = case.inputs()
    configs = [case.config(i) for i in range(len(inputs))]
    return asyncio.run(graph.abatch(inputs, config=configs)), model


def test_registry_is_complete() -> None:
    expected = {"fan_out_join", "conditional_loop", "send_map_reduce", "subgraph", "react_agent",
                "messages_chat", "structured_output", "duplicate_calls", "command_routing",
                "checkpointed"}
    assert expected <= set(GRAPHS)
    for name, case in GRAPHS.items():
        assert case.name == name and 3 <= len(case.inputs()) <= 6


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_is_deterministic_across_execution_modes(name: str) -> None:
    # Run 1: rows one by one, sync. Run 2: all rows concurrently, async, with latency.
    # Same final states (ids aside), same number of LLM calls, same multiset of prompts.
    case = GRAPHS[name]
    outs1, m1 = run_sequential(case)
    outs2, m2 = run_concurrent(case)
    assert m1.num_calls > 0
    assert normalize_state(outs1) == normalize_state(outs2)
    assert Counter(m1.prompts) == Counter(m2.prompts)


def test_duplicate_calls_really_duplicate() -> None:
    # Rows: doc A, doc B, doc A, doc A. Each row: left + right (identical prompt) + merge.
    # 4 rows x 3 calls = 12 calls, but only 4 distinct prompts:
    # summarise(A), merge(A), summarise(B), merge(B).
    outs, model = run_sequential(GRAPHS["duplicate_calls"])
    counts = Counter(model.prompts)
    assert model.num_calls == 12 and len(counts) == 4
    assert sorted(counts.values()) == [1, 2, 3, 6]  # merge B, summarise B, merge A, summarise A
    assert all(o["left"] == o["right"] for o in outs)


def test_checkpointed_graph_remembers_the_thread() -> None:
    # Two turns on one thread: the second sees the first turn's messages.
    case = GRAPHS["checkpointed"]
    graph = case.build(DeterministicChatModel())
    graph.invoke(case.inputs()[0], config=case.config(0))
    out = graph.invoke(case.inputs()[1], config=case.config(0))
    assert out["num_turns"] == 2 and [m.type for m in out["messages"]] == ["human", "ai"] * 2


def test_react_agent_calls_a_tool_then_answers() -> None:
    outs, _ = run_sequential(GRAPHS["react_agent"])
    for out in outs:
        assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]


def test_loop_and_map_reduce_shapes() -> None:
    loop_outs, _ = run_sequential(GRAPHS["conditional_loop"])
    assert [o["num_rounds"] for o in loop_outs] == [1, 2, 3]  # never APPROVED: max_rounds each
    mr_outs, _ = run_sequential(GRAPHS["send_map_reduce"])
    assert [len(o["summaries"]) for o in mr_outs] == [3, 2, 4]
    routing_outs, _ = run_sequential(GRAPHS["command_routing"])
    assert [o["team"] for o in routing_outs] == ["billing", "support", "billing"]
