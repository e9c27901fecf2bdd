"""Config validation: unknown keys and names fail with the file, the key path and the choices."""

import json
import re

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


# ---------------------------------------------------------------- issue 14: by meaning


def error_of(raw, source="run.yaml") -> str:
    with pytest.raises(ConfigError) as caught:
        parse_run_config(raw, source=source)
    return str(caught.value)


def test_a_duplicated_key_is_an_error_naming_file_line_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  train: a.csv\n  text: body\n  train: b.csv\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"run.yaml: line 4: key 'train' appears twice"):
        load_run_config(path)


def test_yaml_merge_keys_may_repeat_what_they_merge():
    from xtune.config import yaml_load

    text = "a: &base {x: 1, y: 2}\nb:\n  <<: *base\n  x: 3\n"
    assert yaml_load(text)["b"] == {"x": 3, "y": 2}


def test_a_file_not_in_utf8_names_the_byte_and_offset(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes("data: {train: 训练.csv}\n".encode("gb18030"))  # 训 happens to be UTF-8
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert str(caught.value) == (f"{path}: not UTF-8 (byte 0xC1 at offset 16); save it as UTF-8")


def test_yaml_errors_are_one_line_with_the_line_number(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  train: x.csv\ntraining: {epochs: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert "\n" not in str(caught.value) and f"{path}: line " in str(caught.value)
    path.write_text("data: !!python/object/apply:os.system ['touch pwned']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 1, column 7: the tag .*os.system.* not allowed"):
        load_run_config(path)
    assert not (tmp_path / "pwned").exists()


def test_base_files_chain_and_a_cycle_is_an_error(tmp_path):
    write_yaml(tmp_path / "a.yaml", sample_run_config(tmp_path))
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntraining: {epochs: 2}\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text("base: b.yaml\ntraining: {batch_size: 4}\n", "utf-8")
    config = load_run_config(tmp_path / "c.yaml")
    assert (config.training.epochs, config.training.batch_size) == (2, 4)
    (tmp_path / "d.yaml").write_text("base: d.yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="includes itself"):
        load_run_config(tmp_path / "d.yaml")


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"training": {"batch_size": 0}}, r"training.batch_size: expected an integer in \[1, "),
        ({"training": {"eval_batch_size": 10**20}}, "training.eval_batch_size: expected an"),
        ({"training": {"epochs": 10**9}}, r"training.epochs: expected an integer in \[1, 10000\]"),
        ({"training": {"seed": -1}}, "training.seed"),
        ({"training": {"metric": "acc"}}, "training.metric: 'acc' is not one of: subset_acc"),
        ({"training": {"tune_thresholds": "f1"}}, "training.tune_thresholds"),
        ({"training": {"jit_compile": "yes"}}, "jit_compile: 'yes' is not one of: auto, true"),
        ({"data": {"label_separator": ""}}, "data.label_separator: must not be empty"),
        ({"data": {"dev_fraction": 1.0}}, r"data.dev_fraction: expected a number in \(0.0, 1.0\)"),
        ({"data": {"max_length": 4}}, r"data.max_length: expected an integer in \[8, "),
        ({"data": {"max_length": 512}}, "more than the encoder 'random' has positions for .128."),
        (
            {"optimizer": {"name": "adamw", "learning_rate": float("inf")}},
            "learning_rate: expected a finite",
        ),
        ({"optimizer": {"name": "adamw", "learning_rate": "5e-5"}}, "got '5e-5' .a quoted string"),
        (
            {"optimizer": {"name": "adamw", "learning_rate": 0}},
            r"optimizer.learning_rate: expected a number > 0",
        ),
        ({"optimizer": {"name": "adam", "beta_2": 1.0}}, "optimizer.beta_2"),
        ({"schedule": {"name": "linear", "warmup_steps": 5, "warmup_ratio": 0.1}}, "not both"),
        ({"loss": {"name": "bce", "pos_weight": [1.0, -2.0]}}, "loss.pos_weight"),
        ({"loss": {"name": "focal", "alpha": 1.5}}, r"loss.alpha: expected a number in \[0.0"),
        ({"head": {"name": "rnn", "cell": "gru2"}}, "head.cell: 'gru2' is not one of"),
        ({"head": {"name": "pooling", "units": [0]}}, "head.units"),
        ({"head": {"name": "pooling", "units": ["8"]}}, r"head.units\[0\]: expected int"),
        ({"head": {"name": "pooling", "dropout": 1.0}}, "head.dropout"),
        ({"head": {"name": "attention", "attention_units": 0}}, "head.attention_units"),
        ({"adversarial": {"name": "fgm", "epsilon": 0}}, "adversarial.epsilon"),
        ({"finetune": {"frozen_epochs": 1}}, "frozen_epochs: 1 must be fewer than"),
        ({"finetune": {"lora_rank": 4, "freeze_encoder": True}}, "exclude each other"),
        ({"encoder": {"name": "hf"}}, "encoder: encoder 'hf' needs 'path'"),
        ({"encoder": {"name": "hf", "path": "no/such/folder"}}, "encoder.path: .*not found"),
        ({"loss": "softmax_ce", "training": {"report_thresholds": [0.3]}}, "top-1"),
        ({"training": {"decision_rule": "best"}}, "decision_rule: 'best' is not one of: auto"),
        ({"training": {"report_to": ["tensorbord"]}}, "did you mean 'tensorboard'"),
        ({"loss": "softmax_ce", "training": {"decision_rule": "tuned"}}, "no thresholds to tune"),
        ({"training": {"decision_rule": "tuned", "tune_thresholds": None}}, "tune_thresholds"),
        (
            {
                "training": {
                    "decision_rule": "tuned",
                    "metric": "top1_accuracy",
                    "tune_thresholds": "auto",
                }
            },
            "no thresholds are tuned for training.metric 'top1_accuracy'",
        ),
        ({"data": {"labels": ["anger", "joy"]}}, "data.labels: .*label_format: columns"),
    ],
)
def test_values_invalid_by_meaning_name_the_key(tmp_path, sections, message):
    raw = sample_run_config(tmp_path)
    for name, values in sections.items():
        raw[name] = values  # whole sections: a new component drops the old one's arguments
        if name in ("training", "data") and isinstance(values, dict):
            raw[name] = {**sample_run_config(tmp_path)[name], **values}
    text = error_of(raw)
    assert text.startswith("run.yaml: ") and "\n" not in text
    assert re.search(message, text), text


def test_a_misspelt_key_or_name_suggests_the_closest(tmp_path):
    assert "did you mean 'epochs'" in error_of(sample_run_config(tmp_path, training={"epoch": 1}))
    raw = {**sample_run_config(tmp_path), "optimiser": {"name": "adamw"}}
    assert "did you mean 'optimizer'" in error_of(raw)
    raw = {**sample_run_config(tmp_path), "head": "textcn"}
    assert "did you mean 'textcnn'" in error_of(raw)
    raw = {**sample_run_config(tmp_path), "optimizer": {"name": "adamw", "learning_rat": 1.0}}
    assert "did you mean 'learning_rate'" in error_of(raw)


def test_every_component_accepts_its_defaults_at_config_time():
    from xtune.config import registries

    for section, registry in registries().items():
        if section == "encoder":
            continue  # encoders load weights; the config checks their types and files only
        for name in registry.names():
            registry.check(name, {})


def test_max_positions_is_read_without_loading_weights(tmp_path):
    from xtune.encoders.positions import max_positions

    hf, tf1, preset = (tmp_path / name for name in ("hf", "tf1", "preset"))
    for folder in (hf, tf1, preset):
        folder.mkdir()
    (hf / "config.json").write_text('{"max_position_embeddings": 514}', encoding="utf-8")
    (tf1 / "bert_config.json").write_text('{"max_position_embeddings": 256}', encoding="utf-8")
    (preset / "config.json").write_text('{"config": {"max_sequence_length": 128}}', "utf-8")
    assert max_positions({"name": "hf", "path": str(hf)}) == 514
    assert max_positions({"name": "tf1", "path": str(tf1)}) == 256
    assert max_positions({"name": "preset", "path": str(preset)}) == 128
    assert max_positions({"name": "random", "vocabulary": "v.txt"}) == 512
    assert max_positions({"name": "random", "max_sequence_length": 64}) == 64
    assert max_positions({"name": "minilm-l6"}) == 512
    assert max_positions({"name": "hf", "path": str(tmp_path / "missing")}) is None
    assert max_positions({"name": "someday"}) is None
    (hf / "config.json").write_text("{not json", encoding="utf-8")
    assert max_positions({"name": "hf", "path": str(hf)}) is None


def test_roberta_positions_leave_out_the_padding_offset_and_layers_are_read(tmp_path):
    from xtune.encoders.positions import max_positions, num_layers

    config = {"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1}
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 12}), "utf-8")
    spec = {"name": "hf", "path": str(tmp_path)}
    assert (max_positions(spec), num_layers(spec)) == (512, 12)
    assert num_layers({"name": "random"}) == 2 and num_layers({"name": "minilm-l6"}) == 6


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"head": {"name": "multi_layer"}}, "head.last_layers: 4 is more than .* layers .2."),
        ({"finetune": {"train_top_layers": 3}}, "finetune.train_top_layers: 3 is more than"),
        ({"finetune": {"reinit_top_layers": 5}}, "finetune.reinit_top_layers: 5 is more than"),
    ],
)
def test_layer_counts_beyond_the_encoders_are_config_errors(tmp_path, sections, message):
    assert re.search(message, error_of({**sample_run_config(tmp_path), **sections}))
