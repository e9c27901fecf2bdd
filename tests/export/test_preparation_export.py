"""`data.prepare` end to end: a run trained on prepared texts gives the same token ids for the
same raw text in training, in `xtune predict` on its run folder, and in its SavedModel, whose
graph runs the preparation; the run folder and the export record it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.export.conftest import CHARACTERS, LABELS, tiny_config

TEMPLATES = ("尊敬的领导您好！", "恳请有关部门尽快处理，谢谢！")
PREPARE = {
    "width": "ascii",
    "control_characters": True,
    "whitespace": "collapse",
    "boilerplate": {"share": 0.1, "min_rows": 3},
    "duplicates": "drop",
}


def raw_rows(count: int, seed: int) -> list[dict[str, str]]:
    """Bodies with the templates, full-width letters, zero-width spaces and line breaks."""
    rng = random.Random(seed)

    def sentence() -> str:
        return "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(4, 12))) + "。"

    rows = []
    for index in range(count):
        parts = [sentence() for _ in range(rng.randint(1, 4))]
        if index % 2:
            parts.insert(0, TEMPLATES[0])
        if index % 3:
            parts.append("\r\n" + TEMPLATES[1])
        parts.insert(1, rng.choice(["ＰＭ２５", "\u200b", "  \u3000", "ＯＫ"]))
        rows.append(
            {
                "body": "".join(parts),
                "title": TEMPLATES[0] + "".join(rng.choice(CHARACTERS) for _ in range(3)),
                "labels": rng.choice(LABELS),
            }
        )
    rows[7] = dict(rows[3])  # a duplicated train row: dropped
    return rows


@pytest.fixture(scope="module")
def prepared_run(tmp_path_factory) -> tuple[Path, dict]:
    from xtune.config import parse_run_config
    from xtune.training.trainer import train

    folder = tmp_path_factory.mktemp("prepared")
    rows = raw_rows(60, seed=0)
    pd.DataFrame(rows[:44]).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(rows[44:]).to_csv(folder / "dev.csv", index=False)
    raw = tiny_config(folder)
    raw["data"]["prepare"] = PREPARE
    # Tuned thresholds sit on dev scores, where padding round-off may flip a prediction.
    raw["training"]["decision_rule"] = "default"
    train(parse_run_config(raw), run_dir=folder / "run")
    return folder / "run", raw


def dev_texts(folder: Path) -> tuple[list[str], list[str]]:
    frame = pd.read_csv(folder / "dev.csv", dtype=str, keep_default_na=False)
    return frame["body"].str.strip().tolist(), frame["title"].str.strip().tolist()


def unpadded(inputs: dict) -> list[list[int]]:
    masks = np.asarray(inputs["padding_mask"]).astype(bool)
    ids = np.asarray(inputs["token_ids"])
    return [row[mask].tolist() for row, mask in zip(ids, masks, strict=True)]


def test_the_run_folder_records_the_learned_preparation(prepared_run):
    run_dir, _ = prepared_run
    record = json.loads((run_dir / "preparation.json").read_text(encoding="utf-8"))
    # Learned after the width step: the full-width comma is a comma.
    assert set(record["tasks"]["default"]["sentences"]) == {
        "尊敬的领导您好",
        "恳请有关部门尽快处理,谢谢",
    }
    report = json.loads((run_dir / "preparation_report.json").read_text(encoding="utf-8"))
    train = report["default"]["splits"]["train"]
    assert (train["rows"], train["duplicate_rows_dropped"], train["rows_kept"]) == (44, 1, 43)
    assert train["sentences_removed"] > 44  # the templates of bodies and titles
    assert report["default"]["splits"]["dev"]["rows"] == 16


def test_training_and_predict_give_the_same_ids_for_the_same_raw_text(prepared_run):
    from xtune.config import parse_run_config
    from xtune.export.saved_model import load_float32_run
    from xtune.tasks.run_folder import task_inputs
    from xtune.training.trainer import prepare_data

    run_dir, raw = prepared_run
    run = load_float32_run(run_dir)
    trained = prepare_data(parse_run_config(raw), run.encoder).tasks["default"]
    dev = trained.splits["dev"].sides[0]
    bounds = zip(dev.row_splits[:-1], dev.row_splits[1:], strict=True)
    training_ids = [dev.token_ids[start:end].tolist() for start, end in bounds]
    texts, titles = dev_texts(run_dir.parent)
    assert unpadded(task_inputs(run, "default", texts, titles)) == training_ids
    # The templates are gone from what the model saw: the ids of the raw text differ.
    plain = run.text_encoders["default"]
    import tensorflow as tf

    raw_ids = plain(tf.constant(texts), tf.constant(titles))["token_ids"].to_list()
    assert raw_ids != training_ids


def test_the_export_prepares_raw_text_in_its_graph(prepared_run, tmp_path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    from xtune.export.predict import open_predictor
    from xtune.export.saved_model import export_run, load_float32_run
    from xtune.tasks.run_folder import task_inputs

    run_dir, _ = prepared_run
    export = export_run(run_dir, tmp_path / "export")  # its check compares with the run
    texts, titles = dev_texts(run_dir.parent)
    loaded = tf.saved_model.load(str(export.path))
    served = loaded.signatures["tokenize"](text=tf.constant(texts), text_pair=tf.constant(titles))
    run = load_float32_run(run_dir)
    assert unpadded(served) == unpadded(task_inputs(run, "default", texts, titles))
    from_run = open_predictor(run_dir).predict(texts, titles)
    from_export = open_predictor(export.path).predict(texts, titles)
    np.testing.assert_allclose(from_export["probabilities"], from_run["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(from_export["predictions"], from_run["predictions"])
    metadata = json.loads((export.path / "export.json").read_text(encoding="utf-8"))
    preparation = metadata["tasks"]["default"]["preparation"]
    assert preparation["in_graph"] and preparation["boilerplate_sentences"] == 2
    assert preparation["steps"][0] == "width: ascii"
    assets = json.loads((export.path / "assets" / "preparation.json").read_text("utf-8"))
    assert len(assets["tasks"]["default"]["sentences"]) == 2
    card = (export.path / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "## Text preparation" in card and "inside the graph" in card
    served = served_in_a_fresh_process(export.path, texts, titles)
    assert served["modules"] == [False, False]  # neither xtune nor keras_hub
    np.testing.assert_allclose(served["probabilities"], from_run["probabilities"], atol=1e-5)


SERVE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1])
texts, titles = json.loads(sys.stdin.read())
serve = model.signatures["serving_default"]
outputs = serve(text=tf.constant(texts), text_pair=tf.constant(titles))
print(json.dumps({"probabilities": outputs["probabilities"].numpy().tolist(),
                  "modules": ["xtune" in sys.modules, "keras_hub" in sys.modules]}))
"""


def served_in_a_fresh_process(export: Path, texts: list[str], titles: list[str]) -> dict:
    """The export's outputs in a process that imports only tensorflow and tensorflow_text:
    the preparation's sentence table and ops load without xtune."""
    import os
    import subprocess
    import sys

    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    environment.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", SERVE, str(export)],
        input=json.dumps([texts, titles]),
        capture_output=True,
        text=True,
        env=environment,
        cwd=export.parent,
        check=True,
        timeout=300,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
