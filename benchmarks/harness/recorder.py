"""What a benchmark run sent to the engines, and when each input finished.

``CallRecorder(pool)`` wraps the pool's single dispatch path (``WorkerPool._generate_on_loop``,
which ``agenerate``, ``generate`` and ``HeliumChatModel`` all go through) while it is attached,
and keeps one :class:`CallRecord` per engine request: the prompt token ids, the worker, the
wall-clock submit/finish times, the engine service time (``GenerationResult.total_s``), the
cached prompt tokens, and where the call came from (the input row, LangGraph node and step,
read from the run's config metadata). Warm-up requests (``pool.warm``) are not recorded; the
pool's own counters include them.

``RowTimer`` is a LangChain callback handler that notes when the root run of one input ends,
so per-input latency can be measured inside a single ``abatch`` (plain or accelerated).

``trace_to_calls`` turns records into the simulator's ``PendingCall`` batch, in a canonical
arrival order (LangGraph step, then row): a call depends on every call of the same row made in an
earlier LangGraph step; its template's static prefix is the longest common prefix (whole blocks)
of all calls made by the same node.

Example:
    >>> rec = CallRecord(row=0, node="ask", step=1, prompt_token_ids=(1, 2, 3), worker_id=0,
    ...                  submit_s=0.0, finish_s=0.5, service_s=0.4, num_cached_prompt_tokens=0,
    ...                  num_output_tokens=4)
    >>> rec.start_s   # the engine started serving it 0.4 s before it finished
    0.1
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

__all__ = ["CallRecord", "CallRecorder", "RowTimer", "trace_to_calls", "ROW_METADATA_KEY"]

#: The run-config metadata key under which the harness passes the input row.
ROW_METADATA_KEY = "bench_row"


@dataclass(frozen=True)
class CallRecord:
    """One engine request of a benchmark run (times in seconds since the recorder's ``t0``)."""

    row: int | None
    node: str | None
    step: int | None
    prompt_token_ids: tuple[int, ...]
    worker_id: int
    submit_s: float
    finish_s: float
    service_s: float
    num_cached_prompt_tokens: int
    num_output_tokens: int

    @property
    def start_s(self) -> float:
        """When the engine started serving the request (finish minus its service time)."""
        return round(max(self.submit_s, self.finish_s - self.service_s), 9)

    def as_timeline_dict(self) -> dict[str, Any]:
        """The fields a timeline plot needs (no token ids, to keep result files small)."""
        d = asdict(self)
        d.pop("prompt_token_ids")
        d["num_prompt_tokens"] = len(self.prompt_token_ids)
        d["start_s"] = self.start_s
        return d


def _origin() -> tuple[int | None, str | None, int | None]:
    """(row, langgraph node, langgraph step) of the current LangChain run, when known."""
    try:
        from langchain_core.runnables.config import var_child_runnable_config
        cfg = var_child_runnable_config.get() or {}
    except Exception:  # noqa: BLE001 - no run context: an unattributed call
        return None, None, None
    meta = cfg.get("metadata") or {}
    return meta.get(ROW_METADATA_KEY), meta.get("langgraph_node"), meta.get("langgraph_step")


class CallRecorder:
    """Records every request a ``WorkerPool`` dispatches while attached (a context manager).

    Attaching replaces the pool instance's ``_generate_on_loop`` attribute (the class is not
    touched); detaching restores it. Only one recorder may be attached to a pool at a time.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.records: list[CallRecord] = []
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._orig: Callable[..., Any] | None = None

    def reset(self) -> None:
        """Forget the records and restart the clock."""
        with self._lock:
            self.records = []
            self.t0 = time.perf_counter()

    def __enter__(self) -> "CallRecorder":
        if "_generate_on_loop" in vars(self.pool):
            raise RuntimeError("another CallRecorder is already attached to this pool; detach it first.")
        orig = self.pool._generate_on_loop  # noqa: SLF001 - the pool's one dispatch path
        self._orig = orig

        def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
            row, node, step = _origin()  # read in the caller's context, before the engine thread

            async def run() -> Any:
                submit = time.perf_counter() - self.t0
                result = await orig(request, *args, **kwargs)
                rec = CallRecord(row=row, node=node, step=step, prompt_token_ids=tuple(request.prompt_token_ids),
                                 worker_id=result.worker_id, submit_s=submit,
                                 finish_s=time.perf_counter() - self.t0, service_s=float(result.total_s),
                                 num_cached_prompt_tokens=result.num_cached_prompt_tokens,
                                 num_output_tokens=result.num_output_tokens)
                with self._lock:
                    self.records.append(rec)
                return result

            return run()

        self.pool._generate_on_loop = wrapped  # noqa: SLF001
        return self

    def __exit__(self, *exc: Any) -> None:
        vars(self.pool).pop("_generate_on_loop", None)
        self._orig = None


class RowTimer(BaseCallbackHandler):
    """Notes the wall-clock time (``time.perf_counter``) at which input ``row``'s root run ends."""

    run_inline = True  # called on the event loop, not in a thread pool

    def __init__(self, row: int, sink: dict[int, float]) -> None:
        self.row = row
        self.sink = sink

    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        if parent_run_id is None:
            self.sink[self.row] = time.perf_counter()

    def on_chain_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None,
                       **kwargs: Any) -> None:
        if parent_run_id is None:
            self.sink[self.row] = time.perf_counter()


def _common_prefix(seqs: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    first = seqs[0]
    n = len(first)
    for s in seqs[1:]:
        n = min(n, len(s))
        for i in range(n):
            if s[i] != first[i]:
                n = i
                break
    return first[:n]


def trace_to_calls(records: Sequence[CallRecord], block_size: int) -> list[Any]:
    """The simulator's ``PendingCall`` batch for the recorded calls (see the module docstring).

    A node's static prefix is cut to whole blocks (what a KV cache can share); calls without a
    row or step get no dependencies.
    """
    from helium_lc.schedule.snapshot import PendingCall

    # a canonical order (step, row, node, prompt), not the recording's: concurrent rows' calls
    # arrive in a different order from run to run, which made simulated results vary
    # (reflect: 0.91-1.05x between two runs of the same code)
    last = float("inf")
    records = sorted(records, key=lambda r: (last if r.step is None else r.step, last if r.row is None else r.row,
                                             r.node or "", r.prompt_token_ids))
    by_node: dict[str | None, list[tuple[int, ...]]] = {}
    for r in records:
        by_node.setdefault(r.node, []).append(r.prompt_token_ids)
    static: dict[str | None, tuple[int, ...]] = {}
    for node, prompts in by_node.items():
        p = _common_prefix(prompts) if len(prompts) > 1 else ()
        static[node] = p[:len(p) - len(p) % block_size]
    by_row: dict[int, list[tuple[int, int]]] = {}
    for i, r in enumerate(records):
        if r.row is not None and r.step is not None:
            by_row.setdefault(r.row, []).append((r.step, i))
    calls = []
    for i, r in enumerate(records):
        earlier = by_row.get(r.row, []) if r.row is not None and r.step is not None else []
        deps = tuple(f"c{j}" for step, j in earlier if step < r.step)  # type: ignore[operator]
        key = (static[r.node], f"{r.node}:rest") if static[r.node] else (f"{r.node}:rest",)
        calls.append(PendingCall(f"c{i}", r.prompt_token_ids, template_key=key, row=r.row, deps=deps,
                                 est_output_tokens=max(1, r.num_output_tokens), ready=not deps,
                                 arrival_seq=i, call_site=r.node))
    return calls
