"""Issue 21: xtune/encoders reaches keras-hub and Keras internals in one module only, a few
lines, and only with the keras-hub version those lines were written for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import xtune.encoders
from xtune.encoders.keras_hub_internals import check_keras_hub_version

PACKAGE = Path(xtune.encoders.__file__).parent
INTERNALS_MODULE = "keras_hub_internals.py"
MAX_PRIVATE_LINES = 10
PRIVATE_MODULES = ("keras_hub.src", "keras.src")


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def own_private_names(trees: list[ast.Module]) -> set[str]:
    """Private names xtune defines itself: `def _x`, `self._x = ...`, class-level `_x = ...`."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {name for name in names if is_private(name)}


def private_api_lines(tree: ast.Module, own_names: set[str]) -> set[int]:
    """Lines that import from `keras_hub.src`/`keras.src`, read a private attribute of another
    object (`block._x`, `getattr(block, "_x")`), or one `self._x` that xtune never defines
    (an inherited keras-hub internal). Strings (the torch pickle allow-list) do not count."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PRIVATE_MODULES):
            lines.add(node.lineno)
        elif isinstance(node, ast.Import) and any(
            alias.name.startswith(PRIVATE_MODULES) for alias in node.names
        ):
            lines.add(node.lineno)
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            if not (is_self(node.value) and node.attr in own_names):
                lines.add(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and is_private(node.args[1].value)
        ):
            if not (is_self(node.args[0]) and node.args[1].value in own_names):
                lines.add(node.lineno)
    return lines


def is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def scan(sources: dict[str, str]) -> dict[str, set[int]]:
    trees = {name: ast.parse(text) for name, text in sources.items()}
    own_names = own_private_names(list(trees.values()))
    found = {name: private_api_lines(tree, own_names) for name, tree in trees.items()}
    return {name: lines for name, lines in found.items() if lines}


def test_the_scan_finds_private_api_use():
    source = (
        "from keras_hub.src.utils import x\n"
        "class A:\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def f(self, block):\n"
        "        return self._mine, self.__class__, block._layer\n"
        "    def g(self):\n"
        "        return self._inherited(), getattr(self, '_other'), '_a_string'\n"
        "    def h(self, block):\n"
        "        return getattr(self, '_mine'), getattr(block, '_mine')\n"
    )
    assert scan({"a.py": source}) == {"a.py": {1, 6, 8, 10}}


def test_private_api_lines_are_few_and_in_one_module():
    sources = {path.name: path.read_text(encoding="utf-8") for path in PACKAGE.glob("*.py")}
    found = scan(sources)
    assert set(found) == {INTERNALS_MODULE}, found
    assert len(found[INTERNALS_MODULE]) <= MAX_PRIVATE_LINES, sorted(found[INTERNALS_MODULE])


def test_keras_hub_version_check():
    check_keras_hub_version("0.32.0")
    check_keras_hub_version("0.32.1")
    with pytest.raises(ImportError, match=r"keras-hub 0\.33\.0 is installed"):
        check_keras_hub_version("0.33.0")
    with pytest.raises(ImportError, match=r"keras-hub 0\.3\.2 is installed"):
        check_keras_hub_version("0.3.2")
