"""A JSON codec for prompt-cache values (no pickle, so a cache file cannot run code).

Supported values: JSON scalars, lists, tuples, string-keyed dicts, langchain-core
messages (via the stable ``message_to_dict`` / ``messages_from_dict``), ``ChatGeneration``,
``ChatResult`` and the engine's ``GenerationResult``. Special values are tagged with the
key ``"__hlc__"``. Decoding only ever builds these known types.

Example:
    >>> from langchain_core.messages import AIMessage
    >>> msg = AIMessage("hi", tool_calls=[{"name": "f", "args": {"x": 1}, "id": "c1"}])
    >>> decode_value(encode_value(msg)) == msg
    True
    >>> decode_value(encode_value((1, [2, "x"])))
    (1, [2, 'x'])
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, ChatResult

from helium_lc.engine.types import GenerationResult

__all__ = ["encode_value", "decode_value", "UnstorableValueError"]

_TAG = "__hlc__"


class UnstorableValueError(TypeError):
    """A value has no JSON form in the prompt-cache codec."""


def _enc(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_enc(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_enc(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if _TAG in value:
            raise UnstorableValueError(f"{path}: dict key {_TAG!r} is reserved by the cache codec.")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UnstorableValueError(f"{path}: dict key {k!r} is not a string.")
            out[k] = _enc(v, f"{path}.{k}")
        return out
    if isinstance(value, ChatResult):
        return {_TAG: "chat_result",
                "generations": [_enc(g, f"{path}.generations") for g in value.generations],
                "llm_output": _enc(value.llm_output, f"{path}.llm_output")}
    if isinstance(value, BaseMessage):
        return {_TAG: "message", "v": _enc(message_to_dict(value), f"{path}<message>")}
    if isinstance(value, ChatGeneration) and type(value) is ChatGeneration:
        return {_TAG: "chat_generation", "message": _enc(value.message, f"{path}.message"),
                "generation_info": _enc(value.generation_info, f"{path}.generation_info")}
    if isinstance(value, GenerationResult):
        return {_TAG: "generation_result",
                "v": {f.name: _enc(getattr(value, f.name), f.name)
                      for f in dataclasses.fields(value)}}
    raise UnstorableValueError(
        f"{path} is a {type(value).__name__}, which the prompt-cache codec cannot store; "
        "store messages, ChatResult, GenerationResult or plain JSON data."
    )


def encode_value(value: Any) -> str:
    """Encode ``value`` as a JSON string (raises UnstorableValueError if unsupported)."""
    return json.dumps(_enc(value, "value"), ensure_ascii=False, separators=(",", ":"))


def _dec(data: Any) -> Any:
    if isinstance(data, list):
        return [_dec(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(_TAG)
    if tag is None:
        return {k: _dec(v) for k, v in data.items()}
    if tag == "tuple":
        return tuple(_dec(v) for v in data["v"])
    if tag == "float":
        return float(data["v"])
    if tag == "message":
        return messages_from_dict([_dec(data["v"])])[0]
    if tag == "chat_generation":
        return ChatGeneration(message=_dec(data["message"]),
                              generation_info=_dec(data["generation_info"]))
    if tag == "chat_result":
        return ChatResult(generations=[_dec(g) for g in data["generations"]],
                          llm_output=_dec(data["llm_output"]))
    if tag == "generation_result":
        return GenerationResult(**{k: _dec(v) for k, v in data["v"].items()})
    raise ValueError(f"Unknown cache codec tag {tag!r}; the cache was written by a newer "
                     "helium_lc. Clear the cache or upgrade.")


def decode_value(text: str) -> Any:
    """Decode a string written by :func:`encode_value`."""
    return _dec(json.loads(text))
