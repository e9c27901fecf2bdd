"""Name -> component registries, so YAML picks encoders, heads, losses, optimizers by name."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A config file or override does not match the schema.

    Defined here, beside the registries, so that components (layer-wise LR, freezing, LoRA)
    raise it without importing `xtune.config`: imports point one way, config -> components.
    """


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

    def check(self, name: str, kwargs: dict[str, Any]) -> None:
        """Check a component's arguments by meaning without building it (no layers, no weights).

        Calls the builder's `check_arguments(**kwargs)` when it has one (a class's, or a
        factory's, see `checked_by`); it raises `ValueError` naming the argument. Builders
        without one (encoders, which load weights) are only type-checked, by the config.
        """
        checker = getattr(self.get(name), "check_arguments", None)
        if checker is not None:
            checker(**kwargs)

    def build(self, spec: str | dict[str, Any], **extra: Any) -> Any:
        """Build from a short name or a `{"name": ..., **kwargs}` dict."""
        if isinstance(spec, str):
            name, kwargs = spec, {}
        else:
            kwargs = dict(spec)
            name = kwargs.pop("name")
        return self.get(name)(**kwargs, **extra)


def checked_by(
    checker: Callable[..., None],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a factory (optimizers and schedules are factories: their call checks the arguments
    and returns a closure that builds later) its `check_arguments`: `checker`, a function that
    takes the same arguments with the same defaults and needs no TensorFlow; calling the
    factory runs it first."""

    def mark(factory: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(factory)
        def checked(*args: Any, **kwargs: Any) -> Any:
            checker(*args, **kwargs)
            return factory(*args, **kwargs)

        checked.check_arguments = checker  # type: ignore[attr-defined]
        return checked

    return mark


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    """A component argument that must be a finite number (an integer with `integer`) in range.

    Raises `ValueError("NAME: expected ..., got VALUE")`, e.g. `check_number("epsilon", x, 0,
    open_low=True)` -> "epsilon: expected a number > 0, got -1".
    """
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok and not integer:
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value < high if open_high else value <= high
    if not ok:
        what = "an integer" if integer else "a number"
        raise ValueError(
            f"{name}: expected {what}{interval(low, high, open_low, open_high)}, got {value!r}"
        )


def interval(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    """` in [0, 1)`, ` > 0`, ` <= 8`: the range part of an error message."""
    if low is not None and high is not None:
        return f" in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    if low is not None:
        return f" {'>' if open_low else '>='} {low}"
    if high is not None:
        return f" {'<' if open_high else '<='} {high}"
    return ""
