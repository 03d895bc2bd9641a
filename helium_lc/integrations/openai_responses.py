"""The OpenAI Responses wire format (``POST /v1/responses``), on top of the chat one.

What ``ChatOpenAI(use_responses_api=True)`` sends is translated into a Chat Completions body
(:func:`chat_body_from_responses`) and parsed by
:func:`~helium_lc.integrations.openai_protocol.parse_chat_request`, so both APIs give the
same prompt token ids for the same conversation; the answer is written back as a
``response`` object (:func:`response_json`) or as Responses stream events
(:class:`ResponseEventWriter`). Stateless only: ``previous_response_id``/``conversation``
(server-side history) get a 400 that says to send the whole conversation.

Example:
    >>> chat_body_from_responses({"input": "Hi", "instructions": "Be brief.", "max_output_tokens": 5})
    {'messages': [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}], 'max_tokens': 5}
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

from helium_lc.engine.types import GenerationResult
from helium_lc.integrations.openai_protocol import ChatCall, OpenAIRequestError, message_parts, sse

__all__ = ["chat_body_from_responses", "response_json", "ResponseEventWriter"]

#: Responses fields with a chat equivalent, and those accepted and ignored (no effect on output).
_COPIED = {"temperature": "temperature", "top_p": "top_p", "max_output_tokens": "max_tokens", "stream": "stream",
           "model": "model", "top_k": "top_k", "seed": "seed"}
_IGNORED = {"store", "include", "metadata", "user", "service_tier", "parallel_tool_calls", "truncation",
            "reasoning", "stream_options", "background", "prompt_cache_key", "safety_identifier", "top_logprobs"}
_STATEFUL = ("previous_response_id", "conversation", "prompt")


def _text_of(content: Any, where: str) -> Any:
    if isinstance(content, str) or content is None:
        return content or ""
    if not isinstance(content, list):
        raise OpenAIRequestError(f"{where}.content must be a string or a list of content parts.", param="input")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": part.get("image_url", "")}})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        else:
            raise OpenAIRequestError(f"{where}: content part type {kind!r} is not supported.", param="input")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": _text_of(body["instructions"], "instructions")})
    items = body.get("input")
    if isinstance(items, str):
        return messages + [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise OpenAIRequestError("'input' must be a string or a non-empty list of items.", param="input")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise OpenAIRequestError(f"input[{i}] must be an object.", param="input")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("system", "developer", "user", "assistant"):
                raise OpenAIRequestError(f"input[{i}].role {role!r} is not supported.", param="input")
            messages.append({"role": "system" if role == "developer" else role,
                             "content": _text_of(item.get("content"), f"input[{i}]")})
        elif kind == "function_call":
            call = {"id": item.get("call_id") or item.get("id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}}
            if messages and messages[-1]["role"] == "assistant":  # the calls of that assistant turn
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                             "content": output if isinstance(output, str) else json.dumps(output)})
        elif kind == "reasoning":
            continue  # no reasoning model here; the item carries no text the model needs
        else:
            raise OpenAIRequestError(f"input[{i}] has type {kind!r}, which helium_lc does not support; "
                                     "send messages, function_call and function_call_output items.", param="input")
    return messages


def chat_body_from_responses(body: Any) -> dict[str, Any]:
    """The Chat Completions body equivalent to a Responses body (raises OpenAIRequestError)."""
    if not isinstance(body, Mapping):
        raise OpenAIRequestError("The request body must be a JSON object.")
    for key in _STATEFUL:
        if body.get(key):
            raise OpenAIRequestError(f"'{key}' needs server-side conversation state, which helium_lc does not keep; "
                                     "send the whole conversation in 'input' (ChatOpenAI does unless use_previous_"
                                     "response_id=True).", param=key)
    unknown = sorted(set(body) - set(_COPIED) - _IGNORED - {"input", "instructions", "tools", "tool_choice", "text"})
    if unknown:
        raise OpenAIRequestError(f"Unrecognized Responses argument(s) {unknown}.", param=unknown[0])
    chat: dict[str, Any] = {"messages": _messages(body)}
    for src, dst in _COPIED.items():
        if body.get(src) is not None:
            chat[dst] = body[src]
    tools = body.get("tools") or []
    if tools:
        if not isinstance(tools, list) or any(not isinstance(t, Mapping) or t.get("type") != "function" for t in tools):
            raise OpenAIRequestError("'tools' must be function tools ({'type': 'function', 'name': ..., "
                                     "'parameters': ...}); built-in tools are not supported.", param="tools")
        chat["tools"] = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters")
                                                           if k in t}} for t in tools]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            "name": fmt.get("name", "output"), "schema": fmt.get("schema", {})}}
    elif isinstance(fmt, Mapping) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    return chat


def _usage(result: GenerationResult) -> dict[str, Any]:
    return {"input_tokens": result.num_prompt_tokens, "output_tokens": result.num_output_tokens,
            "total_tokens": result.num_prompt_tokens + result.num_output_tokens,
            "input_tokens_details": {"cached_tokens": result.num_cached_prompt_tokens},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _response_id(call: ChatCall) -> str:
    return "resp_" + call.request.request_id.split("-", 1)[-1]


def _message_item(call: ChatCall, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": "msg_" + call.request.request_id.split("-", 1)[-1], "status": status,
            "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _output(call: ChatCall, result: GenerationResult) -> list[dict[str, Any]]:
    content, tool_calls, _ = message_parts(call, result)
    items: list[dict[str, Any]] = []
    if content or not tool_calls:
        items.append(_message_item(call, content))
    for tc in tool_calls:
        items.append({"type": "function_call", "id": "fc_" + tc["id"], "call_id": tc["id"],
                      "name": tc["function"]["name"], "arguments": tc["function"]["arguments"], "status": "completed"})
    return items


def response_json(call: ChatCall, result: GenerationResult | None, body: Mapping[str, Any], *,
                  created_s: float | None = None) -> dict[str, Any]:
    """The ``response`` object for ``result`` (``None``: the in-progress shell of a stream)."""
    cut = result is not None and result.finish_reason == "length"
    resp: dict[str, Any] = {
        "id": _response_id(call), "object": "response", "created_at": created_s or time.time(), "model": call.model,
        "status": "in_progress" if result is None else ("incomplete" if cut else "completed"),
        "output": [] if result is None else _output(call, result),
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None, "error": None,
        "instructions": body.get("instructions"), "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)),
        "tool_choice": body.get("tool_choice") or "auto", "tools": list(body.get("tools") or []),
        "temperature": call.request.sampling.temperature, "top_p": call.request.sampling.top_p,
        "max_output_tokens": body.get("max_output_tokens"), "metadata": body.get("metadata") or {},
        "text": body.get("text") or {"format": {"type": "text"}},
    }
    if result is not None:
        resp["usage"] = _usage(result)
    return resp


class ResponseEventWriter:
    """The SSE events of one streamed response, in the Responses API's order: created, the
    message item and its text part, text deltas, then done events, function-call items and
    completed (``incomplete`` when max_output_tokens cut it off)."""

    def __init__(self, call: ChatCall, body: Mapping[str, Any]) -> None:
        self.call, self.body = call, body
        self.created_s = time.time()
        self._seq = 0
        self._text: list[str] = []
        self._msg_id = _message_item(call, "")["id"]

    def _event(self, kind: str, **fields: Any) -> bytes:
        self._seq += 1
        return f"event: {kind}\n".encode() + sse({"type": kind, "sequence_number": self._seq, **fields})

    def first(self) -> bytes:
        shell = response_json(self.call, None, self.body, created_s=self.created_s)
        return (self._event("response.created", response=shell)
                + self._event("response.in_progress", response=shell))

    def _open_message(self) -> bytes:
        return (self._event("response.output_item.added", output_index=0,
                            item=_message_item(self.call, "", status="in_progress") | {"content": []})
                + self._event("response.content_part.added", item_id=self._msg_id, output_index=0, content_index=0,
                              part={"type": "output_text", "text": "", "annotations": []}))

    def delta(self, text: str) -> bytes:
        out = self._open_message() if not self._text else b""
        self._text.append(text)
        return out + self._event("response.output_text.delta", item_id=self._msg_id, output_index=0,
                                 content_index=0, delta=text, logprobs=[])

    def finish(self, result: GenerationResult, *, streamed_text: bool) -> bytes:
        final = response_json(self.call, result, self.body, created_s=self.created_s)
        out = b""
        for index, item in enumerate(final["output"]):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                if not streamed_text and text:
                    out += self.delta(text)
                elif not self._text:
                    out += self._open_message()
                out += (self._event("response.output_text.done", item_id=self._msg_id, output_index=index,
                                    content_index=0, text=text, logprobs=[])
                        + self._event("response.content_part.done", item_id=self._msg_id, output_index=index,
                                      content_index=0, part=item["content"][0])
                        + self._event("response.output_item.done", output_index=index, item=item))
            else:
                out += (self._event("response.output_item.added", output_index=index, item=item)
                        + self._event("response.output_item.done", output_index=index, item=item))
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, response=final)
