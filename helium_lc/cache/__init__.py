"""Skip work already done: an exact prompt cache and single-flight dedup (deterministic calls only).

- :mod:`~helium_lc.cache.keys`: what makes two calls the same (model, output params, normalised prompt).
- :mod:`~helium_lc.cache.prompt_cache`: ``MemoryPromptCache`` (LRU) and ``SQLitePromptCache`` (on disk).
- :mod:`~helium_lc.cache.codec`: the JSON codec for cached values (no pickle).
- :mod:`~helium_lc.cache.singleflight`: identical in-flight calls share one computation.

Example:
    >>> from langchain_core.messages import AIMessage, HumanMessage
    >>> cache, sf = MemoryPromptCache(), SingleFlight()
    >>> key = chat_call_key("m", [HumanMessage("hi")], params={"temperature": 0})
    >>> def call():
    ...     hit = cache.get(key)
    ...     if hit is None:
    ...         hit = sf.do(key.digest, lambda: AIMessage("hello"))
    ...         cache.put(key, hit)
    ...     return hit
    >>> call().content, call().content, cache.stats().num_hits, sf.num_leaders
    ('hello', 'hello', 1, 1)
"""

from helium_lc.cache.codec import UnstorableValueError, decode_value, encode_value
from helium_lc.cache.keys import (
    CacheKey,
    UncacheableError,
    canonical_message,
    canonical_messages_text,
    chat_call_key,
    is_deterministic,
    model_identity,
    token_request_key,
)
from helium_lc.cache.prompt_cache import (
    CacheStats,
    MemoryPromptCache,
    PromptCache,
    SQLitePromptCache,
)
from helium_lc.cache.singleflight import SingleFlight

__all__ = [
    "CacheKey", "CacheStats", "MemoryPromptCache", "PromptCache", "SQLitePromptCache",
    "SingleFlight", "UncacheableError", "UnstorableValueError", "canonical_message",
    "canonical_messages_text", "chat_call_key", "decode_value", "encode_value",
    "is_deterministic", "model_identity", "token_request_key",
]
