"""Recipes in integrations/ on the real engine: every row completes under accelerate."""

from __future__ import annotations

import pytest

from helium_lc import HeliumChatModel, accelerate
from tests.unit.test_recipes import load_recipe

pytestmark = pytest.mark.engine


def test_create_agent_recipe_completes_every_row(fresh_pool) -> None:
    recipe = load_recipe("create_agent")
    fast = accelerate(recipe.build_agent(HeliumChatModel(max_tokens=48)))
    out = fast.batch(recipe.make_inputs(4), return_exceptions=True)
    assert not [o for o in out if isinstance(o, BaseException)], out
    assert all(o["messages"][-1].type == "ai" for o in out)
    assert fast.last_run_stats().num_failed_rows == 0
