"""Engine processes end with the program, quietly: normal exit, SIGINT, SIGTERM (real engine).

Each case runs ``exit_child.py`` in a fresh interpreter (its own default pool), so it
measures what a user's script does: the engine-core processes must be gone afterwards and
the output must hold no vLLM log lines and no traceback but the user's own KeyboardInterrupt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

CHILD = Path(__file__).with_name("exit_child.py")
ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _run_child(mode: str, sig: int | None) -> tuple[int, str, list[int]]:
    env = {k: v for k, v in os.environ.items() if k not in ("HELIUM_LC_LOG_LEVEL", "VLLM_LOGGING_LEVEL")}
    env.update(HELIUM_LC_KV_CACHE_GIB="0.25", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(CHILD), mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=str(ROOT))
    lines: list[str] = []
    pids: list[int] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ENGINE_PIDS"):
                pids = [int(p) for p in line.split()[1:]]
            if line.startswith("READY") and sig is not None:
                time.sleep(2 if mode == "busy" else 0.2)
                proc.send_signal(sig)
        rc = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return rc, "".join(lines), pids


def _check_quiet(out: str, pids: list[int], allowed_tracebacks: int = 0) -> None:
    assert pids, f"the child never reported its engine processes:\n{out}"
    orphans = [p for p in pids if _alive(p)]
    assert not orphans, f"engine processes {orphans} outlived the program:\n{out}"
    assert "EngineDeadError" not in out, out
    assert out.count("Traceback") <= allowed_tracebacks, out
    vllm_lines = [ln for ln in out.splitlines() if " INFO " in ln or " WARNING " in ln or "Loading safetensors" in ln]
    assert not vllm_lines, "vLLM log lines at the default log level:\n" + "\n".join(vllm_lines[:10])


def test_script_that_leaves_the_default_pool_exits_cleanly() -> None:
    rc, out, pids = _run_child("exit", None)
    assert rc == 0, out
    _check_quiet(out, pids)


@pytest.mark.parametrize("mode", ["busy"])
def test_sigterm_stops_the_engine_processes(mode: str) -> None:
    rc, out, pids = _run_child(mode, signal.SIGTERM)
    assert rc == -signal.SIGTERM, (rc, out)
    _check_quiet(out, pids)


def test_sigint_stops_the_engine_processes() -> None:
    rc, out, pids = _run_child("busy", signal.SIGINT)
    assert rc != 0, out
    assert "KeyboardInterrupt" in out, out
    _check_quiet(out, pids, allowed_tracebacks=1)  # the script's own KeyboardInterrupt


def test_demo_output_fits_one_screen() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HELIUM_LC_LOG_LEVEL", "VLLM_LOGGING_LEVEL")}
    env.update(HELIUM_LC_KV_CACHE_GIB="0.25", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "helium_lc.cli", "demo"], capture_output=True, text=True,
                          env=env, cwd=str(ROOT), timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    lines = out.splitlines()  # a progress bar redraws with \r: one line
    assert len(lines) <= 40, out
    assert "Traceback" not in out and "EngineDeadError" not in out, out
    assert not [ln for ln in lines if " INFO " in ln or " WARNING " in ln], out
    assert "Q: Which river is the longest in Africa?" in out and "accelerated run: 5 rows (0 failed)" in out, out
