"""HeliumChatModel end to end on the real engine: tools, structured output, streaming in a graph,
and accelerate() sending exactly the prompts the plain run sends."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import BaseModel

from helium_lc import HeliumChatModel, accelerate

pytestmark = pytest.mark.engine


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_invoke_reports_usage_with_cached_tokens(fresh_pool):
    llm = HeliumChatModel(max_tokens=8)
    long_q = "Background: " + "the quick brown fox jumps over the lazy dog. " * 10 + "Question: what jumps?"
    first = llm.invoke(long_q)
    second = llm.invoke(long_q)
    assert first.content and first.usage_metadata["input_tokens"] > 64
    assert first.usage_metadata["input_token_details"]["cache_read"] == 0
    assert second.usage_metadata["input_token_details"]["cache_read"] >= 64  # prefix cache hit
    assert first.response_metadata["model_name"] == fresh_pool.model_path.name


def test_forced_tool_call_is_parsed_into_tool_calls(fresh_pool):
    msg = HeliumChatModel(max_tokens=40).bind_tools([add], tool_choice="add").invoke("What is 2 + 3?")
    assert len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call["name"] == "add" and set(call["args"]) == {"a", "b"}
    assert call["id"].startswith("call_")
    assert add.invoke(call["args"]) == call["args"]["a"] + call["args"]["b"]


@tool
def write_story(story: str, title: str) -> str:
    """Write a very long story of at least 2000 words."""
    return title


def test_forced_call_cut_off_by_max_tokens_is_retried_with_bounded_strings(fresh_pool):
    # The skeleton {"arguments": {"story": "", "title": ""}, "name": "write_story"} takes ~25 of
    # the 40 tokens, so the unbounded first attempt (a long story) is cut off; the retry bounds
    # both strings so the call completes instead of coming back with tool_calls=[].
    msg = HeliumChatModel(max_tokens=40).bind_tools([write_story], tool_choice="any").invoke(
        "Write me a long story about a dragon.")
    assert [c["name"] for c in msg.tool_calls] == ["write_story"]
    assert isinstance(msg.tool_calls[0]["args"]["story"], str)
    assert fresh_pool.stats()["num_requests"] == 2  # the cut-off attempt and its bounded retry


def test_forced_call_that_cannot_fit_raises_an_error_naming_max_tokens(fresh_pool):
    from helium_lc.engine.types import GuidedOutputTruncatedError

    with pytest.raises(GuidedOutputTruncatedError, match="max_tokens=8"):
        HeliumChatModel(max_tokens=8).bind_tools([write_story], tool_choice="write_story").invoke("A story")


def test_forced_call_to_a_tool_whose_schema_uses_defs(fresh_pool):
    # A hand-written (or MCP) tool schema with $defs/$ref: the refs must still resolve.
    plan = {"type": "function", "function": {"name": "plan", "description": "Plan a trip", "parameters": {
        "type": "object", "properties": {"stops": {"type": "array", "items": {"$ref": "#/$defs/Stop"}}},
        "required": ["stops"], "$defs": {"Stop": {"type": "object", "properties": {
            "city": {"type": "string"}, "nights": {"type": "integer"}}, "required": ["city", "nights"]}}}}}
    msg = HeliumChatModel(max_tokens=120).bind_tools([plan], tool_choice="plan").invoke("Plan a trip to Rome")
    assert [c["name"] for c in msg.tool_calls] == ["plan"]
    stops = msg.tool_calls[0]["args"]["stops"]
    assert all(set(s) == {"city", "nights"} and isinstance(s["nights"], int) for s in stops)


def test_structured_output_follows_the_schema(fresh_pool):
    class City(BaseModel):
        name: str
        country: str

    out = HeliumChatModel(max_tokens=60).with_structured_output(City).invoke(
        "Paris is the capital of France. Give the city and its country as JSON.")
    assert isinstance(out, City) and out.name and out.country


def test_tokens_stream_inside_a_langgraph_graph(fresh_pool):
    llm = HeliumChatModel(max_tokens=12)

    def chat(state: MessagesState):
        return {"messages": [llm.invoke(state["messages"])]}

    app = StateGraph(MessagesState).add_node("chat", chat).add_edge(START, "chat").add_edge("chat", END).compile()
    chunks = [m for m, meta in app.stream({"messages": [HumanMessage("Count to five.")]}, stream_mode="messages")
              if meta["langgraph_node"] == "chat"]
    assert len(chunks) >= 3 and all(isinstance(c, AIMessageChunk) for c in chunks)
    text = "".join(str(c.content) for c in chunks)
    final = app.invoke({"messages": [HumanMessage("Count to five.")]})["messages"][-1]
    assert text.strip() and final.usage_metadata["output_tokens"] >= 1


@pytest.mark.parametrize("sync", [True, False])
def test_tokens_stream_from_an_accelerated_graph_in_messages_mode(fresh_pool, sync):
    llm = HeliumChatModel(max_tokens=12)

    def chat(state: MessagesState):
        return {"messages": [llm.invoke(state["messages"])]}

    async def achat(state: MessagesState):
        return {"messages": [await llm.ainvoke(state["messages"])]}

    app = StateGraph(MessagesState).add_node("chat", chat if sync else achat).add_edge(START, "chat").compile()
    fast = accelerate(app, prompt_cache=False)
    x = {"messages": [HumanMessage("Count to five.")]}
    if sync:
        events = list(fast.stream(x, stream_mode=["messages", "values"]))
    else:
        async def collect():
            return [e async for e in fast.astream(x, stream_mode=["messages", "values"])]
        events = asyncio.run(collect())
    chunks = [m for mode, (m, meta) in (e for e in events if e[0] == "messages") if m.content]
    final = [v for mode, v in events if mode == "values"][-1]["messages"][-1]
    assert len(chunks) >= 3 and all(isinstance(c, AIMessageChunk) for c in chunks)  # per token, not one
    assert "".join(str(c.content) for c in chunks) == final.content
    assert final.usage_metadata["output_tokens"] == 12 or final.response_metadata["finish_reason"] == "stop"
    stats = fast.last_run_stats()
    assert stats.num_engine_requests == 1 and stats.num_llm_calls_sent == 1  # through the scheduler


class RS(TypedDict):
    question: str
    answers: list[str]
    summary: str


def _build(llm):
    async def expert(state: RS):
        outs = await asyncio.gather(*(llm.ainvoke(f"You are expert {i}. Answer briefly: {state['question']}")
                                      for i in range(2)))
        return {"answers": [str(o.content) for o in outs]}

    async def summarise(state: RS):
        msg = await llm.ainvoke("Combine: " + " | ".join(state["answers"]))
        return {"summary": str(msg.content)}

    g = StateGraph(RS)
    g.add_node("expert", expert).add_node("summarise", summarise)
    g.add_edge(START, "expert").add_edge("expert", "summarise").add_edge("summarise", END)
    return g.compile()


def test_accelerated_run_sends_only_prompts_the_plain_run_would_send(fresh_pool, monkeypatch):
    """Fidelity on the real engine: record every (prompt -> answer) of the plain run; the accelerated
    run's prompts, given the answers it got, must each be a prompt the plain run would send."""
    sent: list[tuple[int, ...]] = []
    orig = HeliumChatModel.build_request

    def spy(self, *a, **k):
        req, tools = orig(self, *a, **k)
        sent.append(req.prompt_token_ids)
        return req, tools

    monkeypatch.setattr(HeliumChatModel, "build_request", spy)
    llm = HeliumChatModel(max_tokens=10)
    app = _build(llm)
    inputs = [{"question": q, "answers": []} for q in ("What is rain?", "What is snow?", "What is rain?")]
    plain = asyncio.run(app.abatch(inputs))
    plain_prompts = set(sent)
    sent.clear()
    fast = accelerate(app)
    accel = fast.batch(inputs)
    stats = fast.last_run_stats()
    # The duplicate input row is served once (dedup or cache): fewer calls than requested.
    assert stats.num_llm_calls_requested == 9
    assert stats.num_llm_calls_sent < stats.num_llm_calls_requested
    # Map-phase prompts depend only on the input: they must equal the plain run's exactly.
    map_prompts = {p for p in sent if len(p) < min(len(q) for q in plain_prompts) + 40}
    assert {p for p in sent if p in plain_prompts} >= {p for p in map_prompts if p in plain_prompts}
    # Every accelerated summarise prompt is the one the plain graph would build from the answers
    # the accelerated run received (replay the plain graph logic on the accelerated answers).
    for row in accel:
        expected = fresh_pool.apply_chat_template([{"role": "user", "content": "Combine: " + " | ".join(row["answers"])}])
        assert tuple(expected) in set(sent)
    assert [r["question"] for r in accel] == [r["question"] for r in plain]


