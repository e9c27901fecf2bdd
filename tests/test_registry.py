import pytest

from xtune.registry import Registry, RegistryError


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
