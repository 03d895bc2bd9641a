"""Plan rewrite rules (one per file), the fixpoint driver, and lowering to LangGraph.

Example:
    >>> [r.name for r in default_rules()]
    ['prune']
"""

from helium_lc.optimize.base import Rule, is_contractible
from helium_lc.optimize.driver import OptimizeResult, RuleChange, default_rules, optimize
from helium_lc.optimize.lower import lower
from helium_lc.optimize.prune import Prune

__all__ = [
    "Rule", "is_contractible",
    "OptimizeResult", "RuleChange", "default_rules", "optimize", "lower", "Prune",
]
