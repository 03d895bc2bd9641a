"""What LangSmith sees of a HeliumChatModel call (simulated engine)."""

from __future__ import annotations

from typing import Any

import pytest

from helium_lc import HeliumChatModel
from helium_lc.engine.pool import WorkerPool
from helium_lc.engine.sim import SimWorker


@pytest.fixture(scope="module")
def pool() -> Any:
    p = WorkerPool(workers=[SimWorker(0, block_size=4)])
    yield p
    p.shutdown()


def test_ls_params_name_the_provider_the_served_model_and_the_calls_sampling(pool: WorkerPool) -> None:
    llm = HeliumChatModel(pool=pool, max_tokens=7, stop=["\n\n"])
    params = llm._get_ls_params(temperature=0.5, max_tokens=3)
    assert params["ls_provider"] == "helium_lc" and params["ls_model_type"] == "chat"
    assert params["ls_model_name"] == pool.model_path.name  # the served model, not "default"
    assert (params["ls_temperature"], params["ls_max_tokens"], params["ls_stop"]) == (0.5, 3, ["\n\n"])
    assert HeliumChatModel(model="my-model", pool=pool)._get_ls_params()["ls_model_name"] == "my-model"


def test_tracing_never_starts_a_pool() -> None:
    unstarted = WorkerPool(workers=[SimWorker(0)], start=False)
    assert HeliumChatModel(pool=unstarted)._get_ls_params()["ls_model_name"] == "default"
    assert not unstarted.started


def test_usage_reports_cached_prompt_tokens(pool: WorkerPool) -> None:
    llm = HeliumChatModel(pool=pool, max_tokens=3)
    prompt = "a long shared context " * 20
    llm.invoke(prompt)
    usage = llm.invoke(prompt).usage_metadata
    assert usage["input_token_details"]["cache_read"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
