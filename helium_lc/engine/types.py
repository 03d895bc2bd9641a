"""Engine-level value types shared by every worker implementation.

These types know nothing of LangGraph or vLLM. A request is always a list of prompt
token ids (the chat template has already been applied), so that everything above the
engine (prompt cache, radix trees, cost model) reasons about exactly what the KV cache
sees.

Example:
    >>> spec = SamplingSpec(max_tokens=8)
    >>> spec.is_deterministic
    True
    >>> req = GenerationRequest(prompt_token_ids=(1, 2, 3), sampling=spec)
    >>> req.num_prompt_tokens
    3
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, AsyncIterator, runtime_checkable

_request_counter = itertools.count()


def stop_sequences(stop: Any) -> tuple[str, ...]:
    """A call's ``stop`` as a tuple of strings (one string is one sequence), else a clear error.

    Example:
        >>> stop_sequences("\\n"), stop_sequences(["a", "b"])
        (('\\n',), ('a', 'b'))
    """
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, (list, tuple)) and all(isinstance(s, str) and s for s in stop):
        return tuple(stop)
    raise ValueError(f"stop must be a string or a list of non-empty strings, got {stop!r}; "
                     "e.g. stop=['\\n\\n'].")


def new_request_id(prefix: str = "hlc") -> str:
    """Return a process-unique request id such as ``hlc-17``."""
    return f"{prefix}-{next(_request_counter)}"


class EngineError(RuntimeError):
    """A request failed inside an engine. The message says what happened and what to do."""


class WorkerDiedError(EngineError):
    """The worker serving a request died; the pool restarts or removes it."""


class StreamInterruptedError(WorkerDiedError):
    """The worker died after part of a streamed output reached the caller (not retried)."""


class PromptTooLongError(EngineError, ValueError):
    """The prompt (plus requested output) does not fit in the model's context."""


class GuidedOutputTruncatedError(EngineError, ValueError):
    """Guided (JSON-schema) decoding reached ``max_tokens`` before the JSON was complete."""


@dataclass(frozen=True)
class SamplingSpec:
    """Every sampling parameter that can change a model's output.

    Validated on construction. ``json_schema`` (a JSON-serialised schema string) turns on
    the engine's guided JSON decoding. A spec is *deterministic* when decoding is greedy
    (temperature 0): only deterministic calls are cached or deduplicated.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: str | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    #: With ``json_schema``: JSON without optional whitespace (no newlines or indentation
    #: between tokens), so the output's length is bounded by the schema's bounds alone.
    compact_json: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(
                f"max_tokens must be a positive integer, got {self.max_tokens!r}; "
                "pass e.g. max_tokens=256."
            )
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise ValueError(
                f"temperature must be a finite number >= 0, got {self.temperature!r}; "
                "use 0 for greedy (deterministic) decoding."
            )
        if not (0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}.")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}.")
        for name in ("presence_penalty", "frequency_penalty"):
            v = getattr(self, name)
            if not (-2.0 <= v <= 2.0):
                raise ValueError(f"{name} must be in [-2, 2], got {v!r}.")
        if isinstance(self.stop, str):  # a common mistake: stop="\n"
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.json_schema is not None and not isinstance(self.json_schema, str):
            object.__setattr__(self, "json_schema", json.dumps(self.json_schema, sort_keys=True))
        if self.compact_json and self.json_schema is None:
            raise ValueError("compact_json=True needs a json_schema.")

    @property
    def is_deterministic(self) -> bool:
        """True when the output is a function of the prompt alone (greedy decoding)."""
        return self.temperature == 0

    def cache_key(self) -> tuple[Any, ...]:
        """The output-affecting parameters, as a hashable tuple (used in prompt-cache keys)."""
        return (
            self.max_tokens, self.temperature, self.top_p, self.top_k, self.seed,
            self.stop, self.json_schema, self.presence_penalty, self.frequency_penalty,
        ) + (("compact_json",) if self.compact_json else ())  # keys of other calls unchanged


@dataclass(frozen=True)
class RequestOrigin:
    """Where in a workflow a request comes from (for scheduling, stats and explain)."""

    node: str | None = None          # langgraph_node
    step: int | None = None          # langgraph_step
    checkpoint_ns: str | None = None
    ordinal: int = 0                 # n-th LLM call made by this node in this step
    row: int | None = None           # input row within a batch
    operator_id: str | None = None   # the call site: "<node path>#<ordinal>" (the learned plan's key)


@dataclass(frozen=True)
class GenerationRequest:
    """One LLM call, already tokenized with the chat template applied."""

    prompt_token_ids: tuple[int, ...]
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    request_id: str = field(default_factory=new_request_id)
    origin: RequestOrigin | None = None
    # Lower sorts first in a worker's waiting queue; the scheduler sets it.
    priority: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_token_ids, tuple):
            object.__setattr__(self, "prompt_token_ids", tuple(self.prompt_token_ids))
        if not self.prompt_token_ids:
            raise ValueError("A request needs at least one prompt token.")

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)


@dataclass(frozen=True)
class GenerationResult:
    """The outcome of one request on one worker."""

    request_id: str
    text: str
    token_ids: tuple[int, ...]
    num_prompt_tokens: int
    num_cached_prompt_tokens: int
    finish_reason: str | None
    worker_id: int
    queued_s: float = 0.0        # submit -> first scheduled (approximate)
    first_token_s: float = 0.0   # submit -> first output token
    total_s: float = 0.0         # submit -> finished

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class GenerationChunk:
    """A streamed piece of output. The last chunk carries ``result``."""

    request_id: str
    text_delta: str
    token_ids_delta: tuple[int, ...]
    result: GenerationResult | None = None


@dataclass
class WorkerStats:
    """Counters of one worker since start (or since ``reset_stats``)."""

    worker_id: int
    num_requests: int = 0
    num_prompt_tokens: int = 0
    num_cached_prompt_tokens: int = 0
    num_output_tokens: int = 0
    num_running: int = 0          # submitted and not yet finished
    num_warm_requests: int = 0
    num_failed: int = 0
    busy_s: float = 0.0           # sum of per-request service times (overlapping)
    alive: bool = True

    @property
    def num_computed_prompt_tokens(self) -> int:
        return self.num_prompt_tokens - self.num_cached_prompt_tokens

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["num_computed_prompt_tokens"] = self.num_computed_prompt_tokens
        return d


@runtime_checkable
class Worker(Protocol):
    """What every engine (real vLLM, remote, simulated) offers the scheduler.

    All methods are coroutines to be awaited on the worker's own event loop.
    """

    worker_id: int
    block_size: int              # KV cache block size in tokens (prefix caching granularity)
    kv_capacity_tokens: int      # how many tokens the KV cache holds

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]: ...

    async def warm(self, prompt_token_ids: Sequence[int]) -> GenerationResult: ...

    async def abort(self, request_id: str) -> None: ...

    async def reset_prefix_cache(self) -> None: ...

    def stats(self) -> WorkerStats: ...

    async def shutdown(self) -> None: ...


def merge_stats(stats: Sequence[WorkerStats]) -> Mapping[str, int | float]:
    """Sum the counters of several workers (for pool-level summaries)."""
    keys = ("num_requests", "num_prompt_tokens", "num_cached_prompt_tokens",
            "num_output_tokens", "num_running", "num_warm_requests", "num_failed")
    out: dict[str, int | float] = {k: sum(getattr(s, k) for s in stats) for k in keys}
    out["num_computed_prompt_tokens"] = out["num_prompt_tokens"] - out["num_cached_prompt_tokens"]
    out["num_workers_alive"] = sum(1 for s in stats if s.alive)
    return out
