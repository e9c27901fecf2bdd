"""Config validation: unknown keys and names fail with the file, the key path and the choices."""

import pytest
import yaml

from tests.conftest import sample_run_config
from xtune.config import ConfigError, apply_overrides, load_run_config, parse_run_config


def write_yaml(path, raw):
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_valid_config_round_trips_through_yaml(tmp_path):
    raw = sample_run_config(tmp_path)
    config = load_run_config(write_yaml(tmp_path / "run.yaml", raw))
    again = parse_run_config(yaml.safe_load(config.to_yaml()))
    assert again == config
    assert config.head.name == "pooling" and config.head.kwargs == {"pooling": "mean"}


def test_unknown_section_key_names_file_path_and_valid_keys(tmp_path):
    raw = sample_run_config(tmp_path, training={"epoch": 3})
    path = write_yaml(tmp_path / "bad.yaml", raw)
    with pytest.raises(ConfigError) as error:
        load_run_config(path)
    message = str(error.value)
    assert str(path) in message and "'training.epoch'" in message and "epochs" in message


def test_unknown_component_name_lists_choices(tmp_path):
    raw = sample_run_config(tmp_path, loss="bce_typo")
    with pytest.raises(ConfigError) as error:
        load_run_config(write_yaml(tmp_path / "bad.yaml", raw))
    assert "loss.name" in str(error.value)
    assert "multilabel_ce" in str(error.value) and "focal" in str(error.value)


def test_unknown_component_argument_lists_valid_arguments(tmp_path):
    raw = sample_run_config(tmp_path, head={"name": "pooling", "poling": "mean"})
    with pytest.raises(ConfigError) as error:
        load_run_config(write_yaml(tmp_path / "bad.yaml", raw))
    assert "'head.poling'" in str(error.value) and "pooling" in str(error.value)


def test_bad_choice_and_type_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="data.truncation.*head_tail"):
        parse_run_config(sample_run_config(tmp_path, data={"truncation": "middle"}))
    with pytest.raises(ConfigError, match="training.epochs: expected int"):
        parse_run_config(sample_run_config(tmp_path, training={"epochs": "five"}))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("data: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(bad)


def test_overrides_parse_values_and_switching_component_drops_old_arguments(tmp_path):
    raw = sample_run_config(tmp_path)
    raw = apply_overrides(
        raw,
        [
            "training.epochs=3",
            "optimizer.learning_rate=5e-5",
            "head.name=default",
            "head.units=[8]",
        ],
    )
    config = parse_run_config(raw)
    assert config.training.epochs == 3
    assert config.optimizer.kwargs["learning_rate"] == pytest.approx(5e-5)
    assert config.head.kwargs == {"units": [8]}  # "pooling: mean" belonged to the old head


def test_scientific_notation_without_dot_is_a_float(tmp_path):
    path = tmp_path / "run.yaml"
    raw = sample_run_config(tmp_path)
    text = yaml.safe_dump(raw).replace("learning_rate: 0.001", "learning_rate: 1e-3")
    path.write_text(text, encoding="utf-8")
    assert load_run_config(path).optimizer.kwargs["learning_rate"] == 0.001
