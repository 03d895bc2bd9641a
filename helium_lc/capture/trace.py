"""Opt-in tracing: run a node once on placeholder state to record the keys it reads.

Best effort, used by ``capture(app, trace=True)`` only for nodes whose reads static
analysis could not determine. The node function is called with a recording mapping
whose values are placeholder strings; while it runs, every chat model call returns
an empty ``AIMessage`` instead of calling a model (``BaseChatModel.invoke`` is
patched for the duration: do not run other model calls in parallel with capture).
Async nodes and nodes that raise on placeholder values give no result (None).

Example:
    >>> def helper(s):
    ...     return s["a"] + s.get("b", "")
    >>> def node(state):
    ...     return {"c": helper(state)}
    >>> sorted(trace_reads(node))
    ['a', 'b']
"""

from __future__ import annotations

import inspect
from typing import Any, Iterator
from unittest import mock

from helium_lc.capture.objects import node_function

__all__ = ["trace_reads", "RecordingState"]


class RecordingState(dict):
    """A dict that returns ``"<key>"`` for any key and records which keys were read."""

    def __init__(self) -> None:
        super().__init__()
        self.keys_read: set[str] = set()

    def __getitem__(self, key: Any) -> Any:
        self.keys_read.add(str(key))
        return f"<{key}>"

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key]

    def __contains__(self, key: object) -> bool:
        self.keys_read.add(str(key))
        return True

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return self[key]

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("state iterated: reads are every key")


def trace_reads(runnable: Any) -> frozenset[str] | None:
    """Keys a node reads when run once on placeholder state, or None if tracing failed."""
    fn, bound_self = node_function(runnable)
    if fn is None or inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
        return None
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage

    state = RecordingState()
    args = (bound_self, state) if bound_self is not None else (state,)
    try:
        with mock.patch.object(BaseChatModel, "invoke", lambda self, *a, **k: AIMessage(content="")):
            params = list(inspect.signature(fn).parameters)
            fn(*args[: max(1, len(params))])
    except Exception:  # noqa: BLE001 - placeholder values may break user code; best effort
        return None
    return frozenset(state.keys_read)
