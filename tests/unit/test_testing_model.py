"""DeterministicChatModel: an answer that is a pure function of the prompt."""

from __future__ import annotations

import asyncio
import time
from typing import Literal, Optional

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field, ValidationError

from helium_lc.testing import DeterministicChatModel, instance_from_schema, normalize_state


@tool
def lookup_capital(country: str) -> str:
    """Return the capital of a country."""
    return f"capital of {country}"


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


class Verdict(BaseModel):
    label: Literal["positive", "negative"]
    confidence: int = Field(ge=0, le=100)
    reason: str
    tags: list[str]
    note: Optional[str] = None


def test_answer_is_a_pure_function_of_the_prompt() -> None:
    m1, m2 = DeterministicChatModel(), DeterministicChatModel()
    # Same prompt on two model objects: same text; the echo shows the question's first words.
    a = m1.invoke([SystemMessage("Be brief."), HumanMessage("What is the capital of Peru?", id="1")])
    b = m2.invoke([SystemMessage("Be brief."), HumanMessage("What is the capital of Peru?", id="2")])
    assert a.content == b.content
    assert a.content.startswith("answer-") and a.content.endswith("re: What is the capital of Peru?")
    # One changed character (here in the system message) gives another hash.
    c = m1.invoke([SystemMessage("Be brief!"), HumanMessage("What is the capital of Peru?")])
    assert c.content != a.content


def test_sync_async_and_streaming_agree() -> None:
    m = DeterministicChatModel()
    prompt = "Tell me a fact about owls please"
    text = m.invoke(prompt).content
    assert asyncio.run(m.ainvoke(prompt)).content == text
    chunks = list(m.stream(prompt))
    assert len(chunks) > 3 and "".join(c.content for c in chunks) == text

    async def astream_text() -> str:
        return "".join([c.content async for c in m.astream(prompt)])

    assert asyncio.run(astream_text()) == text
    assert m.num_calls == 4 and len(set(m.prompts)) == 1


def test_usage_metadata_counts_words() -> None:
    # Input: "one two three" = 3 words; output "answer-xxxxxxxx re: one two three" = 5 words.
    msg = DeterministicChatModel().invoke("one two three")
    assert msg.usage_metadata == {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}


def test_stop_sequences_truncate() -> None:
    m = DeterministicChatModel()
    full = m.invoke("alpha beta").content
    assert m.invoke("alpha beta", stop=[" re:"]).content == full.split(" re:")[0]


def test_bound_tools_give_one_tool_call_then_text() -> None:
    m = DeterministicChatModel().bind_tools([lookup_capital, multiply])
    # Step 1: the user asks -> one tool call, args valid for the chosen tool's schema.
    ask = HumanMessage("What is the capital of Peru?")
    first = m.invoke([ask])
    assert first.content == "" and len(first.tool_calls) == 1
    call = first.tool_calls[0]
    chosen = {"lookup_capital": lookup_capital, "multiply": multiply}[call["name"]]
    result = chosen.invoke(call["args"])   # the tool accepts the generated args
    # Step 2: the tool answered -> a text answer, no more tool calls (an agent loop ends).
    second = m.invoke([ask, first, ToolMessage(str(result), tool_call_id=call["id"])])
    assert second.tool_calls == [] and second.content.startswith("answer-")
    assert " after " in second.content
    # Step 3: the same prompt again gives the same call (same id: it is part of the answer).
    assert m.invoke([ask]).tool_calls == first.tool_calls


def test_tool_choice_forces_or_forbids() -> None:
    base = DeterministicChatModel()
    after_tool = [HumanMessage("hi"), AIMessage("", tool_calls=[
        {"name": "multiply", "args": {"a": 1, "b": 2}, "id": "c"}]),
        ToolMessage("2", tool_call_id="c")]
    forced = base.bind_tools([lookup_capital, multiply], tool_choice="multiply").invoke(after_tool)
    assert [c["name"] for c in forced.tool_calls] == ["multiply"]
    forbidden = base.bind_tools([lookup_capital], tool_choice="none").invoke("hi")
    assert forbidden.tool_calls == []
    with pytest.raises(ValueError, match="not among the bound tools"):
        base.bind_tools([lookup_capital], tool_choice="nope").invoke("hi")


def test_streamed_tool_call_equals_invoked_one() -> None:
    m = DeterministicChatModel().bind_tools([lookup_capital, multiply])
    total = None
    for chunk in m.stream("What is 6 times 7?"):
        total = chunk if total is None else total + chunk
    assert total.tool_calls == m.invoke("What is 6 times 7?").tool_calls


def test_structured_output_pydantic_and_json_schema() -> None:
    m = DeterministicChatModel()
    v1 = m.with_structured_output(Verdict).invoke("rate: great")
    v2 = m.with_structured_output(Verdict).invoke("rate: great")
    assert isinstance(v1, Verdict) and v1 == v2 and 0 <= v1.confidence <= 100
    schema = {"title": "Answer", "description": "An answer.", "type": "object",
              "properties": {"answer": {"type": "string"}, "score": {"type": "number"}},
              "required": ["answer"]}
    out = m.with_structured_output(schema).invoke("rate: great")
    assert set(out) == {"answer", "score"} and isinstance(out["answer"], str)


def test_sampled_calls_differ() -> None:
    m = DeterministicChatModel(temperature=0.8)
    assert m.invoke("same").content != m.invoke("same").content


def test_counts_across_threads_and_reset() -> None:
    # 20 calls through batch (a thread pool) with a small latency so they overlap.
    m = DeterministicChatModel(latency_s=0.02)
    start_s = time.monotonic()
    m.batch([f"q{i}" for i in range(20)])
    elapsed_s = time.monotonic() - start_s
    assert m.num_calls == 20 and len(set(m.prompts)) == 20
    assert elapsed_s < 20 * 0.02  # they ran concurrently
    m.reset()
    assert m.num_calls == 0 and m.prompts == []


def test_parameters_are_validated() -> None:
    with pytest.raises(ValidationError):
        DeterministicChatModel(temperature=-1)
    with pytest.raises(ValidationError):
        DeterministicChatModel(latency_s=-0.1)


def test_instance_from_schema_respects_constraints() -> None:
    schema = {
        "type": "object",
        "$defs": {"Inner": {"type": "object", "properties": {"flag": {"type": "boolean"}}}},
        "properties": {
            "n": {"type": "integer", "minimum": 3, "maximum": 4},
            "x": {"type": "number", "minimum": 1.0, "maximum": 2.0},
            "name": {"type": "string", "minLength": 20, "maxLength": 25},
            "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
            "inner": {"$ref": "#/$defs/Inner"},
            "maybe": {"anyOf": [{"type": "null"}, {"const": "c"}]},
        },
    }
    v = instance_from_schema(schema, "s")
    assert v["n"] in (3, 4) and 1.0 <= v["x"] <= 2.0
    assert 20 <= len(v["name"]) <= 25 and len(v["items"]) == 2
    assert isinstance(v["inner"]["flag"], bool) and v["maybe"] == "c"
    assert instance_from_schema(schema, "other")["name"] != v["name"]  # the seed matters
    assert instance_from_schema(schema, "s") == v


def test_normalize_state_strips_run_dependent_fields() -> None:
    a = {"messages": [AIMessage("x", id="1", response_metadata={"t": 1})], "n": 1}
    b = {"messages": [AIMessage("x", id="2", response_metadata={"t": 2})], "n": 1}
    assert normalize_state(a) == normalize_state(b)
    assert normalize_state(a) != normalize_state({"messages": [AIMessage("y")], "n": 1})
