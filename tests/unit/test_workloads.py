"""The paper's workloads as plain LangGraph apps: call counts, prompt prefixes, outputs, data.

Every workload runs on 2 inputs from the bundled corpus with a tiny deterministic chat model
(``RecordingChatModel``) whose reply is a hash of the prompt, so downstream prompts can be checked
for the exact upstream replies. No engine, no helium_lc.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from examples.workloads import WORKLOADS, data, stocks  # noqa: E402
from examples.workloads import (  # noqa: E402
    debate, iterative, mapred, parallel, prefix_sweep, reflect, trading)
from examples.workloads._common import resolve_params  # noqa: E402


class RecordingChatModel(BaseChatModel):
    """Replies ``reply-<hash of prompt> Answer: <n>`` and records every prompt it was sent."""

    calls: list[list[BaseMessage]] = []
    lock: Any = None

    def model_post_init(self, __context: Any) -> None:
        self.calls = []
        self.lock = threading.Lock()

    @property
    def _llm_type(self) -> str:
        return "recording-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        with self.lock:
            self.calls.append(list(messages))
        digest = hashlib.sha1(render(messages).encode()).hexdigest()
        text = f"reply-{digest[:10]} Answer: {int(digest[:4], 16) % 3}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def render(messages: list[BaseMessage]) -> str:
    return "\n".join(f"<{m.type}>{m.content}" for m in messages)


def run(module: Any, **params: Any) -> tuple[RecordingChatModel, list[dict[str, Any]]]:
    """Build ``module`` over a fresh recorder and run it on 2 bundled inputs."""
    import asyncio

    llm = RecordingChatModel()
    graph = module.build(llm, **params)
    inputs = module.make_inputs(2, seed=0, data_source="bundled", **params) \
        if "data_source" in module.DEFAULTS else module.make_inputs(2, seed=0, **params)
    outputs = asyncio.run(graph.abatch(inputs))
    return llm, outputs


def system_of(call: list[BaseMessage]) -> str:
    return call[0].content if call[0].type == "system" else ""


# ----------------------------------------------------------------------------- workloads

def test_mapred_experts_share_system_context_and_question() -> None:
    # 3 experts + 1 summariser per input, 2 inputs -> 8 calls.
    llm, outs = run(mapred, num_experts=3)
    assert mapred.num_llm_calls(num_experts=3) == 4
    assert len(llm.calls) == 8
    experts = [c for c in llm.calls if system_of(c) == mapred.SYSTEM_PROMPT]
    assert len(experts) == 6
    # Per input, the 3 expert prompts differ only after "Answer as the panel's".
    for out in outs:
        mine = [c for c in experts if out["question"] in c[1].content]
        assert len(mine) == 3
        heads = {c[1].content.split("Answer as the panel's")[0] for c in mine}
        assert len(heads) == 1 and out["context"] in heads.pop()
        # The summariser's prompt lists all three expert replies; its reply is the summary.
        assert sorted(a["index"] for a in out["answers"]) == [0, 1, 2]
        summary_call = [c for c in llm.calls if system_of(c) == mapred.SUMMARY_SYSTEM
                        and out["question"] in c[1].content]
        assert len(summary_call) == 1
        assert all(a["text"] in summary_call[0][1].content for a in out["answers"])
        assert out["summary"].startswith("reply-")


def test_mapred_sync_variant_has_def_nodes_and_the_same_calls_and_outputs() -> None:
    import inspect

    graph = mapred.build(RecordingChatModel(), num_experts=3, sync_nodes=True)
    assert not inspect.iscoroutinefunction(graph.builder.nodes["expert"].runnable.func)
    llm_async, outs_async = run(mapred, num_experts=3)
    llm_sync = RecordingChatModel()
    inputs = mapred.make_inputs(2, seed=0, data_source="bundled", num_experts=3)
    outs_sync = mapred.build(llm_sync, num_experts=3, sync_nodes=True).batch(inputs)
    assert outs_sync == outs_async
    assert sorted(map(render, llm_sync.calls)) == sorted(map(render, llm_async.calls))
    with pytest.raises(ValueError, match="sync_nodes must be True or False"):
        mapred.build(RecordingChatModel(), sync_nodes="yes")


def test_debate_rounds_extend_each_agents_conversation() -> None:
    # 3 agents x 2 rounds = 6 calls per input, 12 in all.
    llm, outs = run(debate, num_agents=3, num_rounds=2)
    assert debate.num_llm_calls() == 6 and len(llm.calls) == 12
    for out in outs:
        mine = [c for c in llm.calls if out["question"] in c[1].content]
        first = [c for c in mine if len(c) == 2]    # round 1: system + question
        second = [c for c in mine if len(c) == 4]   # round 2: + own answer + others' answers
        assert len(first) == 3 and len(second) == 3
        for call in second:
            # Round 2 of agent k starts with exactly its round-1 prompt (same conversation).
            assert any(render(call[:2]) == render(f) for f in first)
            assert call[2].type == "ai" and call[2].content.startswith("reply-")
        assert len(out["final_answers"]) == 3 and out["consensus"] in {"0", "1", "2"}


def test_reflect_critics_see_draft_and_revision_extends_draft() -> None:
    # draft + 2 critics + revise = 4 calls per input.
    llm, outs = run(reflect)
    assert len(llm.calls) == 8
    for out in outs:
        critic_calls = [c for c in llm.calls if system_of(c) in reflect.CRITICS.values()
                        and out["question"] in c[1].content]
        assert len(critic_calls) == 2
        assert all(out["draft"] in c[1].content for c in critic_calls)
        revise = [c for c in llm.calls if len(c) == 4 and out["question"] in c[1].content]
        assert len(revise) == 1
        assert system_of(revise[0]) == reflect.EXPERT_SYSTEM and revise[0][2].content == out["draft"]
        assert out["final"].startswith("reply-")


def test_iterative_is_a_chain_over_chunks() -> None:
    # 4 chunks -> 4 sequential calls per input; call k+1 carries call k's summary.
    llm, outs = run(iterative, num_chunks=4, chunk_words=30)
    assert len(llm.calls) == 8
    assert all(system_of(c) == iterative.SYSTEM_PROMPT for c in llm.calls)
    for out in outs:
        mine = [c for c in llm.calls if f"Document: {out['title']}" in c[1].content]
        assert [("Part %d of 4" % (k + 1)) in c[1].content for k, c in enumerate(mine)] == [True] * 4
        assert out["index"] == 4 and out["summary"].startswith("reply-")


def test_parallel_fans_out_expert_by_chunk() -> None:
    # 2 experts x 3 chunks + 1 writer = 7 calls per input.
    llm, outs = run(parallel, num_experts=2, num_chunks=3, chunk_words=20)
    assert parallel.num_llm_calls(num_experts=2, num_chunks=3) == 7 and len(llm.calls) == 14
    for out in outs:
        for chunk in out["chunks"]:
            same = [c for c in llm.calls
                    if chunk in c[1].content and system_of(c) == parallel.ANALYST_SYSTEM]
            assert len(same) == 2   # both experts read this chunk, behind the same system prompt
            assert len({c[1].content.split("You are the")[0] for c in same}) == 1
        assert len(out["notes"]) == 6 and out["report"].startswith("reply-")


def test_trading_defaults_make_88_calls_over_19_roles() -> None:
    # 4 analysts + 2 (bull, bear) + 1 manager + 8 * (trader + 3*3 risk turns) + 1 fund manager = 88.
    llm, outs = run(trading)
    assert trading.num_llm_calls() == 88 and len(llm.calls) == 176
    assert len(trading.agent_roles()) == 19
    # Roles are told apart by their system prompt; traders share one and differ by style.
    systems = {system_of(c) for c in llm.calls}
    assert len(systems) == 4 + 2 + 1 + 1 + 3 + 1
    for out in outs:
        assert len(out["trader_plans"]) == 8 and len(out["risk_reviews"]) == 8
        assert all(len(r["debate"]) == 9 for r in out["risk_reviews"])
        assert out["final_decision"].startswith("reply-")
        assert set(out["reports"]) == {"market", "news", "fundamentals", "sentiment"}


def test_trading_small_with_judge_counts() -> None:
    # R=2, T=2, K=1, judge: 4 + 4 + 1 + 2 * (1 + 3 + 1) + 1 = 20 calls per input.
    params = dict(num_invest_rounds=2, num_traders=2, num_risk_rounds=1, risk_judge_per_trader=True)
    llm, outs = run(trading, **params)
    assert trading.num_llm_calls(**params) == 20 and len(llm.calls) == 40
    judge_calls = [c for c in llm.calls if system_of(c) == trading.RISK_JUDGE_SYSTEM]
    assert len(judge_calls) == 4
    assert all(len(o["invest_debate"]) == 4 for o in outs)


@pytest.mark.parametrize("pattern,expected", [("mapred", 4), ("debate", 6)])
def test_prefix_sweep_patterns_and_lengths(pattern: str, expected: int) -> None:
    params = dict(pattern=pattern, num_agents=3, num_rounds=2, system_tokens=40,
                  context_tokens=20, question_tokens=8)
    llm, outs = run(prefix_sweep, **params)
    assert prefix_sweep.num_llm_calls(**params) == expected and len(llm.calls) == 2 * expected
    # Every call starts with the one static system prompt: 40 tokens ~ 30 filler words.
    system = prefix_sweep.system_prompt(40)
    assert all(system_of(c) == system for c in llm.calls)
    assert len(system.split("Background notes:")[1].split()) == 30
    assert all(o["result"].startswith("reply-") for o in outs)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_workload_counts_match_formula_and_inputs_are_deterministic(name: str) -> None:
    module = WORKLOADS[name]
    small = {"trading": {"num_traders": 2, "num_risk_rounds": 1}}.get(name, {})
    llm, outs = run(module, **small)
    assert len(llm.calls) == 2 * module.num_llm_calls(**small)
    assert len(outs) == 2 and all(outs)
    kwargs = {"data_source": "bundled"} if "data_source" in module.DEFAULTS else {}
    assert module.make_inputs(3, seed=5, **kwargs) == module.make_inputs(3, seed=5, **kwargs)


# ----------------------------------------------------------------------------- params and data

def test_resolve_params_rejects_unknown_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown parameter.*num_expert"):
        mapred.build(RecordingChatModel(), num_expert=3)
    with pytest.raises(ValueError, match="num_rounds must be a positive integer"):
        resolve_params("debate", debate.DEFAULTS, {"num_rounds": 0})
    with pytest.raises(ValueError, match="at most 14"):
        mapred.build(RecordingChatModel(), num_experts=15)
    with pytest.raises(ValueError, match="data_source"):
        debate.make_inputs(1, data_source="hub")


def test_bundled_loaders_are_seeded_and_say_their_source() -> None:
    a, b = data.load_qa(5, seed=1, prefer="bundled"), data.load_qa(5, seed=1, prefer="bundled")
    assert a == b and {i.source for i in a} == {data.BUNDLED_SOURCE}
    assert data.load_qa(5, seed=2, prefer="bundled") != a
    # The bundled corpus has 12 math problems: asking for 13 repeats one.
    math = data.load_math(13, prefer="bundled")
    assert len({m.question for m in math}) == 12
    snapshots = stocks.load_stocks(2, num_days=5, prefer="bundled")
    assert all(len(s.rows) == 5 and s.source == "bundled:synthetic-prices" for s in snapshots)
    assert all(r.low <= min(r.open, r.close) <= max(r.open, r.close) <= r.high
               for s in snapshots for r in s.rows)
    docs = data.load_documents(2, min_words=400, prefer="bundled")
    assert all(d.num_words >= 400 for d in docs)


def test_auto_loaders_use_the_source_they_report() -> None:
    sources = data.available_sources()
    assert data.load_qa(1, prefer="auto")[0].source.startswith(sources["load_qa"].split(":")[0])
    assert data.load_math(1, prefer="auto")[0].source == sources["load_math"]
    assert data.load_news(1, prefer="auto")[0].source == sources["load_news"]
    assert stocks.load_stocks(1, num_days=3, prefer="auto")[0].source == sources["load_stocks"]


def test_chunk_words_and_rst_cleaning() -> None:
    # 7 words into 3 chunks of 3: the text wraps around to fill the last chunk.
    assert data.chunk_words("a b c d e f g", 3, 3) == ["a b c", "d e f", "g a b"]
    rst = "Title\n=====\n\nUse :func:`len` and ``x``, see `docs <http://x>`_.\n\n.. note::\n   hidden\n"
    assert data.rst_to_text(rst) == "Title\n\nUse len and x, see docs."


def test_trading_next_day_keeps_the_rows_and_the_static_data_and_moves_prices_and_news() -> None:
    day1, day2 = (trading.make_inputs(3, seed=4, data_source="bundled", **d) for d in trading.DAY2_INPUTS)
    assert [r["ticker"] for r in day1] == [r["ticker"] for r in day2]
    for a, b in zip(day1, day2):
        assert a["fundamentals"] == b["fundamentals"] and a["date"] < b["date"]
        assert a["price_table"].splitlines()[2:] == b["price_table"].splitlines()[1:-1]  # one row later
        assert a["news"] != b["news"]
    assert trading.make_inputs(3, seed=4, data_source="bundled") == day1  # day 0 is the default
    with pytest.raises(ValueError, match="day must be an integer >= 0"):
        trading.make_inputs(1, data_source="bundled", day=-1)
