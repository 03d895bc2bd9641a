"""Chat messages <-> prompt text, tools and tool calls, independent of any client library.

Messages are OpenAI-style dicts (``{"role": ..., "content": ..., "tool_calls": [...]}``).
When the model's chat template renders tools itself (e.g. Qwen3), tools and tool calls
are passed to it unchanged; when it does not (e.g. SmolLM2), they are rendered as text in
the Hermes convention that such templates use: a tool list in the system message, and
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks in assistant turns.
Model output is parsed back with :func:`parse_tool_calls`.

Example:
    >>> text = 'Let me check. <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    >>> parsed = parse_tool_calls(text, id_seed="x")
    >>> parsed.content, parsed.tool_calls[0]["name"], parsed.tool_calls[0]["args"]
    ('Let me check.', 'add', {'a': 1, 'b': 2})
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def template_supports_tools(chat_template: str | None) -> bool:
    """Whether a Jinja chat template renders a ``tools`` list itself."""
    return bool(chat_template) and "tools" in chat_template  # type: ignore[operator]


def tools_system_text(tools: Sequence[Mapping[str, Any]]) -> str:
    """The tool list as system-prompt text (for templates without tool support)."""
    specs = "\n".join(json.dumps(t.get("function", t), sort_keys=True) for t in tools)
    return (
        "You can call these tools:\n<tools>\n" + specs + "\n</tools>\n"
        "To call a tool, answer with one block per call, exactly:\n"
        '<tool_call>{"name": "<tool name>", "arguments": {<JSON arguments>}}</tool_call>'
    )


def _call_text(call: Mapping[str, Any]) -> str:
    fn = call.get("function", call)
    args = fn.get("arguments", fn.get("args", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            pass
    return TOOL_CALL_OPEN + json.dumps({"name": fn.get("name"), "arguments": args}, sort_keys=True) + TOOL_CALL_CLOSE


def render_for_template(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None, *, native_tools: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Prepare messages (and tools) for ``tokenizer.apply_chat_template``.

    With ``native_tools`` the template gets tools and structured tool calls. Otherwise tool
    calls become text blocks, tool results stay in ``tool`` turns, and the tool list joins
    the system message (one is created if there is none). Content is always a string.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role", "user")
        content = content_text(m.get("content"))
        msg: dict[str, Any] = {"role": role, "content": content}
        calls = m.get("tool_calls") or []
        if calls:
            if native_tools:
                msg["tool_calls"] = [
                    {"type": "function", "id": c.get("id"),
                     "function": {"name": c.get("function", c).get("name"),
                                  "arguments": c.get("function", c).get("arguments", c.get("args", {}))}}
                    for c in calls
                ]
            else:
                blocks = "\n".join(_call_text(c) for c in calls)
                msg["content"] = (content + "\n" + blocks) if content else blocks
        if role == "tool" and m.get("tool_call_id") is not None:
            msg["tool_call_id"] = m["tool_call_id"]
        if m.get("name") and role != "tool":
            msg["name"] = m["name"]
        out.append(msg)
    if tools and not native_tools:
        text = tools_system_text(tools)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + text}
        else:
            out.insert(0, {"role": "system", "content": text})
        return out, None
    return out, list(tools) if tools else None


def content_text(content: Any) -> str:
    """Flatten message content (a string or a list of content blocks) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") in ("text", None) and "text" in block:
                parts.append(str(block["text"]))
            elif isinstance(block, Mapping):
                raise ValueError(
                    f"Content block of type {block.get('type')!r} is not supported by this text-only model; "
                    "send text content (or a list of {'type': 'text', 'text': ...} blocks).")
        return "".join(parts)
    return str(content)


@dataclass
class ParsedOutput:
    """Model text split into plain content and tool calls (langchain-core shapes)."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    invalid_tool_calls: list[dict[str, Any]] = field(default_factory=list)


def tool_call_id(id_seed: str, index: int) -> str:
    """Deterministic tool-call id: the same prompt and output give the same id in every run."""
    return "call_" + hashlib.sha256(f"{id_seed}:{index}".encode()).hexdigest()[:24]


def parse_tool_calls(text: str, *, id_seed: str) -> ParsedOutput:
    """Extract ``<tool_call>`` blocks from model output.

    Valid JSON with a string ``name`` becomes a tool call (``args`` a dict); anything else in
    a block becomes an invalid tool call carrying the raw text and the reason.
    """
    if TOOL_CALL_OPEN not in text:
        return ParsedOutput(content=text)
    calls: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for i, m in enumerate(_BLOCK.finditer(text)):
        raw = m.group(1).strip()
        cid = tool_call_id(id_seed, i)
        try:
            obj = json.loads(raw)
            name = obj.get("name") if isinstance(obj, dict) else None
            args = obj.get("arguments", obj.get("args", {})) if isinstance(obj, dict) else None
            if isinstance(args, str):
                args = json.loads(args)
            if not isinstance(name, str) or not isinstance(args, dict):
                raise ValueError("expected {\"name\": str, \"arguments\": object}")
            calls.append({"name": name, "args": args, "id": cid, "type": "tool_call"})
        except ValueError as exc:
            name = None
            found = re.search(r'"name"\s*:\s*"([^"]+)"', raw)
            if found:
                name = found.group(1)
            invalid.append({"name": name, "args": raw, "id": cid, "error": f"Could not parse tool call: {exc}",
                            "type": "invalid_tool_call"})
    content = _BLOCK.sub("", text).strip()
    return ParsedOutput(content=content, tool_calls=calls, invalid_tool_calls=invalid)


def forced_tool_schema(tools: Sequence[Mapping[str, Any]], name: str | None) -> dict[str, Any]:
    """JSON schema that makes guided decoding emit a call to ``name`` (or to any of ``tools``).

    Each tool's ``$defs`` (or draft-07 ``definitions``) move to the root of the returned
    schema, renamed ``<tool>.<def>`` when several tools are offered, with every ``$ref``
    rewritten, so that references still resolve once the parameters are nested.
    """
    options = []
    root_defs: dict[str, Any] = {}
    chosen = [t for t in tools if name is None or t.get("function", t).get("name") == name]
    for t in chosen:
        fn = t.get("function", t)
        params = dict(fn.get("parameters") or {"type": "object", "properties": {}})
        defs = {**(params.pop("definitions", None) or {}), **(params.pop("$defs", None) or {})}
        prefix = f"{fn['name']}." if len(chosen) > 1 else ""
        renames = {d: prefix + d for d in defs}
        params = _rewrite_refs(params, renames)
        for d, body in defs.items():
            root_defs[renames[d]] = _rewrite_refs(body, renames)
        options.append({"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params},
                        "required": ["name", "arguments"]})
    if not options:
        known = [t.get("function", t).get("name") for t in tools]
        raise ValueError(f"tool_choice names {name!r}, which is not among the bound tools {known}.")
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "$defs": root_defs} if root_defs else schema


_REF = re.compile(r"^#/(?:\$defs|definitions)/(.+)$")


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    """A copy of ``node`` whose local ``$ref``s point at ``#/$defs/<renamed>``."""
    if isinstance(node, Mapping):
        out = {}
        for k, v in node.items():
            found = _REF.match(v) if k == "$ref" and isinstance(v, str) else None
            out[k] = f"#/$defs/{renames.get(found.group(1), found.group(1))}" if found else _rewrite_refs(v, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def tool_choice_name(tool_choice: Any) -> str | None:
    """The tool a ``tool_choice`` names (a string, or OpenAI's ``{"function": {"name": ...}}``).

    Example:
        >>> tool_choice_name({"type": "function", "function": {"name": "add"}}), tool_choice_name("add")
        ('add', 'add')
    """
    if isinstance(tool_choice, str):
        return tool_choice
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function", tool_choice)
        return fn.get("name")
    return None


def schema_from_response_format(response_format: Any) -> Any:
    """The JSON schema an OpenAI ``response_format`` (or a pydantic class / schema) asks for.

    Example:
        >>> schema_from_response_format({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}})
        {'type': 'object'}
    """
    if isinstance(response_format, Mapping):
        if response_format.get("type") == "json_schema":
            js = response_format.get("json_schema", {})
            return js.get("schema", js)
        if response_format.get("type") == "json_object":
            return {"type": "object"}
        return dict(response_format)
    from langchain_core.utils.function_calling import convert_to_json_schema
    return convert_to_json_schema(response_format)


_SURROGATE = re.compile("[\ud800-\udfff]")


def invalid_unicode(data: Any, path: str = "") -> str | None:
    """Where ``data`` (JSON-like) holds text that is not valid Unicode (a lone surrogate), as an
    error message naming the field and the fix; None when it is all valid.

    Example:
        >>> invalid_unicode({"messages": [{"role": "user", "content": "ok"}]}) is None
        True
        >>> invalid_unicode({"messages": [{"content": "bad " + chr(0xD800)}]}).split(":")[0]
        'messages[0].content has a lone surrogate (U+D800) at character 4'
    """
    if isinstance(data, str):
        m = _SURROGATE.search(data)
        if m is None:
            return None
        return (f"{path or 'text'} has a lone surrogate (U+{ord(m.group()):04X}) at character {m.start()}: "
                "it is not valid Unicode (often bytes decoded with errors='surrogateescape'). Clean the text "
                "first, e.g. text.encode('utf-8', 'replace').decode('utf-8').")
    if isinstance(data, Mapping):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in data.items())
    elif isinstance(data, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(data))
    else:
        return None
    for sub_path, value in items:
        problem = invalid_unicode(value, sub_path)
        if problem is not None:
            return problem
    return None
