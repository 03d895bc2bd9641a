"""Recipes in integrations/: with a deterministic model, accelerated final states equal plain ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from helium_lc import accelerate
from helium_lc.testing import DeterministicChatModel, normalize_state

RECIPES = Path(__file__).resolve().parents[2] / "integrations"


def load_recipe(name: str) -> ModuleType:
    pytest.importorskip("langchain.agents")
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_create_agent_recipe_gives_the_plain_final_states() -> None:
    recipe = load_recipe("create_agent")
    model = DeterministicChatModel()
    agent = recipe.build_agent(model)
    inputs = recipe.make_inputs(6)
    plain = agent.batch(inputs)
    model.reset()
    fast = accelerate(agent)
    out = fast.batch(inputs)
    assert normalize_state(out) == normalize_state(plain)
    assert all(o["messages"][-1].type == "ai" and o["messages"][-1].content for o in out)
    assert any(m.type == "tool" for m in out[0]["messages"])  # the agent really used its tools
    stats = fast.last_run_stats()
    assert stats.num_dedup_hits + stats.num_cache_hits > 0  # rows 4, 5 repeat rows 0, 1
    assert model.num_calls < stats.num_llm_calls_requested
