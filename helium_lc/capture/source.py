"""Static analysis of a node's (or router's) Python source.

:func:`analyse_function` parses the function and reports:

- **reads**: ``state["k"]``, ``state.get("k")`` and ``state.k`` on the first
  parameter. If ``state`` escapes (passed to a call, ``**state``, iterated, indexed
  by a non-constant) the reads are unknown (``None``).
- **writes**: keys of returned dict literals and of ``Command(update={...})``;
  any other returned value (or a generator) makes writes unknown.
- **code purity** (the rule, conservative): the function is PURE when every call in
  it is one of: an allow-listed builtin (``len``, ``str``, ``sorted``, ...), a
  langchain message constructor, ``Command``/``Send``, a non-mutating str/dict/list
  method, a mutating list/dict method on a local variable, a method of a chat model,
  prompt template, output parser or a composition of those (the LLM call's own
  purity is counted separately), or a function marked with ``mark_pure``.
  Anything else (``print``, I/O, helper functions, tools), ``global``/``nonlocal``,
  or assigning into the input makes it SIDE_EFFECT. ``mark_pure`` skips the check.
- **call sites**: ``x.invoke/ainvoke/...`` where ``x`` resolves to a chat model or a
  runnable containing one, in source order, with the template when it can be read.

Example:
    >>> def node(state):
    ...     return {"n": len(state["xs"])}
    >>> facts = analyse_function(node, {})
    >>> sorted(facts.reads), sorted(facts.writes), facts.purity.value
    (['xs'], ['n'], 'pure')
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from helium_lc.capture.objects import (
    PURE_MARK, find_chat_model, find_chat_prompt, function_namespace, is_llm_runnable, is_prompt,
)
from helium_lc.capture.templates import template_from_ast
from helium_lc.plan.ir import Purity
from helium_lc.plan.template import PromptTemplate, template_from_chat_prompt

__all__ = ["CallSite", "FunctionFacts", "analyse_function", "parse_function"]

LLM_METHODS = frozenset({"invoke", "ainvoke", "batch", "abatch", "stream", "astream",
                         "generate", "agenerate", "predict", "apredict"})
SAFE_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "format", "frozenset",
    "int", "isinstance", "len", "list", "map", "max", "min", "range", "repr", "reversed",
    "round", "set", "sorted", "str", "sum", "tuple", "zip", "hasattr", "getattr", "issubclass",
    "ValueError", "KeyError", "TypeError", "RuntimeError",
})
PURE_METHODS = frozenset({
    "format", "format_messages", "format_prompt", "join", "strip", "lstrip", "rstrip", "split",
    "rsplit", "splitlines", "lower", "upper", "title", "capitalize", "replace", "startswith",
    "endswith", "find", "count", "index", "get", "keys", "values", "items", "copy", "encode",
    "decode", "partition", "isdigit", "isalpha", "zfill", "pretty_repr", "text",
})
MUTATING_METHODS = frozenset({"append", "extend", "insert", "update", "pop", "setdefault",
                              "remove", "add", "discard", "clear", "sort", "reverse"})
_DICT_METHODS = frozenset({"get", "keys", "values", "items", "copy", "__getitem__"})


@dataclass(frozen=True)
class CallSite:
    """One LLM call found in a function body."""

    receiver: str                      # source text of the called object, e.g. "llm"
    method: str                        # invoke, ainvoke, ...
    model: Any                         # the chat model object
    bound: Mapping[str, Any]           # kwargs bound on the way (llm.bind(...))
    template: PromptTemplate           # exact, or learned when unreadable
    lineno: int = 0
    in_loop: bool = False


@dataclass(frozen=True)
class FunctionFacts:
    """What static analysis learned about one function."""

    reads: frozenset[str] | None
    writes: frozenset[str] | None
    purity: Purity
    call_sites: tuple[CallSite, ...] = ()
    goto_targets: frozenset[str] | None = frozenset()   # Command(goto=...) constants; None = unknown
    send_targets: frozenset[str] | None = frozenset()   # Send("x", ...) constants; None = unknown
    uses_send: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)  # why something is unknown / impure


def parse_function(fn: Callable[..., Any]) -> ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda:
    """The AST of ``fn``; raises ValueError when its source cannot be read or parsed."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise ValueError(f"source of {getattr(fn, '__qualname__', fn)!r} is unavailable ({exc})") from None
    try:
        tree = _parse_indented(src)
    except SyntaxError:
        tree = None
        start = src.find("lambda")
        for end in range(len(src), start, -1):  # a lambda cut from the middle of a line
            try:
                tree = ast.parse("(" + src[start:end] + ")")
                break
            except SyntaxError:
                continue
        if tree is None or start < 0:
            raise ValueError(f"cannot parse the source of {fn!r}") from None
    if fn.__name__ == "<lambda>":
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        if len(lambdas) != 1:
            raise ValueError(f"found {len(lambdas)} lambdas on the line of {fn!r}; use a def")
        return lambdas[0]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn.__name__:
            return node
    raise ValueError(f"no definition of {fn.__name__!r} in its source")


def _parse_indented(src: str) -> ast.Module:
    """Parse a function's source even when ``textwrap.dedent`` could not remove its indent.

    A nested function (a node built by a factory, a method) whose body holds a multi-line string
    with lines at column 0 keeps its indent after ``dedent`` (the common prefix is empty), which
    ``ast.parse`` rejects. Parsing it as the body of an ``if`` keeps every string exactly as
    written; line numbers are shifted back so they match a plain parse."""
    try:
        return ast.parse(src)
    except SyntaxError:
        if not src[:1].isspace():
            raise
    tree = ast.parse("if 1:\n" + src)
    ast.increment_lineno(tree, -1)
    return tree


def _own_nodes(fn_node: ast.AST) -> list[ast.AST]:
    """All AST nodes of the function body, not descending into nested defs/classes."""
    out: list[ast.AST] = []
    body = fn_node.body if isinstance(fn_node.body, list) else [fn_node.body]
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return out


def _resolve(expr: ast.AST, ns: Mapping[str, Any]) -> Any:
    """The object an expression (Name or dotted Attribute) names, or None."""
    if isinstance(expr, ast.Name):
        return ns.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _resolve(expr.value, ns)
        if base is None:
            return None
        try:
            return inspect.getattr_static(base, expr.attr)
        except AttributeError:
            return None
    return None


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _const_targets(node: ast.AST | None) -> frozenset[str] | None:
    """Constant node names in a goto value: "x", ["x", "y"], or Send("x", ...)."""
    if node is None:
        return frozenset()
    if (s := _const_str(node)) is not None:
        return frozenset({s})
    if isinstance(node, (ast.List, ast.Tuple)):
        out: set[str] = set()
        for elt in node.elts:
            sub = _const_targets(elt)
            if sub is None:
                return None
            out |= sub
        return frozenset(out)
    if isinstance(node, ast.Call) and _call_name(node) == "Send" and node.args:
        return _const_targets(node.args[0])
    return None


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _dict_keys(node: ast.AST) -> frozenset[str] | None:
    if isinstance(node, ast.Dict) and all(_const_str(k) is not None for k in node.keys):
        return frozenset(_const_str(k) for k in node.keys)  # type: ignore[misc]
    return None


def _helper_facts(obj: Any, depth: int) -> FunctionFacts | None:
    """Facts of a plain Python helper a node calls (``await ask(system, user)``), or None."""
    if depth >= _MAX_HELPER_DEPTH or not inspect.isfunction(obj) or getattr(obj, PURE_MARK, False):
        return None
    try:
        return analyse_function(obj, function_namespace(obj), _depth=depth + 1)
    except Exception:  # noqa: BLE001 - an unreadable helper only hides its calls; capture never raises
        return None


#: How deep capture follows helper functions for LLM calls (node -> helper -> helper).
_MAX_HELPER_DEPTH = 2


def analyse_function(fn: Callable[..., Any], ns: Mapping[str, Any], *, skip_self: bool = False,
                     _depth: int = 0) -> FunctionFacts:
    """Analyse ``fn`` (see the module docstring). ``ns`` resolves free names.

    A call of a plain Python helper function (a closure or a module function) is followed, up to
    two levels, for its LLM call sites, which become the caller's (template unknown: it is built
    from the helper's arguments); the call itself stays a side effect unless ``mark_pure``-ed.

    Raises ValueError when the source cannot be read; callers mark the node unanalysable.
    """
    fn_node = parse_function(fn)
    params = [a.arg for a in fn_node.args.posonlyargs + fn_node.args.args]
    if skip_self and params:
        params = params[1:]
    state = params[0] if params else None
    nodes = _own_nodes(fn_node)
    parents: dict[ast.AST, ast.AST] = {}
    for node in nodes:
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    notes: list[str] = []
    local_names = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}

    # -- reads ------------------------------------------------------------------------
    reads: set[str] | None = set()
    for node in nodes:
        if not (isinstance(node, ast.Name) and node.id == state and isinstance(node.ctx, ast.Load)):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Subscript) and parent.value is node and (k := _const_str(parent.slice)):
            reads.add(k)  # type: ignore[union-attr]
            continue
        if isinstance(parent, ast.Attribute) and parent.value is node:
            grand = parents.get(parent)
            if parent.attr == "get" and isinstance(grand, ast.Call) and grand.func is parent \
                    and grand.args and (k := _const_str(grand.args[0])):
                reads.add(k)  # type: ignore[union-attr]
                continue
            if parent.attr not in _DICT_METHODS:
                reads.add(parent.attr)  # type: ignore[union-attr]
                continue
        notes.append(f"reads unknown: `{state}` used as a whole at line {node.lineno}")
        reads = None
        break

    # -- writes, Command/Send targets -------------------------------------------------------
    writes: set[str] | None = set()
    goto: frozenset[str] | None = frozenset()
    sends: frozenset[str] | None = frozenset()
    uses_send = False
    returns = [fn_node.body] if isinstance(fn_node, ast.Lambda) else \
        [n.value for n in nodes if isinstance(n, ast.Return)]
    if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in nodes):
        notes.append("writes unknown: the function is a generator")
        writes = None
    for call in (n for n in nodes if isinstance(n, ast.Call)):
        name = _call_name(call)
        if name == "Command":
            kw = {k.arg: k.value for k in call.keywords}
            t = _const_targets(kw.get("goto"))
            goto = None if (goto is None or t is None) else goto | t
        elif name == "Send":
            uses_send = True
            t = _const_targets(call.args[0] if call.args else None)
            sends = None if (sends is None or t is None) else sends | t
    for value in returns:
        if writes is None:
            break
        if value is None or (isinstance(value, ast.Constant) and value.value is None):
            continue
        if (keys := _dict_keys(value)) is not None:
            writes |= keys
            continue
        if isinstance(value, ast.Call) and _call_name(value) == "Command":
            upd = {k.arg: k.value for k in value.keywords}.get("update")
            if upd is None:
                continue
            if (keys := _dict_keys(upd)) is not None:
                writes |= keys
                continue
        if isinstance(value, (ast.List, ast.Tuple, ast.Call)) and uses_send and _call_name(value) != "Command":
            continue  # a router returning Send packets writes no state
        notes.append(f"writes unknown: returns `{ast.unparse(value)[:40]}` at line {value.lineno}")
        writes = None

    # -- purity and call sites --------------------------------------------------------------
    impure: list[str] = []
    call_sites: list[CallSite] = []
    loops = [n for n in nodes if isinstance(n, (ast.For, ast.AsyncFor, ast.While, ast.comprehension))]
    loop_lines = {(ln.lineno, getattr(ln, "end_lineno", ln.lineno)) for ln in loops if hasattr(ln, "lineno")}
    assignments = {t.id: n.value for n in nodes if isinstance(n, ast.Assign)
                   for t in n.targets if isinstance(t, ast.Name)}
    for node in nodes:
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            impure.append(f"`{type(node).__name__.lower()}` at line {node.lineno}")
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                root = t
                while isinstance(root, (ast.Attribute, ast.Subscript)):
                    root = root.value
                if root is not t and isinstance(root, ast.Name) and root.id in params:
                    impure.append(f"mutates its input `{root.id}` at line {node.lineno}")
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name):
            obj = ns.get(f.id)
            if f.id in SAFE_BUILTINS and f.id not in local_names \
                    and (obj is None or obj is getattr(builtins, f.id, None)):
                continue
            if f.id in {"Command", "Send"} or (obj is not None and getattr(obj, PURE_MARK, False)):
                continue
            if obj is not None and getattr(obj, "__module__", "").startswith("langchain_core.messages"):
                continue
            helper = _helper_facts(obj, _depth) if f.id not in local_names else None
            if helper is not None and helper.call_sites:
                in_loop = any(a <= node.lineno <= b for a, b in loop_lines)
                call_sites.extend(CallSite(f"{f.id}() -> {cs.receiver}", cs.method, cs.model, cs.bound,
                                           PromptTemplate.unknown(), node.lineno, in_loop or cs.in_loop)
                                  for cs in helper.call_sites)
            impure.append(f"calls `{f.id}` at line {node.lineno}")  # helpers stay side effects (mark_pure)
            continue
        if not isinstance(f, ast.Attribute):
            impure.append(f"calls `{ast.unparse(f)[:30]}` at line {node.lineno}")
            continue
        receiver = _resolve(f.value, ns)
        if receiver is None and f.attr in LLM_METHODS \
                and (found := _composed_llm(f.value, ns, assignments)) is not None:
            # `chain = prompt | llm.bind_tools(tools); chain.invoke(...)` or `llm.bind(...).invoke(...)`
            in_loop = any(a <= node.lineno <= b for a, b in loop_lines)
            call_sites.append(CallSite(ast.unparse(f.value)[:60], f.attr, found[0], found[1],
                                       PromptTemplate.unknown(), node.lineno, in_loop))
            continue
        if receiver is not None and is_llm_runnable(receiver):
            if f.attr in LLM_METHODS and (found := find_chat_model(receiver)) is not None:
                model, bound = found
                template = _call_site_template(receiver, node, ns, assignments, state)
                in_loop = any(a <= node.lineno <= b for a, b in loop_lines)
                call_sites.append(CallSite(ast.unparse(f.value), f.attr, model, bound, template,
                                           node.lineno, in_loop))
            continue
        if receiver is not None and getattr(receiver, PURE_MARK, False):
            continue
        if receiver is None and f.attr in PURE_METHODS:
            continue
        if f.attr in MUTATING_METHODS and isinstance(f.value, ast.Name) \
                and f.value.id in local_names and f.value.id not in params:
            continue
        impure.append(f"calls `{ast.unparse(f)[:30]}` at line {node.lineno}")
    purity = Purity.SIDE_EFFECT if impure else Purity.PURE
    if getattr(fn, PURE_MARK, False):
        purity, impure = Purity.PURE, []
    notes.extend(f"side effect: {r}" for r in impure[:3])
    return FunctionFacts(
        reads=None if reads is None else frozenset(reads),
        writes=None if writes is None else frozenset(writes),
        purity=purity, call_sites=tuple(call_sites), goto_targets=goto,
        send_targets=sends, uses_send=uses_send, notes=tuple(notes),
    )


#: Methods that wrap a runnable without changing which model answers.
WRAP_METHODS = frozenset({"bind", "bind_tools", "with_structured_output", "with_config", "with_retry",
                          "with_fallbacks", "with_types", "with_listeners", "partial"})
#: ``bind`` keywords that decide whether the call is deterministic.
_SAMPLING_KWARGS = ("temperature", "seed", "top_p", "max_tokens")


def _composed_llm(expr: ast.AST, ns: Mapping[str, Any], assignments: Mapping[str, ast.AST],
                  depth: int = 0) -> tuple[Any, dict[str, Any]] | None:
    """The chat model an expression built in the function body ends in, and what ``bind`` set.

    Follows local assignments, ``a | b`` compositions and wrapper calls (``bind_tools``,
    ``with_structured_output``, ...). A ``bind`` keyword that decides sampling but is not a
    constant becomes ``"<unknown>"``, which the model's purity reads as sampled."""
    if depth > 8:
        return None
    if isinstance(expr, ast.Name) and expr.id in assignments:
        return _composed_llm(assignments[expr.id], ns, assignments, depth + 1)
    if isinstance(expr, (ast.Name, ast.Attribute)):
        obj = _resolve(expr, ns)
        return find_chat_model(obj) if obj is not None and is_llm_runnable(obj) else None
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
        return (_composed_llm(expr.left, ns, assignments, depth + 1)
                or _composed_llm(expr.right, ns, assignments, depth + 1))
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr in WRAP_METHODS:
        inner = _composed_llm(expr.func.value, ns, assignments, depth + 1)
        if inner is None or expr.func.attr != "bind":
            return inner
        bound = dict(inner[1])
        for kw in expr.keywords:
            if kw.arg is None:  # bind(**kwargs): anything may be set
                bound.update({k: "<unknown>" for k in _SAMPLING_KWARGS})
            elif kw.arg in _SAMPLING_KWARGS:
                bound[kw.arg] = kw.value.value if isinstance(kw.value, ast.Constant) else "<unknown>"
        return inner[0], bound
    return None


def _call_site_template(receiver: Any, call: ast.Call, ns: Mapping[str, Any],
                        assignments: Mapping[str, ast.AST], state: str | None) -> PromptTemplate:
    """The template an LLM call renders: from a chain's prompt, a formatted prompt, or literals."""
    if (prompt := find_chat_prompt(receiver)) is not None:
        return template_from_chat_prompt(prompt, source_prefix="state.")
    if not call.args:
        return PromptTemplate.unknown()
    arg = call.args[0]
    for _ in range(4):  # follow `msgs = ...; llm.invoke(msgs)`
        if isinstance(arg, ast.Name) and arg.id in assignments:
            arg = assignments[arg.id]
        else:
            break
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) \
            and arg.func.attr in {"format_messages", "invoke", "format_prompt"}:
        obj = _resolve(arg.func.value, ns)
        if obj is not None and is_prompt(obj) and hasattr(obj, "messages"):
            return template_from_chat_prompt(obj, source_prefix="state.")
    return template_from_ast(arg, state) or PromptTemplate.unknown()
