"""Prompt-cache keys: what makes two LLM calls "the same call".

A key is the SHA-256 of a canonical JSON text built from three parts:

1. the *model identity*: the chat model's class plus its model name and any engine /
   model path / endpoint field (:data:`MODEL_IDENTITY_FIELDS`);
2. every *output-affecting parameter*: either ``SamplingSpec.cache_key()`` or the chat
   model's sampling fields (:data:`OUTPUT_PARAM_FIELDS`) merged with the keyword arguments
   of the call (``stop``, bound ``tools``, ``tool_choice``, ``response_format``, ...);
3. the *normalised prompt*: langchain-core messages as canonical JSON with the volatile
   parts stripped (message ``id`` -- LangGraph assigns random ones --, ``response_metadata``,
   ``usage_metadata``, a ToolMessage's ``artifact``) and everything the provider sends kept
   (type, content, name, tool calls with name/args/id, tool_call_id, additional_kwargs).

The key carries its canonical text too, so a cache compares the full content after a
hash hit (a collision is a miss, never a wrong answer).

Only deterministic calls may be cached or merged: :func:`is_deterministic` is
conservative. A call is deterministic only when decoding is greedy *and we know it*:
``temperature == 0``, ``top_k == 1`` or ``do_sample is False``. A call whose temperature
is unset is **not** deterministic, because most providers (OpenAI, Anthropic, vLLM's
OpenAI server) sample at temperature 1 by default. A seed with temperature > 0 is not
enough either (providers treat seeds as best effort).

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> k1 = chat_call_key("my-model", [HumanMessage("hi", id="a")], params={"temperature": 0})
    >>> k2 = chat_call_key("my-model", [HumanMessage("hi", id="b")], params={"temperature": 0})
    >>> k1 == k2, k1.is_deterministic, len(k1.digest)
    (True, True, 64)
    >>> chat_call_key("my-model", [HumanMessage("hi")], params={}).is_deterministic
    False
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from helium_lc.engine.types import SamplingSpec, stop_sequences

__all__ = [
    "CacheKey",
    "UncacheableError",
    "MODEL_IDENTITY_FIELDS",
    "OUTPUT_PARAM_FIELDS",
    "NON_OUTPUT_CALL_KWARGS",
    "canonical_json",
    "canonical_message",
    "canonical_messages_text",
    "model_identity",
    "model_output_params",
    "is_deterministic",
    "chat_call_key",
    "token_request_key",
]

# Fields of a chat model that say *which* model answers (name, weights, endpoint).
MODEL_IDENTITY_FIELDS: tuple[str, ...] = (
    "model_name", "model", "model_id", "model_path", "engine_path", "repo_id",
    "deployment_name", "azure_deployment", "openai_api_base", "base_url", "endpoint_url",
)

# Fields of a chat model that change *what* it answers.
OUTPUT_PARAM_FIELDS: tuple[str, ...] = (
    "temperature", "top_p", "top_k", "min_p", "max_tokens", "max_completion_tokens",
    "max_new_tokens", "num_predict", "stop", "stop_sequences", "seed", "n",
    "presence_penalty", "frequency_penalty", "repetition_penalty", "repeat_penalty",
    "logit_bias", "do_sample", "reasoning_effort", "reasoning", "response_format",
    "model_kwargs", "extra_body", "use_responses_api", "output_version",
)

# Call keyword arguments that never change the answer (transport and tracing only).
NON_OUTPUT_CALL_KWARGS: frozenset[str] = frozenset({
    "stream", "streaming", "run_manager", "callbacks", "tags", "metadata", "run_name",
    "run_id", "ls_structured_output_format", "structured_output_format", "stream_options",
})


class UncacheableError(ValueError):
    """A prompt or parameter cannot be turned into canonical JSON, so the call is not cacheable.

    Callers should simply run such a call without the cache.
    """


@dataclass(frozen=True)
class CacheKey:
    """A prompt-cache key: ``digest`` for lookup, ``canonical_text`` for the full compare.

    ``is_deterministic`` says whether the call may be served from cache or merged at all;
    :class:`~helium_lc.cache.prompt_cache.PromptCache` refuses to store sampled calls.
    """

    digest: str
    canonical_text: str
    is_deterministic: bool

    def __post_init__(self) -> None:
        if len(self.digest) != 64:
            raise ValueError(f"digest must be a 64-char sha256 hex string, got {self.digest!r}.")

    @classmethod
    def from_parts(cls, parts: Mapping[str, Any], *, is_deterministic: bool) -> "CacheKey":
        """Build a key from JSON-able ``parts`` (hashed as canonical JSON)."""
        text = canonical_json(parts)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates: the model refuses such text clearly
            raise UncacheableError(f"the call holds text that is not valid Unicode ({exc.reason})") from exc
        return cls(hashlib.sha256(data).hexdigest(), text, is_deterministic)


def _to_jsonable(value: Any, path: str) -> Any:
    """Turn ``value`` into plain JSON data with a deterministic form, or raise UncacheableError."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"__float__": repr(value)}
        return value
    if isinstance(value, enum.Enum):
        return _to_jsonable(value.value, path)
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UncacheableError(f"{path} has a non-string key {k!r}; keys must be strings.")
            out[k] = _to_jsonable(v, f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted((_to_jsonable(v, path) for v in value), key=canonical_json)
    if isinstance(value, BaseMessage):
        return canonical_message(value)
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {"__schema__": value.model_json_schema()}
    if isinstance(value, BaseModel):
        return _to_jsonable(value.model_dump(mode="json"), path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_jsonable(dataclasses.asdict(value), path)
    raise UncacheableError(
        f"{path} holds a {type(value).__name__}, which has no canonical JSON form; "
        "the call cannot be cached (run it uncached, or pass plain JSON data)."
    )


def _numbers_as_float(values: Any) -> Any:
    """Top-level numbers as floats, so ``temperature=0`` and ``temperature=0.0`` give one key."""
    def num(v: Any) -> Any:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    if isinstance(values, Mapping):
        return {k: num(v) for k, v in values.items()}
    return [num(v) for v in values]


def canonical_json(value: Any) -> str:
    """Canonical JSON text of ``value``: sorted keys, no spaces, unicode kept."""
    return json.dumps(_to_jsonable(value, "value"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def canonical_message(message: BaseMessage) -> dict[str, Any]:
    """A message as JSON data without the parts that never reach the model.

    Kept: type, content, name, additional_kwargs, tool calls (name, args, id), invalid
    tool calls, tool_call_id, status, role. Dropped: id, response_metadata,
    usage_metadata, artifact.
    """
    out: dict[str, Any] = {
        "type": message.type,
        "content": _to_jsonable(message.content, "content"),
    }
    if message.name is not None:
        out["name"] = message.name
    if message.additional_kwargs:
        out["additional_kwargs"] = _to_jsonable(message.additional_kwargs, "additional_kwargs")
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        out["tool_calls"] = [
            {"name": tc["name"], "args": _to_jsonable(tc["args"], "tool_call.args"),
             "id": tc.get("id")}
            for tc in tool_calls
        ]
    invalid = getattr(message, "invalid_tool_calls", None)
    if invalid:
        out["invalid_tool_calls"] = _to_jsonable(list(invalid), "invalid_tool_calls")
    for attr in ("tool_call_id", "role"):
        if getattr(message, attr, None) is not None:
            out[attr] = getattr(message, attr)
    if getattr(message, "status", None) not in (None, "success"):
        out["status"] = message.status  # type: ignore[attr-defined]
    return out


def _as_messages(prompt: Any) -> list[BaseMessage]:
    if isinstance(prompt, PromptValue):
        return prompt.to_messages()
    if isinstance(prompt, str):
        return convert_to_messages([("human", prompt)])
    return convert_to_messages(prompt)


def canonical_messages_text(prompt: Any) -> str:
    """Canonical JSON text of a prompt (messages, a PromptValue or a plain string)."""
    return canonical_json([canonical_message(m) for m in _as_messages(prompt)])


def model_identity(model: Any) -> dict[str, Any]:
    """Which model answers: ``{"class": module.qualname, <identity fields>...}``.

    ``model`` may be a chat model (any object) or a plain string naming the model. A model
    whose fields do not say which weights answer (``HeliumChatModel``: the weights are its
    pool's) provides a ``cache_identity()`` method; its JSON-able result is added under
    ``"serves"`` -- for a pool: the model folder's fingerprint, dtype and engine settings.

    Example:
        >>> class Model:
        ...     model_name = ""
        ...     def cache_identity(self):
        ...         return {"weights": "folder-A"}
        >>> model_identity(Model())["serves"]
        {'weights': 'folder-A'}
    """
    if isinstance(model, str):
        return {"class": "str", "model": model}
    cls = type(model)
    out: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    for name in MODEL_IDENTITY_FIELDS:
        value = getattr(model, name, None)
        if value is not None and not callable(value):
            out[name] = _to_jsonable(value, name)
    identity = getattr(model, "cache_identity", None)
    if callable(identity):
        out["serves"] = _to_jsonable(identity(), "cache_identity()")
    return out


def model_output_params(model: Any) -> dict[str, Any]:
    """The output-affecting sampling fields a chat model carries (unset ones omitted)."""
    if isinstance(model, str):
        return {}
    out: dict[str, Any] = {}
    for name in OUTPUT_PARAM_FIELDS:
        value = getattr(model, name, None)
        if value is not None and not callable(value):
            out[name] = _to_jsonable(value, name)
    return out


def is_deterministic(params: Mapping[str, Any] | SamplingSpec) -> bool:
    """True only when the call is known to decode greedily (see the module docstring).

    Example:
        >>> is_deterministic({"temperature": 0.0}), is_deterministic({"temperature": None})
        (True, False)
        >>> is_deterministic({"temperature": 0.7, "top_k": 1}), is_deterministic({"do_sample": False})
        (True, True)
    """
    if isinstance(params, SamplingSpec):
        return params.is_deterministic
    if params.get("do_sample") is False:
        return True
    if params.get("top_k") == 1:
        return True
    temperature = params.get("temperature")
    return isinstance(temperature, (int, float)) and not isinstance(temperature, bool) \
        and temperature == 0


def _normalise_call_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Call kwargs that affect output, with tools and schemas in a canonical form."""
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in NON_OUTPUT_CALL_KWARGS or value is None:
            continue
        if name == "tools":
            try:
                value = [convert_to_openai_tool(t) for t in value]
            except Exception as exc:  # noqa: BLE001 - any failure means "not cacheable"
                raise UncacheableError(f"bound tools have no JSON schema: {exc}") from exc
        out[name] = _to_jsonable(value, name)
    return out


def chat_call_key(
    model: Any,
    prompt: Any,
    *,
    sampling: SamplingSpec | None = None,
    params: Mapping[str, Any] | None = None,
    stop: Sequence[str] | None = None,
    call_kwargs: Mapping[str, Any] | None = None,
) -> CacheKey:
    """The prompt-cache key of one chat call.

    Args:
        model: the chat model (or a string naming it) -- gives the model identity.
        prompt: the messages (or a PromptValue / string) sent to the model.
        sampling: the call's ``SamplingSpec`` when the caller has one; it then defines
            every output-affecting parameter and determinism.
        params: otherwise, explicit sampling params; when both are None the chat model's
            own fields (:func:`model_output_params`) are used.
        stop: the call's stop sequences (the ``stop`` argument of ``_generate``).
        call_kwargs: the call's other keyword arguments (``tools``, ``tool_choice``,
            ``response_format``, ...); tracing-only ones are ignored.

    Raises:
        UncacheableError: some part has no canonical JSON form (run the call uncached).
    """
    if sampling is not None:
        sampling_part: Any = {"spec": _numbers_as_float(sampling.cache_key())}
        deterministic = sampling.is_deterministic
    else:
        merged = dict(model_output_params(model) if params is None else params)
        sampling_part = _numbers_as_float(_to_jsonable(merged, "params"))
        deterministic = is_deterministic(merged)
    try:
        stops = list(stop_sequences(stop)) if stop else None
    except ValueError as exc:
        raise UncacheableError(f"{exc} (the model decides what to do with it)") from exc
    parts = {
        "model": model_identity(model),
        "sampling": sampling_part,
        "stop": stops,
        "call": _normalise_call_kwargs(call_kwargs or {}),
        "messages": [canonical_message(m) for m in _as_messages(prompt)],
    }
    return CacheKey.from_parts(parts, is_deterministic=deterministic)


def token_request_key(
    model: Any, sampling: SamplingSpec, prompt_token_ids: Sequence[int]
) -> CacheKey:
    """The key of an already-tokenized engine request (chat template applied).

    Example:
        >>> k = token_request_key("m", SamplingSpec(max_tokens=4), [1, 2, 3])
        >>> k == token_request_key("m", SamplingSpec(max_tokens=4), (1, 2, 3))
        True
    """
    parts = {
        "model": model_identity(model),
        "sampling": _numbers_as_float(sampling.cache_key()),
        "prompt_token_ids": [int(t) for t in prompt_token_ids],
    }
    return CacheKey.from_parts(parts, is_deterministic=sampling.is_deterministic)
