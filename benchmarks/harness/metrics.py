"""Small statistics for the benchmark: medians, percentiles, geometric means, speedups, order.

Everything here is a pure function of plain numbers, so it is unit-tested with hand-made values.

- ``percentile(values, q)``: linear interpolation between closest ranks (numpy's default);
- ``median(values)``: the 50th percentile;
- ``geomean(values)``: the geometric mean of positive numbers;
- ``system_order(systems, repeat)``: the order systems run in a repeat (reversed every other one,
  so that no system always runs first on a cold machine or last on a hot one);
- ``speedup(baseline_s, system_s)``: how many times faster than the baseline;
- ``summarize(measures)``: per metric, the median over repeats.

Example:
    >>> median([3.0, 1.0, 2.0]), percentile([1.0, 2.0, 3.0, 4.0], 95)
    (2.0, 3.85)
    >>> system_order(["a", "b", "c"], repeat=1)
    ['c', 'b', 'a']
    >>> round(geomean([1.0, 4.0]), 6), speedup(baseline_s=6.0, system_s=3.0)
    (2.0, 2.0)
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["percentile", "median", "geomean", "system_order", "speedup", "summarize"]


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, interpolating linearly between ranks.

    Raises:
        ValueError: no values, or ``q`` outside [0, 100].
    """
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("percentile() of no values; measure at least one run first.")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q!r}.")
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    """The median (mean of the middle two for an even count)."""
    return percentile(values, 50)


def geomean(values: Iterable[float]) -> float:
    """Geometric mean of positive numbers (the right mean for ratios such as speedups)."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("geomean() of no values.")
    if any(x <= 0 for x in xs):
        raise ValueError(f"geomean() needs positive values, got {xs!r}.")
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def system_order(systems: Sequence[str], repeat: int) -> list[str]:
    """Systems in run order for repeat number ``repeat`` (0-based): as given, reversed on odd repeats."""
    if repeat < 0:
        raise ValueError(f"repeat must be >= 0, got {repeat!r}.")
    return list(systems) if repeat % 2 == 0 else list(reversed(systems))


def speedup(baseline_s: float, system_s: float) -> float | None:
    """``baseline_s / system_s``; None when the system took no time (nothing to compare)."""
    if system_s <= 0:
        return None
    return baseline_s / system_s


def summarize(measures: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per key, the median over ``measures`` of numeric values (bools: all true; None skipped).

    Non-numeric values are taken from the first measure that has them. Keys missing from
    some measures are summarised over the measures that have them.

    Example:
        >>> summarize([{"makespan_s": 3.0, "ok": True}, {"makespan_s": 1.0, "ok": True},
        ...            {"makespan_s": 2.0, "ok": False}])
        {'makespan_s': 2.0, 'ok': False}
    """
    out: dict[str, Any] = {}
    keys: list[str] = []
    for m in measures:
        keys.extend(k for k in m if k not in keys)
    for k in keys:
        vals = [m[k] for m in measures if k in m and m[k] is not None]
        if not vals:
            out[k] = None
        elif all(isinstance(v, bool) for v in vals):
            out[k] = all(vals)
        elif all(isinstance(v, (int, float)) for v in vals):
            out[k] = median(vals)
        else:
            out[k] = vals[0]
    return out
