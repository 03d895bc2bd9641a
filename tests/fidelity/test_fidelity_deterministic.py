"""Fidelity: every example graph gives the same results plain and accelerated.

The model is :class:`DeterministicChatModel` (its answer is a function of its prompt),
so an accelerated run must end in exactly the plain run's states (ids aside) and
stream the same updates, whatever the cache, dedup and batching did.
"""

from __future__ import annotations

import asyncio
import json
import operator
from collections import Counter
from typing import Annotated, Any, TypedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.graph import START, StateGraph

from helium_lc.accelerate import accelerate
from helium_lc.config import HeliumConfig
from helium_lc.testing import DeterministicChatModel, normalize_state
from tests.fidelity.graphs import GRAPHS, GraphCase

NAMES = sorted(GRAPHS)


def _plain(case: GraphCase) -> tuple[list[Any], DeterministicChatModel]:
    model = DeterministicChatModel()
    app = case.build(model)
    return [app.invoke(x, config=case.config(i)) for i, x in enumerate(case.inputs())], model


def _configs(case: GraphCase) -> list[dict[str, Any]]:
    return [case.config(i) for i in range(len(case.inputs()))]


def _updates_multiset(chunks: list[Any]) -> Counter[str]:
    # Parallel nodes of one step may finish in any order: compare updates as a multiset.
    return Counter(json.dumps(normalize_state(c), sort_keys=True, default=str) for c in chunks)


@pytest.mark.parametrize("name", NAMES)
def test_invoke_batch_abatch_equal_plain(name: str) -> None:
    case = GRAPHS[name]
    expected, plain_model = _plain(case)
    # invoke, row by row (fresh graph: checkpointed threads must start empty)
    model = DeterministicChatModel()
    fast = accelerate(case.build(model))
    outs = [fast.invoke(x, config=case.config(i)) for i, x in enumerate(case.inputs())]
    assert normalize_state(outs) == normalize_state(expected)
    # batch: all rows concurrently on one loop
    fast_b = accelerate(case.build(DeterministicChatModel()))
    assert normalize_state(fast_b.batch(case.inputs(), config=_configs(case))) == normalize_state(expected)
    # abatch with model latency, so that calls overlap in time
    fast_a = accelerate(case.build(DeterministicChatModel(latency_s=0.002)))
    got = asyncio.run(fast_a.abatch(case.inputs(), config=_configs(case)))
    assert normalize_state(got) == normalize_state(expected)
    # every call is accounted for: sent + served = requested = the plain run's calls
    s = fast_a.last_run_stats()
    assert s is not None and s.num_rows == len(case.inputs()) and s.num_failed_rows == 0
    assert s.num_llm_calls_requested == plain_model.num_calls
    assert s.num_llm_calls_sent + s.num_cache_hits + s.num_dedup_hits == s.num_llm_calls_requested


@pytest.mark.parametrize("name", NAMES)
def test_stream_updates_equal_plain(name: str) -> None:
    case = GRAPHS[name]
    for i, x in enumerate(case.inputs()[:2]):
        plain = list(case.build(DeterministicChatModel()).stream(x, case.config(i), stream_mode="updates"))
        fast = accelerate(case.build(DeterministicChatModel()))
        got = list(fast.stream(x, case.config(i), stream_mode="updates"))
        assert _updates_multiset(got) == _updates_multiset(plain)


def test_astream_and_messages_mode_equal_plain() -> None:
    # messages mode: per node, the streamed message text adds up to the same answers, also
    # when the accelerated run serves the second, identical input from its cache.
    case = GRAPHS["duplicate_calls"]
    x = case.inputs()[0]

    def texts(chunks: list[Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for msg, meta in chunks:
            out[meta["langgraph_node"]] = out.get(meta["langgraph_node"], "") + str(msg.content)
        return out

    plain = list(case.build(DeterministicChatModel()).stream(x, stream_mode="messages"))
    fast = accelerate(case.build(DeterministicChatModel()))
    first = list(fast.stream(x, stream_mode="messages"))
    second = list(fast.stream(x, stream_mode="messages"))  # all three calls are cache hits
    assert fast.last_run_stats().num_cache_hits == 3
    assert texts(first) == texts(plain) == texts(second)

    async def collect() -> list[Any]:
        return [c async for c in fast.astream(x, stream_mode="updates")]
    assert _updates_multiset(asyncio.run(collect())) == _updates_multiset(
        list(case.build(DeterministicChatModel()).stream(x, stream_mode="updates")))


def test_duplicate_calls_send_fewer_calls() -> None:
    # Rows A, B, A, A; per row left+right (identical prompt) + merge: 12 calls requested,
    # 4 distinct prompts -> exactly 4 model calls, 8 served by dedup or cache.
    case = GRAPHS["duplicate_calls"]
    model = DeterministicChatModel(latency_s=0.002)
    fast = accelerate(case.build(model))
    fast.batch(case.inputs())
    s = fast.last_run_stats()
    assert model.num_calls == 4
    assert (s.num_llm_calls_requested, s.num_llm_calls_sent) == (12, 4)
    assert s.num_cache_hits + s.num_dedup_hits == 8


def test_second_batch_served_from_prompt_cache() -> None:
    # Batch 1 fills the cache; batch 2 (same inputs) sends nothing and gives equal states.
    case = GRAPHS["fan_out_join"]
    model = DeterministicChatModel()
    fast = accelerate(case.build(model))
    first = fast.batch(case.inputs())
    num_calls = model.num_calls
    second = fast.batch(case.inputs())
    s = fast.last_run_stats()
    assert model.num_calls == num_calls and num_calls == 12  # 3 rows x 4 calls, all distinct
    assert (s.num_cache_hits, s.num_llm_calls_sent) == (12, 0)
    assert normalize_state(second) == normalize_state(first)
    assert fast.stats().num_llm_calls_requested == 24
    # with the cache cleared, the calls go to the model again
    fast.clear_cache()
    fast.batch(case.inputs())
    assert model.num_calls == 24


def test_sampled_model_is_never_cached_or_deduplicated() -> None:
    # temperature > 0: every one of the 12 calls reaches the model, twice over.
    case = GRAPHS["duplicate_calls"]
    model = DeterministicChatModel(temperature=0.7)
    fast = accelerate(case.build(model))
    fast.batch(case.inputs())
    fast.batch(case.inputs())
    s = fast.stats()
    assert model.num_calls == 24
    assert (s.num_sampled_calls, s.num_cache_hits, s.num_dedup_hits) == (24, 0, 0)


def test_switches_turn_cache_and_dedup_off() -> None:
    case = GRAPHS["duplicate_calls"]
    model = DeterministicChatModel()
    fast = accelerate(case.build(model), config=HeliumConfig(prompt_cache=False, dedup=False))
    fast.batch(case.inputs())
    assert model.num_calls == 12 and fast.last_run_stats().num_llm_calls_sent == 12


class _FailState(TypedDict, total=False):
    q: str
    a: str


def _failing_app(model: DeterministicChatModel) -> Any:
    def answer(state: _FailState) -> dict[str, str]:
        if state["q"] == "boom":
            raise RuntimeError("node failed on purpose")
        return {"a": str(model.invoke(state["q"]).content)}
    return StateGraph(_FailState).add_node("answer", answer).add_edge(START, "answer").compile()


def test_failing_node_fails_only_its_row() -> None:
    # Row 1 raises; rows 0 and 2 finish with the plain answers.
    model = DeterministicChatModel()
    fast = accelerate(_failing_app(model))
    outs = fast.batch([{"q": "hi"}, {"q": "boom"}, {"q": "yo"}], return_exceptions=True)
    assert isinstance(outs[1], RuntimeError) and "on purpose" in str(outs[1])
    plain = _failing_app(DeterministicChatModel())
    assert outs[0] == plain.invoke({"q": "hi"}) and outs[2] == plain.invoke({"q": "yo"})
    assert fast.last_run_stats().num_failed_rows == 1
    with pytest.raises(RuntimeError, match="on purpose"):
        fast.batch([{"q": "hi"}, {"q": "boom"}])


# --------------------------------------------------------------------------- random graphs
PROMPTS = ("Summarise: {}", "Critique: {}", "Summarise: {}")  # two equal templates -> dedup


def _random_app(model: DeterministicChatModel, preds: list[list[int]], templates: list[int]) -> Any:
    # Node i reads q and the channels of its predecessors, writes [answer] to channel c<i>.
    fields: dict[str, Any] = {"q": str}
    fields.update({f"c{i}": Annotated[list, operator.add] for i in range(len(preds))})
    state = TypedDict("RandomState", fields, total=False)  # type: ignore[misc]
    g = StateGraph(state)

    def make(i: int) -> Any:
        def node(s: dict[str, Any]) -> dict[str, list[str]]:
            context = " | ".join([s["q"], *(x for p in preds[i] for x in s.get(f"c{p}", []))])
            return {f"c{i}": [str(model.invoke(PROMPTS[templates[i]].format(context)).content)]}
        return node

    for i in range(len(preds)):
        g.add_node(f"n{i}", make(i))
        if not preds[i]:
            g.add_edge(START, f"n{i}")
        elif len(preds[i]) == 1:
            g.add_edge(f"n{preds[i][0]}", f"n{i}")
        else:
            g.add_edge([f"n{p}" for p in preds[i]], f"n{i}")
    return g.compile()


@st.composite
def random_dags(draw: Any) -> tuple[list[list[int]], list[int]]:
    num_nodes = draw(st.integers(1, 4))
    preds = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=2))) if i else [] for i in range(num_nodes)]
    templates = [draw(st.integers(0, len(PROMPTS) - 1)) for _ in range(num_nodes)]
    return preds, templates


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag=random_dags(), questions=st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3))
def test_random_graphs_accelerated_equal_plain(dag: tuple[list[list[int]], list[int]],
                                               questions: list[str]) -> None:
    preds, templates = dag
    inputs = [{"q": q} for q in questions]
    plain_model = DeterministicChatModel()
    plain = _random_app(plain_model, preds, templates)
    expected = [plain.invoke(x) for x in inputs]
    model = DeterministicChatModel()
    fast = accelerate(_random_app(model, preds, templates))
    assert normalize_state(fast.batch(inputs)) == normalize_state(expected)
    # never more model calls than the plain run; exactly one per distinct prompt
    assert model.num_calls <= plain_model.num_calls
    assert model.num_calls == len(set(plain_model.prompts))
