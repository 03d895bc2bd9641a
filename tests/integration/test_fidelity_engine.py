"""Fidelity on the real engine (issue 3, check (b)), for every example graph.

vLLM's greedy text can change with batch composition, so the plain and accelerated runs cannot be
compared by text. Instead: run the graph accelerated on the real engine and record, for every
distinct prompt that reached the model, the answer it got; then run the *plain* graph with a
replay model that answers each prompt from that record (a prompt it has no answer for fails the
test). The two runs must send the same set of distinct prompts and end in equal states: every
prompt the accelerated run sent is one the plain run sends given the same answers, and nothing
the plain run needs is skipped.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from helium_lc import HeliumChatModel, HeliumConfig, accelerate
from helium_lc.cache.keys import canonical_json, canonical_messages_text
from helium_lc.testing import normalize_state
from tests.fidelity.graphs import GRAPHS

pytestmark = pytest.mark.engine


def prompt_key(messages: list[BaseMessage], stop: Any, kwargs: dict[str, Any]) -> str:
    extra = {k: v for k, v in kwargs.items() if k in ("tools", "tool_choice", "json_schema", "response_format")}
    return canonical_messages_text(messages) + "\n" + canonical_json({"stop": stop, **extra})


class RecordingModel(HeliumChatModel):
    """HeliumChatModel that records (prompt -> answer) for every call that reaches the engine."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        object.__setattr__(self, "_record", {})
        object.__setattr__(self, "_lock", threading.Lock())

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        with self._lock:
            self._record[prompt_key(messages, stop, kwargs)] = result.generations[0].message
        return result

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        result = await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        with self._lock:
            self._record[prompt_key(messages, stop, kwargs)] = result.generations[0].message
        return result


class ReplayModel(HeliumChatModel):
    """Same interface (tools, structured output) but answers from a recorded run, no engine."""

    def __init__(self, record: dict[str, AIMessage], **kw: Any) -> None:
        super().__init__(**kw)
        object.__setattr__(self, "_record", record)
        object.__setattr__(self, "_asked", set())

    def _answer(self, messages, stop, kwargs) -> ChatResult:
        key = prompt_key(messages, stop, kwargs)
        self._asked.add(key)
        if key not in self._record:
            raise AssertionError("the plain run sends a prompt the accelerated run never sent:\n" + key[:2000])
        return ChatResult(generations=[ChatGeneration(message=self._record[key])])

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        return self._answer(messages, stop, kwargs)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        return self._answer(messages, stop, kwargs)


def _outcome(x: Any) -> Any:
    return ("error", type(x).__name__) if isinstance(x, BaseException) else normalize_state(x)


#: Output tokens per graph: 12 keeps the runs short; a Verdict's JSON needs more, or every
#: classify call ends in GuidedOutputTruncatedError and the graph's second node never runs.
MAX_TOKENS = {"structured_output": 48}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_accelerated_prompts_are_the_plain_prompts(fresh_pool, name):
    case = GRAPHS[name]
    inputs = case.inputs()[:3]
    configs = [case.config(i) for i in range(len(inputs))]
    max_tokens = MAX_TOKENS.get(name, 12)
    recorder = RecordingModel(max_tokens=max_tokens)
    fast = accelerate(case.build(recorder), config=HeliumConfig(progress=False))
    accelerated = fast.batch(inputs, configs, return_exceptions=True)
    assert recorder._record, "the accelerated run sent nothing to the engine"
    if name in MAX_TOKENS:  # given enough tokens, guided output always completes
        assert not any(isinstance(x, BaseException) for x in accelerated), accelerated

    replay = ReplayModel(recorder._record, max_tokens=max_tokens)
    plain_app = case.build(replay)
    plain = asyncio.run(plain_app.abatch(inputs, [case.config(i) for i in range(len(inputs))],
                                         return_exceptions=True))

    assert set(replay._asked) == set(recorder._record)
    assert [_outcome(x) for x in accelerated] == [_outcome(x) for x in plain]
    stats = fast.last_run_stats()
    assert stats.num_llm_calls_sent <= stats.num_llm_calls_requested
