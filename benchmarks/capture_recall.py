"""How many of a graph's LLM nodes static capture finds (recall), on the example graphs.

An LLM node is a node (at any subgraph level) that made at least one chat-model call in a plain
run of the graph with ``helium_lc.testing.DeterministicChatModel``; capture finds it when the plan
of ``accelerate(app)`` has an LLM_CALL operator inside it. Recall = found / LLM nodes. Also
reported: how many of the found ones capture read a prompt template for (``with template``),
and the nodes capture reports as unanalysable.

Graphs measured: the seven workloads (``examples/workloads``), the three agent shapes of
``examples/agents.py`` (factory-built nodes, a ToolNode loop, a supervisor over prebuilt
``create_agent`` experts) and the ``create_agent`` recipe.

    .venv/bin/python benchmarks/capture_recall.py          # a few seconds, no engine

Example:
    >>> from examples.agents import build_desk, INPUTS
    >>> r = measure("desk", build_desk, INPUTS["desk"](2))
    >>> r["recall"], sorted(r["llm_nodes"])
    (1.0, ['manager', 'market_analyst', 'news_analyst'])
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402

from helium_lc.plan.learned import node_path, operator_node_path  # noqa: E402

__all__ = ["measure", "observed_llm_nodes", "captured_llm_nodes", "main"]


def observed_llm_nodes(app: Any, inputs: Sequence[Any]) -> set[str]:
    """The nodes (``sub/node`` paths) whose runs called a chat model, in a plain run of ``app``."""
    seen: set[str] = set()

    class Recorder(BaseCallbackHandler):
        def on_chat_model_start(self, serialized: Any, messages: Any, *, metadata: Any = None, **kw: Any) -> None:
            meta = metadata or {}
            if meta.get("langgraph_node"):
                seen.add(node_path(str(meta.get("langgraph_checkpoint_ns", "")), str(meta["langgraph_node"])))

    asyncio.run(app.abatch(list(inputs), {"callbacks": [Recorder()]}))
    return seen


def captured_llm_nodes(plan: Any) -> dict[str, bool]:
    """Node path -> whether capture read a template for one of its LLM calls."""
    from helium_lc.plan.ir import OperatorKind

    out: dict[str, bool] = {}
    for op in plan.operators():
        if op.kind is OperatorKind.LLM_CALL and op.parent:
            path = operator_node_path(op.parent)
            known = op.template is not None and op.template.is_exact and bool(op.template.messages)
            out[path] = out.get(path, False) or bool(known)
    return out


def measure(name: str, build: Callable[[Any], Any], inputs: Sequence[Any]) -> dict[str, Any]:
    """Recall of capture on the graph ``build(DeterministicChatModel())`` over ``inputs``."""
    from helium_lc import accelerate
    from helium_lc.testing import DeterministicChatModel

    app = build(DeterministicChatModel())
    observed = observed_llm_nodes(app, inputs)
    fast = accelerate(app)
    found = captured_llm_nodes(fast.captured_plan) if fast.captured_plan is not None else {}
    hits = sorted(observed & set(found))
    return {"graph": name, "llm_nodes": sorted(observed), "found": hits,
            "missed": sorted(observed - set(found)), "extra": sorted(set(found) - observed),
            "with_template": sum(found[n] for n in hits),
            "recall": len(hits) / len(observed) if observed else 1.0, "notes": list(fast.notes)}


def _graphs() -> list[tuple[str, Callable[[Any], Any], list[Any]]]:
    from examples import agents
    from examples.workloads import WORKLOADS
    from integrations import create_agent as recipe

    small = {"trading": {"num_traders": 2, "num_risk_rounds": 1}, "mapred": {"num_experts": 2}}
    out: list[tuple[str, Callable[[Any], Any], list[Any]]] = []
    for w, mod in WORKLOADS.items():
        params = {**small.get(w, {}), **({"data_source": "bundled"} if "data_source" in mod.DEFAULTS else {})}
        out.append((f"workload:{w}", lambda llm, m=mod, p=params: m.build(llm, **p),
                    mod.make_inputs(2, **params)))
    for n, build in agents.BUILDERS.items():
        out.append((f"agent:{n}", build, agents.INPUTS[n](2)))
    out.append(("recipe:create_agent", recipe.build_agent, recipe.make_inputs(2)))
    return out


def main() -> list[dict[str, Any]]:
    rows = [measure(n, b, i) for n, b, i in _graphs()]
    print("| graph | LLM nodes | found | with template | recall | missed |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['graph']} | {len(r['llm_nodes'])} | {len(r['found'])} | {r['with_template']} | "
              f"{r['recall']:.0%} | {', '.join(r['missed']) or '-'} |")
    total = sum(len(r["llm_nodes"]) for r in rows)
    found = sum(len(r["found"]) for r in rows)
    print(f"\nall graphs: {found}/{total} LLM nodes found ({found / max(1, total):.0%})")
    return rows


if __name__ == "__main__":
    main()
