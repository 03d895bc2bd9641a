"""The learned plan: profiles from runs, saved next to the cache, seeding a new process's scheduler."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph

from helium_lc import HeliumChatModel, HeliumConfig, accelerate, explain
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.sim import SimWorker
from helium_lc.plan.learned import LearnedPlan, node_path

REVIEW_SYSTEM = ("You are the reviewer of a small newsroom. " + " ".join(
    f"Rule {i}: check that every claim in the draft has a source, that names are spelled as in the "
    f"source, and that numbers carry their unit." for i in range(12)))


def test_profiles_fold_prompts_and_survive_json() -> None:
    lp = LearnedPlan(["a", "team/b"])
    for row, tail in enumerate((9, 8, 7)):
        lp.observe("", "a", 0, row=row, prompt=(1, 2, 3, tail), output_tokens=row + 1, latency_s=0.1, tokenizer="t")
    lp.observe("team:abc|b:def", "b", 0, row=0, prompt=(5, 6), output_tokens=2, latency_s=0.2, tokenizer="t")
    lp.finish_batch(3)
    a = lp.sites["a#0"]
    assert (a.num_calls, a.num_rows, a.static_prefix, a.max_output_tokens, a.calls_per_row) == (3, 3, (1, 2, 3), 3, 1.0)
    assert lp.sites["team/b#0"].static_prefix is None           # one prompt: no prefix known yet
    assert lp.static_prefixes("t") == [("a", 0, (1, 2, 3))] and lp.static_prefixes("other") == []
    assert lp.summary().splitlines()[0] == "2/2 LLM nodes profiled after 1 batch (2 call sites, 1 with a static prefix)"
    lp.set_row_reuse("t", {"rows": 3, "own_tokens": 100, "revisit_tokens": 40, "decode_steps": 12})
    again = LearnedPlan.from_json(lp.to_json())
    assert again.summary() == lp.summary() and again.row_reuse_for("t")["revisit_tokens"] == 40.0
    assert again.row_reuse_for("u") is None
    # another tokenizer's prompts start the prefix over (its token ids mean other text); counts stay
    lp.observe("", "a", 0, row=0, prompt=(40, 41), output_tokens=1, latency_s=0.1, tokenizer="u")
    assert lp.sites["a#0"].num_calls == 4 and lp.sites["a#0"].static_prefix is None
    assert node_path("x:1|y:2|z:3", "z") == "x/y/z"


def test_a_missing_or_foreign_plan_file_is_ignored(tmp_path: Path) -> None:
    lp = LearnedPlan()
    assert not lp.merge_saved(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("not json")
    (tmp_path / "other.json").write_text(json.dumps({"format": 99, "sites": []}))
    assert not lp.merge_saved(tmp_path / "bad.json") and not lp.merge_saved(tmp_path / "other.json")
    with pytest.raises(ValueError, match="learned plan"):
        LearnedPlan.from_json("[]")


class S(TypedDict, total=False):
    topic: str
    draft: str
    review: str


def _app(llm: Any) -> Any:
    def draft(s: S) -> dict[str, Any]:
        return {"draft": llm.invoke([HumanMessage(f"Write two lines about {s['topic']}.")]).content}

    def review(s: S) -> dict[str, Any]:
        return {"review": llm.invoke([SystemMessage(REVIEW_SYSTEM), HumanMessage(f"Draft: {s['draft']}")]).content}

    return (StateGraph(S).add_node("draft", draft).add_node("review", review)
            .add_edge(START, "draft").add_edge("draft", "review").add_edge("review", END).compile())


def _pool() -> tuple[WorkerPool, SimWorker]:
    w = SimWorker(0, block_size=16)
    return WorkerPool(workers=[w]), w


def test_a_saved_plan_warms_a_later_stage_on_the_first_batch_of_a_new_process(tmp_path: Path) -> None:
    # Run 1 (pool 1): both nodes are profiled; review's static prefix (its long system prompt) is
    # learned and saved next to the cache. Then a new pool and a new accelerated graph over the same
    # cache_path (what a new process sees), with new topics (so nothing comes from the prompt cache):
    # while the draft calls of the FIRST batch are planned, review's prefix is warmed on the worker
    # and the review calls find it cached. The same first batch without the saved plan warms nothing.
    cache = str(tmp_path / "runs.sqlite")
    pool1, _ = _pool()
    try:
        fast1 = accelerate(_app(HeliumChatModel(pool=pool1, max_tokens=4)), cache_path=cache)
        fast1.batch([{"topic": t} for t in ("rain", "wind", "snow")])
        assert fast1.learned_plan.profiled_nodes() == {"draft", "review"}
        assert "2/2 LLM nodes profiled after 1 batch" in explain(fast1, file=io.StringIO())
    finally:
        pool1.shutdown()
    assert Path(cache + ".plan.json").exists()

    topics = [{"topic": t} for t in ("fog", "hail", "heat")]
    pool2, w2 = _pool()
    try:
        fast2 = accelerate(_app(HeliumChatModel(pool=pool2, max_tokens=4)), cache_path=cache)
        assert fast2.learned_plan.num_batches == 1               # loaded from the file
        fast2.batch(topics)
        stats = fast2.last_run_stats()
        assert stats.num_cache_hits == 0 and stats.num_warm_requests >= 1
        assert w2.stats().num_warm_requests >= 1
        # the row gate's evidence came with the plan: the 3 rows of run 1, then this run's 3
        from helium_lc.runtime.scheduler import scheduler_for
        assert scheduler_for(pool2).row_reuse(fast2.app_key).rows == 6
    finally:
        pool2.shutdown()

    pool3, w3 = _pool()
    try:
        fast3 = accelerate(_app(HeliumChatModel(pool=pool3, max_tokens=4)), config=HeliumConfig())
        fast3.batch(topics)
        assert fast3.last_run_stats().num_warm_requests == 0    # a first batch knows nothing
        assert w3.stats().num_warm_requests == 0
        from helium_lc.runtime.scheduler import scheduler_for
        assert scheduler_for(pool3).row_reuse(fast3.app_key).rows == 3   # its own rows only
    finally:
        pool3.shutdown()


def test_remaining_work_follows_the_topology_and_the_profiles() -> None:
    # draft -> review: a draft call's row still has a review call after it; a review call nothing.
    # Before any run the review's work is the unprofiled default; after one its profile's.
    pool, _ = _pool()
    try:
        fast = accelerate(_app(HeliumChatModel(pool=pool, max_tokens=4)), config=HeliumConfig())
        lp = fast.learned_plan
        assert lp.llm_after == {"draft": {"review"}, "review": set()}
        assert "orders by it only with HeliumOptions(plan_critical_path=True)): draft -> review" in lp.summary()
        assert lp.remaining_work(lambda prof: 1.0 if prof is None else prof.mean_output_tokens) == {"draft": 1.0}
        fast.batch([{"topic": "rain"}, {"topic": "wind"}])
        assert lp.remaining_work(lambda prof: 1.0 if prof is None else prof.mean_output_tokens) == {"draft": 4.0}
        # the first batch's plans already carried it: draft calls with the review's work after them
        from helium_lc.runtime.scheduler import scheduler_for
        planned = {c.call_site[1]: c.downstream_s for rec in scheduler_for(pool).recent_plans() for c in rec.calls}
        assert planned["draft"] > 0 and planned["review"] == 0
    finally:
        pool.shutdown()
