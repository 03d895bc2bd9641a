"""ChatOpenAI served in-process by a WorkerPool through HeliumTransport (no engine, no network).

The pool holds one ``ScriptedWorker``: it decodes the prompt with the pool's tokenizer and
answers by rule (a forced tool JSON, a schema instance, a tool-call block when tools are
listed in the prompt, or a fixed sentence), one "token" per word, with a toy prefix cache
(block size 4) so that ``cached_tokens`` can be checked by hand.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, AsyncIterator, Callable, Sequence

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import BaseModel

from helium_lc.chat_model import HeliumChatModel
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.types import (EngineError, GenerationChunk, GenerationRequest, GenerationResult,
                                    WorkerStats)
from helium_lc.integrations.openai_protocol import TransportConfig
from helium_lc.integrations.openai_transport import (HeliumTransport, helium_chat_openai, patch_chat_openai,
                                                     route_openai)
from helium_lc.testing import instance_from_schema

PLAIN_ANSWER = "The answer is 3 ."
TOOL_ANSWER = 'Let me add. <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
BLOCK_SIZE = 4


class ScriptedWorker:
    """A ``Worker`` whose output is a rule of the prompt text; records every request."""

    worker_id = 0
    block_size = BLOCK_SIZE
    kv_capacity_tokens = 4096
    max_num_seqs = 8

    def __init__(self) -> None:
        self.decode: Callable[[Sequence[int]], str] = lambda ids: ""
        self.requests: list[GenerationRequest] = []
        self.fail_with: Exception | None = None
        self._seen: list[tuple[int, ...]] = []

    def reply(self, request: GenerationRequest) -> str:
        schema = request.sampling.json_schema
        if schema is not None:
            obj = json.loads(schema)
            name = obj.get("properties", {}).get("name", {}).get("const")
            if name is not None:  # a forced tool call: add(1, 2), or any arguments fitting the schema
                args = {"a": 1, "b": 2} if name == "add" else instance_from_schema(obj["properties"]["arguments"], "s")
                return json.dumps({"name": name, "arguments": args})
            return json.dumps(instance_from_schema(obj, "seed"))
        prompt = self.decode(request.prompt_token_ids)
        last_turn = prompt.rsplit("<|im_start|>", 2)[-2]
        if "<tools>" in prompt and not last_turn.startswith("tool"):
            return TOOL_ANSWER
        return PLAIN_ANSWER

    def _run(self, request: GenerationRequest) -> tuple[list[str], GenerationResult]:
        if self.fail_with is not None:
            raise self.fail_with
        self.requests.append(request)
        pieces = re.findall(r"\S+\s*", self.reply(request))
        kept = pieces[:request.sampling.max_tokens]
        ids = request.prompt_token_ids
        common = max((_common_prefix(ids, old) for old in self._seen), default=0)
        self._seen.append(ids)
        cached = min(common, len(ids) - 1) // BLOCK_SIZE * BLOCK_SIZE
        result = GenerationResult(
            request.request_id, "".join(kept), tuple(range(100, 100 + len(kept))), len(ids), cached,
            "length" if len(kept) < len(pieces) else "stop", self.worker_id)
        return kept, result

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return self._run(request)[1]

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        pieces, result = self._run(request)
        for i, piece in enumerate(pieces):
            yield GenerationChunk(request.request_id, piece, (100 + i,))
        yield GenerationChunk(request.request_id, "", (), result=result)

    async def warm(self, prompt_token_ids: Sequence[int]) -> GenerationResult:
        raise NotImplementedError("not used in these tests")

    async def abort(self, request_id: str) -> None:
        return None

    async def reset_prefix_cache(self) -> None:
        self._seen.clear()

    def stats(self) -> WorkerStats:
        return WorkerStats(worker_id=self.worker_id)

    async def shutdown(self) -> None:
        return None


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Answer(BaseModel):
    city: str
    population: int


@pytest.fixture(scope="module")
def module_pool() -> Any:
    worker = ScriptedWorker()
    pool = WorkerPool(workers=[worker])
    worker.decode = lambda ids: pool.tokenizer.decode(list(ids))
    yield pool, worker
    pool.shutdown()


@pytest.fixture()
def pool(module_pool: Any) -> WorkerPool:
    p, worker = module_pool
    worker.requests.clear()
    worker.fail_with = None
    asyncio.run(worker.reset_prefix_cache())
    return p


@pytest.fixture()
def worker(module_pool: Any) -> ScriptedWorker:
    return module_pool[1]


def helium_ids(pool: WorkerPool, messages: list[Any], **kwargs: Any) -> tuple[int, ...]:
    """The prompt HeliumChatModel would send for the same messages."""
    request, _ = HeliumChatModel(pool=pool, max_tokens=16).build_request(messages, **kwargs)
    return request.prompt_token_ids


def test_plain_invoke_returns_text_usage_and_cached_tokens(pool: WorkerPool, worker: ScriptedWorker) -> None:
    llm = helium_chat_openai(pool, max_tokens=16)
    # First call: the worker answers the fixed sentence (5 "tokens"); nothing was cached yet.
    first = llm.invoke("What is 1 + 2?")
    assert first.content == PLAIN_ANSWER
    n = len(helium_ids(pool, [HumanMessage("What is 1 + 2?")]))
    assert first.usage_metadata["input_tokens"] == n
    assert first.usage_metadata["output_tokens"] == 5
    assert first.usage_metadata["input_token_details"]["cache_read"] == 0
    assert first.response_metadata["finish_reason"] == "stop"
    # Same prompt again: the toy cache hits every full 4-token block but the last token.
    again = llm.invoke("What is 1 + 2?")
    assert again.usage_metadata["input_token_details"]["cache_read"] == (n - 1) // 4 * 4 > 0
    # max_tokens=2 cuts the answer after 2 words: finish_reason "length".
    short = helium_chat_openai(pool, max_tokens=2).invoke("What is 1 + 2?")
    assert short.content == "The answer " and short.response_metadata["finish_reason"] == "length"
    # Sampling parameters reach the engine: temperature, seed and stop from ChatOpenAI's fields.
    helium_chat_openai(pool, max_tokens=16, temperature=0.5, seed=7, stop=["\n"]).invoke("Hi")
    spec = worker.requests[-1].sampling
    assert (spec.temperature, spec.seed, spec.stop, spec.max_tokens) == (0.5, 7, ("\n",), 16)


def test_prompt_ids_equal_what_helium_chat_model_sends(pool: WorkerPool, worker: ScriptedWorker) -> None:
    # A whole tool round trip: system, question, assistant tool call, tool result, with tools bound.
    messages = [SystemMessage("Be brief."), HumanMessage("Add 1 and 2."),
                AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "call_1"}]),
                ToolMessage("3", tool_call_id="call_1")]
    helium_chat_openai(pool, max_tokens=16).bind_tools([add]).invoke(messages)
    assert worker.requests[-1].prompt_token_ids == helium_ids(pool, messages, tools=[convert_to_openai_tool(add)])
    # Plain conversation, no tools.
    plain = [SystemMessage("You are terse."), HumanMessage("Hello"), AIMessage("Hi!"), HumanMessage("Bye")]
    helium_chat_openai(pool, max_tokens=16).invoke(plain)
    assert worker.requests[-1].prompt_token_ids == helium_ids(pool, plain)
    # An o-series model name makes langchain-openai send role "developer": still the same prompt.
    helium_chat_openai(pool, model="o3-mini", max_tokens=16).invoke(plain)
    assert worker.requests[-1].prompt_token_ids == helium_ids(pool, plain)


def test_tool_calls_arrive_through_chat_openai_parsing(pool: WorkerPool, worker: ScriptedWorker) -> None:
    llm = helium_chat_openai(pool, max_tokens=32).bind_tools([add])
    msg = llm.invoke("Add 1 and 2.")
    # The <tool_call> block became an OpenAI tool call, then ChatOpenAI's own AIMessage.tool_calls.
    assert msg.content == "Let me add."
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("add", {"a": 1, "b": 2})]
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    # Same call id as HeliumChatModel gives for the same prompt and output (deterministic ids).
    native = HeliumChatModel(pool=pool, max_tokens=32).bind_tools([add]).invoke("Add 1 and 2.")
    assert native.tool_calls[0]["id"] == msg.tool_calls[0]["id"]
    # After the tool result the worker answers in text: the loop ends.
    done = llm.invoke([HumanMessage("Add 1 and 2."), msg, ToolMessage("3", tool_call_id=msg.tool_calls[0]["id"])])
    assert done.content == PLAIN_ANSWER and done.tool_calls == []


def test_forced_tool_choice_uses_guided_decoding(pool: WorkerPool, worker: ScriptedWorker) -> None:
    msg = helium_chat_openai(pool, max_tokens=32).bind_tools([add], tool_choice="add").invoke("Anything")
    # The engine got a JSON schema pinning the tool name; its bare JSON output became a tool call.
    schema = json.loads(worker.requests[-1].sampling.json_schema)
    assert schema["properties"]["name"] == {"const": "add"}
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("add", {"a": 1, "b": 2})]
    # with_structured_output(method="function_calling") forces a tool named after the schema.
    answer = helium_chat_openai(pool, max_tokens=32).with_structured_output(
        Answer, method="function_calling").invoke("Biggest city?")
    assert isinstance(answer, Answer)


def test_structured_output_json_schema(pool: WorkerPool, worker: ScriptedWorker) -> None:
    llm = helium_chat_openai(pool, max_tokens=32)
    answer = llm.with_structured_output(Answer, method="json_schema").invoke("Biggest city?")
    # response_format's schema reached the engine as guided decoding; ChatOpenAI parsed the JSON.
    assert isinstance(answer, Answer)
    assert set(json.loads(worker.requests[-1].sampling.json_schema)["properties"]) == {"city", "population"}
    # json_object mode: any object.
    raw = llm.bind(response_format={"type": "json_object"}).invoke("JSON please")
    assert json.loads(worker.requests[-1].sampling.json_schema) == {"type": "object"}
    assert isinstance(json.loads(raw.content), dict)
    # Streamed structured output goes through openai's beta stream helper: still one parsed object.
    streamed = list(llm.with_structured_output(Answer, method="json_schema").stream("Biggest city?"))
    assert isinstance(streamed[-1], Answer)


def test_stream_yields_deltas_and_usage(pool: WorkerPool, worker: ScriptedWorker) -> None:
    llm = helium_chat_openai(pool, max_tokens=16)
    chunks = list(llm.stream("What is 1 + 2?"))
    # One SSE delta per word (5), plus role/finish/usage chunks that carry no text.
    texts = [c.content for c in chunks if c.content]
    assert texts == ["The ", "answer ", "is ", "3 ", "."]
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.usage_metadata["output_tokens"] == 5
    assert total.usage_metadata["input_tokens"] == worker.requests[-1].num_prompt_tokens
    # With tools bound the answer is generated whole, then tool-call deltas follow.
    tool_chunks = list(llm.bind_tools([add]).stream("Add 1 and 2."))
    merged = tool_chunks[0]
    for c in tool_chunks[1:]:
        merged = merged + c
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("add", {"a": 1, "b": 2})]


def test_async_invoke_and_stream(pool: WorkerPool, worker: ScriptedWorker) -> None:
    llm = helium_chat_openai(pool, max_tokens=16)

    async def main() -> tuple[Any, list[Any], Any]:
        msg = await llm.ainvoke("What is 1 + 2?")
        chunks = [c async for c in llm.astream("What is 1 + 2?")]
        call = await llm.bind_tools([add]).ainvoke("Add 1 and 2.")
        return msg, chunks, call

    msg, chunks, call = asyncio.run(main())
    assert msg.content == PLAIN_ANSWER
    assert "".join(c.content for c in chunks) == PLAIN_ANSWER
    assert call.tool_calls[0]["args"] == {"a": 1, "b": 2}


def test_n_above_one_and_bad_requests_give_clear_400s(pool: WorkerPool) -> None:
    with pytest.raises(openai.BadRequestError, match="n=1"):
        helium_chat_openai(pool, n=2, max_tokens=8).invoke("Hi")
    with pytest.raises(openai.BadRequestError, match="not among the bound tools"):
        helium_chat_openai(pool, max_tokens=8).bind_tools([add], tool_choice="mul").invoke("Hi")
    # Raw HTTP: bad JSON, missing messages, unknown argument, unknown route, wrong method.
    client = httpx.Client(transport=HeliumTransport(pool), base_url="http://x/v1")
    bad_json = client.post("/chat/completions", content=b"{not json")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]["message"]
    assert client.post("/chat/completions", json={"model": "m"}).json()["error"]["param"] == "messages"
    unknown = client.post("/chat/completions", json={"messages": [{"role": "user", "content": "x"}], "foo": 1})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "foo"
    assert client.post("/embeddings", json={}).status_code == 404
    assert client.get("/chat/completions").status_code == 405
    # GET /v1/models lists the pool's model.
    assert client.get("/models").json()["data"][0]["id"] == "SmolLM2-135M-Instruct"


def test_engine_errors_are_500s(pool: WorkerPool, worker: ScriptedWorker) -> None:
    worker.fail_with = EngineError("engine exploded")
    with pytest.raises(openai.InternalServerError, match="engine exploded"):
        helium_chat_openai(pool, max_tokens=8).invoke("Hi")
    # In a stream the status line is already sent: the error arrives as an SSE error event.
    with pytest.raises(openai.APIError, match="engine exploded"):
        list(helium_chat_openai(pool, max_tokens=8).stream("Hi"))


def test_generation_goes_through_an_active_runtime_and_streams_per_token(pool: WorkerPool) -> None:
    from helium_lc.cache import MemoryPromptCache, SingleFlight
    from helium_lc.config import HeliumConfig
    from helium_lc.runtime.context import Runtime, activate

    rt = Runtime(HeliumConfig(), MemoryPromptCache(), SingleFlight())
    llm = helium_chat_openai(pool, max_tokens=16)
    with activate(rt):
        # Sync invoke, async invoke and a stream: three engine requests through the run's scheduler.
        assert llm.invoke("Hi").content == PLAIN_ANSWER
        assert asyncio.run(llm.ainvoke("Hello")).content == PLAIN_ANSWER
        pieces = [c.content for c in llm.stream("Hey") if c.content]
    assert len(pieces) > 1 and "".join(pieces) == PLAIN_ANSWER  # token by token, not one delta
    assert rt.stats(num_rows=1, num_failed_rows=0).num_engine_requests == 3
    assert len(rt.schedulers) == 1  # they went through the pool's RuntimeScheduler


def test_route_openai_rewires_matching_instances_and_restores_them(pool: WorkerPool) -> None:
    by_url = ChatOpenAI(base_url="http://localhost:9/v1/", api_key="k", model="m", max_tokens=8, max_retries=0)
    by_name = ChatOpenAI(api_key="k", model="my-model", max_tokens=8, max_retries=0)
    other = ChatOpenAI(base_url="http://elsewhere/v1", api_key="k", model="m2")
    before = {id(m): m.root_client for m in (by_url, by_name, other)}
    with route_openai({"http://localhost:9/v1": pool, "my-model": pool}):
        assert hasattr(BaseChatOpenAI.__dict__["_get_request_payload"], "__wrapped__")
        # Both matching instances answer from the pool (no server listens on port 9).
        assert by_url.invoke("Hi").content == PLAIN_ANSWER
        assert asyncio.run(by_name.ainvoke("Hi")).content == PLAIN_ANSWER
        made_inside = ChatOpenAI(api_key="k", model="my-model", max_tokens=8)
        assert made_inside.invoke("Hi").content == PLAIN_ANSWER
    # On exit every instance has its own clients back; the non-matching one was never touched.
    assert {id(m): m.root_client for m in (by_url, by_name, other)} == before
    # ...and langchain-openai's methods are unwrapped again.
    assert not any(hasattr(BaseChatOpenAI.__dict__[name], "__wrapped__")
                   for name in ("_get_request_payload", "_ensure_sync_client_available"))
    with pytest.raises(ValueError, match="WorkerPool"):
        with route_openai({"m": "not a pool"}):  # type: ignore[dict-item]
            pass


def test_nested_routes_innermost_wins(pool: WorkerPool, module_pool: Any) -> None:
    other_worker = ScriptedWorker()
    other_pool = WorkerPool(workers=[other_worker])
    other_worker.decode = lambda ids: other_pool.tokenizer.decode(list(ids))
    llm = ChatOpenAI(api_key="k", model="my-model", max_tokens=8, max_retries=0)
    original = llm.root_client
    try:
        with route_openai({"my-model": pool}):
            with route_openai({"my-model": other_pool}):
                llm.invoke("Hi")
                assert len(other_worker.requests) == 1  # the inner route served it
            llm.invoke("Hi")
            assert len(other_worker.requests) == 1 and len(module_pool[1].requests) == 1  # back to the outer
        assert llm.root_client is original
    finally:
        other_pool.shutdown()


def test_patch_chat_openai_and_config(pool: WorkerPool, worker: ScriptedWorker) -> None:
    llm = ChatOpenAI(base_url="http://localhost:9/v1", api_key="k", model="m", max_retries=0)
    patch_chat_openai(llm, pool, config=TransportConfig(default_max_tokens=2, served_model_name="tiny"))
    msg = llm.invoke("Hi")
    # No max_tokens in the request: the config's default (2 words) applies; the served name is reported.
    assert msg.content == "The answer " and msg.response_metadata["model_name"] == "tiny"
    with pytest.raises(TypeError, match="ChatOpenAI"):
        patch_chat_openai(HeliumChatModel(pool=pool), pool)
    with pytest.raises(ValueError, match="default_max_tokens"):
        TransportConfig(default_max_tokens=0)


def test_omitted_parameters_follow_vllm_serve(pool: WorkerPool, worker: ScriptedWorker) -> None:
    # Like `vllm serve` of this model (no sampling fields in its generation_config.json): an
    # omitted temperature samples at 1.0 and an omitted max_tokens runs to the context limit.
    client = httpx.Client(transport=HeliumTransport(pool), base_url="http://x/v1")
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    assert client.post("/chat/completions", json=body).status_code == 200
    spec = worker.requests[-1].sampling
    prompt_len = worker.requests[-1].num_prompt_tokens
    assert spec.temperature == 1.0 and not spec.is_deterministic
    assert spec.max_tokens == pool.max_model_len - prompt_len
    # The plain ChatOpenAI default (no temperature) is therefore never cached or deduplicated,
    # while helium_chat_openai() is greedy unless told otherwise.
    helium_chat_openai(pool, max_tokens=4).invoke("Hi")
    assert worker.requests[-1].sampling.temperature == 0.0
    custom = httpx.Client(transport=HeliumTransport(pool, TransportConfig(default_temperature=0, default_max_tokens=9)),
                          base_url="http://x/v1")
    custom.post("/chat/completions", json=body)
    assert (worker.requests[-1].sampling.temperature, worker.requests[-1].sampling.max_tokens) == (0, 9)


@pytest.mark.parametrize("extra, param", [
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}}},
     "response_format"),
])
def test_client_mistakes_are_400s_naming_the_field(pool: WorkerPool, extra: dict[str, Any], param: str) -> None:
    client = httpx.Client(transport=HeliumTransport(pool), base_url="http://x/v1")
    r = client.post("/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.json()


# ------------------------------------------------------------------ the Responses API
def _responses_llm(pool: WorkerPool, **kwargs: Any) -> ChatOpenAI:
    return helium_chat_openai(pool, use_responses_api=True, **kwargs)


def test_responses_api_invoke_stream_and_usage(pool: WorkerPool, worker: ScriptedWorker) -> None:
    llm = _responses_llm(pool, max_tokens=16)
    msg = llm.invoke([SystemMessage("Be brief."), HumanMessage("Hi")])
    assert msg.text == PLAIN_ANSWER
    assert msg.usage_metadata["input_tokens"] == worker.requests[-1].num_prompt_tokens
    assert "cache_read" in msg.usage_metadata["input_token_details"]
    # The same conversation gives the same prompt ids through both APIs (same KV-cache hits).
    chat_ids = worker.requests[-1].prompt_token_ids
    helium_chat_openai(pool, max_tokens=16).invoke([SystemMessage("Be brief."), HumanMessage("Hi")])
    assert worker.requests[-1].prompt_token_ids == chat_ids
    chunks = list(llm.stream("Hello there"))
    assert len([c for c in chunks if c.text]) > 1 and "".join(c.text for c in chunks) == PLAIN_ANSWER
    assert chunks[-1].usage_metadata is not None or any(c.usage_metadata for c in chunks)
    assert asyncio.run(llm.ainvoke("Hey")).text == PLAIN_ANSWER


def test_responses_api_tool_calls_and_tool_results(pool: WorkerPool) -> None:
    llm = _responses_llm(pool, max_tokens=64)
    call = llm.bind_tools([add], tool_choice="add").invoke("Add 1 and 2.")
    assert call.tool_calls[0]["name"] == "add" and call.tool_calls[0]["args"] == {"a": 1, "b": 2}
    # The tool result goes back as function_call / function_call_output items.
    final = llm.bind_tools([add]).invoke([HumanMessage("Add 1 and 2."), call,
                                         ToolMessage("3", tool_call_id=call.tool_calls[0]["id"])])
    assert final.text == PLAIN_ANSWER
    streamed = list(llm.bind_tools([add], tool_choice="add").stream("Add 1 and 2."))
    total = streamed[0]
    for c in streamed[1:]:
        total = total + c
    assert total.tool_calls[0]["args"] == {"a": 1, "b": 2}


def test_responses_api_structured_output(pool: WorkerPool) -> None:
    class Answer(BaseModel):
        city: str
        population: int

    out = _responses_llm(pool, max_tokens=64).with_structured_output(Answer, method="json_schema").invoke("Which city?")
    assert isinstance(out, Answer)


def test_responses_api_refuses_server_side_state_with_a_400(pool: WorkerPool) -> None:
    client = httpx.Client(transport=HeliumTransport(pool), base_url="http://x/v1")
    r = client.post("/responses", json={"input": "Hi", "previous_response_id": "resp_1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "previous_response_id"
    r = client.post("/responses", json={"input": [{"type": "web_search_call"}]})
    assert r.status_code == 400 and "web_search_call" in r.json()["error"]["message"]
