"""`bind_exports`: the body of a package's PEP 562 `__getattr__` that loads its components on
first use of an exported name (so importing the package, or a pure-Python module in it,
loads no Keras)."""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any


def bind_exports(
    namespace: dict[str, Any], exported: list[str], name: str, imported: Iterable[Any]
) -> Any:
    """Bind into `namespace` (the package's `globals()`) every name of `exported` that the
    modules among `imported` define (e.g. the `__getattr__`'s `locals().values()` after it
    imported them), and return `name`'s value."""
    modules = [value for value in imported if isinstance(value, types.ModuleType)]
    namespace.update({n: getattr(m, n) for m in modules for n in exported if hasattr(m, n)})
    return namespace[name]
