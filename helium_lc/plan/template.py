"""Prompt templates: the static text and placeholders an LLM call site renders.

A :class:`PromptTemplate` is a tuple of chat messages; each message is a role and a
tuple of segments, where a segment is literal text (:class:`Static`) or a hole filled
at run time (:class:`Placeholder`). The scheduler cares most about the *static prefix*:
the literal run before the first placeholder, which every row of a batch shares.

Templates come from exact extraction from a langchain-core ``ChatPromptTemplate``
(:func:`template_from_chat_prompt`) and from static analysis of a node's source (see
``helium_lc.capture``); where neither works, the runtime learns each call site's static
prefix from the prompts it sends (``runtime.sched_model.SiteBook``, ``plan.learned``).

Example:
    >>> t = PromptTemplate.of(("system", "You are terse."), ("human", "Q: {q}"))
    >>> t.static_prefix()
    'You are terse.\\nQ: '
    >>> t.placeholders()
    ('q',)
    >>> t.render({"q": "why?"})
    (('system', 'You are terse.'), ('human', 'Q: why?'))
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

__all__ = [
    "Static", "Placeholder", "Segment", "TemplateMessage", "PromptTemplate",
    "template_from_chat_prompt", "parse_format_string",
]

# Joins the static text of consecutive messages in ``static_prefix()``.
MESSAGE_SEPARATOR = "\n"


@dataclass(frozen=True)
class Static:
    """Literal text that is the same on every call."""

    text: str


@dataclass(frozen=True)
class Placeholder:
    """A hole filled at run time.

    ``source`` says where the value comes from when known (e.g. ``"state.question"``),
    ``""`` when not. ``is_messages`` marks a hole that expands to whole messages
    (langchain's ``MessagesPlaceholder``) rather than text inside one message.
    """

    name: str
    source: str = ""
    is_messages: bool = False


Segment = Union[Static, Placeholder]


@dataclass(frozen=True)
class TemplateMessage:
    """One chat message of a template: a role and its segments."""

    role: str
    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.segments, tuple):
            object.__setattr__(self, "segments", tuple(self.segments))
        for seg in self.segments:
            if not isinstance(seg, (Static, Placeholder)):
                raise TypeError(
                    f"A template segment must be Static or Placeholder, got {type(seg).__name__}."
                )


@dataclass(frozen=True)
class PromptTemplate:
    """The messages an LLM call site renders, as static text and placeholders.

    ``learned=True`` means the template is not known exactly: it was (or will be)
    learned from observed prompts, so it may only be trusted for its static prefix and
    never to decide that two calls are equal.
    """

    messages: tuple[TemplateMessage, ...] = ()
    learned: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.messages, tuple):
            object.__setattr__(self, "messages", tuple(self.messages))

    @classmethod
    def of(cls, *messages: tuple[str, str], source_prefix: str = "") -> "PromptTemplate":
        """Build an exact template from ``(role, "f-string {text}")`` pairs."""
        return cls(tuple(
            TemplateMessage(role, parse_format_string(text, source_prefix=source_prefix))
            for role, text in messages
        ))

    @classmethod
    def unknown(cls) -> "PromptTemplate":
        """An empty template to be learned at run time."""
        return cls((), learned=True)

    @property
    def is_exact(self) -> bool:
        """True when the template is fully known (not learned)."""
        return not self.learned

    @property
    def is_static(self) -> bool:
        """True for an exact template with no placeholders: every call renders the same."""
        return self.is_exact and bool(self.messages) and not self.placeholders()

    def placeholders(self) -> tuple[str, ...]:
        """Placeholder names in order of first appearance."""
        seen: dict[str, None] = {}
        for msg in self.messages:
            for seg in msg.segments:
                if isinstance(seg, Placeholder):
                    seen.setdefault(seg.name, None)
        return tuple(seen)

    def static_prefix_messages(self) -> tuple[tuple[str, str], ...]:
        """The leading literal run as ``(role, text)`` pairs; the last may be partial."""
        out: list[tuple[str, str]] = []
        for msg in self.messages:
            texts: list[str] = []
            for seg in msg.segments:
                if isinstance(seg, Placeholder):
                    if texts or not seg.is_messages:
                        out.append((msg.role, "".join(texts)))
                    return tuple(out)
                texts.append(seg.text)
            out.append((msg.role, "".join(texts)))
        return tuple(out)

    def static_prefix(self) -> str:
        """The leading literal text up to the first placeholder, across messages."""
        return MESSAGE_SEPARATOR.join(text for _, text in self.static_prefix_messages())

    def render(self, values: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        """Fill every placeholder from ``values`` and return ``(role, text)`` messages.

        A messages placeholder takes a sequence of ``(role, text)`` pairs or of message
        objects with ``.type`` and ``.content``.
        """
        if self.learned:
            raise ValueError("A learned template cannot be rendered; it is only a prefix estimate.")
        missing = [p for p in self.placeholders() if p not in values]
        if missing:
            raise KeyError(f"Template needs values for {missing}; got keys {sorted(values)}.")
        out: list[tuple[str, str]] = []
        for msg in self.messages:
            parts: list[str] = []
            for seg in msg.segments:
                if isinstance(seg, Static):
                    parts.append(seg.text)
                elif seg.is_messages:
                    if parts:
                        out.append((msg.role, "".join(parts)))
                        parts = []
                    out.extend(_as_role_text(m) for m in values[seg.name])
                else:
                    parts.append(str(values[seg.name]))
            if parts or not any(isinstance(s, Placeholder) and s.is_messages for s in msg.segments):
                out.append((msg.role, "".join(parts)))
        return tuple(out)

    def describe(self) -> str:
        """A compact one-line form, e.g. ``system:"You are…" | human:"Q: {q}"``."""
        if self.learned and not self.messages:
            return "<learned>"
        parts = []
        for msg in self.messages:
            body = "".join(s.text if isinstance(s, Static) else
                           ("{{" + s.name + "}}" if s.is_messages else "{" + s.name + "}")
                           for s in msg.segments)
            parts.append(f"{msg.role}:{body!r}")
        return " | ".join(parts) + (" (learned)" if self.learned else "")


def _as_role_text(message: Any) -> tuple[str, str]:
    if isinstance(message, tuple) and len(message) == 2:
        return (str(message[0]), str(message[1]))
    role = getattr(message, "type", None)
    content = getattr(message, "content", None)
    if role is None or content is None:
        raise TypeError(
            f"A messages placeholder value must hold (role, text) pairs or message objects, "
            f"got {type(message).__name__}."
        )
    return (str(role), content if isinstance(content, str) else repr(content))


def parse_format_string(text: str, *, source_prefix: str = "") -> tuple[Segment, ...]:
    """Split a ``str.format`` template into segments: ``"Q: {q}"`` -> Static, Placeholder.

    ``{{`` and ``}}`` are literal braces. Each placeholder's source is
    ``source_prefix + name``.
    """
    segments: list[Segment] = []
    for literal, name, _spec, _conv in string.Formatter().parse(text):
        if literal:
            if segments and isinstance(segments[-1], Static):
                segments[-1] = Static(segments[-1].text + literal)
            else:
                segments.append(Static(literal))
        if name is not None:
            segments.append(Placeholder(name, source=f"{source_prefix}{name}" if source_prefix else ""))
    return tuple(segments)


_MUSTACHE = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


def _parse_mustache(text: str, source_prefix: str) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    pos = 0
    for m in _MUSTACHE.finditer(text):
        if m.start() > pos:
            segments.append(Static(text[pos:m.start()]))
        segments.append(Placeholder(m.group(1), source=f"{source_prefix}{m.group(1)}" if source_prefix else ""))
        pos = m.end()
    if pos < len(text):
        segments.append(Static(text[pos:]))
    return tuple(segments)


_ROLE_BY_CLASS = {
    "SystemMessagePromptTemplate": "system", "HumanMessagePromptTemplate": "human",
    "AIMessagePromptTemplate": "ai", "SystemMessage": "system", "HumanMessage": "human",
    "AIMessage": "ai",
}


def template_from_chat_prompt(prompt: Any, *, source_prefix: str = "") -> PromptTemplate:
    """Extract an exact :class:`PromptTemplate` from a langchain-core ``ChatPromptTemplate``.

    Message prompt templates give static text and ``{variables}``; a
    ``MessagesPlaceholder`` becomes a messages placeholder; literal messages become
    static text. Parts this function cannot read exactly (jinja2 templates, multimodal
    content) make the result ``learned`` with the readable prefix kept.
    """
    messages = getattr(prompt, "messages", None)
    if messages is None:
        raise TypeError(
            f"Expected a langchain-core ChatPromptTemplate (with .messages), got {type(prompt).__name__}."
        )
    out: list[TemplateMessage] = []
    for m in messages:
        cls_name = type(m).__name__
        if cls_name == "MessagesPlaceholder":
            name = m.variable_name
            out.append(TemplateMessage("messages", (Placeholder(
                name, source=f"{source_prefix}{name}" if source_prefix else "", is_messages=True),)))
            continue
        role = getattr(m, "role", None) or _ROLE_BY_CLASS.get(cls_name) or getattr(m, "type", None)
        inner = getattr(m, "prompt", None)
        if inner is None and isinstance(getattr(m, "content", None), str):  # a literal message
            out.append(TemplateMessage(str(role or "human"), (Static(m.content),)))
            continue
        template_text = getattr(inner, "template", None)
        fmt = getattr(inner, "template_format", "f-string")
        if not isinstance(template_text, str) or fmt not in ("f-string", "mustache"):
            # Unreadable part: keep what came before it, learn the rest at run time.
            return PromptTemplate(tuple(out), learned=True)
        segs = (parse_format_string(template_text, source_prefix=source_prefix) if fmt == "f-string"
                else _parse_mustache(template_text, source_prefix))
        out.append(TemplateMessage(str(role or "human"), segs))
    return PromptTemplate(tuple(out))
