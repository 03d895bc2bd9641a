"""Cache safety: a shared cache file never answers one call with another's result.

Figures checked: two graphs with the same node names and different prompts sharing one file -> each
equals its plain run (LangGraph's own node cache keyed such graphs together, langgraph #8753); a
crafted row (an unknown codec tag, a message dict naming an arbitrary class) runs no code and is a
miss; a call that raised is not cached (the re-run computes it); a model on another pool never
gets the first pool's answers (in tests/unit/test_incremental.py).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from helium_lc import HeliumConfig, accelerate
from helium_lc.testing import DeterministicChatModel, normalize_state


class S(TypedDict, total=False):
    q: str
    a: str


def graph(model: Any, template: str) -> Any:
    def answer(state: S) -> dict[str, str]:  # the same node name in both graphs
        return {"a": model.invoke(template.format(q=state["q"])).text}

    g = StateGraph(S)
    g.add_node("answer", answer).add_edge(START, "answer").add_edge("answer", END)
    return g.compile()


ROWS = [{"q": "tides"}, {"q": "tolls"}]


def test_two_graphs_sharing_a_cache_file_never_collide(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    outs = {}
    for template in ("Explain {q}.", "Summarise {q} in French."):
        fast = accelerate(graph(DeterministicChatModel(), template), config=HeliumConfig(cache_path=path, progress=False))
        outs[template] = fast.batch(ROWS)
        assert fast.last_run_stats().num_cache_hits == 0
        assert normalize_state(outs[template]) == normalize_state(graph(DeterministicChatModel(), template).batch(ROWS))
    assert outs["Explain {q}."] != outs["Summarise {q} in French."]


def test_crafted_rows_run_no_code_and_are_misses(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    accelerate(graph(DeterministicChatModel(), "Explain {q}."), cache_path=str(path)).batch(ROWS)
    marker = tmp_path / "pwned"
    crafted = [
        {"__hlc__": "pickle", "v": f"cos\nsystem\n(S'touch {marker}'\ntR."},
        {"__hlc__": "message", "v": {"type": "os.system", "data": {"content": f"touch {marker}"}}},
    ]
    with sqlite3.connect(path) as conn:
        digests = [d for (d,) in conn.execute("SELECT digest FROM prompt_cache ORDER BY digest")]
        for digest, value in zip(digests, crafted):
            conn.execute("UPDATE prompt_cache SET value_json = ? WHERE digest = ?", (json.dumps(value), digest))
    model = DeterministicChatModel()
    fast = accelerate(graph(model, "Explain {q}."), cache_path=str(path))
    out = fast.batch(ROWS)
    assert not marker.exists()
    assert model.num_calls == 2 and fast.last_run_stats().num_cache_misses == 2
    assert normalize_state(out) == normalize_state(graph(DeterministicChatModel(), "Explain {q}.").batch(ROWS))


class FailOnce(DeterministicChatModel):
    failed: bool = False

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise RuntimeError("transient provider error")
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def test_errors_are_never_cached(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.sqlite")
    fast = accelerate(graph(FailOnce(), "Explain {q}."), config=HeliumConfig(cache_path=path, progress=False))
    first = fast.batch(ROWS[:1], return_exceptions=True)
    assert isinstance(first[0], RuntimeError)
    second = fast.batch(ROWS[:1])
    assert fast.last_run_stats().num_cache_hits == 0 and second[0]["a"]
