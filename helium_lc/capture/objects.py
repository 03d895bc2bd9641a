"""Find the Python objects a LangGraph node uses: its function, chat models, prompts.

A node's runnable is unwrapped to the user's function (:func:`node_function`); the
names that function can see (closure cells, referenced globals, default arguments,
``self``) form its namespace (:func:`function_namespace`). Chat models and prompt
templates are found in that namespace and inside composed runnables
(``prompt | llm``, ``llm.bind(...)``).

Purity of a chat model (:func:`model_purity`): temperature 0 -> PURE; a seed set
with temperature > 0 -> SEEDED; otherwise (temperature > 0, or unknown/unset, since
most providers then default to sampling) -> SAMPLED.

Example:
    >>> def node(state):
    ...     return {"n": len(state["xs"])}
    >>> node_function(node)[0] is node
    True
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterator, Mapping

from helium_lc.plan.ir import Purity

__all__ = [
    "node_function", "function_namespace", "iter_components", "is_chat_model", "is_prompt",
    "is_llm_runnable", "find_chat_model", "find_chat_prompt", "model_identity", "model_purity",
    "reachable_chat_models", "PURE_MARK",
]

PURE_MARK = "__helium_pure__"


def _is_instance_by_name(obj: Any, module_prefix: str, class_name: str) -> bool:
    return any(c.__name__ == class_name and c.__module__.startswith(module_prefix)
               for c in type(obj).__mro__)


def is_chat_model(obj: Any) -> bool:
    """True for a langchain-core ``BaseChatModel`` instance."""
    return _is_instance_by_name(obj, "langchain_core", "BaseChatModel")


def is_prompt(obj: Any) -> bool:
    """True for a langchain-core prompt template instance."""
    return _is_instance_by_name(obj, "langchain_core", "BasePromptTemplate")


def _is_runnable(obj: Any) -> bool:
    return _is_instance_by_name(obj, "langchain_core", "Runnable")


def _is_parser(obj: Any) -> bool:
    return _is_instance_by_name(obj, "langchain_core", "BaseOutputParser")


def iter_components(obj: Any, _depth: int = 0) -> Iterator[Any]:
    """``obj`` and the runnables composed inside it (sequences, bindings, parallels)."""
    yield obj
    if _depth > 8 or not _is_runnable(obj):
        return
    children: list[Any] = []
    steps = getattr(type(obj), "steps", None)
    if isinstance(steps, property):
        children.extend(obj.steps)
    if hasattr(obj, "steps__"):
        children.extend(obj.steps__.values())
    for attr in ("bound", "runnable"):
        child = getattr(obj, attr, None)
        if child is not None and _is_runnable(child):
            children.append(child)
    for child in children:
        yield from iter_components(child, _depth + 1)


def is_llm_runnable(obj: Any) -> bool:
    """True if ``obj`` is a chat model, prompt, parser, or a composition of only those."""
    parts = list(iter_components(obj))
    leaves = [p for p in parts if not (hasattr(p, "steps__") or isinstance(getattr(type(p), "steps", None), property)
                                       or getattr(p, "bound", None) is not None)]
    return bool(leaves) and all(is_chat_model(p) or is_prompt(p) or _is_parser(p) for p in leaves)


def find_chat_model(obj: Any) -> tuple[Any, dict[str, Any]] | None:
    """The first chat model inside ``obj`` and the keyword arguments bound on the way."""
    bound: dict[str, Any] = {}
    for part in iter_components(obj):
        kwargs = getattr(part, "kwargs", None)
        if isinstance(kwargs, Mapping) and getattr(part, "bound", None) is not None:
            bound.update(kwargs)
        if is_chat_model(part):
            return part, bound
    return None


def find_chat_prompt(obj: Any) -> Any | None:
    """The first chat prompt template inside ``obj`` (before its model), if any."""
    for part in iter_components(obj):
        if is_chat_model(part):
            return None
        if is_prompt(part) and hasattr(part, "messages"):
            return part
    return None


def model_identity(model: Any, bound: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that identify what a chat model computes (class, model, sampling)."""
    ident: dict[str, Any] = {"model_class": type(model).__name__}
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str):
            ident["model"] = value
            break
    for attr in ("temperature", "seed", "top_p", "max_tokens"):
        value = bound.get(attr, getattr(model, attr, None))
        if value is not None:
            ident[attr] = value
    return ident


def model_purity(identity: Mapping[str, Any]) -> Purity:
    """PURE for temperature 0; SEEDED for a seed with temperature > 0; else SAMPLED."""
    temperature = identity.get("temperature")
    if isinstance(temperature, (int, float)) and temperature == 0:
        return Purity.PURE
    if not isinstance(temperature, (int, float, type(None))) or isinstance(identity.get("seed"), str):
        return Purity.SAMPLED  # not known statically (e.g. bind(temperature=t)): assume sampling
    if identity.get("seed") is not None and temperature is not None:
        return Purity.SEEDED
    return Purity.SAMPLED


def reachable_chat_models(fn: Callable[..., Any], bound_self: Any = None) -> list[Any]:
    """Chat models a function can reach without naming them in a call it makes: its closure
    cells, default arguments and ``self``'s attributes (one level; runnables are searched).
    For nodes built by libraries (``create_agent``'s model node) whose source resolves the
    model at run time."""
    values: list[Any] = []
    try:
        values += list(inspect.getclosurevars(fn).nonlocals.values())
    except (TypeError, ValueError):
        pass
    try:
        values += [p.default for p in inspect.signature(fn).parameters.values()
                   if p.default is not inspect.Parameter.empty]
    except (TypeError, ValueError):
        pass
    if bound_self is not None:
        values += list(getattr(bound_self, "__dict__", {}).values())
    found: list[Any] = []
    for v in values:
        hit = find_chat_model(v) if is_chat_model(v) or _is_runnable(v) else None
        if hit is not None and all(hit[0] is not m for m in found):
            found.append(hit[0])
    return found


def node_function(runnable: Any) -> tuple[Callable[..., Any] | None, Any]:
    """The user function behind a node's runnable and its bound ``self`` (or None)."""
    fn: Any = runnable
    for attr in ("func", "afunc"):  # RunnableCallable / RunnableLambda
        if _is_runnable(runnable) and getattr(runnable, attr, None) is not None:
            fn = getattr(runnable, attr)
            break
    for _ in range(8):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        else:
            break
    if inspect.ismethod(fn):
        return fn.__func__, fn.__self__
    if inspect.isfunction(fn):
        return fn, None
    call = getattr(type(fn), "__call__", None)
    if call is not None and inspect.isfunction(call) and not _is_runnable(fn):
        return call, fn
    return None, None


def function_namespace(fn: Callable[..., Any], bound_self: Any = None) -> dict[str, Any]:
    """Names visible in ``fn``: builtins < globals < closure cells < defaults < self."""
    ns: dict[str, Any] = {}
    try:
        cv = inspect.getclosurevars(fn)
        ns.update(cv.builtins)
        ns.update(cv.globals)
        ns.update(cv.nonlocals)
    except (TypeError, ValueError):
        ns.update(getattr(fn, "__globals__", {}))
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.default is not inspect.Parameter.empty:
            ns[p.name] = p.default
    if bound_self is not None and params:
        ns[params[0].name] = bound_self
    return ns
