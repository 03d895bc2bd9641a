"""Test helpers: a chat model whose answer is a pure function of its prompt.

:class:`DeterministicChatModel` answers ``"answer-<8 hex> re: <first words of the last
message>"`` where the hex digits are the SHA-256 of the canonical prompt (messages with
ids stripped, bound tools, tool choice); stop sequences cut that answer like a real model. Its answer does not depend on batching,
threads, timing or message ids, so an accelerated run of a graph must end in exactly
the state of the plain run (compare with :func:`normalize_state`).

Tools: when tools are bound (``bind_tools``) and the last message is a human message, it
emits one tool call to the tool picked by the prompt hash, with arguments built from that
tool's JSON schema; after a tool message it answers in text, so agent loops end.
``tool_choice`` = ``"any"``/``"required"``/a tool name forces a call, ``"none"`` forbids it.
Structured output uses langchain-core's default ``with_structured_output``, i.e. tool
calling with ``tool_choice="any"``, like real models do: the parsed object is a
deterministic instance built from the schema.

``temperature > 0`` appends a random suffix (a sampled call), to check that sampled calls
are never cached or merged. ``latency_s`` sleeps in each call so that calls overlap;
``max_in_flight`` tells how many overlapped at most.

Example:
    >>> model = DeterministicChatModel()
    >>> a = model.invoke("What is the capital of France?")
    >>> a.content.startswith("answer-"), a.content.endswith("re: What is the capital of France?")
    (True, True)
    >>> model.invoke("What is the capital of France?").content == a.content, model.num_calls
    (True, 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Sequence

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, PrivateAttr

from helium_lc.cache.keys import canonical_json, canonical_message

__all__ = ["DeterministicChatModel", "instance_from_schema", "normalize_state"]

_NUM_ECHO_WORDS = 8


def _hex(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def instance_from_schema(schema: Mapping[str, Any], seed: str) -> Any:
    """A deterministic value that validates against a JSON schema (common subset).

    Handles ``$ref``/``$defs``, ``anyOf``/``oneOf``/``allOf``, ``enum``/``const``,
    objects (every property filled), arrays (``minItems`` or 1 item), strings
    (``minLength``/``maxLength``), integers and numbers (``minimum``/``maximum``),
    booleans and null. Values come from ``sha256(seed + path)``.

    Example:
        >>> s = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 5,
        ...      "maximum": 6}, "tag": {"enum": ["x", "y"]}}}
        >>> v = instance_from_schema(s, "seed")
        >>> v["n"] in (5, 6), v["tag"] in ("x", "y"), v == instance_from_schema(s, "seed")
        (True, True, True)
    """
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _instance(schema, seed, "$", defs, depth=0)


def _instance(schema: Mapping[str, Any], seed: str, path: str, defs: Mapping[str, Any],
              depth: int) -> Any:
    if depth > 12:
        raise ValueError(f"schema at {path} nests deeper than 12 levels (recursive $ref?).")
    h = _hex(seed, path)
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in defs:
            raise ValueError(f"schema at {path} refers to unknown definition {schema['$ref']!r}.")
        return _instance(defs[name], seed, path, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][int(h[:8], 16) % len(schema["enum"])]
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            options = [o for o in schema[combinator] if o.get("type") != "null"] \
                or schema[combinator]
            return _instance(options[0], seed, path, defs, depth + 1)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(defs.get(part["$ref"].rsplit("/", 1)[-1], {}) if "$ref" in part
                          else part)
        return _instance(merged, seed, path, defs, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _instance(sub, seed, f"{path}.{name}", defs, depth + 1)
                for name, sub in props.items()}
    if kind == "array":
        num_items = max(1, int(schema.get("minItems", 1)))
        item_schema = schema.get("items", {"type": "string"})
        return [_instance(item_schema, seed, f"{path}[{i}]", defs, depth + 1)
                for i in range(num_items)]
    if kind == "integer":
        low = int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
        high = int(schema.get("maximum", schema.get("exclusiveMaximum", low + 100) - 1))
        return low + int(h[:8], 16) % max(1, high - low + 1)
    if kind == "number":
        low = float(schema.get("minimum", schema.get("exclusiveMinimum", 0.0)))
        high = float(schema.get("maximum", schema.get("exclusiveMaximum", low + 1.0)))
        return round(low + (high - low) * (int(h[:8], 16) % 1000) / 1000.0, 3)
    if kind == "boolean":
        return int(h[0], 16) % 2 == 0
    if kind == "null":
        return None
    name = path.rsplit(".", 1)[-1].strip("$[]0123456789") or "value"
    text = f"{name}-{h[:6]}"
    min_len, max_len = int(schema.get("minLength", 0)), schema.get("maxLength")
    text = text.ljust(min_len, "x")
    return text[: int(max_len)] if max_len is not None else text


def _text_of(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content)


def _resolve_tool_choice(tool_choice: Any, tools: Sequence[Mapping[str, Any]]) -> str | None:
    """``None`` = auto, ``""`` = forbid, ``"*"`` = force any, else the forced tool's name."""
    if tool_choice in (None, "auto") or not tools:
        return None if tools else ""
    if tool_choice is False or tool_choice == "none":
        return ""
    if tool_choice is True or tool_choice in ("any", "required"):
        return "*"
    if isinstance(tool_choice, str):
        return tool_choice
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function", tool_choice)
        if "name" in fn:
            return str(fn["name"])
    raise ValueError(f"unsupported tool_choice {tool_choice!r}; use 'auto', 'none', 'any', "
                     "'required', a tool name or {'type': 'function', 'function': {'name': ...}}.")


class DeterministicChatModel(BaseChatModel):
    """A chat model whose answer is a pure function of its prompt (see module docstring)."""

    model_name: str = "deterministic-chat"
    temperature: float = Field(default=0.0, ge=0.0)
    latency_s: float = Field(default=0.0, ge=0.0)

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _prompts: list[str] = PrivateAttr(default_factory=list)
    _in_flight: int = PrivateAttr(default=0)
    _max_in_flight: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "helium-deterministic-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    # ------------------------------------------------------------------ counters
    @property
    def num_calls(self) -> int:
        """Calls answered since creation or ``reset()`` (thread-safe)."""
        with self._lock:
            return len(self._prompts)

    @property
    def prompts(self) -> list[str]:
        """Canonical prompt text of every call, in arrival order (a copy)."""
        with self._lock:
            return list(self._prompts)

    @property
    def max_in_flight(self) -> int:
        """The most calls that were in progress at once (since creation or ``reset()``)."""
        with self._lock:
            return self._max_in_flight

    def reset(self) -> None:
        """Forget the recorded calls and the in-flight peak."""
        with self._lock:
            self._prompts.clear()
            self._max_in_flight = self._in_flight

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    # ------------------------------------------------------------------ tools
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (converted to OpenAI tool schemas) like real chat models do."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        _resolve_tool_choice(tool_choice, formatted)  # validate early
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # ------------------------------------------------------------------ answering
    def _answer(self, messages: list[BaseMessage], stop: list[str] | None,
                kwargs: Mapping[str, Any]) -> AIMessage:
        """Compute the answer, record the call. Pure apart from the temperature suffix."""
        tools = list(kwargs.get("tools") or [])
        prompt = {
            "messages": [canonical_message(m) for m in messages],
            "tools": tools or None,
            "tool_choice": kwargs.get("tool_choice"),
        }
        # Like a real model, stop sequences cut the answer but do not change what comes before.
        h = _hex(canonical_json(prompt))
        with self._lock:
            self._prompts.append(canonical_json({**prompt, "stop": list(stop) if stop else None}))
        noise = f" ~{secrets.token_hex(3)}" if self.temperature > 0 else ""
        last = messages[-1] if messages else HumanMessage("")
        num_input_tokens = sum(len(_text_of(m).split()) for m in messages)
        meta = {"model_name": self.model_name}

        choice = _resolve_tool_choice(kwargs.get("tool_choice"), tools)
        # auto (None): call a tool only in answer to the user; forced ("*" or a name): always.
        wants_tool = choice != "" and (choice is not None or isinstance(last, HumanMessage))
        if tools and wants_tool:
            if choice in (None, "*"):
                tool = tools[int(h[8:16], 16) % len(tools)]
            else:
                tool = next((t for t in tools if t["function"]["name"] == choice), None)
                if tool is None:
                    raise ValueError(f"tool_choice names {choice!r}, which is not among the bound "
                                     f"tools {[t['function']['name'] for t in tools]}.")
            fn = tool["function"]
            args = instance_from_schema(fn.get("parameters", {}), h)
            call = {"name": fn["name"], "args": args, "id": f"call_{h[:12]}{noise.strip(' ~')}",
                    "type": "tool_call"}
            num_output_tokens = len(json.dumps(args).split())
            return AIMessage(content="", tool_calls=[call],
                             response_metadata={**meta, "finish_reason": "tool_calls"},
                             usage_metadata=_usage(num_input_tokens, num_output_tokens))

        words = _text_of(last).split()[:_NUM_ECHO_WORDS]
        verb = "after" if isinstance(last, ToolMessage) else "re:"
        text = f"answer-{h[:8]} {verb} {' '.join(words)}".rstrip() + noise
        for s in stop or ():
            if s and s in text:
                text = text[: text.index(s)]
        return AIMessage(content=text, response_metadata={**meta, "finish_reason": "stop"},
                         usage_metadata=_usage(num_input_tokens, len(text.split())))

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        with self._call():
            if self.latency_s:
                time.sleep(self.latency_s)
            return ChatResult(generations=[ChatGeneration(message=self._answer(messages, stop, kwargs))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        with self._call():
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return ChatResult(generations=[ChatGeneration(message=self._answer(messages, stop, kwargs))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        with self._call():
            if self.latency_s:
                time.sleep(self.latency_s)
        for chunk in _chunks_of(self._answer(messages, stop, kwargs)):
            if run_manager and isinstance(chunk.message.content, str):
                run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        with self._call():
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
        for chunk in _chunks_of(self._answer(messages, stop, kwargs)):
            if run_manager and isinstance(chunk.message.content, str):
                await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk


def _usage(num_input_tokens: int, num_output_tokens: int) -> dict[str, int]:
    return {"input_tokens": num_input_tokens, "output_tokens": num_output_tokens,
            "total_tokens": num_input_tokens + num_output_tokens}


def _chunks_of(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    """Split an answer into word chunks whose sum equals ``message`` (ids aside)."""
    pieces: list[dict[str, Any]] = [{"content": w} for w in re.findall(r"\S+\s*", message.content)]
    if message.tool_calls:
        pieces.append({"content": "", "tool_call_chunks": [
            {"name": tc["name"], "args": json.dumps(tc["args"]), "id": tc["id"], "index": i}
            for i, tc in enumerate(message.tool_calls)]})
    if not pieces:
        pieces.append({"content": ""})
    pieces[-1]["response_metadata"] = message.response_metadata
    pieces[-1]["usage_metadata"] = message.usage_metadata
    for piece in pieces:
        yield ChatGenerationChunk(message=AIMessageChunk(**piece))


def normalize_state(value: Any, *, keep_usage: bool = False) -> Any:
    """A state with the run-dependent parts of messages stripped, for equality checks.

    Messages become dicts without ``id`` and ``response_metadata`` (and ``usage_metadata``
    unless ``keep_usage``); pydantic objects become dicts; containers are walked.

    Example:
        >>> normalize_state({"messages": [AIMessage("x", id="run-1")]}) == \\
        ...     normalize_state({"messages": [AIMessage("x", id="run-2")]})
        True
    """
    if isinstance(value, BaseMessage):
        data = value.model_dump()
        data.pop("id", None)
        data.pop("response_metadata", None)
        if not keep_usage:
            data.pop("usage_metadata", None)
        data["__class__"] = type(value).__name__.removesuffix("Chunk")
        data["type"] = str(data.get("type", "")).removesuffix("Chunk")
        data.pop("tool_call_chunks", None)
        data.pop("chunk_position", None)
        return normalize_state(data, keep_usage=keep_usage)
    if isinstance(value, BaseModel):
        return normalize_state(value.model_dump(), keep_usage=keep_usage)
    if isinstance(value, Mapping):
        return {k: normalize_state(v, keep_usage=keep_usage) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize_state(v, keep_usage=keep_usage) for v in value]
    return value
