"""Real-engine fixtures: ONE shared vLLM pool per test session (engine start-up is ~15 s)."""

from __future__ import annotations

import pytest

from helium_lc.engine.default_pool import set_default_pool
from helium_lc.engine.pool import WorkerPool


@pytest.fixture(scope="session")
def pool():
    """A one-worker real vLLM pool, also installed as the process-wide default pool."""
    p = WorkerPool(num_workers=1, kv_cache_gib=0.25, max_model_len=2048, max_num_seqs=32)
    set_default_pool(p)
    yield p
    set_default_pool(None)
    p.shutdown()


@pytest.fixture
def fresh_pool(pool):
    """The shared pool with empty prefix cache and zeroed counters."""
    pool.reset_prefix_cache()
    pool.reset_stats()
    return pool


@pytest.fixture(scope="module")
def servers():
    """Two real vLLM OpenAI servers (default model, one core each, prefix caching, dev mode),
    stopped when the module that uses them ends (idle servers would slow the later tests)."""
    from helium_lc.engine.local_servers import LocalServers

    with LocalServers(2) as s:
        yield s
