"""Rule ``prompt_cache``: replace LLM calls whose result is already cached.

What it does: for each PURE LLM_CALL whose template is fully static (exact, no
placeholders: every row renders the same prompt), asks ``lookup(operator)`` for a
cached result. On a hit the call becomes a CACHE_FETCH operator ``cache:<name>``
holding the value in ``params["cached_value"]`` (and the original id in ``aliases``
and ``params["replaces"]``). The fetch needs no inputs, so its incoming edges are
dropped; a later ``prune`` then removes whatever only fed the call.

Per-row lookups of calls with placeholders happen at run time (``helium_lc.cache``),
not here: the plan holds no row values.

Before/after (``lookup`` knows the static prompt of ``llm:intro#0``)::

    llm:intro#0 = LLM_CALL pure prefix=9c <- input   cache:intro#0 = CACHE_FETCH pure prefix=9c aliases=[llm:intro#0]
    node:intro = NODE ... <- input, llm:intro#0(result)  node:intro = NODE ... <- cache:intro#0(result), input

Invariants: only deterministic (PURE) calls are substituted; the plan still lints.
Nothing must run before it; run ``prune`` after it.

Example:
    >>> PromptCacheSubstitution(lambda op: None).name
    'prompt_cache'
"""

from __future__ import annotations

from typing import Any, Callable

from helium_lc.plan.ir import Operator, OperatorKind, Purity, QueryPlan

__all__ = ["PromptCacheSubstitution"]


class PromptCacheSubstitution:
    """See the module docstring. ``lookup(op)`` returns the cached value or None."""

    name = "prompt_cache"

    def __init__(self, lookup: Callable[[Operator], Any | None]) -> None:
        if not callable(lookup):
            raise TypeError(f"lookup must be a callable (operator) -> value | None, got {type(lookup).__name__}.")
        self.lookup = lookup

    def apply(self, plan: QueryPlan) -> list[str]:
        descriptions = []
        for op_id in plan.topological_order():
            op = plan.op(op_id)
            if op.kind is not OperatorKind.LLM_CALL or op.purity is not Purity.PURE:
                continue
            if op.template is None or not op.template.is_static:
                continue
            value = self.lookup(op)
            if value is None:
                continue
            head, sep, tail = op_id.rpartition("llm:")
            new_id = f"{head}cache:{tail}" if sep else f"cache:{op_id}"
            fetch = op.with_(op_id=new_id, kind=OperatorKind.CACHE_FETCH, aliases=op.aliases | {op_id},
                             params={**op.params, "replaces": op_id, "cached_value": value})
            plan.add_operator(fetch)
            for _, succ, data in list(plan.graph.out_edges(op_id, data=True)):
                plan.graph.add_edge(new_id, succ, **data)
            plan.remove_operator(op_id)
            descriptions.append(f"replaced {op_id} by {new_id} (prompt cache hit)")
        return descriptions
