"""The layering of ``docs/architecture.md``, enforced: imports run downward only, and no module
imports another module's private names.

Every ``import`` of a ``helium_lc`` module anywhere in a file counts, lazy ones inside functions
included (a lazy import still is a dependency). A unit is a subpackage (``engine``, ``runtime``,
...) or a top-level module (``accelerate``, ``chat_model``, ...); a unit may import its own
modules and units of lower layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import helium_lc

PACKAGE = Path(helium_lc.__file__).parent

#: layer of each unit, lowest first (the table in docs/architecture.md)
LAYERS: dict[str, int] = {
    "env": 0, "plan": 0, "schedule": 0,              # pure: nothing of helium_lc below them
    "engine": 1, "optimize": 1, "capture": 1,
    "cache": 2, "config": 2,
    "runtime": 3,
    "integrations": 4, "chat_model": 4,
    "accelerate": 5, "testing": 5,
    "explain": 6, "demo": 6,
    "cli": 7,
    "__init__": 8,                                   # the public names
}


def _module_name(path: Path) -> str:
    parts = ("helium_lc",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(source: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every helium_lc import in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "helium_lc":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if node.module == "helium_lc" and (PACKAGE / alias.name).with_suffix(".py").exists() \
                        or (PACKAGE / alias.name).is_dir():
                    out.append((sub if node.module == "helium_lc" else node.module, alias.name, node.lineno))
                else:
                    out.append((node.module, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "helium_lc"]
    return out


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in _files()}
    assert units <= set(LAYERS), f"add these units to LAYERS (and the architecture page): {sorted(units - set(LAYERS))}"


def test_imports_run_downward_only() -> None:
    upward = []
    for path in _files():
        src = _unit(_module_name(path))
        for module, name, line in _imports(path.read_text()):
            dst = _unit(module)
            if dst != src and LAYERS[dst] >= LAYERS[src]:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} ({src}, layer {LAYERS[src]}) imports "
                              f"{module} ({dst}, layer {LAYERS[dst]})")
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_private_names_cross_modules() -> None:
    private = []
    for path in _files():
        me = _module_name(path)
        for module, name, line in _imports(path.read_text()):
            if name.startswith("_") and module != me:
                private.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}.{name}")
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_private_modules_are_imported_only_inside_their_package() -> None:
    leaks = []
    for path in _files():
        me = _module_name(path)
        for module, _, line in _imports(path.read_text()):
            parts = module.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not me.startswith(".".join(parts[:i]) + "."):
                    leaks.append(f"{path.relative_to(PACKAGE)}:{line} imports the private module {module}")
    assert not leaks, "\n".join(leaks)


def test_the_checks_see_lazy_and_private_imports() -> None:
    # the parser itself: a lazy import inside a function, a submodule imported from the package,
    # a private name
    source = ("import helium_lc.engine.pool\n"
              "def f():\n    from helium_lc.accelerate import accelerate\n"
              "from helium_lc import env\nfrom helium_lc.runtime.scheduler import _Pending\n")
    assert sorted((m, n) for m, n, _ in _imports(source)) == [
        ("helium_lc.accelerate", "accelerate"), ("helium_lc.engine.pool", ""), ("helium_lc.env", "env"),
        ("helium_lc.runtime.scheduler", "_Pending")]
    assert [_unit(m) for m, _, _ in _imports(source)] == ["engine", "env", "runtime", "accelerate"]
