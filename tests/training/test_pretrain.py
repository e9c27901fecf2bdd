"""`xtune pretrain CONFIG`: a one-task mlm run on a tiny random encoder that prints and saves
held-out masked-LM accuracy and perplexity before and after, and writes the encoder and its
masked-LM head through the Hugging Face folder writer; one-line errors for other configs."""

from __future__ import annotations

import dataclasses
import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO
from tests.reliability.helpers import assert_user_error, run_cli
from tests.tasks.test_mlm import mlm_config
from xtune.config import load_run_config
from xtune.data.corpus import read_corpus_splits
from xtune.training.pretrain import PRETRAIN_FILE, pretrain_config
from xtune.training.trainer import INITIAL_METRICS_FILE, initial_metrics


def write_config(tmp_path: Path, **training) -> Path:
    raw = mlm_config(tmp_path)
    raw["training"].update(epochs=3, checkpoints=True, **training)
    raw["data"]["trim_vocabulary"] = True  # the folder holds the full vocabulary again
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_pretrain_writes_held_out_metrics_before_and_after(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(["pretrain", write_config(tmp_path), "--run-dir", run], capsys)
    assert code == 0, err
    record = json.loads((run / PRETRAIN_FILE).read_text(encoding="utf-8"))
    before, after = record["metrics"]["before"], record["metrics"]["after"]
    assert set(before) == set(after) == {"mlm_accuracy", "perplexity", "mlm_loss"}
    assert after["mlm_loss"] < before["mlm_loss"]
    assert after["perplexity"] == pytest.approx(math.exp(after["mlm_loss"]))
    assert "held-out masked-LM metrics (dev)" in out and "dev before training: lm" in out
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert summary["initial"]["lm.mlm_loss"] == pytest.approx(before["mlm_loss"])
    history = json.loads((run / "history.json").read_text(encoding="utf-8"))
    losses = [epoch["val_lm.mlm_loss"] for epoch in history]
    assert record["metrics"]["best_epoch"] == 1 + int(np.argmin(losses))  # kept by mlm_loss
    budget = record["budget"]
    assert budget["epochs"] == 3 and budget["steps"] >= 3 and budget["sequences"] > 0
    assert record["corpus"]["train"]["documents"] + record["corpus"]["dev"]["documents"] == 96
    assert record["hf_folder"] == str(run / "hf_model")
    check_written_folder(run / "hf_model", run)
    provenance = json.loads((run / "hf_model" / "xtune_pretraining.json").read_text("utf-8"))
    assert provenance["provenance"] == record


def check_written_folder(folder: Path, run: Path) -> None:
    """The folder loads as `encoder: {name: hf}` over the full vocabulary, with the run's kept
    encoder weights (the trimmed vocabulary's rows at their full ids) and its head."""
    from safetensors.numpy import load_file

    from xtune.encoders import load_encoder
    from xtune.tasks.run_folder import load_run

    written = load_encoder({"name": "hf", "path": str(folder)})
    loaded = load_run(run)
    trained, kept = loaded.encoder, loaded.encoder.tokenizer.kept_ids
    assert written.tokenizer.vocabulary_size == trained.tokenizer.inner.vocabulary_size
    for ours, theirs in zip(written.backbone.weights, trained.backbone.weights, strict=True):
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        if ours.shape != theirs.shape:  # the word embedding: the kept rows
            ours = ours[kept]
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    tensors = load_file(str(folder / "model.safetensors"))
    head = loaded.graph.model.get_layer("lm__masked_lm")
    bias = np.asarray(head.weights[0])
    np.testing.assert_allclose(tensors["cls.predictions.bias"][kept], bias, atol=1e-6)


def test_pretrain_refuses_a_config_without_one_mlm_task(tmp_path, capsys):
    raw = mlm_config(tmp_path)
    raw["tasks"]["lm"]["type"] = "classification"
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    code, _, err = run_cli(["pretrain", path], capsys)
    assert_user_error(code, err, "train.yaml: tasks: xtune pretrain trains one task of type mlm")


def test_a_missing_corpus_column_is_one_line(tmp_path, capsys):
    raw = mlm_config(tmp_path)
    raw["tasks"]["lm"]["mlm"] = {"columns": ["text", "body"]}
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    code, _, err = run_cli(["pretrain", path], capsys)
    assert_user_error(code, err, "corpus.csv: column 'body' (from tasks.lm.mlm.columns)")


def test_a_taken_output_folder_is_refused_before_training(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine", encoding="utf-8")
    run = tmp_path / "run"
    command = ["pretrain", write_config(tmp_path), "--output", taken, "--run-dir", run]
    code, _, err = run_cli(command, capsys)
    assert_user_error(code, err, f"{taken}: the folder exists and is not empty")
    assert not run.exists()  # nothing trained
    assert (taken / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_the_example_config_reads_its_corpus():
    config, task = pretrain_config(load_run_config(REPO / "experiments" / "pretrain_example.yaml"))
    assert config.tasks[task].metric == "mlm_loss"  # kept by the held-out loss
    settings = config.tasks[task]
    data = dataclasses.replace(settings.data, root=str(REPO))
    splits = read_corpus_splits(data, settings.mlm, "tasks.corpus.mlm")
    assert len(splits["train"]) > len(splits["dev"]) > 0


@pytest.mark.parametrize("name", ["pretrain_appeal_tapt.yaml", "pretrain_chinese_dapt.yaml"])
def test_the_appeal_study_configs_hold_out_the_classification_dev_rows(name):
    """The issue-26 pre-training configs parse as one mlm task that holds out the appeal
    classification's dev rows (their data lives in ../shared, not read here)."""
    config, task = pretrain_config(load_run_config(REPO / "experiments" / name))
    settings = config.tasks[task]
    assert settings.mlm.dev_split == "labels" and settings.mlm.whole_words
    assert (settings.data.labels, settings.data.dev_fraction) == ("一级分类", 0.2)
    grid = yaml.safe_load((REPO / "experiments" / "appeal_pretraining.yaml").read_text("utf-8"))
    assert grid["vars"]["appeal_data"]["dev_fraction"] == settings.data.dev_fraction
    assert grid["base"]["data"]["split_seed"] == settings.data.split_seed


def test_a_resumed_run_reports_the_metrics_its_start_had(tmp_path):
    folder = types.SimpleNamespace(path=tmp_path)
    stored = {"lm": {"mlm_accuracy": 0.1, "mlm_loss": 2.0, "perplexity": 7.4}}
    (tmp_path / INITIAL_METRICS_FILE).write_text(json.dumps(stored), encoding="utf-8")
    assert initial_metrics(None, folder, None, resume=True) == stored
