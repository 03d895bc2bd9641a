"""Apply optimizer rules to a plan until nothing changes.

Example:
    >>> from helium_lc.plan import QueryPlan, Operator, OperatorKind, Purity
    >>> p = QueryPlan()
    >>> p.add_operator(Operator("input", OperatorKind.INPUT, "input", Purity.PURE, writes={"q"}))
    >>> p.add_operator(Operator("output", OperatorKind.OUTPUT, "output", Purity.PURE, reads={"q"}))
    >>> p.add_edge("input", "output")
    >>> optimize(p).changes
    ()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from helium_lc.optimize.base import Rule
from helium_lc.optimize.prune import Prune
from helium_lc.plan.ir import PlanError, QueryPlan

__all__ = ["RuleChange", "OptimizeResult", "default_rules", "optimize", "RULE_NAMES"]

#: Names ``HeliumConfig.disabled_rules`` accepts: the plan rules, and ``prompt_cache``, the runtime's
#: exact prompt cache (which serves every deterministic call whose prompt it holds, so no plan-level
#: substitution of static calls is needed).
RULE_NAMES = ("prompt_cache", "prune")


@dataclass(frozen=True)
class RuleChange:
    """One change a rule made, with the plan's operator count before and after that rule ran."""

    rule: str
    description: str
    before_count: int
    after_count: int


@dataclass(frozen=True)
class OptimizeResult:
    plan: QueryPlan
    changes: tuple[RuleChange, ...]

    def explain(self) -> str:
        """One line per change: ``[rule] description (before -> after operators)``."""
        return "\n".join(f"[{c.rule}] {c.description} ({c.before_count} -> {c.after_count} operators)"
                         for c in self.changes) or "(no changes)"


def default_rules(output_keys: Iterable[str] | None = None) -> list[Rule]:
    """``prune``. (A plan-level merge of equal calls, CSE, was deleted: identical calls share one
    model call at run time through dedup and the prompt cache, which compare the rendered prompt.)"""
    return [Prune(output_keys)]


def optimize(plan: QueryPlan, rules: Sequence[Rule] | None = None, disabled: Iterable[str] = frozenset(),
             *, max_passes: int = 10) -> OptimizeResult:
    """Apply ``rules`` (default :func:`default_rules`) in order, repeatedly, to a fixpoint.

    Works on a copy; ``plan`` is not changed. ``disabled`` names rules to skip (an
    unknown name is an error, to catch typos). Lints the plan after every rule, so a
    broken rewrite fails at the rule that made it.
    """
    rules = list(rules) if rules is not None else default_rules()
    disabled = frozenset(disabled)
    known = {r.name for r in rules} | set(RULE_NAMES)
    if unknown := disabled - known:
        raise ValueError(f"Unknown rule name(s) in disabled: {sorted(unknown)}; known rules: {sorted(known)}.")
    work = plan.copy()
    changes: list[RuleChange] = []
    for _ in range(max_passes):
        changed = False
        for rule in rules:
            if rule.name in disabled:
                continue
            before = len(work)
            descriptions = rule.apply(work)
            try:
                work.lint()
            except PlanError as exc:
                raise PlanError(f"rule {rule.name!r} produced an invalid plan: {exc}") from exc
            changes.extend(RuleChange(rule.name, d, before, len(work)) for d in descriptions)
            changed |= bool(descriptions)
        if not changed:
            break
    return OptimizeResult(work, tuple(changes))
