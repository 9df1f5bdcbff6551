"""Every `Example:` of a public docstring runs here: one collection for the whole package.

An example is a fenced ```python block, or doctest (>>>) lines, under an ``Example:`` or
``Examples:`` heading of a module, class, function or method docstring of a public module of
pagi_rsm (components and workflows included). Fenced blocks without >>> are executed; doctest
lines are run by `doctest`, so their printed output is checked too. Each runs in a copy of its
module's namespace (as doctest does) with numpy as np, keras, tensorflow as tf and pagi_rsm
imported, in a temporary directory.
"""
import doctest
import importlib
import inspect
import pkgutil
import re
import textwrap

import pytest

import pagi_rsm
from tests.conftest import SHARED_DATA

_HEADING = re.compile(r"^(\s*)Examples?:\s*$", re.MULTILINE)
_FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
MINIMUM = 30
"""At least this many examples are found (a broken extractor must not pass silently)."""


def _modules():
    # components/ and workflows/ install as pagi_rsm.components / pagi_rsm.workflows from
    # folders of their own, so they are walked from their own paths.
    roots = [(pagi_rsm.__path__, "pagi_rsm.")]
    for name in ("components", "workflows"):
        package = importlib.import_module(f"pagi_rsm.{name}")
        roots.append((package.__path__, f"pagi_rsm.{name}."))
    seen = set()
    for path, prefix in roots:
        for info in pkgutil.walk_packages(path, prefix):
            if info.name in seen or any(p.startswith("_") for p in info.name.split(".")):
                continue
            seen.add(info.name)
            yield importlib.import_module(info.name)


def _docstrings(module):
    yield module.__name__, module.__doc__
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj.__doc__
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                member = getattr(member, "__func__", member)
                if inspect.isfunction(member) or isinstance(member, property):
                    yield f"{module.__name__}.{name}.{attr}", member.__doc__


def _sections(doc):
    """The text of each Example(s): section (up to the next heading at its indentation)."""
    doc = inspect.cleandoc(doc)
    for match in _HEADING.finditer(doc):
        indent = len(match.group(1))
        body = []
        for line in doc[match.end():].splitlines()[1:]:
            stripped = line.strip()
            if (stripped and len(line) - len(line.lstrip()) <= indent
                    and re.match(r"^[A-Z][A-Za-z ]*:$", stripped)):
                break
            body.append(line)
        yield textwrap.dedent("\n".join(body))


def _examples():
    found = []
    for module in _modules():
        for where, doc in _docstrings(module):
            if not doc or "Example" not in doc:
                continue
            for i, section in enumerate(_sections(doc)):
                fenced = [(lang, code) for lang, code in _FENCE.findall(section)]
                rest = _FENCE.sub("", section)
                blocks = [code for lang, code in fenced if lang in ("", "python", "py")]
                if ">>>" in rest:
                    blocks.append(rest)
                for j, code in enumerate(blocks):
                    found.append(pytest.param(module.__name__, where, textwrap.dedent(code),
                                              id=f"{where}[{i}.{j}]"))
    return found


EXAMPLES = _examples()


def test_the_collection_finds_the_examples():
    assert len(EXAMPLES) >= MINIMUM


@pytest.mark.parametrize("module, where, code", EXAMPLES)
def test_example_runs(module, where, code, tmp_path, monkeypatch):
    import keras
    import numpy as np
    import tensorflow as tf
    monkeypatch.chdir(tmp_path)
    # Examples that read real data find it where a user would point the package at it.
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("PAGI_RSM_MNIST_DIR", str(SHARED_DATA / "mnist"))
        monkeypatch.setenv("PAGI_RSM_PTB_DIR", str(SHARED_DATA / "ptb"))
    # As doctest does: the example sees its module's names, plus the usual imports.
    namespace = dict(vars(importlib.import_module(module)))
    namespace.update({"np": np, "keras": keras, "tf": tf, "pagi_rsm": pagi_rsm,
                      "__name__": "__example__"})
    if ">>>" in code:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(code, namespace, where, None, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS
                                       | doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        assert runner.failures == 0, f"doctest of {where} failed (see the output above)"
    else:
        exec(compile(code, f"<example of {where}>", "exec"), namespace)  # noqa: S102
