"""The Helium paper's workloads (Table 1) as plain LangGraph apps, with offline input data.

Each module in :data:`WORKLOADS` exposes the same small surface:

- ``build(llm, **params) -> CompiledStateGraph``: the graph over any LangChain chat model;
- ``make_inputs(num_inputs, seed=0, **params) -> list[dict]``: inputs from offline data
  (see :mod:`examples.workloads.data`; ``data_source="bundled"`` forces the small bundled corpus);
- ``DEFAULTS``: every parameter and its (CPU-sized) default; ``build`` and ``make_inputs`` accept
  the same keyword set, so one dict can be passed to both;
- ``num_llm_calls(**params) -> int``: LLM calls per input;
- ``IS_ASYNC``: True when nodes are ``async def`` (then run with ``ainvoke``/``abatch``;
  ``ainvoke`` works for every workload). A workload with a ``sync_nodes`` parameter builds
  either kind (``sync_nodes=True``: ``def`` nodes calling ``invoke``, run with ``batch``).

The workloads know nothing of helium_lc; only their ``__main__`` blocks import it.

Example:
    >>> import asyncio
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> wl = WORKLOADS["reflect"]
    >>> graph = wl.build(FakeListChatModel(responses=["ok"]))
    >>> out = asyncio.run(graph.ainvoke(wl.make_inputs(1, data_source="bundled")[0]))
    >>> out["final"], wl.num_llm_calls()
    ('ok', 4)
"""

from __future__ import annotations

from types import ModuleType

from . import debate, iterative, mapred, parallel, prefix_sweep, reflect, trading

WORKLOADS: dict[str, ModuleType] = {
    "mapred": mapred,
    "debate": debate,
    "reflect": reflect,
    "iterative": iterative,
    "parallel": parallel,
    "trading": trading,
    "prefix_sweep": prefix_sweep,
}

__all__ = ["WORKLOADS"]
