"""Property tests: any YAML text or nested value is a RunConfig or one ConfigError, never else."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import sample_run_config
from xtune.config import ConfigError, RunConfig, parse_run_config, parse_yaml_text

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Pieces of YAML syntax, so that generated texts reach the parser's and the schema's corners.
YAML_PIECES = [
    "data:",
    "training:",
    "head:",
    "loss:",
    "optimizer:",
    "encoder:",
    "name:",
    " train: x.csv",
    " epochs:",
    " batch_size:",
    " max_length:",
    " learning_rate:",
    " pooling:",
    " metric:",
    "\n",
    "  ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    " ",
    "'",
    '"',
    "?",
    "#",
    "|",
    ">",
    "&a ",
    "*a",
    "<<: ",
    "!!python/object/apply:os.system ['id']",
    "!!binary",
    "!!set",
    "!foo",
    "1e-3",
    "1e26",
    "-1",
    "0",
    "10**20",
    ".inf",
    ".nan",
    "null",
    "true",
    "~",
    "0x1F",
    "2001-12-14",
    "textcnn",
    "pooling",
    "bce",
    "avg",
    "中文",
    "\t",
    "\x00",
    "\ufeff",
    "%YAML 1.1\n---\n",
]
yaml_texts = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(YAML_PIECES), max_size=30).map("".join),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["mean", "pooling", "bce", "adamw", "linear", "1e-3", "", "auto"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)


def keys_of(raw: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested dict."""
    paths = []
    for key, value in raw.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += keys_of(value, (*prefix, key))
    return paths


def config_or_config_error(raw) -> None:
    try:
        config = parse_run_config(raw, source="fuzz.yaml")
    except ConfigError:
        return
    assert isinstance(config, RunConfig)
    # What validated can be written and read back: grids re-parse every run's config.
    assert parse_run_config(config.to_dict(), source="again") == config


@pytest.fixture(scope="module")
def valid_raw(tmp_path_factory) -> dict:
    raw = sample_run_config(tmp_path_factory.mktemp("fuzz"))
    parse_run_config(raw)  # the starting point is valid
    return raw


@FUZZ
@given(text=yaml_texts)
def test_any_yaml_text_is_a_config_or_one_config_error(text):
    try:
        raw = parse_yaml_text(text, "fuzz.yaml")
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    config_or_config_error(raw)


@FUZZ
@given(raw=values)
def test_any_nested_value_is_a_config_or_one_config_error(raw):
    config_or_config_error(raw)


@FUZZ
@given(data=st.data(), value=values)
def test_any_value_at_any_key_of_a_valid_config(valid_raw, data, value):
    raw = copy.deepcopy(valid_raw)
    path = data.draw(st.sampled_from(keys_of(raw)))
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    config_or_config_error(raw)


@FUZZ
@given(data=st.data(), number=st.one_of(st.integers(), st.floats()))
def test_any_number_in_a_number_setting(valid_raw, data, number):
    section = data.draw(st.sampled_from(["training", "data", "optimizer"]))
    key = data.draw(
        st.sampled_from(
            {
                "training": ["epochs", "batch_size", "eval_batch_size", "seed", "verbose"],
                "data": ["max_length", "head_tokens", "dev_fraction", "split_seed"],
                "optimizer": ["learning_rate", "weight_decay", "clipnorm", "beta_1"],
            }[section]
        )
    )
    raw = copy.deepcopy(valid_raw)
    raw[section][key] = number
    try:
        config = parse_run_config(raw, source="fuzz.yaml")
    except ConfigError:
        return
    kept = (
        config.optimizer.kwargs[key]
        if section == "optimizer"
        else getattr(getattr(config, section), key)
    )
    assert math.isfinite(kept)  # learning rates have no upper bound: divergence is caught
