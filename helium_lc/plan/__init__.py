"""Query plan IR: operators, prompt templates, canonical rendering.

Knows nothing of LangGraph or vLLM.

Example:
    >>> from helium_lc.plan import PromptTemplate
    >>> PromptTemplate.of(("system", "Hi {name}")).static_prefix()
    'Hi '
"""

from helium_lc.plan.ir import (
    EDGE_KINDS, Operator, OperatorKind, PlanError, Purity, QueryPlan, worst_purity,
)
from helium_lc.plan.render import format_operator, to_mermaid, to_text
from helium_lc.plan.template import (
    Placeholder, PromptTemplate, Static, TemplateMessage,
    parse_format_string, template_from_chat_prompt,
)

__all__ = [
    "EDGE_KINDS", "Operator", "OperatorKind", "PlanError", "Purity", "QueryPlan", "worst_purity",
    "format_operator", "to_mermaid", "to_text",
    "Placeholder", "PromptTemplate", "Static", "TemplateMessage",
    "parse_format_string", "template_from_chat_prompt",
]
