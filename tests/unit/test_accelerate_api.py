"""accelerate(): config validation, bad input, checkpointers, the Runnable surface, explain."""

from __future__ import annotations

import io
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import START, StateGraph

from helium_lc.accelerate import AcceleratedGraph, accelerate
from helium_lc.config import HeliumConfig
from helium_lc.explain import explain
from helium_lc.testing import DeterministicChatModel
from tests.fidelity.graphs import GRAPHS


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("kwargs, message", [
    ({"policy": "fastest"}, "unknown scheduling policy 'fastest'; choose one of"),
    ({"prompt_cache": "yes"}, "prompt_cache must be True or False"),
    ({"warm_threshold_tokens": -1}, "warm_threshold_tokens must be an integer >= 0"),
    ({"row_gate": "on"}, "row_gate must be True or False"),
    ({"progress": 1}, "progress must be True, False or None"),
    ({"disabled_rules": "prune"}, "write disabled_rules={'prune'}"),
    ({"disabled_rules": {"cse"}}, "no longer exists: identical calls share one model call at run time"),
    ({"disabled_rules": {"prnue"}}, "unknown rule name(s) ['prnue']"),
    ({"route": {"http://x/v1": object()}}, "must be a WorkerPool"),
    ({"cache_path": ""}, "cache_path must be a file path"),
])
def test_bad_config_values_say_what_to_do(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        HeliumConfig(**kwargs)
    assert message in str(info.value)


def test_config_is_frozen_and_normalised(tmp_path: Path) -> None:
    cfg = HeliumConfig(disabled_rules=["prune"], prompt_cache=False, cache_path=tmp_path / "c.db")
    assert cfg.disabled_rules == frozenset({"prune"}) and cfg.cache_path == str(tmp_path / "c.db")
    assert cfg.effective_disabled_rules == {"prompt_cache", "prune"}
    with pytest.raises(AttributeError):
        cfg.dedup = False  # type: ignore[misc]


# --------------------------------------------------------------------------- bad input
def test_bad_graphs_get_clear_type_errors() -> None:
    class S(TypedDict):
        x: int
    builder = StateGraph(S).add_node("f", lambda s: {"x": 1}).add_edge(START, "f")
    with pytest.raises(TypeError, match=r"uncompiled StateGraph builder; call \.compile\(\)"):
        accelerate(builder)
    with pytest.raises(TypeError, match="needs a compiled LangGraph StateGraph"):
        accelerate(lambda x: x)
    fast = accelerate(builder.compile())
    with pytest.raises(TypeError, match="already accelerated"):
        accelerate(fast)
    with pytest.raises(TypeError, match="unknown option"):
        accelerate(builder.compile(), promt_cache=False)


def test_checkpointer_needs_thread_id_before_running() -> None:
    case = GRAPHS["checkpointed"]
    model = DeterministicChatModel()
    fast = accelerate(case.build(model))
    x = case.inputs()[0]
    with pytest.raises(ValueError, match="needs a thread_id"):
        fast.invoke(x)
    with pytest.raises(ValueError, match=r"thread_id \(input 1\)"):
        fast.batch(case.inputs()[:2], config=[case.config(0), {}])
    with pytest.raises(ValueError, match="share a thread_id"):
        fast.batch(case.inputs()[:2], config=case.config(0))
    assert model.num_calls == 0  # nothing ran
    # with thread ids: state is kept per thread, and get_state passes through
    fast.invoke(x, config=case.config(0))
    assert fast.get_state(case.config(0)).values["num_turns"] == 1
    assert fast.checkpointer is fast.app.checkpointer


# --------------------------------------------------------------------------- Runnable surface
class Q(TypedDict, total=False):
    q: str
    answers: Annotated[list[str], operator.add]
    unused: str


def test_with_config_get_graph_and_pruning_by_output_keys() -> None:
    model = DeterministicChatModel()

    def ask(state: Q) -> dict[str, Any]:
        return {"answers": [str(model.invoke(state["q"]).content)]}

    def extra(state: Q) -> dict[str, Any]:  # pure, writes a key the caller does not read
        return {"unused": state["q"].upper()}

    app = (StateGraph(Q).add_node("ask", ask).add_node("extra", extra)
           .add_edge(START, "ask").add_edge("ask", "extra").compile())
    fast = accelerate(app, output_keys=["answers"])
    # extra is pruned, so the graph that runs has only "ask"
    assert "extra" not in fast.graph.nodes and "extra" in app.nodes
    assert "extra" not in fast.get_graph().nodes
    out = fast.with_config(tags=["t"]).invoke({"q": "hi"})
    assert out["answers"] == app.invoke({"q": "hi"})["answers"] and "unused" not in out
    assert isinstance(fast, AcceleratedGraph) and fast.last_run_stats().num_rows == 1
    # prune=False keeps the node
    assert "extra" in accelerate(app, output_keys=["answers"], prune=False).graph.nodes


def test_stats_before_any_run_and_empty_batch() -> None:
    fast = accelerate(GRAPHS["fan_out_join"].build(DeterministicChatModel()))
    assert fast.last_run_stats() is None and fast.stats().num_rows == 0
    assert fast.batch([]) == []


def test_sqlite_cache_is_shared_across_accelerated_graphs(tmp_path: Path) -> None:
    # Two separate accelerated graphs (think: two processes) share one cache file.
    case, path = GRAPHS["subgraph"], tmp_path / "cache.db"
    m1, m2 = DeterministicChatModel(), DeterministicChatModel()
    accelerate(case.build(m1), cache_path=str(path)).batch(case.inputs())
    fast2 = accelerate(case.build(m2), cache_path=str(path))
    fast2.batch(case.inputs())
    assert m1.num_calls == 9 and m2.num_calls == 0 and fast2.last_run_stats().num_cache_hits == 9


# --------------------------------------------------------------------------- explain
def test_explain_reports_plan_rules_unanalysable_and_pictures(tmp_path: Path) -> None:
    buf = io.StringIO()
    text = explain(GRAPHS["command_routing"].build(DeterministicChatModel()), file=buf,
                   mermaid_path=tmp_path / "plan.mmd", png_path=tmp_path / "plan.png",
                   count_tokens=lambda s: len(s.split()))
    assert buf.getvalue().strip() == text
    assert "llm:billing#0 = LLM_CALL pure prefix=12c/3t" in text
    assert (tmp_path / "plan.mmd").read_text().startswith("flowchart TD")
    assert (tmp_path / "plan.png").read_bytes()[:4] == b"\x89PNG"


def test_explain_names_sampled_calls_and_unanalysable_nodes() -> None:
    fast = accelerate(GRAPHS["duplicate_calls"].build(DeterministicChatModel(temperature=0.5)))
    text = explain(fast, file=io.StringIO())
    assert "- llm:merge#0: sampled decoding, results are never cached or shared" in text
    assert "- node:left: writes unknown" in text


def test_one_warming_threshold_default() -> None:
    from helium_lc.runtime.scheduler import ScheduleOptions
    from helium_lc.schedule.policies.helium import WARM_MIN_TOKENS, HeliumOptions
    defaults = {HeliumConfig().warm_threshold_tokens, ScheduleOptions().warm_threshold_tokens,
                HeliumOptions().warm_min_tokens}
    assert defaults == {WARM_MIN_TOKENS}
