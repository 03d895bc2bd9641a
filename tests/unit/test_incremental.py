"""Incremental re-runs: with a persistent ``cache_path``, a re-run after an edit recomputes only
the calls whose prompt changed and what depends on them; a re-run after failures recomputes only
the failed rows' calls; the cache's model identity keeps different models apart; a bad cache file
is an error naming ``cache_path``, a corrupt row a miss.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

from helium_lc import HeliumConfig, accelerate, explain
from helium_lc.cache.keys import chat_call_key
from helium_lc.cache.prompt_cache import CacheFileError, SQLitePromptCache
from helium_lc.chat_model import HeliumChatModel
from helium_lc.engine.pool import WorkerPool
from helium_lc.testing import DeterministicChatModel, normalize_state

ROOT = Path(__file__).resolve().parents[2]


class Review(TypedDict, total=False):
    doc: str
    summary: str
    critique: str
    verdict: str


def build_review(model: Any, verdict_prompt: str = "Give a verdict on: {critique}") -> Any:
    """summarise -> critique -> verdict, one call each; the verdict's prompt is the 'edit'."""

    def summarise(state: Review) -> dict[str, str]:
        return {"summary": model.invoke(f"Summarise: {state['doc']}").text}

    def critique(state: Review) -> dict[str, str]:
        return {"critique": model.invoke(f"Critique: {state['summary']}").text}

    def verdict(state: Review) -> dict[str, str]:
        return {"verdict": model.invoke(verdict_prompt.format(critique=state["critique"])).text}

    g = StateGraph(Review)
    g.add_node("summarise", summarise).add_node("critique", critique).add_node("verdict", verdict)
    g.add_edge(START, "summarise").add_edge("summarise", "critique").add_edge("critique", "verdict")
    g.add_edge("verdict", END)
    return g.compile()


ROWS = [{"doc": f"document {i} about rivers"} for i in range(5)]


def cfg(path: Path) -> HeliumConfig:
    return HeliumConfig(cache_path=str(path), progress=False)


def test_an_edit_of_the_last_node_recomputes_only_its_calls(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    m1 = DeterministicChatModel()
    first = accelerate(build_review(m1), config=cfg(path))
    first.batch(ROWS)
    s1 = first.last_run_stats()
    assert (m1.num_calls, s1.num_cache_hits, s1.num_cache_misses) == (15, 0, 15)
    assert s1.first_cache_miss_node == "summarise"

    # The user edits the verdict's instruction and runs the same inputs again (a new graph object,
    # as after a restart): 10 calls reused, 5 recomputed, and recomputation began at "verdict".
    m2 = DeterministicChatModel()
    edited = build_review(m2, "Verdict in one word on: {critique}")
    second = accelerate(edited, config=cfg(path))
    out = second.batch(ROWS)
    s2 = second.last_run_stats()
    assert (m2.num_calls, s2.num_cache_hits, s2.num_cache_misses) == (5, 10, 5)
    assert s2.first_cache_miss_node == "verdict"
    assert all(p.count("Verdict in one word") == 1 for p in m2.prompts)
    # Same answers as the edited graph run plainly.
    assert normalize_state(out) == normalize_state(build_review(DeterministicChatModel(),
                                                                "Verdict in one word on: {critique}").batch(ROWS))
    # explain() says it too.
    text = explain(second, file=io.StringIO())
    assert "10 calls reused from the cache, 5 computed" in text and "node 'verdict'" in text


def test_changed_inputs_recompute_their_rows_downstream(tmp_path: Path) -> None:
    # Two documents changed: their summaries change, so their critiques and verdicts do too.
    path = tmp_path / "cache.sqlite"
    accelerate(build_review(DeterministicChatModel()), config=cfg(path)).batch(ROWS)

    m = DeterministicChatModel()
    rows = [{"doc": r["doc"] + " (revised)"} for r in ROWS[:2]] + ROWS[2:]  # two inputs changed
    fast = accelerate(build_review(m), config=cfg(path))
    fast.batch(rows)
    s = fast.last_run_stats()
    assert (s.num_cache_hits, s.num_cache_misses, m.num_calls) == (9, 6, 6)


class Debate(TypedDict, total=False):
    topic: str
    transcript: list[str]
    round: int
    verdict: str


def build_debate(model: Any, rounds: int) -> Any:
    """pro and con speak once per round, then a judge reads the transcript: a config field edit."""

    def speak(state: Debate) -> dict[str, Any]:
        said = list(state.get("transcript", []))
        for side in ("pro", "con"):
            said.append(model.invoke(f"[{side}] {state['topic']} | so far: {' / '.join(said)}").text)
        return {"transcript": said, "round": state.get("round", 0) + 1}

    def judge(state: Debate) -> dict[str, str]:
        return {"verdict": model.invoke(f"Judge: {' / '.join(state['transcript'])}").text}

    g = StateGraph(Debate)
    g.add_node("speak", speak).add_node("judge", judge)
    g.add_edge(START, "speak")
    g.add_conditional_edges("speak", lambda s: "speak" if s["round"] < rounds else "judge", ["speak", "judge"])
    g.add_edge("judge", END)
    return g.compile()


def test_more_debate_rounds_reuse_the_first_round(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    topics = [{"topic": t, "transcript": [], "round": 0} for t in ("tides", "tolls", "taxes")]
    accelerate(build_debate(DeterministicChatModel(), rounds=1), config=cfg(path)).batch(topics)
    m = DeterministicChatModel()
    fast = accelerate(build_debate(m, rounds=2), config=cfg(path))
    fast.batch(topics)
    s = fast.last_run_stats()
    # Per topic: round 1 (2 calls) reused; round 2 (2 calls) and the judge (1) computed.
    assert (s.num_cache_hits, s.num_cache_misses, m.num_calls) == (6, 9, 9)
    assert s.first_cache_miss_node == "speak"


class FlakyModel(DeterministicChatModel):
    """Deterministic, but its critique calls fail for the documents in ``fail_on`` (a provider error)."""

    fail_on: tuple[str, ...] = ()

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        text = " ".join(str(m.content) for m in messages)
        if text.startswith("Critique") and any(doc in text for doc in self.fail_on):
            raise RuntimeError("provider error 503")
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def test_resume_after_failed_rows_recomputes_only_their_calls(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    # Run 1: rows 1 and 3 fail at their critique (their summaries were computed and cached).
    first = accelerate(build_review(FlakyModel(fail_on=("document 1 ", "document 3 "))), config=cfg(path))
    out1 = first.batch(ROWS, return_exceptions=True)
    assert [isinstance(o, Exception) for o in out1] == [False, True, False, True, False]
    assert first.last_run_stats().num_failed_rows == 2
    # Run 2, the provider recovered: only the failed rows' critique and verdict are computed.
    healthy = FlakyModel()
    second = accelerate(build_review(healthy), config=cfg(path))
    out2 = second.batch(ROWS)
    s = second.last_run_stats()
    assert (healthy.num_calls, s.num_cache_hits, s.num_cache_misses) == (4, 11, 4)
    assert all("document 1 " in p or "document 3 " in p for p in healthy.prompts)
    assert s.first_cache_miss_node == "critique"
    assert normalize_state(out2) == normalize_state(build_review(DeterministicChatModel()).batch(ROWS))


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from helium_lc import HeliumConfig, accelerate, explain
    from helium_lc.testing import DeterministicChatModel
    from tests.unit.test_incremental import ROWS, build_review
    fast = accelerate(build_review(DeterministicChatModel()), config=HeliumConfig(cache_path={path!r}, progress=False))
    fast.batch(ROWS)
    print(fast.last_run_stats().num_cache_misses)
""")


def test_the_cache_serves_a_rerun_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    child = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip().splitlines()[-1] == "15"
    m = DeterministicChatModel()
    fast = accelerate(build_review(m, "Verdict in one word on: {critique}"), config=cfg(path))
    fast.batch(ROWS)
    assert (m.num_calls, fast.last_run_stats().num_cache_hits) == (5, 10)


# --------------------------------------------------------------------------- model identity
def fake_model_folder(tmp_path: Path, name: str) -> Path:
    """A model folder with the default model's tokenizer (for prompts) and its own config/weights."""
    from helium_lc.engine.model import resolve_model
    src = resolve_model()
    dst = tmp_path / name
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            (dst / f.name).symlink_to(f)
        elif f.is_file():
            shutil.copy(f, dst / f.name)
    cfg_ = json.loads((dst / "config.json").read_text())
    cfg_["helium_lc_test_variant"] = name  # a different checkpoint: different config
    (dst / "config.json").write_text(json.dumps(cfg_))
    return dst


def test_helium_models_on_different_pools_never_share_keys(tmp_path: Path) -> None:
    a, b = fake_model_folder(tmp_path, "model-a"), fake_model_folder(tmp_path, "model-b")
    msgs = [HumanMessage("hi")]

    def key(pool: WorkerPool) -> str:
        return chat_call_key(HeliumChatModel(pool=pool), msgs, params={"temperature": 0}).digest

    pa, pb = WorkerPool(model=a, start=False), WorkerPool(model=b, start=False)
    assert key(pa) != key(pb)                                     # other weights
    assert key(pa) == key(WorkerPool(model=a, start=False))       # same folder, same settings: shared
    assert key(pa) != key(WorkerPool(model=a, dtype="float32", start=False))   # dtype changes logits
    assert key(pa) == key(WorkerPool(model=a, kv_cache_gib=2, start=False))    # KV size does not
    assert not pa.started and not pb.started  # identity starts no engine
    ident = pa.identity()
    assert ident["engine"] == "vllm" and ident["model"]["path"] == str(a.resolve())


def test_a_shared_cache_file_never_serves_another_models_answer(tmp_path: Path) -> None:
    from helium_lc.engine.sim import SimWorker

    path = tmp_path / "cache.sqlite"
    a, b = fake_model_folder(tmp_path, "model-a"), fake_model_folder(tmp_path, "model-b")
    runs = []
    for folder in (a, b, a):
        pool = WorkerPool(workers=[SimWorker(0, block_size=4)], model=folder)
        try:
            llm = HeliumChatModel(pool=pool, max_tokens=4)
            fast = accelerate(build_review(llm), config=cfg(path))
            fast.batch(ROWS[:2])
            runs.append(fast.last_run_stats())
        finally:
            pool.shutdown()
    assert [r.num_cache_hits for r in runs] == [0, 0, 6]  # B computes its own; A again is served


# --------------------------------------------------------------------------- bad cache files
@pytest.mark.parametrize("make, needle", [
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_text("just some notes\n" * 100), "not a readable SQLite database"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50), "not a readable SQLite database"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE prompt_cache (k TEXT, v TEXT)"), "columns ['k', 'v']"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE users (id INTEGER)"), "other tables (users)"),
])
def test_a_bad_cache_file_is_an_error_naming_cache_path_and_the_fix(tmp_path: Path, make: Any, needle: str) -> None:
    path = tmp_path / "cache.sqlite"
    make(path)
    with pytest.raises(CacheFileError) as err:
        accelerate(build_review(DeterministicChatModel()), config=cfg(path))
    msg = str(err.value)
    assert str(path) in msg and "cache_path" in msg and needle in msg
    assert any(fix in msg for fix in ("pass another cache_path", "pass a new file path", "pass a file path",
                                      "delete it"))


def make_read_only(path: Path) -> Any:
    """Make ``path`` unwritable even for root (chattr +i) or by mode bits; returns the undo."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return lambda: path.chmod(0o644)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root on a file system without chattr +i: cannot make a file read-only")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_cache_file_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    SQLitePromptCache(path).close()
    undo = make_read_only(path)
    try:
        with pytest.raises(CacheFileError, match="cannot be (written|opened).*(writable|permissions)"):
            SQLitePromptCache(path)
    finally:
        undo()


def test_a_corrupt_row_is_a_logged_miss_and_gets_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.sqlite"
    accelerate(build_review(DeterministicChatModel()), config=cfg(path)).batch(ROWS[:1])
    with sqlite3.connect(path) as conn:  # damage one stored value (e.g. a torn write by another tool)
        (digest,) = conn.execute("SELECT digest FROM prompt_cache LIMIT 1").fetchone()
        conn.execute("UPDATE prompt_cache SET value_json = '{\"truncated' WHERE digest = ?", (digest,))
    m = DeterministicChatModel()
    fast = accelerate(build_review(m), config=cfg(path))
    with caplog.at_level("WARNING", logger="helium_lc.cache.prompt_cache"):
        out = fast.batch(ROWS[:1])
    s = fast.last_run_stats()
    assert (m.num_calls, s.num_cache_hits, s.num_cache_misses) == (1, 2, 1)
    assert "corrupt row" in caplog.text and str(path) in caplog.text
    assert normalize_state(out) == normalize_state(build_review(DeterministicChatModel()).batch(ROWS[:1]))
    m3 = DeterministicChatModel()
    again = accelerate(build_review(m3), config=cfg(path))
    again.batch(ROWS[:1])
    assert m3.num_calls == 0  # the recomputed answer replaced the corrupt row
