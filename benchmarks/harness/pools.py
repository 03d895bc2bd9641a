"""The engines a benchmark runs on: a ``PoolSpec`` says what a regime needs, a factory builds it.

- ``vllm_pool_factory(model, ...)``: real in-process vLLM engines (prefix caching on). The KV
  cache is given in tokens and converted to GiB with the model's KV bytes per token
  (``kv_bytes_per_token``); vLLM needs room for one full sequence, so ``max_model_len`` is
  lowered with the KV cache under pressure.
- ``sim_pool_factory()``: ``SimWorker`` engines (virtual time, no model weights; only the
  tokenizer of the default model is loaded). For tests and for tracing prompts cheaply.

Example:
    >>> spec = PoolSpec(num_workers=1, kv_capacity_tokens=4096, max_model_len=2048)
    >>> spec.num_workers, spec.kv_capacity_tokens
    (1, 4096)
    >>> kv_bytes_per_token({"num_hidden_layers": 30, "num_key_value_heads": 3, "head_dim": 64})
    23040
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["PoolSpec", "PoolFactory", "vllm_pool_factory", "sim_pool_factory", "kv_bytes_per_token"]


@dataclass(frozen=True)
class PoolSpec:
    """What a regime asks of the engines.

    Attributes:
        num_workers: engines in the pool.
        kv_capacity_tokens: KV cache per engine in tokens (None: the factory's ample default).
        max_model_len: longest sequence (prompt + output) per request (None: the factory's default).
    """

    num_workers: int = 1
    kv_capacity_tokens: int | None = None
    max_model_len: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ValueError(f"PoolSpec.num_workers must be a positive integer, got {self.num_workers!r}.")
        for name in ("kv_capacity_tokens", "max_model_len"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 16):
                raise ValueError(f"PoolSpec.{name} must be None or an integer >= 16, got {v!r}.")
        if (self.kv_capacity_tokens is not None and self.max_model_len is not None
                and self.kv_capacity_tokens < self.max_model_len):
            raise ValueError(f"PoolSpec: kv_capacity_tokens ({self.kv_capacity_tokens}) must hold one full "
                             f"sequence of max_model_len ({self.max_model_len}) tokens; lower max_model_len.")


#: ``factory(spec) -> WorkerPool`` (started).
PoolFactory = Callable[[PoolSpec], Any]


def kv_bytes_per_token(model_config: Mapping[str, Any], dtype_bytes: int = 2) -> int:
    """KV cache bytes one token takes: keys and values of every layer's KV heads."""
    layers = int(model_config["num_hidden_layers"])
    heads = int(model_config.get("num_key_value_heads") or model_config["num_attention_heads"])
    head_dim = int(model_config.get("head_dim")
                   or model_config["hidden_size"] // model_config["num_attention_heads"])
    return 2 * layers * heads * head_dim * dtype_bytes


def vllm_pool_factory(model: str | Path | None = None, *, ample_kv_cache_gib: float = 0.5,
                      max_model_len: int = 8192, max_num_seqs: int = 64) -> PoolFactory:
    """A factory of real vLLM pools for ``model`` (default: the project's default model)."""

    def make(spec: PoolSpec) -> Any:
        from helium_lc.engine.model import resolve_model
        from helium_lc.engine.pool import WorkerPool

        path = resolve_model(model)
        gib = ample_kv_cache_gib
        if spec.kv_capacity_tokens is not None:
            cfg = json.loads((Path(path) / "config.json").read_text())
            gib = spec.kv_capacity_tokens * kv_bytes_per_token(cfg) / float(1 << 30)
        return WorkerPool(num_workers=spec.num_workers, model=path, kv_cache_gib=gib,
                          max_model_len=spec.max_model_len or max_model_len, max_num_seqs=max_num_seqs,
                          engine_args=_gpu_share(spec.num_workers))

    return make


def _gpu_share(num_workers: int) -> dict[str, Any]:
    """On a CUDA machine, the engines of one pool share its GPU: each may claim 0.9 / N of it
    (vLLM refuses to start an engine when less than ``gpu_memory_utilization`` of the device is
    free, and the pool's engines share one device). Nothing on CPU."""
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available() or num_workers <= 1:
        return {}
    return {"gpu_memory_utilization": round(0.9 / num_workers, 3)}


def sim_pool_factory(*, block_size: int = 16, ample_kv_capacity_tokens: int = 1 << 20,
                     cost: Any = None) -> PoolFactory:
    """A factory of ``WorkerPool``s over ``SimWorker``s (default model's tokenizer, no weights)."""

    def make(spec: PoolSpec) -> Any:
        from helium_lc.engine.pool import WorkerPool
        from helium_lc.engine.sim import SimWorker

        kv = spec.kv_capacity_tokens or ample_kv_capacity_tokens
        return WorkerPool(workers=[SimWorker(i, cost=cost, block_size=block_size, kv_capacity_tokens=kv)
                                   for i in range(spec.num_workers)])

    return make
