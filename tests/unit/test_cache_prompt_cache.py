"""Prompt caches: one behaviour suite for both backends, plus backend-specific checks."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from helium_lc.cache.codec import UnstorableValueError
from helium_lc.cache.keys import CacheKey, chat_call_key
from helium_lc.cache.prompt_cache import MemoryPromptCache, PromptCache, SQLitePromptCache
from helium_lc.engine.types import GenerationResult


def key(text: str, temperature: float = 0.0) -> CacheKey:
    return chat_call_key("m", [HumanMessage(text)], params={"temperature": temperature})


def rich_message() -> AIMessage:
    return AIMessage(
        "calling", id="run-1",
        tool_calls=[{"name": "lookup", "args": {"city": "Oslo", "days": [1, 2]}, "id": "c1"}],
        usage_metadata={"input_tokens": 7, "output_tokens": 3, "total_tokens": 10},
        response_metadata={"model_name": "m", "finish_reason": "tool_calls"},
    )


@pytest.fixture(params=["memory", "sqlite"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PromptCache]:
    if request.param == "memory":
        yield MemoryPromptCache(max_entries=1000)
    else:
        c = SQLitePromptCache(tmp_path / "cache.sqlite")
        yield c
        c.close()


def test_miss_put_hit_and_stats(cache: PromptCache) -> None:
    assert isinstance(cache, PromptCache)
    # Step 1: an empty cache misses.
    assert cache.get(key("a")) is None
    # Step 2: after a put, the same prompt (other message id) hits; another prompt misses.
    cache.put(key("a"), rich_message())
    hit = cache.get(chat_call_key("m", [HumanMessage("a", id="other")], params={"temperature": 0}))
    assert hit == rich_message()
    assert cache.get(key("b")) is None
    s = cache.stats()
    assert (s.num_hits, s.num_misses, s.num_entries) == (1, 2, 1)
    assert s.hit_rate == pytest.approx(1 / 3)
    # Step 3: clear empties and resets the counters.
    cache.clear()
    s = cache.stats()
    assert (s.num_hits, s.num_misses, s.num_entries) == (0, 0, 0)
    assert cache.get(key("a")) is None


def test_round_trip_of_rich_values(cache: PromptCache) -> None:
    # An AIMessage with tool calls and usage, a ChatResult and an engine result all come back equal.
    result = ChatResult(generations=[ChatGeneration(message=rich_message())], llm_output={"k": 1})
    gen = GenerationResult(request_id="r", text="hi", token_ids=(5, 6), num_prompt_tokens=3,
                           num_cached_prompt_tokens=2, finish_reason="stop", worker_id=0)
    cache.put_many([(key("msg"), rich_message()), (key("res"), result), (key("gen"), gen),
                    (key("json"), {"a": [1, 2.5, None], "t": (1, "x")})])
    got_msg, got_res, got_gen, got_json = cache.get_many(
        [key("msg"), key("res"), key("gen"), key("json")])
    assert got_msg == rich_message() and got_msg.tool_calls[0]["args"]["days"] == [1, 2]
    assert got_msg.usage_metadata["total_tokens"] == 10
    assert got_res == result
    assert got_gen == gen
    assert got_json == {"a": [1, 2.5, None], "t": (1, "x")}


def test_a_batch_can_be_partly_served(cache: PromptCache) -> None:
    # Rows 0 and 2 were computed before; row 1 was not.
    cache.put_many([(key("row0"), "r0"), (key("row2"), "r2")])
    assert cache.get_many([key("row0"), key("row1"), key("row2")]) == ["r0", None, "r2"]
    assert (cache.stats().num_hits, cache.stats().num_misses) == (2, 1)


def test_sampled_calls_are_never_cached(cache: PromptCache) -> None:
    sampled = key("a", temperature=0.7)
    with pytest.raises(ValueError, match="non-deterministic"):
        cache.put(sampled, "x")
    # A lookup of a sampled call is a bypass, not a miss.
    assert cache.get(sampled) is None
    s = cache.stats()
    assert (s.num_bypassed, s.num_misses, s.num_entries) == (1, 0, 0)


def test_hash_collision_is_a_miss(cache: PromptCache) -> None:
    # Forge a key with the same digest but other canonical text: the full compare rejects it.
    real = key("a")
    cache.put(real, "value")
    forged = CacheKey(real.digest, real.canonical_text + " ", True)
    assert cache.get(forged) is None
    assert cache.stats().num_collisions == 1
    assert cache.get(real) == "value"


def test_values_read_back_are_copies(cache: PromptCache) -> None:
    cache.put(key("a"), AIMessage("original"))
    cache.get(key("a")).content = "mutated"
    assert cache.get(key("a")).content == "original"


def test_unstorable_value_raises(cache: PromptCache) -> None:
    with pytest.raises(UnstorableValueError, match="cannot store"):
        cache.put(key("a"), object())
    assert cache.stats().num_entries == 0


def test_concurrent_threads(cache: PromptCache) -> None:
    # 8 threads each write 20 keys and read them back; nothing is lost or mixed up.
    errors: list[str] = []

    def work(t: int) -> None:
        for i in range(20):
            cache.put(key(f"{t}-{i}"), f"v{t}-{i}")
            if cache.get(key(f"{t}-{i}")) != f"v{t}-{i}":
                errors.append(f"{t}-{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and cache.stats().num_entries == 160


def test_memory_cache_evicts_least_recently_used() -> None:
    c = MemoryPromptCache(max_entries=2)
    c.put(key("a"), 1)
    c.put(key("b"), 2)
    c.get(key("a"))          # a is now more recent than b
    c.put(key("c"), 3)       # over capacity: b (least recently used) goes
    assert c.get(key("b")) is None and c.get(key("a")) == 1 and c.get(key("c")) == 3
    assert c.stats().num_evictions == 1 and len(c) == 2


def test_memory_cache_validates_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryPromptCache(max_entries=0)


def test_sqlite_cache_uses_wal_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with SQLitePromptCache(path) as c:
        assert c._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        c.put(key("a"), rich_message())
    # A new object on the same file (as another run would open it) sees the entry.
    with SQLitePromptCache(path) as c2:
        assert c2.get(key("a")) == rich_message()


def test_sqlite_cache_is_shared_across_processes(tmp_path: Path) -> None:
    # Another Python process writes an entry; this process reads it.
    path = tmp_path / "shared.sqlite"
    script = (
        "import sys\n"
        "from langchain_core.messages import AIMessage, HumanMessage\n"
        "from helium_lc.cache import SQLitePromptCache, chat_call_key\n"
        "c = SQLitePromptCache(sys.argv[1])\n"
        "c.put(chat_call_key('m', [HumanMessage('a')], params={'temperature': 0}),"
        " AIMessage('from child'))\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, cwd=root, timeout=60)
    with SQLitePromptCache(path) as c:
        assert c.get(key("a")).content == "from child"


def test_sqlite_cache_needs_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SQLitePromptCache(tmp_path / "missing" / "c.sqlite")


def test_codec_round_trips_every_message_kind() -> None:
    # Each message kind LangGraph states hold comes back equal and of the same class.
    from langchain_core.messages import AIMessageChunk, ChatMessage, SystemMessage, ToolMessage

    from helium_lc.cache.codec import decode_value, encode_value

    messages = [
        ToolMessage("r", tool_call_id="c", artifact={"a": [1]}, status="error"),
        ChatMessage("x", role="critic"),
        AIMessageChunk("x", tool_call_chunks=[{"name": "f", "args": "{}", "id": "c", "index": 0}]),
        SystemMessage([{"type": "text", "text": "hi"}]),
        HumanMessage("h", name="bob"),
    ]
    for m in messages:
        back = decode_value(encode_value(m))
        assert type(back) is type(m) and back == m
    # The codec's tag key is reserved in user dicts.
    with pytest.raises(UnstorableValueError, match="reserved"):
        encode_value({"__hlc__": 1})


def test_memory_cache_is_bounded_by_bytes() -> None:
    # 200 entries of ~10 kB each in a 100 kB budget: the oldest are evicted, the newest kept.
    cache = MemoryPromptCache(max_bytes=100_000)
    for i in range(200):
        cache.put(key(f"prompt {i}"), "x" * 10_000)
    assert cache.num_bytes <= 100_000 and 5 <= len(cache) <= 10
    assert cache.get(key("prompt 199")) == "x" * 10_000 and cache.get(key("prompt 0")) is None
    assert cache.stats().num_evictions == 200 - len(cache)
    cache.put(key("huge"), "y" * 200_000)  # larger than the whole budget: not held, nothing evicted
    assert cache.get(key("huge")) is None and cache.get(key("prompt 199")) is not None
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        MemoryPromptCache(max_bytes=0)
