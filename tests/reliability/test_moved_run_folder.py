"""A multi-task run folder moved elsewhere, its encoder vocabulary and data files deleted,
still loads and predicts: everything it needs lives inside it."""

from __future__ import annotations

import shutil

import pandas as pd
import yaml

from tests.conftest import TINY_VOCAB, tiny_encoder_spec
from tests.reliability.helpers import run_cli
from tests.tasks.task_data import (
    multitask_config,
    paraphrase_rows,
    sentiment_rows,
    write_task_files,
)


def test_a_moved_multitask_run_folder_loads_and_predicts(tmp_path, capsys):
    from xtune.tasks.run_folder import load_run

    source = tmp_path / "source"
    source.mkdir()
    vocabulary = shutil.copy(TINY_VOCAB, source / "vocab.txt")
    tasks = {
        "sentiment": {
            "data": write_task_files(source, "sentiment", sentiment_rows, 32, 16),
            "loss": "softmax_ce",
        },
        "paraphrase": {
            "type": "pair_classification",
            "data": write_task_files(source, "paraphrase", paraphrase_rows, 32, 16),
        },
    }
    raw = multitask_config(source, tasks, epochs=1, steps_per_epoch=2)
    raw["encoder"] = tiny_encoder_spec(vocabulary=str(vocabulary))
    config = source / "run.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    code, _, err = run_cli(["train", config, "--run-dir", source / "run"], capsys)
    assert code == 0, err
    inputs = tmp_path / "input.csv"
    shutil.copy(tasks["sentiment"]["data"]["dev"], inputs)

    moved = tmp_path / "elsewhere" / "run"
    shutil.move(source / "run", moved)
    shutil.rmtree(source)  # the vocabulary, the data and the config are gone

    assert sorted(task.name for task in load_run(moved).tasks) == ["paraphrase", "sentiment"]
    output = tmp_path / "out.csv"
    argv = ["predict", moved, "--task", "sentiment", "--input", inputs, "--output", output]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert len(pd.read_csv(output)) == len(pd.read_csv(inputs))
