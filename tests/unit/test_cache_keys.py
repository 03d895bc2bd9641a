"""Prompt-cache keys: equal exactly when the calls must give the same answer."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from helium_lc.cache.keys import (
    CacheKey,
    UncacheableError,
    canonical_messages_text,
    chat_call_key,
    is_deterministic,
    model_identity,
    token_request_key,
)
from helium_lc.engine.types import SamplingSpec
from helium_lc.testing import DeterministicChatModel

GREEDY = {"temperature": 0}


@tool
def lookup(city: str) -> str:
    """Look a city up."""
    return city


def _conversation(ids: tuple[str, str, str], usage_tokens: int = 3) -> list:
    # A tool round trip, as LangGraph would hold it: every message has a (random) id.
    return [
        HumanMessage("weather in Oslo?", id=ids[0]),
        AIMessage("", id=ids[1], tool_calls=[{"name": "lookup", "args": {"city": "Oslo"},
                                              "id": "call_1"}],
                  response_metadata={"model_name": "x", "created": usage_tokens},
                  usage_metadata={"input_tokens": usage_tokens, "output_tokens": 1,
                                  "total_tokens": usage_tokens + 1}),
        ToolMessage("rainy", tool_call_id="call_1", id=ids[2], artifact={"raw": usage_tokens}),
    ]


def test_ids_and_metadata_do_not_change_the_key() -> None:
    # Same conversation, different message ids, response/usage metadata and tool artifact.
    k1 = chat_call_key("m", _conversation(("a", "b", "c"), usage_tokens=3), params=GREEDY)
    k2 = chat_call_key("m", _conversation(("x", "y", "z"), usage_tokens=9), params=GREEDY)
    assert k1 == k2
    assert '"a"' not in k1.canonical_text and "usage" not in k1.canonical_text


@pytest.mark.parametrize("change", ["content", "tool_args", "tool_call_id", "role"])
def test_every_sent_part_changes_the_key(change: str) -> None:
    # Start from one conversation and change one thing the provider would send.
    base = _conversation(("a", "b", "c"))
    other = _conversation(("a", "b", "c"))
    if change == "content":
        other[2] = ToolMessage("sunny", tool_call_id="call_1")
    elif change == "tool_args":
        other[1] = AIMessage("", tool_calls=[{"name": "lookup", "args": {"city": "Bergen"},
                                              "id": "call_1"}])
    elif change == "tool_call_id":
        other[2] = ToolMessage("rainy", tool_call_id="call_2")
    else:  # the same text as a system message instead of a human one
        other[0] = SystemMessage("weather in Oslo?")
    assert chat_call_key("m", base, params=GREEDY) != chat_call_key("m", other, params=GREEDY)


def test_model_identity_and_params_are_part_of_the_key() -> None:
    msgs = [HumanMessage("hi")]
    k = chat_call_key("m1", msgs, params=GREEDY)
    # Another model name, another temperature, another max_tokens: three new keys.
    assert chat_call_key("m2", msgs, params=GREEDY) != k
    assert chat_call_key("m1", msgs, params={"temperature": 0.5}) != k
    assert chat_call_key("m1", msgs, params={"temperature": 0, "max_tokens": 5}) != k
    # Stop sequences matter too.
    assert chat_call_key("m1", msgs, params=GREEDY, stop=["\n"]) != k


def test_key_reads_the_chat_model_fields() -> None:
    # A chat model object gives its class + model_name, and its temperature decides determinism.
    greedy = DeterministicChatModel(model_name="a")
    ident = model_identity(greedy)
    assert ident["class"].endswith("DeterministicChatModel") and ident["model_name"] == "a"
    assert chat_call_key(greedy, "hi").is_deterministic
    assert not chat_call_key(DeterministicChatModel(temperature=0.5), "hi").is_deterministic
    assert chat_call_key(greedy, "hi") != chat_call_key(DeterministicChatModel(model_name="b"), "hi")


def test_tools_are_canonical_and_tracing_kwargs_ignored() -> None:
    msgs = [HumanMessage("hi")]
    k_tool = chat_call_key("m", msgs, params=GREEDY, call_kwargs={"tools": [lookup]})
    # The same tool given as its OpenAI schema dict gives the same key...
    k_dict = chat_call_key("m", msgs, params=GREEDY,
                           call_kwargs={"tools": [convert_to_openai_tool(lookup)]})
    assert k_tool == k_dict
    # ...no tools or a forced tool choice give other keys...
    assert chat_call_key("m", msgs, params=GREEDY) != k_tool
    assert chat_call_key("m", msgs, params=GREEDY,
                         call_kwargs={"tools": [lookup], "tool_choice": "any"}) != k_tool
    # ...and tracing-only kwargs change nothing.
    assert chat_call_key("m", msgs, params=GREEDY,
                         call_kwargs={"tools": [lookup], "tags": ["t"], "stream": True}) == k_tool


def test_sampling_spec_defines_params_and_determinism() -> None:
    msgs = [HumanMessage("hi")]
    k = chat_call_key("m", msgs, sampling=SamplingSpec(max_tokens=8))
    assert k.is_deterministic
    assert k != chat_call_key("m", msgs, sampling=SamplingSpec(max_tokens=9))
    assert not chat_call_key("m", msgs, sampling=SamplingSpec(temperature=0.7)).is_deterministic


@pytest.mark.parametrize("params, expected", [
    ({"temperature": 0}, True),
    ({"temperature": 0.0, "seed": 1}, True),
    ({}, False),                                    # provider default samples
    ({"temperature": None}, False),
    ({"temperature": 0.7, "seed": 1}, False),       # a seed is best effort only
    ({"temperature": 0.7, "top_k": 1}, True),       # top_k=1 is greedy
    ({"do_sample": False}, True),
    ({"temperature": False}, False),                # a bool is not a temperature
])
def test_is_deterministic_is_conservative(params: dict, expected: bool) -> None:
    assert is_deterministic(params) is expected


def test_token_request_key() -> None:
    spec = SamplingSpec(max_tokens=4)
    k = token_request_key("m", spec, [1, 2, 3])
    # A tuple of the same ids gives the same key; one different id does not.
    assert k == token_request_key("m", spec, (1, 2, 3))
    assert k != token_request_key("m", spec, (1, 2, 4))
    assert k != token_request_key("m", SamplingSpec(max_tokens=5), (1, 2, 3))
    assert not token_request_key("m", SamplingSpec(temperature=1.0), (1,)).is_deterministic


def test_canonical_text_is_independent_of_dict_order() -> None:
    a = AIMessage("", tool_calls=[{"name": "f", "args": {"x": 1, "y": 2}, "id": "c"}])
    b = AIMessage("", tool_calls=[{"name": "f", "args": {"y": 2, "x": 1}, "id": "c"}])
    assert canonical_messages_text([a]) == canonical_messages_text([b])


def test_uncacheable_values_raise_a_clear_error() -> None:
    msg = HumanMessage("hi", additional_kwargs={"handle": object()})
    with pytest.raises(UncacheableError, match="no canonical JSON form"):
        chat_call_key("m", [msg], params=GREEDY)


def test_cache_key_validates_digest() -> None:
    with pytest.raises(ValueError, match="64-char"):
        CacheKey("abc", "text", True)


def test_int_and_float_params_give_one_key() -> None:
    # temperature=0 and temperature=0.0 are the same setting (found by the cache suite).
    msgs = [HumanMessage("hi")]
    assert chat_call_key("m", msgs, params={"temperature": 0}) == \
        chat_call_key("m", msgs, params={"temperature": 0.0})
    assert chat_call_key("m", msgs, sampling=SamplingSpec(temperature=0)) == \
        chat_call_key("m", msgs, sampling=SamplingSpec(temperature=0.0))
    assert token_request_key("m", SamplingSpec(temperature=0), [1]) == \
        token_request_key("m", SamplingSpec(temperature=0.0), [1])
