"""The examples in the docstrings run and print what they say (``doctest``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import musemo

MODULES = [
    m.name for m in pkgutil.walk_packages(musemo.__path__, "musemo.") if m.name != "musemo.__main__"
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs={"musemo": musemo}):
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {name}"
