"""The Templated Radix Tree (TRT) of a batch of LLM calls (Helium, ALGORITHMS.md §2).

T = (V, E, E'). E are radix edges: each node holds a run of *items*, where an item is a
token id (``int``) or a placeholder (``str``). A call's template key, flattened, is the
path from the root to the node where its template ends; the calls (operator x row) are
the leaves hung on that node. E' are the dependency edges between calls.

Build cost is O(|E'| + N + T*L): templates are inserted once each (T distinct templates
of L items), and each of the N calls is attached to its template's node in O(1).
Calls without a template use their concrete prompt as an all-literal template.

Example:
    >>> from helium_lc.schedule.snapshot import PendingCall
    >>> sys_a, sys_b = (1, 2, 3, 4), (1, 2, 7, 7)
    >>> calls = [PendingCall(f"{op}{r}", s + (10 + r,), template_key=(s, "q"), row=r)
    ...          for op, s in (("a", sys_a), ("b", sys_b)) for r in (0, 1)]
    >>> trt = TemplatedRadixTree.build(calls)
    >>> trt.static_prefix_tokens("b1")
    (1, 2, 7, 7)
    >>> print(trt.to_text())
    TRT: 2 templates, 4 calls, 0 dependency edges
    root
    └─ [2 tok]
       ├─ [2 tok, {q}] -> 2 calls: a0, a1
       └─ [2 tok, {q}] -> 2 calls: b0, b1
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator, Sequence

from helium_lc.schedule.radix import common_prefix_len
from helium_lc.schedule.snapshot import PendingCall, TemplateKey, static_prefix_of

Item = int | str


class TRTNode:
    """One TRT node: a run of items, its children (keyed by first item) and the calls whose
    template ends here."""

    __slots__ = ("node_id", "items", "children", "parent", "call_ids", "template_keys")

    def __init__(self, node_id: int, items: tuple[Item, ...], parent: "TRTNode | None") -> None:
        self.node_id = node_id
        self.items = items
        self.children: dict[Item, TRTNode] = {}
        self.parent = parent
        self.call_ids: list[Hashable] = []
        self.template_keys: list[TemplateKey] = []

    @property
    def num_tokens(self) -> int:
        """Literal tokens held by this node (placeholders excluded)."""
        return sum(1 for i in self.items if not isinstance(i, str))

    def describe(self) -> str:
        """Items as text: runs of tokens become ``N tok``, placeholders ``{name}``."""
        parts: list[str] = []
        for is_ph, run in itertools.groupby(self.items, key=lambda i: isinstance(i, str)):
            parts.extend(f"{{{p}}}" for p in run) if is_ph else parts.append(f"{len(list(run))} tok")
        return ", ".join(parts)


@dataclass(frozen=True)
class PrefixGroup:
    """Calls whose templates share one static prefix (leading literal tokens)."""

    prefix_tokens: tuple[int, ...]
    call_ids: tuple[Hashable, ...]


def _flatten(template_key: TemplateKey) -> tuple[Item, ...]:
    out: list[Item] = []
    for seg in template_key:
        if isinstance(seg, str):
            out.append(seg)
        else:
            out.extend(seg)
    return tuple(out)


class TemplatedRadixTree:
    """The TRT of one batch; build it with ``TemplatedRadixTree.build(calls)``."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.root = TRTNode(0, (), None)
        self.calls: dict[Hashable, PendingCall] = {}
        self.leaf_of: dict[Hashable, TRTNode] = {}
        self.deps: dict[Hashable, tuple[Hashable, ...]] = {}
        self.dependents: dict[Hashable, list[Hashable]] = {}
        self._by_template: dict[TemplateKey, TRTNode] = {}

    @classmethod
    def build(cls, calls: Sequence[PendingCall]) -> "TemplatedRadixTree":
        """Insert each distinct template once, hang every call on its template's node and
        record the dependency edges between calls of the batch (E')."""
        trt = cls()
        for c in calls:
            trt.calls[c.call_id] = c
        for c in calls:
            key = c.template_key if c.template_key is not None else (c.prompt_token_ids,)
            node = trt._by_template.get(key)
            if node is None:
                node = trt._insert(_flatten(key))
                node.template_keys.append(key)
                trt._by_template[key] = node
            node.call_ids.append(c.call_id)
            trt.leaf_of[c.call_id] = node
            inside = tuple(d for d in c.deps if d in trt.calls)
            trt.deps[c.call_id] = inside
            for d in inside:
                trt.dependents.setdefault(d, []).append(c.call_id)
        return trt

    def _insert(self, items: tuple[Item, ...]) -> TRTNode:
        node, pos = self.root, 0
        while pos < len(items):
            child = node.children.get(items[pos])
            if child is None:
                leaf = TRTNode(next(self._ids), items[pos:], node)
                node.children[items[pos]] = leaf
                return leaf
            n = len(child.items)
            if items[pos:pos + n] == child.items:
                node, pos = child, pos + n
                continue
            m = max(1, common_prefix_len(items[pos:pos + n], child.items))
            mid = TRTNode(next(self._ids), child.items[:m], node)
            node.children[items[pos]] = mid
            child.items = child.items[m:]
            child.parent = mid
            mid.children[child.items[0]] = child
            node, pos = mid, pos + m
        return node

    # ----------------------------------------------------------------- queries
    @property
    def num_templates(self) -> int:
        """Distinct templates in the batch."""
        return len(self._by_template)

    @property
    def num_dependency_edges(self) -> int:
        """|E'|: dependency edges between calls of this batch."""
        return sum(len(d) for d in self.deps.values())

    def static_prefix_tokens(self, call_id: Hashable) -> tuple[int, ...]:
        """The call's static prefix: its template's leading literal tokens."""
        c = self.calls[call_id]
        return static_prefix_of(c.template_key) if c.template_key is not None else c.prompt_token_ids

    def iter_nodes(self, child_key: Callable[[TRTNode], object] | None = None) -> Iterator[TRTNode]:
        """Nodes in depth-first pre-order; siblings sorted by ``child_key`` (default: node id)."""
        key = child_key or (lambda n: n.node_id)
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            kids = node.children
            if len(kids) > 1:
                stack.extend(sorted(kids.values(), key=key, reverse=True))
            elif kids:
                stack.extend(kids.values())

    def subtree_call_ids(self, node: TRTNode) -> list[Hashable]:
        """Every call hung on ``node`` or below it."""
        out: list[Hashable] = []
        stack = [node]
        while stack:
            n = stack.pop()
            out.extend(n.call_ids)
            stack.extend(n.children.values())
        return out

    def prefix_groups(self, child_key: Callable[[TRTNode], object] | None = None) -> list[PrefixGroup]:
        """Calls grouped by static prefix, groups in DFS order of the tree (so groups that
        share a longer prefix are adjacent), calls in each group in DFS then arrival order."""
        groups: dict[tuple[int, ...], list[Hashable]] = {}
        for node in self.iter_nodes(child_key):
            for cid in node.call_ids:
                groups.setdefault(self.static_prefix_tokens(cid), []).append(cid)
        return [PrefixGroup(p, tuple(ids)) for p, ids in groups.items()]

    def to_text(self, max_calls_listed: int = 3) -> str:
        """The tree with token counts, one node a line, for ``explain()``."""
        lines = [f"TRT: {self.num_templates} templates, {len(self.calls)} calls, "
                 f"{self.num_dependency_edges} dependency edges", "root"]

        def walk(node: TRTNode, prefix: str) -> None:
            kids = sorted(node.children.values(), key=lambda n: n.node_id)
            for i, child in enumerate(kids):
                last = i == len(kids) - 1
                text = f"[{child.describe()}]"
                if child.call_ids:
                    shown = ", ".join(map(str, child.call_ids[:max_calls_listed]))
                    more = ", ..." if len(child.call_ids) > max_calls_listed else ""
                    text += f" -> {len(child.call_ids)} calls: {shown}{more}"
                lines.append(f"{prefix}{'└─ ' if last else '├─ '}{text}")
                walk(child, prefix + ("   " if last else "│  "))

        walk(self.root, "")
        return "\n".join(lines)
