"""``HeliumChatModel``: a langchain-core chat model served by a helium_lc ``WorkerPool``.

Drop it in wherever a LangGraph app builds its chat model. Tools are rendered by the
model's chat template (or in the Hermes text convention when the template has no tool
support) and parsed back into ``AIMessage.tool_calls``; ``with_structured_output`` uses
vLLM's JSON-schema guided decoding; usage metadata reports cached prompt tokens under
``input_token_details["cache_read"]``. Inside ``helium_lc.accelerate(app)`` runs, calls go
through the runtime (cache, dedup, cache-aware scheduling); outside, straight to the pool.

Example (real engine; the default pool starts on first use):
    >>> from helium_lc import HeliumChatModel
    >>> llm = HeliumChatModel(max_tokens=16)
    >>> llm.invoke("What is the capital of France?").content   # doctest: +SKIP
    'The capital of France is Paris.'
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any, AsyncIterator, Callable, Iterator, Literal, Mapping, Sequence

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolCall,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from helium_lc.engine import chat_format, guided
from helium_lc.engine.default_pool import get_default_pool
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.types import GenerationRequest, GenerationResult, SamplingSpec, stop_sequences
from helium_lc.runtime import dispatch


class HeliumChatModel(BaseChatModel):
    """Chat model backed by a pool of real vLLM engines (prefix caching on).

    Args:
        pool: the ``WorkerPool`` to use; default: the process-wide shared pool
            (``helium_lc.engine.default_pool.get_default_pool()``), started on first use.
        temperature: 0 (default) decodes greedily, the only mode helium_lc caches/dedups.
        max_tokens, top_p, top_k, seed, stop, presence_penalty, frequency_penalty: sampling.
        streaming: make ``invoke`` stream internally (token callbacks fire).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    pool: WorkerPool | None = Field(default=None, exclude=True)
    model_name: str = Field(default="", alias="model")
    temperature: float = 0.0
    max_tokens: int = 256
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    streaming: bool = False
    timeout: float | None = None
    max_retries: int = 0

    _pool_lock: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _validate(self) -> "HeliumChatModel":
        self.default_sampling()  # raises a clear ValueError on bad parameters
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {self.timeout!r}; "
                             "e.g. timeout=60.")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}.")
        return self

    # -- identity ---------------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "helium-vllm"

    def get_pool(self) -> WorkerPool:
        """The pool this model uses (the shared default one unless ``pool`` was given)."""
        if self.pool is None:
            self.pool = get_default_pool()
        return self.pool.start()

    def cache_identity(self) -> dict[str, Any]:
        """Which weights answer this model's calls: its pool's :meth:`WorkerPool.identity`
        (model folder fingerprint, dtype, engine settings). Part of its prompt-cache keys, so two
        models on different pools never share cached answers; computing it starts no engine."""
        pool = self.pool if self.pool is not None else get_default_pool(start=False)
        return pool.identity()

    @property
    def resolved_model_name(self) -> str:
        if self.model_name:
            return self.model_name
        pool = self.get_pool()
        return pool.model_path.name if pool.model_path else "unknown"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name or "default", **self.default_sampling().__dict__}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        """LangSmith's fields: provider ``helium_lc``, the served model's name (the model folder's
        name once the pool has started), and the temperature/max_tokens/stop this call uses."""
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "helium_lc"
        params["ls_model_name"] = kwargs.get("model") or self.model_name or self._started_model_name()
        params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(stop, str):
            params["ls_stop"] = [stop]
        elif isinstance(stop, (list, tuple)) and stop:
            params["ls_stop"] = list(stop)
        elif self.stop:
            params["ls_stop"] = list(self.stop)
        return params

    def _started_model_name(self) -> str:
        """The model folder's name when the pool is already started (tracing never starts one)."""
        pool = self.pool
        path = getattr(pool, "model_path", None) if pool is not None and pool.started else None
        return path.name if path is not None else "default"

    # -- request building -----------------------------------------------------------------------
    def default_sampling(self, stop: Sequence[str] | None = None, json_schema: Any = None, **overrides: Any) -> SamplingSpec:
        return SamplingSpec(
            max_tokens=overrides.get("max_tokens", self.max_tokens),
            temperature=overrides.get("temperature", self.temperature),
            top_p=overrides.get("top_p", self.top_p), top_k=overrides.get("top_k", self.top_k),
            seed=overrides.get("seed", self.seed),
            stop=stop_sequences(stop) if stop is not None else tuple(self.stop or ()),
            json_schema=json.dumps(json_schema, sort_keys=True) if isinstance(json_schema, dict) else json_schema,
            presence_penalty=overrides.get("presence_penalty", self.presence_penalty),
            frequency_penalty=overrides.get("frequency_penalty", self.frequency_penalty),
        )

    def build_request(self, messages: Sequence[BaseMessage], stop: list[str] | None = None,
                      **kwargs: Any) -> tuple[GenerationRequest, bool]:
        """Tokenize ``messages`` (tools included) into a request. Returns (request, tools_bound)."""
        pool = self.get_pool()
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        json_schema = kwargs.pop("json_schema", None)
        response_format = kwargs.pop("response_format", None)
        kwargs.pop("ls_structured_output_format", None)
        if response_format is not None and json_schema is None:
            json_schema = chat_format.schema_from_response_format(response_format)
        if tools and tool_choice not in (None, "auto", "none") and json_schema is None:
            forced = None if tool_choice in ("any", "required", True) else chat_format.tool_choice_name(tool_choice)
            json_schema = chat_format.forced_tool_schema(tools, forced)
        unknown = set(kwargs) - {"max_tokens", "temperature", "top_p", "top_k", "seed",
                                 "presence_penalty", "frequency_penalty"}
        if unknown:
            raise ValueError(f"HeliumChatModel got unsupported call arguments {sorted(unknown)}; "
                             "supported: tools, tool_choice, response_format, json_schema and sampling parameters.")
        sampling = self.default_sampling(stop=stop, json_schema=json_schema, **kwargs)
        oa_messages = convert_to_openai_messages(list(messages))
        native = chat_format.template_supports_tools(getattr(pool.tokenizer, "chat_template", None))
        rendered, tmpl_tools = chat_format.render_for_template(
            oa_messages, tools if tool_choice != "none" else None, native_tools=native)
        ids = pool.apply_chat_template(rendered, tools=tmpl_tools)
        return GenerationRequest(tuple(ids), sampling), bool(tools)

    def _to_message(self, request: GenerationRequest, result: GenerationResult, tools_bound: bool,
                    forced_tool: bool) -> AIMessage:
        seed = hashlib.sha256(repr((request.prompt_token_ids, result.token_ids)).encode()).hexdigest()
        text = result.text
        if forced_tool:  # guided decoding produced {"name":..., "arguments":...}
            text = chat_format.TOOL_CALL_OPEN + text + chat_format.TOOL_CALL_CLOSE
        parsed = chat_format.parse_tool_calls(text, id_seed=seed) if tools_bound else chat_format.ParsedOutput(text)
        return AIMessage(
            content=parsed.content,
            tool_calls=[ToolCall(**c) for c in parsed.tool_calls],
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata=_usage(result),
            response_metadata=self._response_metadata(result),
        )

    def _response_metadata(self, result: GenerationResult) -> dict[str, Any]:
        return {"model_name": self.resolved_model_name, "finish_reason": result.finish_reason,
                "worker_id": result.worker_id, "model_provider": "helium_lc"}

    # -- generation ---------------------------------------------------------------------------
    def _dispatch_sync(self, request: GenerationRequest) -> GenerationResult:
        try:
            return dispatch.generate(self.get_pool(), request, timeout_s=self.timeout)
        except TimeoutError as exc:  # the engine request was cancelled (aborted) on the way out
            raise self._timeout_error(request) from exc

    async def _dispatch_async(self, request: GenerationRequest) -> GenerationResult:
        try:
            return await dispatch.agenerate(self.get_pool(), request, timeout_s=self.timeout)
        except TimeoutError as exc:
            raise self._timeout_error(request) from exc

    def _timeout_error(self, request: GenerationRequest) -> TimeoutError:
        return TimeoutError(
            f"HeliumChatModel call timed out after timeout={self.timeout:g} s ({request.num_prompt_tokens} prompt "
            f"tokens, max_tokens={request.sampling.max_tokens}); its engine request was aborted. Raise timeout= "
            "or lower max_tokens.")

    def _complete_sync(self, request: GenerationRequest) -> tuple[GenerationRequest, GenerationResult]:
        """Dispatch; a guided call that ``max_tokens`` cut off is retried once with bounded
        string lengths (``engine.guided``), and raises if it is still cut off."""
        result = self._dispatch_sync(request)
        retry = guided.retry_request(request, result)
        if retry is not None:
            request, result = retry, self._dispatch_sync(retry)
        guided.check_finished(request, result)
        return request, result

    async def _complete_async(self, request: GenerationRequest) -> tuple[GenerationRequest, GenerationResult]:
        """The async twin of :meth:`_complete_sync`."""
        result = await self._dispatch_async(request)
        retry = guided.retry_request(request, result)
        if retry is not None:
            request, result = retry, await self._dispatch_async(retry)
        guided.check_finished(request, result)
        return request, result

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.streaming and not kwargs.get("tools"):
            chunks = list(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))
            return _result_from_chunks(chunks)
        forced = _forces_tool(kwargs)
        request, tools_bound = self.build_request(messages, stop, **kwargs)
        request, result = self._complete_sync(request)
        return ChatResult(generations=[ChatGeneration(message=self._to_message(request, result, tools_bound, forced))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.streaming and not kwargs.get("tools"):
            chunks = [c async for c in self._astream(messages, stop=stop, run_manager=run_manager, **kwargs)]
            return _result_from_chunks(chunks)
        forced = _forces_tool(kwargs)
        request, tools_bound = self.build_request(messages, stop, **kwargs)
        request, result = await self._complete_async(request)
        return ChatResult(generations=[ChatGeneration(message=self._to_message(request, result, tools_bound, forced))])

    @staticmethod
    def _closing_chunk(msg: AIMessage) -> ChatGenerationChunk:
        """The last chunk of a stream (text already sent): usage, finish reason, tool calls."""
        tool_chunks = [{"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i,
                        "type": "tool_call_chunk"} for i, c in enumerate(msg.tool_calls)]
        return ChatGenerationChunk(message=AIMessageChunk(
            content="", tool_call_chunks=tool_chunks, usage_metadata=msg.usage_metadata,
            response_metadata=msg.response_metadata, chunk_position="last"))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        forced = _forces_tool(kwargs)
        request, tools_bound = self.build_request(messages, stop, **kwargs)
        if tools_bound or request.sampling.json_schema is not None:
            # Tool calls are parsed from the whole output and guided JSON may need a bounded
            # retry (engine.guided): one generation, sent as one content chunk plus the closing one.
            msg = self._to_message(*self._complete_sync(request), tools_bound, forced)
            for chunk in self._whole_message_chunks(msg):
                if run_manager and chunk.message.content:
                    run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
                yield chunk
            return
        result = None
        try:
            for piece in dispatch.stream(self.get_pool(), request, timeout_s=self.timeout):
                if piece.result is not None:
                    result = piece.result
                if piece.text_delta:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece.text_delta))
                    if run_manager:
                        run_manager.on_llm_new_token(piece.text_delta, chunk=chunk)
                    yield chunk
        except TimeoutError as exc:
            raise self._timeout_error(request) from exc
        assert result is not None
        yield self._closing_chunk(self._to_message(request, result, False, False))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        forced = _forces_tool(kwargs)
        request, tools_bound = self.build_request(messages, stop, **kwargs)
        if tools_bound or request.sampling.json_schema is not None:
            msg = self._to_message(*await self._complete_async(request), tools_bound, forced)
            for chunk in self._whole_message_chunks(msg):
                if run_manager and chunk.message.content:
                    await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
                yield chunk
            return
        result = None
        try:
            async for piece in dispatch.astream(self.get_pool(), request, timeout_s=self.timeout):
                if piece.result is not None:
                    result = piece.result
                if piece.text_delta:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece.text_delta))
                    if run_manager:
                        await run_manager.on_llm_new_token(piece.text_delta, chunk=chunk)
                    yield chunk
        except TimeoutError as exc:
            raise self._timeout_error(request) from exc
        assert result is not None
        yield self._closing_chunk(self._to_message(request, result, False, False))

    def _whole_message_chunks(self, msg: AIMessage) -> list[ChatGenerationChunk]:
        """A finished message as a stream: its content in one chunk (if any), then the closing chunk."""
        first = [ChatGenerationChunk(message=AIMessageChunk(content=msg.content))] if msg.content else []
        return first + [self._closing_chunk(msg)]

    # -- tools and structured output ------------------------------------------------------------
    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable | BaseTool], *,
                   tool_choice: str | dict | bool | None = None, **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (rendered into the prompt); ``tool_choice`` "any"/"required"/a name forces a call."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None and tool_choice not in ("auto", "none", "any", "required", True):
            name = chat_format.tool_choice_name(tool_choice)
            if name not in [t["function"]["name"] for t in formatted]:
                raise ValueError(f"tool_choice={tool_choice!r} names no bound tool; bound: "
                                 f"{[t['function']['name'] for t in formatted]}.")
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(self, schema: dict[str, Any] | type, *, include_raw: bool = False,
                               method: Literal["json_schema", "json_mode", "function_calling"] = "json_schema",
                               **kwargs: Any) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Structured output by JSON-schema guided decoding (``method="json_schema"``, default)
        or by a forced tool call (``method="function_calling"``)."""
        kwargs.pop("strict", None)  # guided decoding always follows the schema strictly
        if kwargs:
            raise ValueError(f"Unsupported arguments {sorted(kwargs)} for with_structured_output; "
                             "supported: include_raw, method, strict.")
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw)
        if method not in ("json_schema", "json_mode"):
            raise ValueError(f"method must be 'json_schema', 'json_mode' or 'function_calling', got {method!r}.")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)  # pydantic v2 or v1
        json_schema = convert_to_json_schema(schema) if method == "json_schema" else {"type": "object"}
        llm = self.bind(json_schema=json_schema, ls_structured_output_format={
            "kwargs": {"method": "json_schema"}, "schema": json_schema})
        parser: Runnable = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()
        if not include_raw:
            return llm | parser
        parse = RunnablePassthrough.assign(parsed=lambda x: parser.invoke(x["raw"]), parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)

        def _safe(x: dict[str, Any]) -> dict[str, Any]:
            try:
                return parse.invoke(x)
            except Exception as exc:  # noqa: BLE001 - reported like langchain-core does
                out = fallback.invoke(x)
                out["parsing_error"] = exc
                return out

        return RunnableMap(raw=llm) | RunnableLambda(_safe)


# -- helpers ------------------------------------------------------------------------------------
def _usage(result: GenerationResult) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=result.num_prompt_tokens, output_tokens=result.num_output_tokens,
        total_tokens=result.num_prompt_tokens + result.num_output_tokens,
        input_token_details={"cache_read": result.num_cached_prompt_tokens},
    )


def _forces_tool(kwargs: Mapping[str, Any]) -> bool:
    return bool(kwargs.get("tools")) and kwargs.get("tool_choice") not in (None, "auto", "none") \
        and kwargs.get("json_schema") is None and kwargs.get("response_format") is None


def _result_from_chunks(chunks: list[ChatGenerationChunk]) -> ChatResult:
    if not chunks:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    msg = total.message
    return ChatResult(generations=[ChatGeneration(message=AIMessage(
        content=msg.content, tool_calls=getattr(msg, "tool_calls", []),
        usage_metadata=getattr(msg, "usage_metadata", None), response_metadata=msg.response_metadata,
        id=msg.id))])
