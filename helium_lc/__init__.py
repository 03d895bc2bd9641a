"""helium_lc: run existing LangGraph agents faster, unchanged.

    >>> import helium_lc as helium
    >>> llm = helium.HeliumChatModel(max_tokens=32)     # doctest: +SKIP
    >>> fast = helium.accelerate(app)                   # doctest: +SKIP
    >>> results = fast.batch(inputs)                    # doctest: +SKIP

vLLM is imported lazily (only when an engine starts), so this package imports without it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "HeliumChatModel": "helium_lc.chat_model",
    "WorkerPool": "helium_lc.engine.pool",
    "get_default_pool": "helium_lc.engine.default_pool",
    "set_default_pool": "helium_lc.engine.default_pool",
    "SamplingSpec": "helium_lc.engine.types",
    "GenerationRequest": "helium_lc.engine.types",
    "GenerationResult": "helium_lc.engine.types",
    "ensure_default_model": "helium_lc.engine.model",
    "accelerate": "helium_lc.accelerate",
    "AcceleratedGraph": "helium_lc.accelerate",
    "HeliumConfig": "helium_lc.config",
    "explain": "helium_lc.explain",
    "capture": "helium_lc.capture",
    "RunStats": "helium_lc.runtime.stats",
    "helium_chat_openai": "helium_lc.integrations.openai_transport",
    "route_openai": "helium_lc.integrations.openai_transport",
}

__all__ = sorted(_EXPORTS)

# These three share their names with a submodule; import them eagerly so that the package
# attribute is the function, not the module (`from helium_lc import accelerate`). None of them
# imports vLLM.
from helium_lc.accelerate import accelerate  # noqa: E402,F401
from helium_lc.capture import capture  # noqa: E402,F401
from helium_lc.explain import explain  # noqa: E402,F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'helium_lc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
