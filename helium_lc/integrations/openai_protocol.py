"""The OpenAI Chat Completions wire format over a helium_lc ``WorkerPool`` (no network here).

:func:`parse_chat_request` turns a ``POST /v1/chat/completions`` JSON body into a
:class:`ChatCall` (a tokenized :class:`~helium_lc.engine.types.GenerationRequest` plus how
to answer), rendering messages and tools exactly like ``HeliumChatModel`` does, so the
same conversation gives the same prompt token ids (and the same KV-cache hits) whichever
client sent it. :func:`completion_json` and :class:`ChunkWriter` build the OpenAI response
JSON and the SSE stream from a :class:`~helium_lc.engine.types.GenerationResult`.
Bad requests raise :class:`OpenAIRequestError`, which knows its HTTP status and error JSON;
the ``*_response`` helpers wrap all of this into ``httpx.Response`` objects.

Example:
    >>> err = OpenAIRequestError("n=2 is not supported; send n=1.", param="n")
    >>> err.status_code, err.as_json()["error"]["param"]
    (400, 'n')
    >>> sse({"a": 1})
    b'data: {"a": 1}\\n\\n'
"""

from __future__ import annotations

import hashlib
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Mapping

import httpx

from helium_lc.engine import chat_format
from helium_lc.engine.chat_format import invalid_unicode
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.types import GenerationRequest, GenerationResult, SamplingSpec, new_request_id

__all__ = ["TransportConfig", "OpenAIRequestError", "ChatCall", "parse_chat_request", "completion_json",
           "ChunkWriter", "models_json", "error_json", "sse", "SSE_DONE", "json_response", "error_response",
           "error_event", "sse_response", "SyncSSE", "AsyncSSE"]

SSE_DONE = b"data: [DONE]\n\n"

# Body keys that are read below, and keys accepted but without effect on the output.
_HANDLED = {"model", "messages", "tools", "tool_choice", "response_format", "max_tokens", "max_completion_tokens",
            "temperature", "top_p", "top_k", "seed", "stop", "presence_penalty", "frequency_penalty", "n",
            "stream", "stream_options", "logprobs", "top_logprobs", "logit_bias"}
_IGNORED = {"parallel_tool_calls", "user", "store", "metadata", "service_tier", "prompt_cache_key",
            "safety_identifier", "reasoning_effort", "verbosity"}


@dataclass(frozen=True)
class TransportConfig:
    """How the OpenAI front end fills what a request leaves out.

    By default exactly like a ``vllm serve`` of the same model: an omitted ``temperature`` /
    ``top_p`` / ``top_k`` takes the model's ``generation_config.json`` value, else vLLM's
    default (temperature 1.0: sampled, so never cached or deduplicated), and an omitted
    ``max_tokens`` runs to end of sequence or the context limit.

    Args:
        default_max_tokens: output budget when the body has neither ``max_tokens`` nor
            ``max_completion_tokens`` (None: until the context is full).
        default_temperature: used when the body has no ``temperature`` (None: the server's default).
        served_model_name: the model name reported in responses and ``/v1/models``;
            default: the pool's model folder name.
    """

    default_max_tokens: int | None = None
    default_temperature: float | None = None
    served_model_name: str | None = None

    def __post_init__(self) -> None:
        if self.default_max_tokens is not None and (not isinstance(self.default_max_tokens, int)
                                                    or self.default_max_tokens < 1):
            raise ValueError(f"default_max_tokens must be a positive integer or None, got {self.default_max_tokens!r}.")
        if self.default_temperature is not None and not (
                isinstance(self.default_temperature, (int, float)) and math.isfinite(self.default_temperature)
                and self.default_temperature >= 0):
            raise ValueError(f"default_temperature must be a finite number >= 0 or None, got "
                             f"{self.default_temperature!r}.")
        if self.served_model_name is not None and not self.served_model_name:
            raise ValueError("served_model_name must be a non-empty string or None (None: the pool's model name).")


#: vLLM's sampling defaults when the model's generation config sets none.
VLLM_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 0}


def server_sampling_defaults(model_path: Any) -> dict[str, Any]:
    """What a ``vllm serve`` of ``model_path`` uses for omitted sampling fields.

    vLLM (``--generation-config auto``, its default) takes them from the model's
    ``generation_config.json`` and otherwise uses temperature 1.0, top_p 1.0, no top_k.

    Example:
        >>> server_sampling_defaults(None)
        {'temperature': 1.0, 'top_p': 1.0, 'top_k': 0}
    """
    out = dict(VLLM_SAMPLING_DEFAULTS)
    if model_path is None:
        return out
    try:
        with open(Path(model_path) / "generation_config.json") as f:
            gen = json.load(f)
    except (OSError, ValueError):
        return out
    for key in out:
        value = gen.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = max(0, int(value)) if key == "top_k" else float(value)
    return out


class OpenAIRequestError(ValueError):
    """A request the server refuses; carries the HTTP status and OpenAI's error fields."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status_code: int = 400, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.param, self.code, self.status_code, self.error_type = param, code, status_code, error_type

    def as_json(self) -> dict[str, Any]:
        return error_json(str(self), param=self.param, code=self.code, error_type=self.error_type)


def error_json(message: str, *, param: str | None = None, code: str | None = None,
               error_type: str = "invalid_request_error") -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def sse(obj: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    return b"data: " + json.dumps(obj).encode("utf-8") + b"\n\n"


def models_json(model_name: str) -> dict[str, Any]:
    """The ``GET /v1/models`` body listing the pool's single model."""
    return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "helium_lc"}]}


@dataclass(frozen=True)
class ChatCall:
    """A parsed chat-completion request: what to generate and how to answer."""

    request: GenerationRequest
    model: str                 # the model name reported back
    tools_bound: bool          # parse <tool_call> blocks out of the output
    forced_tool: bool          # guided decoding emits a bare {"name", "arguments"} object
    stream: bool
    include_usage: bool        # stream_options.include_usage


def _number(body: Mapping[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OpenAIRequestError(f"'{key}' must be a number, got {value!r}.", param=key)
    return value


def _sampling(body: Mapping[str, Any], json_schema: Any, config: TransportConfig, *,
              defaults: Mapping[str, Any], max_new_tokens: int) -> SamplingSpec:
    """The request's sampling, omitted fields filled like the server would (see TransportConfig)."""
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = config.default_max_tokens or max_new_tokens
        if max_tokens < 1:
            raise OpenAIRequestError(f"The prompt fills the model's whole context ({max_new_tokens} tokens left "
                                     "for output); shorten the messages.", param="messages")
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise OpenAIRequestError(f"'max_tokens' must be a positive integer, got {max_tokens!r}.", param="max_tokens")
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
        raise OpenAIRequestError(f"'stop' must be a string or a list of strings, got {stop!r}.", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise OpenAIRequestError(f"'seed' must be an integer, got {seed!r}.", param="seed")
    temperature = _number(body, "temperature", config.default_temperature if config.default_temperature is not None
                          else defaults["temperature"])
    if not 0 <= temperature <= 2:
        raise OpenAIRequestError(f"'temperature' must be between 0 and 2, got {temperature!r}.", param="temperature")
    fields = {"temperature": temperature, "top_p": _number(body, "top_p", defaults["top_p"]),
              "top_k": _number(body, "top_k", defaults["top_k"]),
              "presence_penalty": _number(body, "presence_penalty", 0.0),
              "frequency_penalty": _number(body, "frequency_penalty", 0.0)}
    if fields["top_k"] == -1:  # vLLM's spelling of "off"
        fields["top_k"] = 0
    for name in ("top_p", "top_k", "presence_penalty", "frequency_penalty"):
        try:
            SamplingSpec(**{name: fields[name]})
        except (ValueError, TypeError) as exc:
            raise OpenAIRequestError(f"'{name}': {exc}", param=name) from exc
    try:
        return SamplingSpec(
            max_tokens=max_tokens, seed=seed, stop=tuple(stop),
            json_schema=json.dumps(json_schema, sort_keys=True) if json_schema is not None else None, **fields)
    except ValueError as exc:
        raise OpenAIRequestError(str(exc)) from exc


def _check_limits(body: Mapping[str, Any]) -> None:
    unknown = sorted(set(body) - _HANDLED - _IGNORED)
    if unknown:
        raise OpenAIRequestError(
            f"Unrecognized request argument(s) {unknown}; helium_lc supports {sorted(_HANDLED | _IGNORED)}.",
            param=unknown[0])
    if body.get("n") not in (None, 1):
        raise OpenAIRequestError(
            f"n={body['n']!r} is not supported: helium_lc returns one choice per request; send n=1 "
            "(or make n separate calls).", param="n")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise OpenAIRequestError("logprobs/top_logprobs are not supported by helium_lc; remove them.",
                                 param="logprobs")
    if body.get("logit_bias"):
        raise OpenAIRequestError("logit_bias is not supported by helium_lc; remove it.", param="logit_bias")


def parse_chat_request(pool: WorkerPool, body: Any, config: TransportConfig) -> ChatCall:
    """Validate a chat-completions body and tokenize it like ``HeliumChatModel.build_request``.

    Raises:
        OpenAIRequestError: the body is malformed or asks for something unsupported.
    """
    if not isinstance(body, Mapping):
        raise OpenAIRequestError("The request body must be a JSON object.")
    _check_limits(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, Mapping) for m in messages):
        raise OpenAIRequestError("'messages' must be a non-empty list of message objects.", param="messages")
    for i, m in enumerate(messages):  # roles are free-form, as in vllm serve (the chat template decides)
        if not isinstance(m.get("role"), str) or not m["role"]:
            raise OpenAIRequestError(f"messages[{i}].role must be a non-empty string such as 'user', got "
                                     f"{m.get('role')!r}.", param=f"messages[{i}].role")
        if not isinstance(m.get("content"), (str, list, type(None))):
            raise OpenAIRequestError(f"messages[{i}].content must be a string or a list of content parts, got "
                                     f"{type(m['content']).__name__}.", param=f"messages[{i}].content")
    if (problem := invalid_unicode(body)) is not None:
        raise OpenAIRequestError(problem, param="messages")
    tools = body.get("tools") or []
    if not isinstance(tools, list) or any(not isinstance(t, Mapping) or t.get("type", "function") != "function"
                                          for t in tools):
        raise OpenAIRequestError("'tools' must be a list of {'type': 'function', 'function': {...}} objects.",
                                 param="tools")
    tool_choice = body.get("tool_choice")
    json_schema = None
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, Mapping) or response_format.get("type") not in (
                "text", "json_object", "json_schema"):
            raise OpenAIRequestError("'response_format' must be {'type': 'text' | 'json_object' | 'json_schema', ...}.",
                                     param="response_format")
        if response_format["type"] != "text":
            json_schema = chat_format.schema_from_response_format(response_format)
    forced = False
    try:
        if tools and tool_choice not in (None, "auto", "none") and json_schema is None:
            name = None if tool_choice == "required" else chat_format.tool_choice_name(tool_choice)
            json_schema = chat_format.forced_tool_schema(tools, name)
            forced = True
        if json_schema is not None:
            _check_schema(json_schema)
        # "developer" is OpenAI's new name for the system role (langchain-openai sends it to o-series models).
        oa_messages = [{**m, "role": "system"} if m.get("role") == "developer" else dict(m) for m in messages]
        native = chat_format.template_supports_tools(getattr(pool.tokenizer, "chat_template", None))
        rendered, tmpl_tools = chat_format.render_for_template(
            oa_messages, tools if tool_choice != "none" else None, native_tools=native)
        ids = pool.apply_chat_template(rendered, tools=tmpl_tools)
        sampling = _sampling(body, json_schema, config, defaults=server_sampling_defaults(pool.model_path),
                             max_new_tokens=pool.max_model_len - len(ids))
    except OpenAIRequestError:
        raise
    except ValueError as exc:  # unknown forced tool, unsupported content block, bad sampling value
        raise OpenAIRequestError(str(exc)) from exc
    stream = bool(body.get("stream"))
    stream_options = body.get("stream_options") or {}
    return ChatCall(
        request=GenerationRequest(tuple(ids), sampling, request_id=new_request_id("chatcmpl")),
        model=config.served_model_name or _pool_model_name(pool), tools_bound=bool(tools), forced_tool=forced,
        stream=stream, include_usage=stream and bool(stream_options.get("include_usage")))


def _check_schema(schema: Any) -> None:
    """A JSON schema the engine's guided decoding can compile, else a 400 naming response_format."""
    problem = _schema_problem(json.dumps(schema, sort_keys=True))
    if problem is not None:
        raise OpenAIRequestError(f"The JSON schema cannot be used for guided decoding: {problem}",
                                 param="response_format")


@functools.lru_cache(maxsize=256)
def _schema_problem(schema_text: str) -> str | None:
    try:
        import xgrammar
    except ImportError:  # pragma: no cover - no engine installed: the engine reports it
        return None
    try:
        xgrammar.Grammar.from_json_schema(schema_text)
    except Exception as exc:  # noqa: BLE001 - xgrammar raises RuntimeError/ValueError
        return str(exc)
    return None


def _pool_model_name(pool: WorkerPool) -> str:
    return pool.model_path.name if pool.model_path is not None else "helium_lc"


def usage_json(result: GenerationResult) -> dict[str, Any]:
    """OpenAI usage, with cached prompt tokens under ``prompt_tokens_details.cached_tokens``."""
    return {"prompt_tokens": result.num_prompt_tokens, "completion_tokens": result.num_output_tokens,
            "total_tokens": result.num_prompt_tokens + result.num_output_tokens,
            "prompt_tokens_details": {"cached_tokens": result.num_cached_prompt_tokens}}


def message_parts(call: ChatCall, result: GenerationResult) -> tuple[str, list[dict[str, Any]], str]:
    """(content, OpenAI tool_calls, finish_reason), parsed the way ``HeliumChatModel`` parses."""
    text = result.text
    if call.forced_tool:  # guided decoding produced {"name": ..., "arguments": ...}
        text = chat_format.TOOL_CALL_OPEN + text + chat_format.TOOL_CALL_CLOSE
    if not call.tools_bound:
        return text, [], _finish_reason(result.finish_reason)
    seed = hashlib.sha256(repr((call.request.prompt_token_ids, result.token_ids)).encode()).hexdigest()
    parsed = chat_format.parse_tool_calls(text, id_seed=seed)
    calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
             for c in parsed.tool_calls]
    # Unparseable blocks keep their raw text as arguments: langchain-openai turns them into invalid_tool_calls.
    calls += [{"id": c["id"], "type": "function", "function": {"name": c["name"] or "", "arguments": c["args"]}}
              for c in parsed.invalid_tool_calls]
    return parsed.content, calls, "tool_calls" if calls else _finish_reason(result.finish_reason)


def _finish_reason(engine_reason: str | None) -> str:
    return "length" if engine_reason == "length" else "stop"


def completion_json(call: ChatCall, result: GenerationResult, *, created_s: int | None = None) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` body for one result."""
    content, tool_calls, finish = message_parts(call, result)
    message: dict[str, Any] = {"role": "assistant", "content": content if (content or not tool_calls) else None,
                               "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": call.request.request_id, "object": "chat.completion",
            "created": int(time.time()) if created_s is None else created_s, "model": call.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage_json(result)}


class ChunkWriter:
    """Builds the SSE events of one streamed completion, in OpenAI's order:
    a role chunk, content deltas, tool-call deltas, a finish chunk, a usage chunk
    (``include_usage`` only) and ``[DONE]``."""

    def __init__(self, call: ChatCall, created_s: int | None = None) -> None:
        self.call = call
        self.created_s = int(time.time()) if created_s is None else created_s

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return sse({"id": self.call.request.request_id, "object": "chat.completion.chunk",
                    "created": self.created_s, "model": self.call.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]})

    def first(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def delta(self, text: str) -> bytes:
        return self._chunk({"content": text})

    def finish(self, result: GenerationResult, *, streamed_text: bool) -> bytes:
        """The closing events; ``streamed_text``: the content already went out as deltas."""
        content, tool_calls, finish = message_parts(self.call, result)
        out = b""
        if content and not streamed_text:
            out += self.delta(content)
        for i, tc in enumerate(tool_calls):
            out += self._chunk({"tool_calls": [{"index": i, **tc}]})
        out += self._chunk({}, finish)
        if self.call.include_usage:
            out += sse({"id": self.call.request.request_id, "object": "chat.completion.chunk",
                        "created": self.created_s, "model": self.call.model, "choices": [],
                        "usage": usage_json(result)})
        return out + SSE_DONE


# -- httpx responses --------------------------------------------------------------------------------
def json_response(status_code: int, body: Mapping[str, Any]) -> httpx.Response:
    """A JSON response (usable by sync and async httpx clients)."""
    return httpx.Response(status_code, json=body)


def error_response(exc: BaseException) -> httpx.Response:
    """OpenAI error JSON for ``exc``: its own status for request errors, 400 for other
    ``ValueError`` (e.g. a prompt too long), 500 for engine failures."""
    if isinstance(exc, OpenAIRequestError):
        return json_response(exc.status_code, exc.as_json())
    if isinstance(exc, ValueError):  # e.g. PromptTooLongError: the request, not the server, is wrong
        return json_response(400, error_json(str(exc)))
    return json_response(500, error_json(f"helium_lc engine error: {exc}", error_type="server_error"))


def error_event(exc: BaseException) -> bytes:
    """An SSE error event (the openai client raises it) for a failure after the status line went out."""
    kind = "invalid_request_error" if isinstance(exc, ValueError) else "server_error"
    return sse(error_json(f"helium_lc engine error: {exc}", error_type=kind))


class SyncSSE(httpx.SyncByteStream):
    """A response body made of SSE events; closing it early stops the generation."""

    def __init__(self, events: Iterator[bytes]) -> None:
        self._events = events

    def __iter__(self) -> Iterator[bytes]:
        yield from self._events

    def close(self) -> None:  # the reader stopped early: stop generating
        close = getattr(self._events, "close", None)
        if close is not None:
            close()


class AsyncSSE(httpx.AsyncByteStream):
    """The async twin of :class:`SyncSSE`."""

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for event in self._events:
            yield event

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()


def sse_response(stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> httpx.Response:
    """A ``200 text/event-stream`` response streaming ``stream``."""
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)
