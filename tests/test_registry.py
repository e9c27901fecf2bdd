import pytest

from xtune.registry import Registry, RegistryError, check_number, checked_by


def test_register_get_build_and_errors():
    things = Registry("thing")

    @things.register("pair")
    def make_pair(a=1, b=2):
        return (a, b)

    assert things.names() == ["pair"]
    assert things.build("pair") == (1, 2)
    assert things.build({"name": "pair", "b": 5}) == (1, 5)
    with pytest.raises(RegistryError, match="unknown thing 'pear'; valid choices: pair"):
        things.get("pear")
    with pytest.raises(RegistryError, match="registered twice"):
        things.register("pair")(make_pair)


def test_check_runs_the_builders_own_check_and_builds_nothing():
    things = Registry("thing")
    built = []

    @things.register("box")
    class Box:
        @classmethod
        def check_arguments(cls, size=1):
            check_number("size", size, 1, 10, integer=True)

        def __init__(self, size=1):
            built.append(size)

    things.check("box", {"size": 3})
    with pytest.raises(ValueError, match=r"size: expected an integer in \[1, 10\], got 0"):
        things.check("box", {"size": 0})
    assert built == []


def test_a_factory_checked_by_a_function_checks_when_the_config_is_read():
    things = Registry("thing")

    def check_rate(value=0.1):
        check_number("value", value, 0.0, open_low=True)

    @things.register("rate")
    @checked_by(check_rate)
    def rate(value=0.1):
        check_rate(value)
        return lambda: value

    things.check("rate", {"value": 0.5})
    with pytest.raises(ValueError, match="value: expected a number > 0.0, got -1"):
        things.check("rate", {"value": -1})


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (float("nan"), {}, "expected a number, got nan"),
        (True, {"integer": True}, "expected an integer, got True"),
        (1.5, {"integer": True, "low": 1}, "expected an integer >= 1, got 1.5"),
        (1.0, {"low": 0, "high": 1, "open_high": True}, r"in \[0, 1\), got 1.0"),
        ("2", {}, "expected a number, got '2'"),
    ],
)
def test_check_number_messages(value, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_number("x", value, **kwargs)


COMPONENT_MODULES = [
    "xtune.data.examples",
    "xtune.data.pipeline",
    "xtune.encoders",
    "xtune.heads",
    "xtune.losses",
    "xtune.tasks",
    "xtune.training.adversarial",
    "xtune.training.freezing",
    "xtune.training.layerwise",
    "xtune.training.lora",
    "xtune.training.optimizers",
    "xtune.training.schedules",
]


def test_components_do_not_import_the_config():
    """Imports point one way: `xtune.config` reads the components' registries to validate,
    so no component may import `xtune.config` back (a fresh interpreter shows what loads)."""
    import subprocess
    import sys

    code = (
        f"import importlib, sys\nfor m in {COMPONENT_MODULES!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m == 'xtune.config'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from xtune import config, registry

    assert config.ConfigError is registry.ConfigError  # still importable from the config
