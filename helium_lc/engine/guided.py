"""Guided-decoding JSON schemas that always finish within ``max_tokens``.

Under JSON-schema guided decoding a small model can loop inside a string value
(``"location": "https://www.example.com/https://www.example.com/..."``) or keep adding
array items until ``max_tokens`` cuts the JSON off: the result is not valid JSON and a
forced tool call or structured output comes back empty. :func:`bound_schema` returns a
copy of a schema in which every string gets a ``maxLength``, every array a
``maxItems`` and every integer a range of 13 digits, such that the whole value fits in ``max_tokens`` even at one token per
character, so decoding must close the JSON in time (decoded without optional
whitespace: ``SamplingSpec.compact_json``). The caller uses it for a retry only when an
unbounded attempt was truncated: outputs that finished are never changed.

Example:
    >>> schema = {"type": "object", "properties": {"city": {"type": "string"},
    ...           "tags": {"type": "array", "items": {"type": "string"}}}}
    >>> b = bound_schema(schema, max_tokens=64)
    >>> b["properties"]["city"]["maxLength"], b["properties"]["tags"]["maxItems"]
    (7, 4)
    >>> b["properties"]["tags"]["items"]["maxLength"]   # 5 string slots share 64 - 26 tokens
    7
    >>> "maxLength" in schema["properties"]["city"]      # the input is not mutated
    False
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from helium_lc.engine.types import GenerationRequest, GenerationResult, GuidedOutputTruncatedError

__all__ = ["bound_schema", "retry_request", "check_finished", "MAX_ARRAY_ITEMS"]

#: The most items an unbounded array gets in a bounded schema.
MAX_ARRAY_ITEMS = 4
#: Integers of a bounded schema stay within +-(10**12 - 1): at most 13 tokens each.
MAX_ABS_INTEGER = 10**12 - 1

_COMBINATORS = ("anyOf", "oneOf", "allOf")


def bound_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """A copy of ``schema`` whose values all fit in ``max_tokens`` tokens.

    Structure (braces, keys, punctuation, constants) is estimated at one token per two
    characters plus two per key and taken off the budget; what is left is shared evenly
    by the string slots (an array of ``n`` strings counts ``n``), each becoming a
    ``maxLength`` of at least 1 character. Existing smaller bounds are kept. ``$ref`` to
    ``$defs``/``definitions`` is followed (the definitions are bounded in place, once).
    Strings with a ``pattern`` or ``format`` are left alone (their grammar is bounded by
    the pattern, and engines reject length bounds combined with one).
    """
    out = copy.deepcopy(schema)
    defs = {**(out.get("definitions") or {}), **(out.get("$defs") or {})}
    slots = _weight(out, defs, frozenset())
    overhead = _overhead(out, defs, frozenset())
    budget_chars = max(1, max_tokens - overhead)
    per_string = max(1, budget_chars // max(1, slots))
    _apply(out, defs, per_string, set())
    return out


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return None, None
    name = ref.rsplit("/", 1)[-1]
    target = defs.get(name)
    return name, target if isinstance(target, dict) else None


def _types(node: dict[str, Any]) -> set[str]:
    t = node.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    if "properties" in node:
        return {"object"}
    if "items" in node:
        return {"array"}
    return set()


def _free_string(node: dict[str, Any]) -> bool:
    return "string" in _types(node) and "pattern" not in node and "format" not in node \
        and "enum" not in node and "const" not in node


def _items(node: dict[str, Any]) -> int:
    given = node.get("maxItems")
    return min(given, MAX_ARRAY_ITEMS) if isinstance(given, int) and given >= 0 else MAX_ARRAY_ITEMS


def _weight(node: Any, defs: dict[str, Any], seen: frozenset[str]) -> int:
    """String slots a value of ``node`` can hold (arrays multiply; alternatives take the max)."""
    if not isinstance(node, dict):
        return 0
    name, target = _resolve(node, defs)
    if target is not None:
        return 1 if name in seen else _weight(target, defs, seen | {name})  # type: ignore[operator]
    total = 1 if _free_string(node) else 0
    if "object" in _types(node):
        total += sum(_weight(v, defs, seen) for v in (node.get("properties") or {}).values())
    if "array" in _types(node):
        total += _items(node) * _weight(node.get("items"), defs, seen)
    alts = [_weight(o, defs, seen) for c in _COMBINATORS for o in (node.get(c) or [])]
    return total + (max(alts) if alts else 0)


def _overhead(node: Any, defs: dict[str, Any], seen: frozenset[str]) -> int:
    """Tokens spent on structure (keys, punctuation, constants), estimated generously."""
    if not isinstance(node, dict):
        return 0
    name, target = _resolve(node, defs)
    if target is not None:
        return 2 if name in seen else _overhead(target, defs, seen | {name})  # type: ignore[operator]
    total = 2
    if "const" in node or "enum" in node:
        values = [node["const"]] if "const" in node else list(node.get("enum") or [])
        total += max((len(str(v)) // 2 + 2 for v in values), default=2)
    if "object" in _types(node):
        for key, value in (node.get("properties") or {}).items():
            total += len(key) // 2 + 2 + _overhead(value, defs, seen)
    if "array" in _types(node):
        total += _items(node) * (1 + _overhead(node.get("items"), defs, seen))
    if "integer" in _types(node) or "number" in _types(node):
        total += 14
    alts = [_overhead(o, defs, seen) for c in _COMBINATORS for o in (node.get(c) or [])]
    return total + (max(alts) if alts else 0)


def _apply(node: Any, defs: dict[str, Any], per_string: int, done: set[str]) -> None:
    if not isinstance(node, dict):
        return
    name, target = _resolve(node, defs)
    if target is not None:
        if name not in done:
            done.add(name)  # type: ignore[arg-type]
            _apply(target, defs, per_string, done)
        return
    if _free_string(node):
        given = node.get("maxLength")
        node["maxLength"] = min(given, per_string) if isinstance(given, int) else per_string
        node["minLength"] = min(node.get("minLength", 0), node["maxLength"])
        if node["minLength"] == 0:
            del node["minLength"]
    if "integer" in _types(node) and "enum" not in node and "const" not in node:
        node["maximum"] = min(node.get("maximum", MAX_ABS_INTEGER), MAX_ABS_INTEGER)
        node["minimum"] = max(node.get("minimum", -MAX_ABS_INTEGER), -MAX_ABS_INTEGER)
    if "array" in _types(node):
        node["maxItems"] = _items(node)
        if isinstance(node.get("minItems"), int):
            node["minItems"] = min(node["minItems"], node["maxItems"])
        _apply(node.get("items"), defs, per_string, done)
    for value in (node.get("properties") or {}).values():
        _apply(value, defs, per_string, done)
    for c in _COMBINATORS:
        for option in node.get(c) or []:
            _apply(option, defs, per_string, done)


def retry_request(request: GenerationRequest, result: GenerationResult) -> GenerationRequest | None:
    """The bounded retry of a guided request that ``max_tokens`` cut off, else None.

    Same prompt and sampling; the schema is replaced by :func:`bound_schema`'s and
    decoded as compact JSON (no optional whitespace), so the bounds hold for the text.
    """
    spec = request.sampling
    if spec.json_schema is None or result.finish_reason != "length":
        return None
    bounded = bound_schema(json.loads(spec.json_schema), spec.max_tokens)
    return GenerationRequest(request.prompt_token_ids, dataclasses.replace(spec, json_schema=json.dumps(
        bounded, sort_keys=True), compact_json=True), origin=request.origin, priority=request.priority)


def check_finished(request: GenerationRequest, result: GenerationResult) -> None:
    """Raise :class:`GuidedOutputTruncatedError` when guided output was still cut off."""
    if request.sampling.json_schema is not None and result.finish_reason == "length":
        raise GuidedOutputTruncatedError(
            f"The model did not finish its JSON (a forced tool call or structured output) within "
            f"max_tokens={request.sampling.max_tokens}, even on a retry with string lengths bounded to "
            f"fit; raise max_tokens (e.g. HeliumChatModel(max_tokens={4 * request.sampling.max_tokens})) "
            f"or simplify the schema. Output so far: {result.text[:120]!r}")
