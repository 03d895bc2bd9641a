"""Adapters that let unchanged client libraries talk to helium_lc pools.

``openai_transport``: ``langchain_openai.ChatOpenAI`` (and any ``openai``/``httpx`` client)
served in-process through :class:`HeliumTransport`, with :func:`helium_chat_openai`,
:func:`patch_chat_openai` and :func:`route_openai`. Imported lazily: ``langchain_openai``
is needed only when these names are used.

Example:
    >>> from helium_lc.integrations import TransportConfig
    >>> TransportConfig(default_max_tokens=64).default_temperature is None   # the server's default
    True
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HeliumTransport": "helium_lc.integrations.openai_transport",
    "helium_chat_openai": "helium_lc.integrations.openai_transport",
    "patch_chat_openai": "helium_lc.integrations.openai_transport",
    "route_openai": "helium_lc.integrations.openai_transport",
    "HELIUM_BASE_URL": "helium_lc.integrations.openai_transport",
    "TransportConfig": "helium_lc.integrations.openai_protocol",
    "OpenAIRequestError": "helium_lc.integrations.openai_protocol",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'helium_lc.integrations' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
