"""Read a prompt template from the literal messages passed to an LLM call.

Handles the common inline forms::

    llm.invoke(f"Summarise: {state['doc']}")
    llm.invoke([("system", "You are X."), ("human", f"Q: {state['q']}")])
    llm.invoke([SystemMessage("You are X."), *state["messages"]])
    llm.invoke([SystemMessage(content=SYS)] + state["messages"])     # SYS: not a literal -> learned

Literal strings become Static text, f-string fields become Placeholders (named after
the state key when the field is ``state["k"]``), and a list-valued expression
becomes a messages placeholder. Anything else returns None (the caller then learns
the template at run time).

Example:
    >>> import ast
    >>> expr = ast.parse('[("system", "Be brief."), ("human", f"Q: {state[\\'q\\']}")]').body[0].value
    >>> template_from_ast(expr, "state").describe()
    "system:'Be brief.' | human:'Q: {q}'"
"""

from __future__ import annotations

import ast

from helium_lc.plan.template import Placeholder, PromptTemplate, Segment, Static, TemplateMessage

__all__ = ["template_from_ast"]

_ROLE_BY_CTOR = {"SystemMessage": "system", "HumanMessage": "human", "AIMessage": "ai"}
_ROLE_ALIASES = {"user": "human", "assistant": "ai"}


def _placeholder_for(expr: ast.AST, state: str | None, *, is_messages: bool = False) -> Placeholder:
    if isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Name) and expr.value.id == state \
            and isinstance(expr.slice, ast.Constant) and isinstance(expr.slice.value, str):
        return Placeholder(expr.slice.value, source=f"state.{expr.slice.value}", is_messages=is_messages)
    text = ast.unparse(expr)
    return Placeholder(text, source="", is_messages=is_messages)


def _text_segments(expr: ast.AST, state: str | None) -> list[Segment] | None:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return [Static(expr.value)]
    if isinstance(expr, ast.JoinedStr):
        out: list[Segment] = []
        for part in expr.values:
            if isinstance(part, ast.Constant):
                out.append(Static(str(part.value)))
            elif isinstance(part, ast.FormattedValue):
                out.append(_placeholder_for(part.value, state))
        return out
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        left, right = _text_segments(expr.left, state), _text_segments(expr.right, state)
        if left is not None and right is not None:
            return left + right
    return None


def _message(expr: ast.AST, state: str | None) -> TemplateMessage | None:
    role: str | None = None
    content: ast.AST | None = None
    if isinstance(expr, ast.Tuple) and len(expr.elts) == 2 and isinstance(expr.elts[0], ast.Constant):
        role, content = str(expr.elts[0].value), expr.elts[1]
    elif isinstance(expr, ast.Call):
        name = expr.func.id if isinstance(expr.func, ast.Name) else getattr(expr.func, "attr", "")
        role = _ROLE_BY_CTOR.get(name)
        kw = {k.arg: k.value for k in expr.keywords}
        content = expr.args[0] if expr.args else kw.get("content")
    if role is None or content is None:
        return None
    segs = _text_segments(content, state)
    if segs is None:
        return None
    return TemplateMessage(_ROLE_ALIASES.get(role, role), tuple(s for s in segs if not (isinstance(s, Static) and not s.text)))


def _messages(expr: ast.AST, state: str | None) -> list[TemplateMessage] | None:
    if isinstance(expr, (ast.List, ast.Tuple)) and not (
            isinstance(expr, ast.Tuple) and len(expr.elts) == 2 and isinstance(expr.elts[0], ast.Constant)):
        out: list[TemplateMessage] = []
        for elt in expr.elts:
            if isinstance(elt, ast.Starred):
                out.append(TemplateMessage("messages", (_placeholder_for(elt.value, state, is_messages=True),)))
                continue
            msg = _message(elt, state)
            if msg is None:
                return None
            out.append(msg)
        return out
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        left, right = _messages(expr.left, state), _messages(expr.right, state)
        if left is not None and right is not None:
            return left + right
        return None
    if isinstance(expr, (ast.Subscript, ast.Name, ast.Attribute)):
        return [TemplateMessage("messages", (_placeholder_for(expr, state, is_messages=True),))]
    return None


def template_from_ast(expr: ast.AST, state: str | None) -> PromptTemplate | None:
    """An exact template for the prompt expression ``expr``, or None if not readable.

    ``state`` is the name of the node's state parameter (for placeholder names).
    """
    segs = _text_segments(expr, state)
    if segs is not None:
        return PromptTemplate((TemplateMessage("human", tuple(segs)),))
    msgs = _messages(expr, state)
    if msgs is None:
        return None
    return PromptTemplate(tuple(msgs))
