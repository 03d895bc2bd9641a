"""Intercept every chat-model call made inside an accelerated run (cache, dedup, counting).

:func:`install` wraps ``BaseChatModel._generate_with_cache`` and
``_agenerate_with_cache`` once (idempotent). The wrappers look at
:func:`~helium_lc.runtime.context.current_runtime`: outside an accelerated run it is
``None`` and the original method runs untouched. Inside a run each call:

1. is counted and tagged with its origin (node, step, namespace, ordinal, row);
2. gets a prompt-cache key (:func:`~helium_lc.cache.keys.chat_call_key`: model identity,
   sampling fields, stop, bound tools / tool_choice / response format, normalised
   messages). A sampled call (not known to be greedy) or an uncacheable prompt goes
   straight to the model;
3. a deterministic call is served from the prompt cache when it has the answer (the
   model is not called), else joins identical in-flight calls (single-flight: one model
   call, shared result, across rows and nodes), and the result is stored.

Served results are fresh copies with ids for this run (``lc_run-<run id>-0``), so
LangGraph's ``messages`` stream shows them as one whole message, like langchain-core's
own cache does (v2 stream events are replayed). Calls to other providers keep going to
their provider. OpenAI-compatible clients listed in ``HeliumConfig.route`` are resolved
by :func:`resolve_route`; sending them to the pool is the job of the in-process HTTP
transport (``helium_lc/integrations/openai_transport.py``), which the accelerated graph
puts around its runs.

Example:
    >>> from helium_lc.testing import DeterministicChatModel
    >>> install(); install()  # idempotent
    >>> is_installed()
    True
    >>> DeterministicChatModel().invoke("hi").content.startswith("answer-")  # no run: untouched
    True
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Awaitable, Callable, Mapping

from langchain_core.language_models import BaseChatModel
from langchain_core.outputs import ChatResult

from helium_lc.cache.codec import UnstorableValueError, decode_value, encode_value
from helium_lc.cache.keys import OUTPUT_PARAM_FIELDS, CacheKey, UncacheableError, chat_call_key, model_output_params
from helium_lc.runtime.context import Runtime, call_origin_scope, current_runtime

__all__ = ["install", "is_installed", "call_key", "resolve_route"]

log = logging.getLogger("helium_lc.runtime")

_HOOK_MARK = "__helium_hook__"
_install_lock = threading.Lock()

_warned_routes: set[str] = set()


def resolve_route(model: Any, route: Mapping[str, Any]) -> tuple[str, Any] | None:
    """``(route key, pool)`` for an OpenAI-compatible client that ``route`` maps, else None.

    A key matches the client's ``base_url`` / ``openai_api_base`` (trailing ``/`` ignored)
    or its model name (``model_name`` / ``model``). ``base_url`` matches win.

    Example:
        >>> class Client:  # shaped like ChatOpenAI
        ...     openai_api_base = "http://gpu:8000/v1/"
        ...     model_name = "llama"
        >>> resolve_route(Client(), {"llama": "p1", "http://gpu:8000/v1": "p2"})
        ('http://gpu:8000/v1', 'p2')
        >>> resolve_route(Client(), {"gpt-4o": "p1"}) is None
        True
    """
    if not route:
        return None
    norm = {k.rstrip("/"): (k, pool) for k, pool in route.items()}
    for attr in ("openai_api_base", "base_url"):
        url = getattr(model, attr, None)
        if isinstance(url, str) and url.rstrip("/") in norm:
            return norm[url.rstrip("/")]
    for attr in ("model_name", "model"):
        name = getattr(model, attr, None)
        if isinstance(name, str) and name in route:
            return name, route[name]
    return None


def call_key(model: BaseChatModel, messages: list[Any], stop: list[str] | None,
             kwargs: Mapping[str, Any], served_by: Any = None) -> CacheKey:
    """The prompt-cache key of one intercepted call (raises UncacheableError).

    Sampling fields passed per call (e.g. ``model.invoke(x, temperature=0.7)``) override the
    model's own when deciding determinism. ``served_by`` is the pool a ``route`` sends the
    client's calls to: its identity joins the key (the pool answers, not the client's endpoint).
    """
    params = dict(model_output_params(model))
    params.update({k: v for k, v in kwargs.items() if k in OUTPUT_PARAM_FIELDS and v is not None})
    call_kwargs = dict(kwargs)
    identity = getattr(served_by, "identity", None)
    if callable(identity):
        call_kwargs["served_by"] = identity()
    return chat_call_key(model, messages, params=params, stop=stop, call_kwargs=call_kwargs)


def _freeze(result: ChatResult) -> str:
    """An immutable snapshot of a result (JSON text), never handed to user code."""
    return encode_value(result)


#: ``response_metadata`` key of a served (not computed) message: ``{"served_from": ...}``.
SERVED_KEY = "helium_lc"


def _serve(model: BaseChatModel, snapshot: str, run_manager: Any, kwargs: Mapping[str, Any],
           served_from: str) -> ChatResult:
    """A fresh copy of a cached/shared result, with ids for this call's run.

    It is marked for tracing the way langchain-core marks its own cache hits (``total_cost``
    0 in ``usage_metadata``), and says where it came from: ``response_metadata["helium_lc"]
    == {"served_from": "prompt_cache" | "dedup"}``.
    """
    from langchain_core.messages import AIMessage
    from langchain_core.utils.utils import LC_ID_PREFIX

    result: ChatResult = decode_value(snapshot)
    for idx, gen in enumerate(result.generations):
        gen.message.id = f"{LC_ID_PREFIX}-{run_manager.run_id}-{idx}" if run_manager else None
        gen.message.response_metadata = {**gen.message.response_metadata, SERVED_KEY: {"served_from": served_from}}
        if isinstance(gen.message, AIMessage) and gen.message.usage_metadata is not None:
            gen.message.usage_metadata = {**gen.message.usage_metadata, "total_cost": 0}  # type: ignore[typeddict-unknown-key]
    replay = getattr(model, "_replay_v2_events_for_cache_hit", None)
    if replay is not None and run_manager is not None and not _is_async_manager(run_manager):
        replay(result.generations, run_manager=run_manager, **kwargs)
    return result


def _is_async_manager(run_manager: Any) -> bool:
    from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
    return isinstance(run_manager, AsyncCallbackManagerForLLMRun)


class _Call:
    """Bookkeeping shared by the sync and async paths of one intercepted call."""

    def __init__(self, rt: Runtime, model: BaseChatModel, messages: list[Any], stop: list[str] | None,
                 run_manager: Any, kwargs: dict[str, Any]) -> None:
        self.rt, self.model, self.run_manager, self.kwargs = rt, model, run_manager, kwargs
        self.origin = rt.begin_call(getattr(run_manager, "metadata", None))
        self.key: CacheKey | None = None
        served_by = self._check_route()
        try:
            key = call_key(model, messages, stop, kwargs, served_by)
        except UncacheableError as exc:
            log.debug("uncacheable call from node %r: %s", self.origin.node, exc)
            rt.recorder.add(num_uncacheable_calls=1)
            return
        if not key.is_deterministic:
            rt.recorder.add(num_sampled_calls=1)
            return
        self.key = key

    def _check_route(self) -> Any:
        """The pool ``route`` sends this client's calls to (None when not routed)."""
        hit = resolve_route(self.model, self.rt.config.route)
        if hit is None:
            return None
        if not self.rt.is_routed(self.model):  # else AcceleratedGraph wrapped the run in route_openai
            if hit[0] not in _warned_routes:
                _warned_routes.add(hit[0])
                log.warning("route %r matches a %s client, but no HTTP transport is registered "
                            "(helium_lc.integrations.openai_transport); its calls still go to its own "
                            "endpoint.", hit[0], type(self.model).__name__)
            return None
        return hit[1]

    @property
    def flight_key(self) -> tuple[str, str]:
        assert self.key is not None
        return self.key.digest, self.key.canonical_text

    def cached(self) -> str | None:
        """The cached snapshot, or None (cache off, miss, or a value the codec refused)."""
        if self.key is None or not self.rt.config.use_prompt_cache:
            return None
        value = self.rt.cache.get(self.key)
        if value is None:
            self.rt.recorder.cache_miss(self.origin.node)
            return None
        self.rt.recorder.add(num_cache_hits=1)
        return _freeze(value)

    def sent(self, result: ChatResult, num_engine_results: int) -> str | None:
        """Count a real model call; return its snapshot (None when it cannot be stored)."""
        self.rt.recorder.add(num_llm_calls_sent=1)
        if num_engine_results == 0:  # not an engine call: take the provider's usage report
            usage = getattr(result.generations[0].message, "usage_metadata", None) if result.generations else None
            if usage:
                self.rt.recorder.add(num_prompt_tokens=int(usage.get("input_tokens", 0)))
        if self.key is None:
            return None
        try:
            snapshot = _freeze(result)
        except UnstorableValueError as exc:
            log.debug("result of node %r not storable: %s", self.origin.node, exc)
            return None
        if self.rt.config.use_prompt_cache:
            self.rt.cache.put(self.key, decode_value(snapshot))
        return snapshot


def _intercept_sync(orig: Callable[..., ChatResult], model: BaseChatModel, messages: list[Any],
                    stop: list[str] | None, run_manager: Any, kwargs: dict[str, Any], rt: Runtime) -> ChatResult:
    call = _Call(rt, model, messages, stop, run_manager, kwargs)
    with call_origin_scope(call.origin) as scope:
        if (hit := call.cached()) is not None:
            return _serve(model, hit, run_manager, kwargs, "prompt_cache")
        own: list[ChatResult] = []

        def compute() -> str | None:
            gate = rt.gate_for(model)
            with gate.hold() if gate is not None else contextlib.nullcontext():
                own.append(orig(model, messages, stop=stop, run_manager=run_manager, **kwargs))
            return call.sent(own[0], scope.num_engine_results)

        if call.key is None or not rt.config.dedup:
            compute()
            return own[0]
        snapshot = rt.single_flight.do(call.flight_key, compute)
        if own:
            return own[0]
        if snapshot is None:  # the leader's result could not be shared: compute our own
            compute()
            return own[0]
        rt.recorder.add(num_dedup_hits=1)
        return _serve(model, snapshot, run_manager, kwargs, "dedup")


async def _intercept_async(orig: Callable[..., Awaitable[ChatResult]], model: BaseChatModel,
                           messages: list[Any], stop: list[str] | None, run_manager: Any,
                           kwargs: dict[str, Any], rt: Runtime) -> ChatResult:
    call = _Call(rt, model, messages, stop, run_manager, kwargs)
    with call_origin_scope(call.origin) as scope:
        if (hit := call.cached()) is not None:
            result = _serve(model, hit, run_manager, kwargs, "prompt_cache")
            areplay = getattr(model, "_areplay_v2_events_for_cache_hit", None)
            if areplay is not None and run_manager is not None:
                await areplay(result.generations, run_manager=run_manager, **kwargs)
            return result
        own: list[ChatResult] = []

        async def compute() -> str | None:
            gate = rt.gate_for(model)
            async with gate.ahold() if gate is not None else contextlib.nullcontext():
                own.append(await orig(model, messages, stop=stop, run_manager=run_manager, **kwargs))
            return call.sent(own[0], scope.num_engine_results)

        if call.key is None or not rt.config.dedup:
            await compute()
            return own[0]
        snapshot = await rt.single_flight.ado(call.flight_key, compute)
        if own:
            return own[0]
        if snapshot is None:  # the leader's result could not be shared: compute our own
            await compute()
            return own[0]
        rt.recorder.add(num_dedup_hits=1)
        result = _serve(model, snapshot, run_manager, kwargs, "dedup")
        areplay = getattr(model, "_areplay_v2_events_for_cache_hit", None)
        if areplay is not None and run_manager is not None:
            await areplay(result.generations, run_manager=run_manager, **kwargs)
        return result


def is_installed() -> bool:
    """Whether the interception hooks are in place on ``BaseChatModel``."""
    return getattr(BaseChatModel._generate_with_cache, _HOOK_MARK, False)


def install() -> None:
    """Wrap ``BaseChatModel``'s generate paths (once; later calls do nothing)."""
    with _install_lock:
        if is_installed():
            return
        orig_sync = BaseChatModel._generate_with_cache
        orig_async = BaseChatModel._agenerate_with_cache

        def _generate_with_cache(self: BaseChatModel, messages: list[Any], stop: list[str] | None = None,
                                 run_manager: Any = None, **kwargs: Any) -> ChatResult:
            rt = current_runtime()
            if rt is None:
                return orig_sync(self, messages, stop=stop, run_manager=run_manager, **kwargs)
            return _intercept_sync(orig_sync, self, messages, stop, run_manager, kwargs, rt)

        async def _agenerate_with_cache(self: BaseChatModel, messages: list[Any], stop: list[str] | None = None,
                                        run_manager: Any = None, **kwargs: Any) -> ChatResult:
            rt = current_runtime()
            if rt is None:
                return await orig_async(self, messages, stop=stop, run_manager=run_manager, **kwargs)
            return await _intercept_async(orig_async, self, messages, stop, run_manager, kwargs, rt)

        for fn, orig in ((_generate_with_cache, orig_sync), (_agenerate_with_cache, orig_async)):
            fn.__doc__, fn.__wrapped__ = orig.__doc__, orig  # type: ignore[attr-defined]
            setattr(fn, _HOOK_MARK, True)
        BaseChatModel._generate_with_cache = _generate_with_cache  # type: ignore[method-assign]
        BaseChatModel._agenerate_with_cache = _agenerate_with_cache  # type: ignore[method-assign]
