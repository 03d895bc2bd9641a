"""Small helpers shared by the workload modules: parameter checking and message text.

Every workload takes the same keyword parameters in ``build`` and ``make_inputs`` (those in its
``DEFAULTS``), so a benchmark can pass one dict to both. ``resolve_params`` merges the caller's
values over the defaults and rejects unknown names and bad values with a message that lists the
valid ones.

Example:
    >>> resolve_params("demo", {"num_experts": 4, "data_source": "auto"}, {"num_experts": 2})
    {'num_experts': 2, 'data_source': 'auto'}
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from langchain_core.messages import BaseMessage

#: Roughly how many English words one token of a BPE tokenizer covers (for length targets).
WORDS_PER_TOKEN = 0.75


def resolve_params(workload: str, defaults: Mapping[str, Any],
                   params: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``params``, validated.

    Raises:
        ValueError: an unknown parameter name, a count (``num_*``, ``*_words``, ``*_tokens``)
            that is not a positive integer, or a ``data_source`` other than auto/bundled.
    """
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"{workload}: unknown parameter(s) {unknown}; "
                         f"valid ones are {sorted(defaults)}.")
    merged = {**defaults, **params}
    for name, value in merged.items():
        is_count = name.startswith("num_") or name.endswith(("_words", "_tokens"))
        if is_count and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{workload}: {name} must be a positive integer, got {value!r}.")
        if isinstance(defaults.get(name), bool) and not isinstance(value, bool):
            raise ValueError(f"{workload}: {name} must be True or False, got {value!r}.")
    if merged.get("data_source", "auto") not in ("auto", "bundled"):
        raise ValueError(f"{workload}: data_source must be 'auto' (real offline data when "
                         f"installed) or 'bundled', got {merged['data_source']!r}.")
    return merged


def message_text(message: BaseMessage) -> str:
    """The text of a chat model reply (content blocks joined), stripped."""
    content = message.content
    if isinstance(content, str):
        return content.strip()
    parts = [c if isinstance(c, str) else str(c.get("text", "")) for c in content]
    return "".join(parts).strip()


def words_for_tokens(num_tokens: int) -> int:
    """How many words to write to get about ``num_tokens`` tokens (at least one)."""
    return max(1, round(num_tokens * WORDS_PER_TOKEN))


def truncate_words(text: str, num_words: int) -> str:
    """The first ``num_words`` words of ``text``, keeping its line breaks."""
    matches = list(re.finditer(r"\S+", text))
    if len(matches) <= num_words:
        return text.strip()
    return text[:matches[num_words - 1].end()].strip()
