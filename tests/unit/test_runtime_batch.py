"""Batch execution: one event loop, rows concurrent, usable from inside a running loop."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from helium_lc.accelerate import accelerate
from helium_lc.runtime.batch import run_rows, run_sync, want_progress
from helium_lc.testing import DeterministicChatModel
from tests.fidelity.graphs import GRAPHS

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("v", default="unset")


def test_rows_run_concurrently_in_their_own_contexts() -> None:
    # 3 rows each wait for an event the last row sets: only possible if all run at once.
    started = 0

    async def row(i: int, x: Any) -> str:
        nonlocal started
        started += 1
        while started < 3:
            await asyncio.sleep(0)
        return f"{x}:{_VAR.get()}"

    contexts = [contextvars.copy_context() for _ in range(3)]
    for i, ctx in enumerate(contexts):
        ctx.run(_VAR.set, f"row{i}")
    out = run_sync(run_rows(row, ["a", "b", "c"], contexts=contexts))
    assert out == ["a:row0", "b:row1", "c:row2"]


def test_batch_from_inside_a_running_loop_keeps_caller_context() -> None:
    # fast.batch called by sync code that itself runs on an event loop (e.g. a notebook cell).
    case = GRAPHS["fan_out_join"]
    fast = accelerate(case.build(DeterministicChatModel()))
    expected = accelerate(case.build(DeterministicChatModel())).batch(case.inputs())

    async def caller() -> list[Any]:
        _VAR.set("caller")
        assert run_sync(_read_var()) == "caller"  # helper thread sees the caller's contextvars
        return fast.batch(case.inputs())
    assert asyncio.run(caller()) == expected


async def _read_var() -> str:
    return _VAR.get()


def test_progress_setting(monkeypatch: Any) -> None:
    # explicit flags win; auto needs more than 4 rows and a TTY
    import sys
    assert want_progress(True, 1) and not want_progress(False, 100)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert not want_progress(None, 4) and want_progress(None, 5)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not want_progress(None, 100)
