"""Name -> component registries, so YAML picks encoders, heads, losses, optimizers by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class RegistryError(KeyError):
    """An unknown or duplicate component name."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0])


class Registry:
    """A table of named builders for one kind of component.

    ```python
    LOSSES = Registry("loss")

    @LOSSES.register("bce")
    class BinaryCrossentropy(keras.losses.Loss): ...

    LOSSES.get("bce")                                  # -> the class
    LOSSES.build({"name": "bce", "label_smoothing": 0.1})  # -> an instance
    ```
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise RegistryError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = builder
            return builder

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}"
            ) from None

    def build(self, spec: str | dict[str, Any], **extra: Any) -> Any:
        """Build from a short name or a `{"name": ..., **kwargs}` dict."""
        if isinstance(spec, str):
            name, kwargs = spec, {}
        else:
            kwargs = dict(spec)
            name = kwargs.pop("name")
        return self.get(name)(**kwargs, **extra)
