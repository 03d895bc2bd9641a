"""Serve unchanged ``langchain_openai.ChatOpenAI`` models from a helium_lc ``WorkerPool``.

:class:`HeliumTransport` is an httpx transport (sync and async) that answers
``POST /v1/chat/completions`` and ``GET /v1/models`` in-process: no server, no socket.
ChatOpenAI keeps doing its own request building, tool-call parsing, structured output and
SSE stream handling; only the bytes on the wire come from the pool. Inside a helium_lc
runtime (``helium_lc.accelerate``) generation goes through the run's scheduler
(:mod:`helium_lc.runtime.dispatch`) like ``HeliumChatModel`` calls do, streamed token by
token when the client streams.

Three ways in:

* :func:`helium_chat_openai` builds a new ``ChatOpenAI`` wired to the transport;
* :func:`patch_chat_openai` rewires an existing instance for good;
* :func:`route_openai` rewires every ``ChatOpenAI`` whose ``openai_api_base`` or
  ``model_name`` matches a key, for the duration of a ``with`` block (what
  ``accelerate(app, config=HeliumConfig(route={...}))`` uses).

Example (the default pool starts a real engine on first use):
    >>> llm = helium_chat_openai(max_tokens=16)                        # doctest: +SKIP
    >>> llm.invoke("What is the capital of France?").content           # doctest: +SKIP
    'The capital of France is Paris.'
    >>> from langchain_openai import ChatOpenAI
    >>> app_llm = ChatOpenAI(base_url="http://localhost:8000/v1", api_key="x", model="m")
    >>> with route_openai({"http://localhost:8000/v1": pool}):           # doctest: +SKIP
    ...     app_llm.invoke("Hi")      # served by `pool`, no network
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator, Mapping

import httpx

from helium_lc.engine.default_pool import get_default_pool
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.types import EngineError, GenerationRequest, GenerationResult
from helium_lc.integrations.openai_responses import ResponseEventWriter, chat_body_from_responses, response_json
from helium_lc.runtime import dispatch
from helium_lc.integrations.openai_protocol import (
    AsyncSSE,
    ChatCall,
    ChunkWriter,
    OpenAIRequestError,
    SyncSSE,
    TransportConfig,
    completion_json,
    error_event,
    error_response,
    json_response,
    models_json,
    parse_chat_request,
    sse_response,
)

__all__ = ["HeliumTransport", "TransportConfig", "helium_chat_openai", "patch_chat_openai", "route_openai",
           "is_routed", "HELIUM_BASE_URL"]

log = logging.getLogger("helium_lc.openai")

#: The base URL of clients wired to a transport (the host is never resolved).
HELIUM_BASE_URL = "http://helium.local/v1"
_DUMMY_API_KEY = "helium-local"
_ROUTES_HELP = "helium_lc serves POST /v1/chat/completions, POST /v1/responses and GET /v1/models."


def _failed(exc: Exception) -> httpx.Response:
    if not isinstance(exc, ValueError):
        log.warning("helium_lc: chat completion failed: %r", exc)
    return error_response(exc)


class HeliumTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport answering OpenAI chat-completion requests from a pool, in-process.

    Requests go through :mod:`helium_lc.runtime.dispatch`: straight to the pool, or under an
    active runtime through its scheduler; streamed requests stream token by token either way
    (requests with tools are generated whole: tool calls are parsed from the whole output).
    Closing a client does not shut the pool down.

    Args:
        pool: the pool to serve from; default: the shared pool, started on first request.
        config: defaults for what a request leaves out (see :class:`TransportConfig`).
    """

    def __init__(self, pool: WorkerPool | None = None, config: TransportConfig | None = None) -> None:
        self._pool = pool
        self.config = config or TransportConfig()

    @property
    def pool(self) -> WorkerPool:
        if self._pool is None:
            self._pool = get_default_pool()
        return self._pool.start()

    @property
    def model_name(self) -> str:
        """The model name this transport reports (``/v1/models`` and every response)."""
        if self.config.served_model_name:
            return self.config.served_model_name
        path = self.pool.model_path
        return path.name if path is not None else "helium_lc"

    # -- routing ------------------------------------------------------------------------------
    def _route(self, request: httpx.Request) -> str:
        path = request.url.path.rstrip("/")
        if path.endswith("/chat/completions"):
            kind, method = "chat", "POST"
        elif path.endswith("/responses"):
            kind, method = "responses", "POST"
        elif path.endswith("/models"):
            kind, method = "models", "GET"
        else:
            raise OpenAIRequestError(f"Unknown route {request.method} {request.url.path}. {_ROUTES_HELP}",
                                     status_code=404, code="unknown_url")
        if request.method != method:
            raise OpenAIRequestError(f"{request.method} {request.url.path} is not allowed; use {method}.",
                                     status_code=405, code="method_not_allowed")
        return kind

    def _parse(self, content: bytes, kind: str = "chat") -> tuple[ChatCall, Any]:
        """(the call, the Responses body or None for Chat Completions)."""
        try:
            body = json.loads(content or b"null")
        except ValueError as exc:
            raise OpenAIRequestError(f"The request body is not valid JSON: {exc}.") from exc
        if kind == "responses":
            return parse_chat_request(self.pool, chat_body_from_responses(body), self.config), body
        return parse_chat_request(self.pool, body, self.config), None

    @staticmethod
    def _writer(call: ChatCall, responses_body: Any) -> Any:
        return ResponseEventWriter(call, responses_body) if responses_body is not None else ChunkWriter(call)

    @staticmethod
    def _answer(call: ChatCall, result: GenerationResult, responses_body: Any) -> httpx.Response:
        if responses_body is not None:
            return json_response(200, response_json(call, result, responses_body))
        return json_response(200, completion_json(call, result))

    # -- sync ---------------------------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer one request from a sync ``httpx.Client`` (blocking)."""
        try:
            kind = self._route(request)
            if kind == "models":
                return json_response(200, models_json(self.model_name))
            call, rbody = self._parse(request.read(), kind)
            if call.stream:
                return sse_response(SyncSSE(self._events_sync(call, self._writer(call, rbody))))
            return self._answer(call, self._generate_sync(call.request), rbody)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI error response
            return _failed(exc)

    def _generate_sync(self, request: GenerationRequest) -> GenerationResult:
        return dispatch.generate(self.pool, request)

    def _events_sync(self, call: ChatCall, writer: Any) -> Iterator[bytes]:
        yield writer.first()
        try:
            if call.tools_bound:  # tool calls are parsed from the whole output
                yield writer.finish(self._generate_sync(call.request), streamed_text=False)
                return
            result = None
            for piece in dispatch.stream(self.pool, call.request):
                if piece.result is not None:
                    result = piece.result
                if piece.text_delta:
                    yield writer.delta(piece.text_delta)
            if result is None:
                raise EngineError(f"The stream of request {call.request.request_id} ended without a result.")
            yield writer.finish(result, streamed_text=True)
        except Exception as exc:  # noqa: BLE001 - the status line is sent: report in the stream
            log.warning("helium_lc: streamed chat completion failed: %r", exc)
            yield error_event(exc)

    # -- async --------------------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer one request from an ``httpx.AsyncClient``."""
        try:
            kind = self._route(request)
            if kind == "models":
                return json_response(200, models_json(self.model_name))
            call, rbody = self._parse(await request.aread(), kind)
            if call.stream:
                return sse_response(AsyncSSE(self._events_async(call, self._writer(call, rbody))))
            return self._answer(call, await self._generate_async(call.request), rbody)
        except Exception as exc:  # noqa: BLE001
            return _failed(exc)

    async def _generate_async(self, request: GenerationRequest) -> GenerationResult:
        return await dispatch.agenerate(self.pool, request)

    async def _events_async(self, call: ChatCall, writer: Any) -> AsyncIterator[bytes]:
        yield writer.first()
        try:
            if call.tools_bound:
                yield writer.finish(await self._generate_async(call.request), streamed_text=False)
                return
            result = None
            async for piece in dispatch.astream(self.pool, call.request):
                if piece.result is not None:
                    result = piece.result
                if piece.text_delta:
                    yield writer.delta(piece.text_delta)
            if result is None:
                raise EngineError(f"The stream of request {call.request.request_id} ended without a result.")
            yield writer.finish(result, streamed_text=True)
        except Exception as exc:  # noqa: BLE001
            log.warning("helium_lc: streamed chat completion failed: %r", exc)
            yield error_event(exc)

    def close(self) -> None:
        """Nothing to release: the pool belongs to its owner."""

    async def aclose(self) -> None:
        """Nothing to release: the pool belongs to its owner."""


# -- wiring ChatOpenAI ----------------------------------------------------------------------------
_CLIENT_FIELDS = ("root_client", "client", "root_async_client", "async_client")


@dataclass(frozen=True)
class _Clients:
    """The four OpenAI client attributes of a ChatOpenAI instance."""

    root_client: Any
    client: Any
    root_async_client: Any
    async_client: Any

    @classmethod
    def of(cls, model: Any) -> "_Clients":
        return cls(*(getattr(model, f) for f in _CLIENT_FIELDS))

    def install(self, model: Any) -> None:
        for f in _CLIENT_FIELDS:
            setattr(model, f, getattr(self, f))


def _clients_for(model: Any, transport: HeliumTransport) -> _Clients:
    """New OpenAI clients (sync and async) that send ``model``'s requests to ``transport``."""
    import openai

    common: dict[str, Any] = dict(
        api_key=_DUMMY_API_KEY, base_url=HELIUM_BASE_URL, organization=getattr(model, "openai_organization", None),
        default_headers=getattr(model, "default_headers", None), default_query=getattr(model, "default_query", None),
        max_retries=0)  # the pool already retries on a dead worker; an engine error will not heal by retrying
    timeout = getattr(model, "request_timeout", None)
    if timeout is not None:
        common["timeout"] = timeout
    root = openai.OpenAI(http_client=httpx.Client(transport=transport), **common)
    root_async = openai.AsyncOpenAI(http_client=httpx.AsyncClient(transport=transport), **common)
    return _Clients(root, root.chat.completions, root_async, root_async.chat.completions)


def patch_chat_openai(model: Any, pool: WorkerPool | None, *, config: TransportConfig | None = None) -> None:
    """Point an existing ``ChatOpenAI`` at ``pool`` (None: the shared pool) for good.

    Its fields (model name, sampling, tools, ``stream_usage``...) are untouched; only its
    OpenAI clients are replaced by clients on a :class:`HeliumTransport`.
    """
    _require_chat_openai(model)
    _clients_for(model, HeliumTransport(pool, config)).install(model)


def helium_chat_openai(pool: WorkerPool | None = None, *, config: TransportConfig | None = None,
                       **chat_openai_kwargs: Any) -> Any:
    """A ``langchain_openai.ChatOpenAI`` served by ``pool`` (None: the shared pool), in-process.

    Defaults (override any of them): ``base_url`` :data:`HELIUM_BASE_URL`, a dummy
    ``api_key``, ``model`` the served model name, ``stream_usage=True``,
    ``use_responses_api=False``, ``max_retries=0``.
    """
    from langchain_openai import ChatOpenAI

    transport = HeliumTransport(pool, config)
    kw = dict(chat_openai_kwargs)
    if "base_url" not in kw and "openai_api_base" not in kw:
        kw["base_url"] = HELIUM_BASE_URL
    if "api_key" not in kw and "openai_api_key" not in kw:
        kw["api_key"] = _DUMMY_API_KEY
    if "model" not in kw and "model_name" not in kw:
        kw["model"] = (config.served_model_name if config and config.served_model_name else
                       transport.model_name if pool is not None else "helium_lc")
    kw.setdefault("stream_usage", True)
    kw.setdefault("temperature", 0.0)  # greedy like HeliumChatModel (omitted, the server would sample)
    kw.setdefault("use_responses_api", False)
    kw.setdefault("max_retries", 0)
    return ChatOpenAI(http_client=httpx.Client(transport=transport),
                      http_async_client=httpx.AsyncClient(transport=transport), **kw)


def _require_chat_openai(model: Any) -> None:
    from langchain_openai.chat_models.base import BaseChatOpenAI

    if not isinstance(model, BaseChatOpenAI):
        raise TypeError(f"Expected a langchain_openai ChatOpenAI, got {type(model).__name__}; "
                        "for other chat models use helium_lc.HeliumChatModel.")


# -- route_openai: rewire matching instances for a while ---------------------------------------------
# Every ChatOpenAI call passes BaseChatOpenAI._get_request_payload (and sync ones also
# _ensure_sync_client_available) before it touches a client; while a route is active these two
# are wrapped to point a matching instance at the route's transport first. On exit an instance
# goes to the next active route that matches it, or back to the clients it had before.
_HOOKED_METHODS = ("_get_request_payload", "_ensure_sync_client_available")
_routes_lock = threading.RLock()
_active_routes: list["_Route"] = []
_originals: dict[int, tuple[Any, _Clients]] = {}   # id(model) -> (model, clients before any route)
_saved_methods: dict[str, Callable[..., Any]] = {}


class _Route:
    """One ``route_openai`` mapping: normalized keys, one transport per pool, clients per model."""

    def __init__(self, mapping: Mapping[str, WorkerPool | None], config: TransportConfig | None) -> None:
        if not isinstance(mapping, Mapping) or not mapping:
            raise ValueError("route_openai needs a non-empty mapping {base_url or model name: WorkerPool}.")
        self.pools: dict[str, WorkerPool | None] = {}
        for key, pool in mapping.items():
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"route_openai keys must be base URLs or model names, got {key!r}.")
            if pool is not None and not isinstance(pool, WorkerPool):
                raise ValueError(f"route_openai[{key!r}] must be a WorkerPool (or None for the shared pool), "
                                 f"got {type(pool).__name__}.")
            self.pools[_normalize(key)] = pool
        self.config = config
        self._transports: dict[int, HeliumTransport] = {}
        self._clients: dict[int, _Clients] = {}

    def match(self, model: Any) -> str | None:
        """The key ``model`` matches: its base URL first, then its model name."""
        base = _normalize(getattr(model, "openai_api_base", None) or "https://api.openai.com/v1")
        if base in self.pools:
            return base
        name = getattr(model, "model_name", None)
        return name if name in self.pools else None

    def clients_for(self, model: Any, key: str) -> _Clients:
        if id(model) not in self._clients:
            pool = self.pools[key]
            transport = self._transports.setdefault(id(pool), HeliumTransport(pool, self.config))
            self._clients[id(model)] = _clients_for(model, transport)
        return self._clients[id(model)]


def _normalize(key: str) -> str:
    return key.strip().rstrip("/")


def _point(model: Any) -> bool:
    """Point ``model`` at the innermost active route matching it; False when none matches."""
    for route in reversed(_active_routes):
        key = route.match(model)
        if key is not None:
            clients = route.clients_for(model, key)
            if model.root_client is not clients.root_client:
                _originals.setdefault(id(model), (model, _Clients.of(model)))
                clients.install(model)
            return True
    return False


def is_routed(model: Any) -> bool:
    """Whether ``model``'s requests are served by a helium_lc transport: patched for good, or
    matched by an active :func:`route_openai` (which points it on its next call)."""
    client = getattr(model, "root_client", None)
    if isinstance(getattr(getattr(client, "_client", None), "_transport", None), HeliumTransport):
        return True
    with _routes_lock:
        return any(route.match(model) is not None for route in _active_routes)


def _hook(original: Callable[..., Any]) -> Callable[..., Any]:
    def routed(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _routes_lock:
            _point(self)
        return original(self, *args, **kwargs)

    routed.__name__, routed.__doc__ = original.__name__, original.__doc__
    routed.__wrapped__ = original  # type: ignore[attr-defined]
    return routed


@contextlib.contextmanager
def route_openai(mapping: Mapping[str, WorkerPool | None], *,
                 config: TransportConfig | None = None) -> Iterator[None]:
    """Serve matching ``ChatOpenAI`` instances from helium_lc pools inside the ``with`` block.

    A key is a base URL (``"http://localhost:8000/v1"``; a model without ``base_url`` has
    ``"https://api.openai.com/v1"``) or a model name (``"gpt-4o-mini"``); the base URL is
    tried first. The value is the ``WorkerPool`` to use (None: the shared pool). Instances
    made before or inside the block are rewired on their next call and restored on exit.
    Routes nest (the innermost match wins) and are process-wide: while active, they also
    apply to matching calls from other threads.
    """
    route = _Route(mapping, config)
    from langchain_openai.chat_models.base import BaseChatOpenAI

    with _routes_lock:
        if not _active_routes:
            for name in _HOOKED_METHODS:
                _saved_methods[name] = BaseChatOpenAI.__dict__[name]
                setattr(BaseChatOpenAI, name, _hook(_saved_methods[name]))
        _active_routes.append(route)
    try:
        yield
    finally:
        with _routes_lock:
            _active_routes.remove(route)
            for key, (model, clients) in list(_originals.items()):
                if not _point(model):
                    clients.install(model)
                    del _originals[key]
            if not _active_routes:
                for name, method in _saved_methods.items():
                    setattr(BaseChatOpenAI, name, method)
                _saved_methods.clear()
