"""``ChatTokenizer``: a model's tokenizer and chat template, as the pool renders prompts.

Prompts reach the engines as token ids rendered here (chat template, tools), so the
scheduler's per-worker radix model and the engines see exactly the same tokens. Text that
is not valid Unicode (a lone surrogate) gets a ValueError naming the field instead of the
tokenizer's cryptic TypeError.

Example (any transformers tokenizer folder; the default model's is converted once):
    >>> tok = ChatTokenizer.load("/path/to/model")                           # doctest: +SKIP
    >>> ids = tok.apply_chat_template([{"role": "user", "content": "Hi!"}])  # doctest: +SKIP
    >>> tok.decode(tok.encode("hello"))                                      # doctest: +SKIP
    'hello'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from helium_lc.engine.chat_format import invalid_unicode

__all__ = ["ChatTokenizer"]


class ChatTokenizer:
    """Wraps a transformers tokenizer (``hf``): chat-template rendering, encode, decode."""

    def __init__(self, hf: Any) -> None:
        self.hf = hf

    @classmethod
    def load(cls, model_path: str | Path) -> "ChatTokenizer":
        """The tokenizer of the model folder ``model_path``."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(model_path)))

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], *,
                            tools: Sequence[Mapping[str, Any]] | None = None,
                            add_generation_prompt: bool = True) -> list[int]:
        """Render chat messages (OpenAI-style dicts) and tools with the model's chat template."""
        try:
            ids = self.hf.apply_chat_template(list(messages), tools=list(tools) if tools else None,
                                              add_generation_prompt=add_generation_prompt, tokenize=True)
        except TypeError as exc:  # the tokenizer's message for text that is not valid Unicode is cryptic
            problem = invalid_unicode({"messages": list(messages), "tools": list(tools or [])})
            if problem is None:
                raise
            raise ValueError(problem) from exc
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        try:
            return list(self.hf.encode(text, add_special_tokens=False))
        except TypeError as exc:
            problem = invalid_unicode({"text": text})
            if problem is None:
                raise
            raise ValueError(problem) from exc

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids`` (special tokens skipped)."""
        return self.hf.decode(list(token_ids), skip_special_tokens=True)
