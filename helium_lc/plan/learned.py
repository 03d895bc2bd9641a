"""The learned plan: the graph's LLM nodes joined with call-site profiles observed at run time.

Capture gives the topology and, where node bodies can be read, which nodes call an LLM
(:meth:`LearnedPlan.from_query_plan`). Observation completes it: every engine request of an
accelerated run is folded into the profile of its call site, keyed by the node's place in the
graph (checkpoint-namespace path without task ids, node name) and the call's ordinal within
the node's step. A profile holds the calls and rows seen, prompt and output lengths, latency,
and the site's *static prefix* (the common prefix of its prompt token ids once two different
prompts were seen) together with the identity of the tokenizer that produced it.

The plan lives with the accelerated graph, is saved next to a persistent prompt cache
(``<cache_path>.plan.json``) and loaded by a later process, where it seeds the runtime
scheduler's call-site templates before the first batch (so the first batch is planned with
templates and its later stages' static prefixes are warmed). ``explain()`` prints
:meth:`LearnedPlan.summary`.

Example:
    >>> lp = LearnedPlan(llm_nodes=["answer"])
    >>> lp.observe("", "answer", 0, row=0, prompt=(1, 2, 3, 9), output_tokens=4, latency_s=0.5, tokenizer="t")
    >>> lp.observe("", "answer", 0, row=1, prompt=(1, 2, 3, 7), output_tokens=6, latency_s=0.7, tokenizer="t")
    >>> lp.finish_batch(num_rows=2)
    >>> lp.summary().splitlines()[0]
    '1/1 LLM nodes profiled after 1 batch (1 call sites, 1 with a static prefix)'
    >>> lp.static_prefixes("t")
    [('answer', 0, (1, 2, 3))]
    >>> LearnedPlan.from_json(lp.to_json()).sites["answer#0"].mean_output_tokens
    5.0
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = ["SiteProfile", "LearnedPlan", "node_path", "operator_node_path", "PLAN_FORMAT"]

#: Version of the saved form; a file of another version is ignored (and rewritten).
PLAN_FORMAT = 1


def node_path(checkpoint_ns: str | None, node: str) -> str:
    """A node's place in the graph: ``"experts:<id>|model:<id>"`` + ``"model"`` -> ``"experts/model"``.

    Example:
        >>> node_path("team:1f2|writer:9a", "writer"), node_path(None, "judge")
        ('team/writer', 'judge')
    """
    parts = [seg.split(":")[0] for seg in (checkpoint_ns or "").split("|") if seg]
    if not parts or parts[-1] != node:
        parts.append(node)
    return "/".join(parts)


def operator_node_path(parent_id: str) -> str:
    """The node path of a plan operator's parent id: ``"team/node:writer"`` -> ``"team/writer"``."""
    return "/".join(seg.removeprefix("node:") for seg in parent_id.split("/"))


@dataclass
class SiteProfile:
    """What one LLM call site (node path, ordinal) did across the observed batches."""

    node: str
    ordinal: int
    num_calls: int = 0
    num_rows: int = 0
    prompt_tokens: int = 0          # summed
    output_tokens: int = 0          # summed
    max_output_tokens: int = 0
    latency_s: float = 0.0          # summed
    prefix: list[int] = field(default_factory=list)   # common prefix of the prompts seen
    num_distinct_prompts: int = 0
    tokenizer: str = ""             # identity of the tokenizer of ``prefix``

    @property
    def mean_output_tokens(self) -> float:
        return self.output_tokens / self.num_calls if self.num_calls else 0.0

    @property
    def mean_latency_s(self) -> float:
        return self.latency_s / self.num_calls if self.num_calls else 0.0

    @property
    def calls_per_row(self) -> float:
        return self.num_calls / self.num_rows if self.num_rows else 0.0

    @property
    def static_prefix(self) -> tuple[int, ...] | None:
        """The prefix every prompt of this site shared, once two different prompts were seen."""
        return tuple(self.prefix) if self.num_distinct_prompts >= 2 and self.prefix else None


class LearnedPlan:
    """LLM nodes (from capture) and call-site profiles (from runs). Thread-safe; see module doc."""

    def __init__(self, llm_nodes: Iterable[str] = (), looping_nodes: Iterable[str] = ()) -> None:
        self.llm_nodes: set[str] = set(llm_nodes)   # statically known (capture)
        #: LLM nodes on a cycle of the graph (capture's topology): a row that loops through one
        #: calls it again with its conversation extended, so it re-reads its own context
        self.looping_nodes: set[str] = set(looping_nodes)
        #: per LLM node, the LLM nodes reachable after it in the loop-free topology (capture)
        self.llm_after: dict[str, set[str]] = {}
        self.sites: dict[str, SiteProfile] = {}
        self.num_batches = 0
        #: per tokenizer: how much the app's rows re-read their own context (the scheduler's
        #: row-reuse means: rows, own_tokens, revisit_tokens, decode_steps)
        self.row_reuse: dict[str, dict[str, float]] = {}
        self._rows: dict[str, set[Any]] = {}         # this batch: site -> rows seen
        self._lock = threading.Lock()

    @classmethod
    def from_query_plan(cls, plan: Any) -> "LearnedPlan":
        """Seed from a captured plan: the node paths that hold an LLM_CALL operator, and those
        of them on a cycle of the plan's graph (a loop back to the node, e.g. a debate's rounds
        or a reflection loop; the topology is reliable even where node bodies are opaque)."""
        import networkx as nx

        from helium_lc.plan.ir import OperatorKind

        nodes, looping = set(), set()
        after: dict[str, set[str]] = {}
        if plan is not None:
            cyclic: set[str] = set()
            for comp in nx.strongly_connected_components(plan.graph):
                if len(comp) > 1:
                    cyclic |= comp
            cyclic |= {u for u, v in plan.graph.edges if u == v}
            for op in plan.operators():
                if op.kind is OperatorKind.LLM_CALL and op.parent:
                    path = operator_node_path(op.parent)
                    nodes.add(path)
                    if op.op_id in cyclic or op.parent in cyclic:
                        looping.add(path)
            dag = plan.dag()
            llm_ops = [op for op in plan.operators() if op.kind is OperatorKind.LLM_CALL and op.parent]
            for op in llm_ops:
                reach = nx.descendants(dag, op.op_id)
                after.setdefault(operator_node_path(op.parent), set()).update(
                    operator_node_path(o.parent) for o in llm_ops  # type: ignore[arg-type]
                    if o.op_id in reach and o.parent != op.parent)
        out = cls(nodes, looping)
        out.llm_after = after
        return out

    # -- observation ------------------------------------------------------------------------------
    def observe(self, checkpoint_ns: str | None, node: str, ordinal: int, *, row: Any, prompt: tuple[int, ...],
                output_tokens: int, latency_s: float, tokenizer: str) -> None:
        """Fold one finished engine request into its site's profile (key ``"<node path>#<ordinal>"``,
        the ``operator_id`` the runtime stamps on requests). Mutates the plan."""
        path = node_path(checkpoint_ns, node)
        key = f"{path}#{ordinal}"
        with self._lock:
            s = self.sites.get(key)
            if s is None or s.tokenizer != tokenizer:  # a new tokenizer: its prefixes start over
                s = self.sites[key] = SiteProfile(path, ordinal, tokenizer=tokenizer,
                                                  **({} if s is None else _counts(s)))
            s.num_calls += 1
            s.prompt_tokens += len(prompt)
            s.output_tokens += output_tokens
            s.max_output_tokens = max(s.max_output_tokens, output_tokens)
            s.latency_s += latency_s
            if s.num_distinct_prompts == 0:
                s.prefix, s.num_distinct_prompts = list(prompt), 1
            elif tuple(s.prefix) != prompt:
                n = 0
                for a, b in zip(s.prefix, prompt):
                    if a != b:
                        break
                    n += 1
                del s.prefix[n:]
                s.num_distinct_prompts += 1
            self._rows.setdefault(key, set()).add(row)

    def finish_batch(self, num_rows: int) -> None:
        """A run (of ``num_rows`` inputs) ended: count it and the rows each site was seen in."""
        with self._lock:
            for key, rows in self._rows.items():
                self.sites[key].num_rows += len(rows)
            self._rows.clear()
            self.num_batches += 1

    def set_row_reuse(self, tokenizer: str, means: dict[str, float]) -> None:
        """Keep the scheduler's row-reuse means for ``tokenizer`` (replacing older ones)."""
        with self._lock:
            self.row_reuse[tokenizer] = {k: float(means[k]) for k in _REUSE_KEYS}

    def row_reuse_for(self, tokenizer: str) -> dict[str, float] | None:
        with self._lock:
            got = self.row_reuse.get(tokenizer)
            return dict(got) if got else None

    # -- reading --------------------------------------------------------------------------------
    def profiled_nodes(self) -> set[str]:
        with self._lock:
            return {s.node for s in self.sites.values() if s.num_calls}

    def static_prefixes(self, tokenizer: str) -> list[tuple[str, int, tuple[int, ...]]]:
        """(node name, ordinal, static prefix) of every site profiled with ``tokenizer``."""
        with self._lock:
            out = [(s.node.rsplit("/", 1)[-1], s.ordinal, s.static_prefix) for s in self.sites.values()
                   if s.tokenizer == tokenizer and s.static_prefix]
        return sorted(out)  # type: ignore[arg-type]

    def remaining_work(self, work_of: Callable[[SiteProfile | None], float]) -> dict[str, float]:
        """Per LLM node (last path segment, as requests name it): the heaviest chain of LLM work
        a row still has after a call of that node -- the remaining critical path, from the
        topology (``llm_after``) and each later node's profile (``work_of(profile)``: seconds
        of one call; ``work_of(None)`` for a node never profiled). Nodes without later LLM
        nodes are left out (0)."""
        with self._lock:
            after = {n: set(v) for n, v in self.llm_after.items()}
            by_node: dict[str, SiteProfile] = {}
            for prof in self.sites.values():
                if prof.num_calls and (prof.node not in by_node or prof.num_calls > by_node[prof.node].num_calls):
                    by_node[prof.node] = prof
        memo: dict[str, float] = {}

        def chain(n: str, seen: frozenset[str]) -> float:
            if n not in memo:
                memo[n] = max((work_of(by_node.get(m)) + chain(m, seen | {n})
                               for m in after.get(n, ()) if m not in seen), default=0.0)
            return memo[n]

        out = {}
        for n in after:
            w = chain(n, frozenset())
            if w > 0:
                out[n.rsplit("/", 1)[-1]] = max(w, out.get(n.rsplit("/", 1)[-1], 0.0))
        return out

    def summary(self) -> str:
        """What the plan knows, in a few lines (shown by ``explain()``)."""
        with self._lock:
            sites = sorted(self.sites.values(), key=lambda s: (s.node, s.ordinal))
            nodes = self.llm_nodes | {s.node for s in sites}
            profiled = {s.node for s in sites if s.num_calls}
            batches = self.num_batches
        with_prefix = sum(s.static_prefix is not None for s in sites)
        head = (f"{len(profiled)}/{len(nodes)} LLM nodes profiled after {batches} "
                f"batch{'es' if batches != 1 else ''} ({len(sites)} call sites, {with_prefix} with a static prefix)")
        lines = [head]
        if self.looping_nodes:
            lines.append(f"rows loop through LLM node{'s' if len(self.looping_nodes) > 1 else ''} "
                         f"{', '.join(sorted(self.looping_nodes))}: expected to re-read their context "
                         "(row gate and row-major order from the first batch)")
        chains = {n: sorted(v) for n, v in sorted(self.llm_after.items()) if v}
        if chains:
            lines.append("LLM work after each node (the remaining critical path each call carries; helium "
                         "orders by it only with HeliumOptions(plan_critical_path=True)): "
                         + "; ".join(f"{n} -> {', '.join(v)}" for n, v in chains.items()))
        for tok, r in sorted(self.row_reuse.items()):
            lines.append(f"rows re-read {r['revisit_tokens']:.0f} of their {r['own_tokens']:.0f} own prompt tokens "
                         f"in later waves (mean of {r['rows']:.0f} rows; the row gate's prior)")
        missing = sorted(self.llm_nodes - profiled)
        if missing:
            lines.append(f"not seen calling an LLM yet: {', '.join(missing)}")
        for s in sites:
            pfx = s.static_prefix
            lines.append(f"- {s.node}#{s.ordinal}: {s.num_calls} calls ({s.calls_per_row:.2g} per row), "
                         f"prompt {s.prompt_tokens / max(1, s.num_calls):.0f} tok "
                         f"(static prefix {len(pfx) if pfx else 0}), output {s.mean_output_tokens:.1f} tok "
                         f"(max {s.max_output_tokens}), {1000 * s.mean_latency_s:.0f} ms")
        return "\n".join(lines)

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> str:
        with self._lock:
            data = {"format": PLAN_FORMAT, "num_batches": self.num_batches, "llm_nodes": sorted(self.llm_nodes),
                    "looping_nodes": sorted(self.looping_nodes),
                    "sites": [asdict(s) for s in self.sites.values()], "row_reuse": self.row_reuse}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "LearnedPlan":
        """Parse :meth:`to_json`'s output; ValueError when it is not a saved plan of this version."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a helium_lc learned plan of format {PLAN_FORMAT}")
        plan = cls(data.get("llm_nodes", ()), data.get("looping_nodes", ()))
        plan.num_batches = int(data.get("num_batches", 0))
        plan.row_reuse = {str(k): {n: float(v[n]) for n in _REUSE_KEYS} for k, v in data.get("row_reuse", {}).items()}
        for d in data.get("sites", []):
            s = SiteProfile(**d)
            plan.sites[f"{s.node}#{s.ordinal}"] = s
        return plan

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (a temporary file renamed over ``path``)."""
        p = Path(path)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, p)

    def merge_saved(self, path: str | os.PathLike[str]) -> bool:
        """Take the profiles saved at ``path`` (a missing or unreadable file: nothing, False)."""
        try:
            saved = LearnedPlan.from_json(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError):
            return False
        with self._lock:
            self.llm_nodes |= saved.llm_nodes
            self.looping_nodes |= saved.looping_nodes
            self.num_batches += saved.num_batches
            for key, s in saved.sites.items():
                self.sites.setdefault(key, s)
            for tok, means in saved.row_reuse.items():
                self.row_reuse.setdefault(tok, means)
        return True


_REUSE_KEYS = ("rows", "own_tokens", "revisit_tokens", "decode_steps")


def _counts(s: SiteProfile) -> dict[str, Any]:
    """The tokenizer-independent counters of a profile (kept when its tokenizer changes)."""
    return {"num_calls": s.num_calls, "num_rows": s.num_rows, "prompt_tokens": s.prompt_tokens,
            "output_tokens": s.output_tokens, "max_output_tokens": s.max_output_tokens, "latency_s": s.latency_s}
