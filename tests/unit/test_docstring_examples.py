"""Every docstring example in the package runs (the ``Example:`` blocks are documentation users
copy; examples that need an engine or network say ``# doctest: +SKIP``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import helium_lc

MODULES = sorted(m.name for m in pkgutil.walk_packages(helium_lc.__path__, "helium_lc.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False,
                             report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (output above)"
