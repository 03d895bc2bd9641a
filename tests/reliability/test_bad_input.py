"""Bad input gets a clear error: the error type, and a message that names the argument and the fix.

One table across ``accelerate``, ``HeliumConfig``, ``HeliumChatModel`` (construction and call),
``WorkerPool``, the OpenAI front end (HTTP 400 with the field named) and the cache file; then a
batch where one row's input is bad: that row fails clearly, the others finish, the pool serves on.
No engine: a simulated worker with the default model's tokenizer.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypedDict

import httpx
import pytest
from langgraph.graph import END, START, StateGraph
from pydantic import ValidationError

from helium_lc import HeliumChatModel, HeliumConfig, WorkerPool, accelerate
from helium_lc.cache.prompt_cache import CacheFileError, MemoryPromptCache
from helium_lc.engine.sim import SimWorker
from helium_lc.integrations.openai_transport import HeliumTransport
from helium_lc.testing import DeterministicChatModel

LONE_SURROGATE = "bad " + chr(0xD800) + " text"
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


class S(TypedDict, total=False):
    q: str
    a: str


def graph(llm: Any) -> Any:
    def node(state: S) -> dict[str, str]:
        return {"a": llm.invoke(state["q"]).text}

    g = StateGraph(S)
    g.add_node("node", node).add_edge(START, "node").add_edge("node", END)
    return g.compile()


@pytest.fixture(scope="module")
def pool() -> Any:
    p = WorkerPool(workers=[SimWorker(0, block_size=4)])
    yield p
    p.shutdown()


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[Any, Path], Any]   # (pool, tmp_path) -> raises
    error: type[BaseException] | tuple[type[BaseException], ...]
    needles: tuple[str, ...]           # all must appear in the message (the argument, the fix)


def llm(pool: Any, **kw: Any) -> HeliumChatModel:
    return HeliumChatModel(pool=pool, **{"max_tokens": 4, **kw})


def file_with(text: str) -> Callable[[Any, Path], Any]:
    def make(pool: Any, tmp: Path) -> Any:
        path = tmp / "cache.sqlite"
        path.write_text(text)
        return accelerate(graph(DeterministicChatModel()), cache_path=str(path))
    return make


def foreign_db(pool: Any, tmp: Path) -> Any:
    path = tmp / "cache.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE prompt_cache (k TEXT, v TEXT)")
    return accelerate(graph(DeterministicChatModel()), cache_path=str(path))


APP = graph(DeterministicChatModel())
CASES = [
    # accelerate()
    Case("accelerate: not a graph", lambda p, t: accelerate(42), TypeError, ("compiled LangGraph StateGraph",)),
    Case("accelerate: misspelt option", lambda p, t: accelerate(APP, polcy="fifo"), TypeError, ("polcy", "HeliumConfig fields")),
    Case("accelerate: unknown output key", lambda p, t: accelerate(APP, output_keys=["nope"]), ValueError, ("output_keys", "state keys are", "'a'")),
    Case("accelerate: bad server URL", lambda p, t: accelerate(APP, servers=["ftp://x"]), ValueError, ("servers", "http://127.0.0.1:8000")),
    Case("batch: a string, not a list", lambda p, t: accelerate(APP).batch("abc"), TypeError, ("list of inputs", "invoke(x)")),
    # HeliumConfig
    Case("config: unknown policy", lambda p, t: HeliumConfig(policy="nope"), ValueError, ("nope", "helium", "fifo")),
    Case("config: route not a mapping", lambda p, t: HeliumConfig(route=[1]), ValueError, ("route", "route={")),
    Case("config: unknown rule", lambda p, t: HeliumConfig(disabled_rules={"bogus"}), ValueError, ("bogus", "known rules")),
    Case("config: in-flight cap 0", lambda p, t: HeliumConfig(max_in_flight_per_backend=0), ValueError, ("max_in_flight_per_backend", ">= 1")),
    Case("config: progress 'yes'", lambda p, t: HeliumConfig(progress="yes"), ValueError, ("progress", "True, False or None")),
    Case("config: cache_path 3", lambda p, t: HeliumConfig(cache_path=3), ValueError, ("cache_path", "file path")),
    # HeliumChatModel construction
    Case("model: temperature -1", lambda p, t: llm(p, temperature=-1), ValidationError, ("temperature", "use 0 for greedy")),
    Case("model: max_tokens 0", lambda p, t: llm(p, max_tokens=0), ValidationError, ("max_tokens", "max_tokens=256")),
    Case("model: top_p 2", lambda p, t: llm(p, top_p=2), ValidationError, ("top_p", "(0, 1]")),
    Case("model: top_k -2", lambda p, t: llm(p, top_k=-2), ValidationError, ("top_k", "0 = off")),
    Case("model: stop 123", lambda p, t: llm(p, stop=123), ValidationError, ("stop", "list")),
    Case("model: timeout -1", lambda p, t: llm(p, timeout=-1), ValidationError, ("timeout", "timeout=60")),
    # HeliumChatModel calls
    Case("call: stop=123", lambda p, t: llm(p).invoke("x", stop=123), ValueError, ("stop", "list of non-empty strings")),
    Case("call: stop=[None]", lambda p, t: llm(p).invoke("x", stop=[None]), ValueError, ("stop", "[None]")),
    Case("call: stop={'a': 1}", lambda p, t: llm(p).invoke("x", stop={"a": 1}), ValueError, ("stop", "{'a': 1}")),
    Case("call: lone surrogate", lambda p, t: llm(p).invoke(LONE_SURROGATE), ValueError, ("messages[0].content", "lone surrogate", "encode('utf-8', 'replace')")),
    Case("call: max_tokens=0", lambda p, t: llm(p).invoke("x", max_tokens=0), ValueError, ("max_tokens", "max_tokens=256")),
    Case("call: unknown argument", lambda p, t: llm(p).invoke("x", frobnicate=1), ValueError, ("frobnicate", "supported")),
    Case("call: tool_choice names no tool", lambda p, t: llm(p).bind_tools([TOOL], tool_choice="g").invoke("x"), ValueError, ("tool_choice='g'", "bound: ['f']")),
    Case("call: empty conversation", lambda p, t: llm(p).invoke([]), ValueError, ("at least one message",)),
    # WorkerPool
    Case("pool: num_workers 0", lambda p, t: WorkerPool(num_workers=0, start=False), ValueError, ("num_workers", "WorkerPool(num_workers=1)")),
    Case("pool: kv_cache_gib -1", lambda p, t: WorkerPool(kv_cache_gib=-1, start=False), ValueError, ("kv_cache_gib", "kv_cache_gib=0.5")),
    Case("pool: max_model_len 0", lambda p, t: WorkerPool(max_model_len=0, start=False), ValueError, ("max_model_len", "max_model_len=8192")),
    Case("pool: max_num_seqs 0", lambda p, t: WorkerPool(max_num_seqs=0, start=False), ValueError, ("max_num_seqs", "max_num_seqs=64")),
    Case("pool: dtype float8", lambda p, t: WorkerPool(dtype="float8", start=False), ValueError, ("dtype", "bfloat16")),
    Case("pool: engine_args a list", lambda p, t: WorkerPool(engine_args=[1], start=False), ValueError, ("engine_args", "engine_args={")),
    Case("pool: max_restarts -1", lambda p, t: WorkerPool(max_restarts=-1, start=False), ValueError, ("max_restarts", ">= 0")),
    Case("pool: restart window 0", lambda p, t: WorkerPool(restart_window_s=0, start=False), ValueError, ("restart_window_s", "positive")),
    Case("pool: missing model folder", lambda p, t: WorkerPool(model=t / "nope", start=True), FileNotFoundError, ("does not exist", "Hugging Face model folder")),
    Case("pool: servers a string", lambda p, t: WorkerPool(servers="http://x:1", start=False), ValueError, ("servers", "servers=['http://127.0.0.1:8000']")),
    Case("pool: workers and servers", lambda p, t: WorkerPool(workers=[], servers=[], start=False), ValueError, ("workers=", "servers=")),
    # caches
    Case("cache file: a folder", lambda p, t: accelerate(APP, cache_path=str(t)), CacheFileError, ("cache_path", "is a folder", "pass a file path")),
    Case("cache file: a text file", file_with("notes\n" * 200), CacheFileError, ("cache_path", "not a readable SQLite database", "delete it")),
    Case("cache file: a foreign schema", foreign_db, CacheFileError, ("cache_path", "columns ['k', 'v']", "pass another cache_path")),
    Case("memory cache: max_bytes 0", lambda p, t: MemoryPromptCache(max_bytes=0), ValueError, ("max_bytes", "max_bytes=64")),
]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_a_clear_error(case: Case, pool: Any, tmp_path: Path) -> None:
    with pytest.raises(case.error) as err:
        case.call(pool, tmp_path)
    message = str(err.value)
    missing = [n for n in case.needles if n not in message]
    assert not missing, f"{case.name}: message lacks {missing}: {message}"


FRONT_END = [
    ("no messages", {"model": "m"}, "messages"),
    ("temperature 3", {"temperature": 3}, "temperature"),
    ("max_tokens -1", {"max_tokens": -1}, "max_tokens"),
    ("stop 123", {"stop": 123}, "stop"),
    ("n 2", {"n": 2}, "n"),
    ("unknown field", {"frob": 1}, "frob"),
    ("top_p 5", {"top_p": 5}, "top_p"),
    ("tools malformed", {"tools": [{"type": "web"}]}, "tools"),
    ("content a number", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("role missing", {"messages": [{"content": "hi"}]}, "messages[0].role"),
    ("lone surrogate", {"messages": [{"role": "user", "content": LONE_SURROGATE}]}, "messages"),
    ("response_format type", {"response_format": {"type": "yaml"}}, "response_format"),
    ("logprobs", {"logprobs": True}, "logprobs"),
]


@pytest.mark.parametrize("name, fields, param", FRONT_END, ids=[c[0] for c in FRONT_END])
def test_front_end_client_mistakes_are_400_naming_the_field(pool: Any, name: str, fields: dict[str, Any], param: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **fields}
    if "model" in fields:
        body.pop("messages")
    with httpx.Client(transport=HeliumTransport(pool), base_url="http://helium") as client:
        r = client.post("/v1/chat/completions", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param or param in error["message"], error


def test_one_bad_row_fails_alone_and_the_pool_serves_on(pool: Any) -> None:
    fast = accelerate(graph(llm(pool)), config=HeliumConfig(progress=False))
    rows = [{"q": "Say hi."}, {"q": LONE_SURROGATE}, {"q": "Say bye."}]
    out = fast.batch(rows, return_exceptions=True)
    assert isinstance(out[1], ValueError) and "lone surrogate" in str(out[1])
    assert isinstance(out[0], dict) and isinstance(out[2], dict) and out[0]["a"] and out[2]["a"]
    assert fast.last_run_stats().num_failed_rows == 1
    assert llm(pool).invoke("Still there?").content
