"""The Worker conformance suite (tests/unit/test_worker_conformance.py) on the real ``VLLMWorker``.

Uses worker 0 of the session ``pool`` fixture; its coroutines run on the pool's engine loop.
``check_shutdown`` is skipped there: the worker is shared with the other engine tests.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from tests.unit.test_worker_conformance import CONFORMANCE_CHECKS, Harness

pytestmark = pytest.mark.engine


@pytest.fixture
def harness(fresh_pool: Any) -> Harness:
    worker = fresh_pool.workers[0]
    return Harness(worker, lambda coro: fresh_pool.engine_loop.run(coro, timeout_s=120),
                   settle_s=0.5, can_shutdown=False)


@pytest.mark.parametrize("check", CONFORMANCE_CHECKS, ids=lambda f: f.__name__)
def test_vllm_worker_conformance(harness: Harness, check: Callable[[Harness], None]) -> None:
    check(harness)
