"""The only module that reads ``os.environ``.

Every environment variable helium_lc understands is listed here with its meaning.

Example:
    >>> from helium_lc import env
    >>> isinstance(env.cache_dir(), env.Path)
    True
"""

from __future__ import annotations

import os
from pathlib import Path

#: Where converted models and persistent caches live (default ``~/.cache/helium_lc``).
HELIUM_LC_CACHE_DIR = "HELIUM_LC_CACHE_DIR"
#: A local Hugging Face model folder to use instead of the default SmolLM2 conversion.
HELIUM_LC_MODEL = "HELIUM_LC_MODEL"
#: KV cache size per worker, in GiB (vLLM CPU); default 0.5.
HELIUM_LC_KV_CACHE_GIB = "HELIUM_LC_KV_CACHE_GIB"
#: Number of workers of the shared default pool; default 1.
HELIUM_LC_NUM_WORKERS = "HELIUM_LC_NUM_WORKERS"
#: Log level of the vLLM engines helium_lc starts (debug/info/warning/error/critical); default error.
HELIUM_LC_LOG_LEVEL = "HELIUM_LC_LOG_LEVEL"


def cache_dir() -> Path:
    """Root cache directory, from ``HELIUM_LC_CACHE_DIR`` or ``~/.cache/helium_lc``."""
    value = os.environ.get(HELIUM_LC_CACHE_DIR)
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "helium_lc"


def model_override() -> str | None:
    """A model folder named by ``HELIUM_LC_MODEL``, if any."""
    return os.environ.get(HELIUM_LC_MODEL) or None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"Environment variable {name}={raw!r} is not a number; unset it or set e.g. {name}={default}.") from None


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"Environment variable {name}={raw!r} is not an integer; unset it or set e.g. {name}={default}.") from None


def kv_cache_gib(default: float = 0.5) -> float:
    """KV cache GiB per worker from ``HELIUM_LC_KV_CACHE_GIB``."""
    return _float(HELIUM_LC_KV_CACHE_GIB, default)


def num_workers(default: int = 1) -> int:
    """Workers in the shared default pool from ``HELIUM_LC_NUM_WORKERS``."""
    return _int(HELIUM_LC_NUM_WORKERS, default)


def get(name: str, default: str | None = None) -> str | None:
    """Read any variable (used for vLLM's own knobs, e.g. ``VLLM_CPU_OMP_THREADS_BIND``)."""
    return os.environ.get(name, default)


def variables() -> "os._Environ[str]":
    """The live environment mapping (read-only use)."""
    return os.environ


def set_var(name: str, value: str) -> None:
    """Set a variable for this process (vLLM reads its configuration from the environment)."""
    os.environ[name] = value


def snapshot() -> dict[str, str]:
    """A copy of the environment (to restore what vLLM changes, e.g. ``LD_PRELOAD``)."""
    return dict(os.environ)


def restore(saved: dict[str, str], names: tuple[str, ...]) -> None:
    """Put ``names`` back to their values in ``saved`` (removing those that were absent)."""
    for name in names:
        if name in saved:
            os.environ[name] = saved[name]
        else:
            os.environ.pop(name, None)


def cpu_count() -> int:
    """Usable CPU cores of this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
