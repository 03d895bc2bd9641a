"""``RemoteWorker``: the ``Worker`` protocol over a vLLM OpenAI-compatible server.

Start a server the usual way (``python -m vllm.entrypoints.openai.api_server --model M
--enable-prefix-caching --enable-prompt-tokens-details``) and give its URL to
``WorkerPool(servers=[...])``. Each request goes to ``POST /v1/completions`` as **token ids**
(the pool renders the chat template with the model's own tokenizer), so the scheduler's
per-worker prefix model sees exactly the tokens the server caches. What the server offers:

* output text and token ids (``return_token_ids``), streamed over SSE when asked;
* prefix-cache hits from ``usage.prompt_tokens_details.cached_tokens`` (the server needs
  ``--enable-prompt-tokens-details``; without it hits read as 0);
* block size and KV capacity from ``/metrics`` (``vllm:cache_config_info``);
* liveness from ``/health``; structured output by ``structured_outputs`` (JSON schema, or an
  xgrammar grammar for compact JSON); engine priorities when the server schedules by priority
  (detected: a server that refuses priorities is sent none);
* abort: closing the HTTP request, which vLLM turns into an abort;
* ``/reset_prefix_cache`` only on servers started with ``VLLM_SERVER_DEV_MODE=1`` (otherwise
  :meth:`reset_prefix_cache` raises an error saying so).

Example (needs a running server):
    >>> import asyncio
    >>> async def main():
    ...     w = RemoteWorker(0, RemoteWorkerConfig("http://127.0.0.1:8000"))
    ...     await w.start()
    ...     r = await w.generate(GenerationRequest((1, 2, 3), SamplingSpec(max_tokens=4)))
    ...     await w.shutdown()
    ...     return r.num_prompt_tokens
    >>> asyncio.run(main())   # doctest: +SKIP
    3
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping, Sequence

import httpx

from helium_lc.engine.types import (
    EngineError,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    PromptTooLongError,
    SamplingSpec,
    WorkerDiedError,
    WorkerStats,
    new_request_id,
)

log = logging.getLogger("helium_lc.pool")

_CACHE_INFO = re.compile(r"^vllm:cache_config_info\{(?P<labels>[^}]*)\}", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


#: Seconds an idle pooled connection is kept (below uvicorn's default keep-alive timeout, 5 s).
KEEPALIVE_EXPIRY_S = 2.0


@dataclass(frozen=True)
class RemoteWorkerConfig:
    """How to reach one vLLM OpenAI-compatible server. Validated on construction.

    ``base_url`` is the server's root (``http://host:8000``; a trailing ``/v1`` is accepted).
    ``model`` is the served model name to send (default: the one ``/v1/models`` lists).
    ``headers`` are sent with every request (e.g. ``{"X-data-parallel-rank": "1"}`` pins a rank
    of a vLLM data-parallel deployment; an ``Authorization`` header for ``--api-key``).
    ``max_num_seqs`` is how many requests the pool keeps in flight on this server.
    ``request_timeout_s`` bounds one request; ``start_timeout_s`` how long :meth:`start`
    waits for ``/health``.
    """

    base_url: str
    model: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_num_seqs: int = 64
    request_timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not re.match(r"^https?://[^/\s]+", self.base_url):
            raise ValueError(f"servers entries must be http(s) URLs like 'http://127.0.0.1:8000', got {self.base_url!r}.")
        root = self.base_url.rstrip("/")
        object.__setattr__(self, "base_url", root[:-3] if root.endswith("/v1") else root)
        if isinstance(self.headers, Mapping):
            object.__setattr__(self, "headers", tuple(sorted(self.headers.items())))
        if not isinstance(self.max_num_seqs, int) or self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be a positive integer, got {self.max_num_seqs!r}.")
        for name in ("request_timeout_s", "connect_timeout_s", "start_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)!r}.")


def sampling_payload(spec: SamplingSpec) -> dict[str, Any]:
    """The ``/v1/completions`` fields for a :class:`SamplingSpec` (always explicit: a server's
    own defaults, e.g. from the model's generation config, never apply to helium_lc requests)."""
    body: dict[str, Any] = {
        "max_tokens": spec.max_tokens, "temperature": spec.temperature, "top_p": spec.top_p,
        "presence_penalty": spec.presence_penalty, "frequency_penalty": spec.frequency_penalty,
        "stop": list(spec.stop), "skip_special_tokens": True,
    }
    if spec.top_k > 0:
        body["top_k"] = spec.top_k
    if spec.seed is not None:
        body["seed"] = spec.seed
    if spec.json_schema is not None:
        if spec.compact_json:
            import xgrammar

            grammar = xgrammar.Grammar.from_json_schema(spec.json_schema, any_whitespace=False)
            body["structured_outputs"] = {"grammar": str(grammar)}
        else:
            body["structured_outputs"] = {"json": json.loads(spec.json_schema)}
    return body


def parse_cache_config(metrics_text: str) -> tuple[int, int] | None:
    """``(block_size, kv_capacity_tokens)`` from a vLLM ``/metrics`` page, or None.

    Example:
        >>> parse_cache_config('vllm:cache_config_info{block_size="32",num_gpu_blocks="364"} 1.0')
        (32, 11648)
    """
    m = _CACHE_INFO.search(metrics_text)
    if m is None:
        return None
    labels = dict(_LABEL.findall(m.group("labels")))
    try:
        block = int(labels["block_size"])
    except (KeyError, ValueError):
        return None
    blocks, tokens = labels.get("num_gpu_blocks", ""), labels.get("kv_cache_size_tokens", "")
    if blocks.isdigit():
        return block, int(blocks) * block  # whole blocks: what the prefix cache can hold
    return block, int(tokens) if tokens.isdigit() else 0


class RemoteWorker:
    """One vLLM OpenAI-compatible server, implementing the ``Worker`` protocol."""

    def __init__(self, worker_id: int, config: RemoteWorkerConfig) -> None:
        self.worker_id = worker_id
        self.config = config
        self.block_size = 16
        self.kv_capacity_tokens = 0
        self.max_model_len = 0
        self.served_model: str = config.model or ""
        self.model_root: str = ""
        self._client: httpx.AsyncClient | None = None
        self._stats = WorkerStats(worker_id=worker_id, alive=False)
        self._inflight: dict[str, asyncio.Task[Any]] = {}        # generate(): the HTTP call's task
        self._streams: dict[str, httpx.Response] = {}            # stream(): the open response
        self._aborted: set[str] = set()
        self._send_priority = True
        self._warned_reset = False

    @property
    def base_url(self) -> str:
        return self.config.base_url

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Wait for ``/health``, then read the served model and the KV cache layout."""
        cfg = self.config
        self._client = httpx.AsyncClient(
            base_url=cfg.base_url, headers=dict(cfg.headers),
            timeout=httpx.Timeout(cfg.request_timeout_s, connect=cfg.connect_timeout_s),
            # idle connections are closed before the server's own keep-alive timeout (uvicorn's
            # default, 5 s, is httpx's too: reusing one the server is closing fails the request)
            limits=httpx.Limits(max_connections=max(8, 2 * cfg.max_num_seqs), max_keepalive_connections=cfg.max_num_seqs,
                                keepalive_expiry=KEEPALIVE_EXPIRY_S))
        deadline = time.monotonic() + cfg.start_timeout_s
        last: str = ""
        while True:
            try:
                r = await self._client.get("/health", timeout=5.0)
                if r.status_code == 200:
                    break
                last = f"/health answered {r.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                await self._client.aclose()
                self._client = None
                raise EngineError(f"The vLLM server at {cfg.base_url} did not become healthy within "
                                  f"{cfg.start_timeout_s:g} s ({last}). Check that it is running and the URL is right.")
            await asyncio.sleep(0.5)
        models = (await self._client.get("/v1/models")).json().get("data", [])
        if not models:
            raise EngineError(f"The server at {cfg.base_url} lists no model at /v1/models.")
        chosen = next((m for m in models if m.get("id") == cfg.model), None) if cfg.model else models[0]
        if chosen is None:
            raise EngineError(f"The server at {cfg.base_url} does not serve model {cfg.model!r}; it serves "
                              f"{[m.get('id') for m in models]}.")
        self.served_model = str(chosen["id"])
        self.model_root = str(chosen.get("root") or chosen["id"])
        self.max_model_len = int(chosen.get("max_model_len") or 0)
        try:
            parsed = parse_cache_config((await self._client.get("/metrics")).text)
        except httpx.HTTPError:
            parsed = None
        if parsed is not None:
            self.block_size, self.kv_capacity_tokens = parsed
        else:
            log.warning("helium_lc: %s has no vllm:cache_config_info in /metrics; assuming block size %d and "
                        "an unknown KV capacity.", cfg.base_url, self.block_size)
        self._stats.alive = True

    @property
    def alive(self) -> bool:
        return self._client is not None and self._stats.alive

    async def shutdown(self) -> None:
        """Close the connections (the server keeps running). Safe to call twice."""
        client, self._client = self._client, None
        self._stats.alive = False
        for task in list(self._inflight.values()):
            task.cancel()
        if client is not None:
            await client.aclose()

    async def tokenize_chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int] | None:
        """The server's own rendering of ``messages`` (chat template + generation prompt) as
        token ids, or None when the server has no ``/tokenize``."""
        if self._client is None:
            raise WorkerDiedError(f"Worker {self.worker_id} ({self.base_url}) is not running.")
        r = await self._client.post("/tokenize", json={"model": self.served_model, "messages": list(messages),
                                                       "add_generation_prompt": True})
        if r.status_code == 404:
            log.warning("helium_lc: %s has no /tokenize; the local tokenizer is assumed to match.", self.base_url)
            return None
        r.raise_for_status()
        return list(r.json()["tokens"])

    # -- requests --------------------------------------------------------------------------------
    def _body(self, request: GenerationRequest, *, stream: bool) -> dict[str, Any]:
        if self._client is None:
            raise WorkerDiedError(f"Worker {self.worker_id} ({self.base_url}) is not running (shut down or down).")
        if self.max_model_len and request.num_prompt_tokens + 1 > self.max_model_len:
            raise PromptTooLongError(
                f"The prompt has {request.num_prompt_tokens} tokens but the server at {self.base_url} serves a "
                f"context of {self.max_model_len} tokens. Shorten the prompt (e.g. trim the conversation history).")
        body = {"model": self.served_model, "prompt": list(request.prompt_token_ids), "return_token_ids": True,
                **sampling_payload(request.sampling)}
        if self.max_model_len:  # like the in-process engine: max_tokens never overruns the context
            body["max_tokens"] = max(1, min(body["max_tokens"], self.max_model_len - request.num_prompt_tokens))
        if self._send_priority and request.priority:
            body["priority"] = request.priority
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    async def _error(self, response: httpx.Response, request: GenerationRequest) -> BaseException:
        try:
            text = (await response.aread()).decode(errors="replace")
            message = json.loads(text).get("error", {}).get("message", text) if text.startswith("{") else text
        except Exception:  # noqa: BLE001 - best effort
            message = f"HTTP {response.status_code}"
        if response.status_code == 400 and ("maximum context length" in message or "max_model_len" in message
                                            or "longer than" in message):
            return PromptTooLongError(f"{self.base_url}: {message}")
        if response.status_code < 500:
            return EngineError(f"The server at {self.base_url} rejected request {request.request_id} "
                               f"(HTTP {response.status_code}): {message}")
        if not await self._healthy():
            return self._died(request, f"HTTP {response.status_code}: {message}")
        return EngineError(f"The server at {self.base_url} failed request {request.request_id} "
                           f"(HTTP {response.status_code}): {message}")

    async def _healthy(self) -> bool:
        if self._client is None:
            return False
        try:
            return (await self._client.get("/health", timeout=5.0)).status_code == 200
        except httpx.HTTPError:
            return False

    def _died(self, request: GenerationRequest, why: str) -> WorkerDiedError:
        self._stats.alive = False
        return WorkerDiedError(f"Worker {self.worker_id}: the server at {self.base_url} is down ({why}) while "
                               f"serving {request.request_id}. The pool re-admits it once /health passes.")

    def _refuses_priority(self, message: str) -> bool:
        if "priority" in message.lower() and self._send_priority:
            self._send_priority = False
            log.info("helium_lc: %s does not schedule by priority; sending requests without priorities.",
                     self.base_url)
            return True
        return False

    async def _run(self, request: GenerationRequest, *, stream: bool) -> AsyncIterator[GenerationChunk]:
        t0 = time.perf_counter()
        token_ids: list[int] = []
        texts: list[str] = []
        finish_reason: str | None = None
        usage: Mapping[str, Any] = {}
        first_token_s = 0.0
        self._stats.num_running += 1
        retried_priority = retried_link = False
        try:
            while True:  # a second try without the priority a server refused, or after a dropped link
                body = self._body(request, stream=stream)
                assert self._client is not None
                try:
                    async with self._client.stream("POST", "/v1/completions", json=body) as response:
                        if response.status_code != 200:
                            exc = await self._error(response, request)
                            if not retried_priority and "priority" in body and self._refuses_priority(str(exc)):
                                retried_priority = True
                                continue
                            raise exc
                        if not stream:
                            data = json.loads(await response.aread())
                            choice = data["choices"][0]
                            token_ids = list(choice.get("token_ids") or [])
                            texts = [choice.get("text", "")]
                            finish_reason = choice.get("finish_reason")
                            usage = data.get("usage") or {}
                            first_token_s = time.perf_counter() - t0
                            break
                        self._streams[request.request_id] = response
                        async for line in response.aiter_lines():
                            if not line.startswith("data:"):
                                continue
                            payload = line[5:].strip()
                            if payload == "[DONE]":
                                break
                            data = json.loads(payload)
                            if data.get("usage"):
                                usage = data["usage"]
                            for choice in data.get("choices") or []:
                                ids = tuple(choice.get("token_ids") or ())
                                text = choice.get("text") or ""
                                finish_reason = choice.get("finish_reason") or finish_reason
                                if ids or text:
                                    if not first_token_s:
                                        first_token_s = time.perf_counter() - t0
                                    token_ids.extend(ids)
                                    texts.append(text)
                                    yield GenerationChunk(request.request_id, text, ids)
                        break
                except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError,
                        httpx.StreamClosed) as exc:
                    if request.request_id in self._aborted:
                        raise EngineError(f"Request {request.request_id} was aborted.") from None
                    # A pooled keep-alive connection the server closed as we reused it fails like a
                    # dead server; a server that still answers /health gets the request once more
                    # (nothing reached the caller yet, so nothing can be served twice)
                    if not retried_link and not token_ids and not texts and await self._healthy():
                        retried_link = True
                        log.info("helium_lc: %s dropped request %s (%s: %s) but is healthy; sending it again.",
                                 self.base_url, request.request_id, type(exc).__name__, exc)
                        continue
                    raise self._died(request, f"{type(exc).__name__}: {exc}") from exc
                except httpx.TimeoutException as exc:
                    raise EngineError(f"The server at {self.base_url} did not answer request {request.request_id} "
                                      f"within request_timeout_s={self.config.request_timeout_s:g} s.") from exc
        except BaseException as exc:
            if not isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
                self._stats.num_failed += 1
            raise
        finally:
            self._stats.num_running -= 1
            self._streams.pop(request.request_id, None)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        total = time.perf_counter() - t0
        st = self._stats
        st.num_requests += 1
        st.num_prompt_tokens += request.num_prompt_tokens
        st.num_cached_prompt_tokens += cached
        st.num_output_tokens += len(token_ids)
        st.busy_s += total
        yield GenerationChunk(request.request_id, "", (), result=GenerationResult(
            request_id=request.request_id, text="".join(texts), token_ids=tuple(token_ids),
            num_prompt_tokens=request.num_prompt_tokens, num_cached_prompt_tokens=cached,
            finish_reason=finish_reason, worker_id=self.worker_id, first_token_s=first_token_s, total_s=total))

    async def _collect(self, request: GenerationRequest) -> GenerationResult:
        result = None
        async for chunk in self._run(request, stream=False):
            result = chunk.result or result
        assert result is not None
        return result

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        task = asyncio.ensure_future(self._collect(request))
        self._inflight[request.request_id] = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and not _current_task_cancelling():
                if request.request_id in self._aborted:
                    raise EngineError(f"Request {request.request_id} was aborted.") from None
                # shut down under it (e.g. the pool replacing a dead server): retryable elsewhere
                raise self._died(request, "the worker was shut down") from None
            task.cancel()  # our caller was cancelled: close the request (the server aborts it)
            raise
        finally:
            self._inflight.pop(request.request_id, None)
            self._aborted.discard(request.request_id)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        try:
            async for chunk in self._run(request, stream=True):
                yield chunk
        finally:
            self._aborted.discard(request.request_id)

    async def warm(self, prompt_token_ids: Sequence[int]) -> GenerationResult:
        """Prefill ``prompt_token_ids`` (one output token) so later requests hit the cache."""
        req = GenerationRequest(tuple(prompt_token_ids), SamplingSpec(max_tokens=1), request_id=new_request_id("warm"))
        result = await self.generate(req)
        self._stats.num_warm_requests += 1
        return result

    async def abort(self, request_id: str) -> None:
        """Close the request's connection; vLLM aborts a request whose client went away."""
        task = self._inflight.get(request_id)
        if task is not None and task is not asyncio.current_task():
            self._aborted.add(request_id)
            task.cancel()
        response = self._streams.get(request_id)
        if response is not None:
            self._aborted.add(request_id)
            await response.aclose()

    async def reset_prefix_cache(self) -> None:
        if self._client is None:
            return
        r = await self._client.post("/reset_prefix_cache")
        if r.status_code == 404:
            raise EngineError(f"The server at {self.base_url} does not allow resetting its prefix cache "
                              "(vLLM offers /reset_prefix_cache only with VLLM_SERVER_DEV_MODE=1 set for the server).")
        if r.status_code != 200:
            raise EngineError(f"The server at {self.base_url} refused to reset its prefix cache "
                              f"(HTTP {r.status_code}: {r.text[:200]}).")

    def stats(self) -> WorkerStats:
        return self._stats

    def reset_stats(self) -> None:
        self._stats = WorkerStats(worker_id=self.worker_id, num_running=self._stats.num_running,
                                  alive=self._stats.alive)


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return bool(task is not None and task.cancelling())
