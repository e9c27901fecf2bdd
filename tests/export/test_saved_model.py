"""Exports reload with only tensorflow (+ tensorflow_text) and serve the in-framework numbers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.export.conftest import HEAD_TOKENS, MAX_LENGTH
from tests.task_view import served_thresholds

# The second text is far longer than MAX_LENGTH tokens, so head+tail truncation applies.
LONG_TEXT = "我们是北京的居民，今年空气很好。" * 5 + "最后是真的问题。"
TEXTS = ["北京的空气很好", LONG_TEXT, "Héllo WORLD, the iPhone cafe！", "这里问题是什么？"]
PAIRS = ["标题", "长的标题" * 12, "hello", "问"]

# Runs in a fresh interpreter: tensorflow only for the token-id export, then tensorflow_text
# for the raw-string exports; neither xtune nor keras_hub may be imported.
SERVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    jobs = json.loads(open(sys.argv[1], encoding="utf-8").read())
    results = {}
    ids = jobs["token_ids"]
    token_model = tf.saved_model.load(ids["dir"])
    served = token_model.signatures["serving_token_ids"](
        **{k: tf.constant(v, tf.int32) for k, v in ids["inputs"].items()}
    )
    results["ids/probabilities"] = served["probabilities"].numpy()
    results["ids/loaded_without_tensorflow_text"] = np.array(
        "tensorflow_text" not in sys.modules
    )
    import tensorflow_text  # noqa: F401

    for name, job in jobs["text"].items():
        model = tf.saved_model.load(job["dir"])
        feed = {k: tf.constant(v, tf.string) for k, v in job["feed"].items()}
        for signature in ("serving_default", "tokenize"):
            for key, value in model.signatures[signature](**feed).items():
                results[f"{name}/{key}"] = value.numpy()
        for key, value in model.metadata().items():
            results[f"{name}/metadata/{key}"] = value.numpy()
    results["modules"] = np.array(sorted(m for m in sys.modules if "." not in m))
    np.savez(sys.argv[2], **results)
    """
)


@pytest.fixture(scope="module")
def serving_process(
    load_trained_run, pair_run, pair_export, single_export, token_id_export, tmp_path_factory
):
    """The fresh interpreter running SERVE_SCRIPT, started early: it overlaps `in_framework`."""
    run = load_trained_run(pair_run)
    encoded = run.text_encoder.pad(run.text_encoder(tf.constant(TEXTS), tf.constant(PAIRS)))
    jobs = {
        "token_ids": {
            "dir": str(token_id_export),
            "inputs": {k: v.numpy().tolist() for k, v in encoded.items()},
        },
        "text": {
            "pair": {"dir": str(pair_export), "feed": {"text": TEXTS, "text_pair": PAIRS}},
            "single": {"dir": str(single_export), "feed": {"text": TEXTS}},
        },
    }
    folder = tmp_path_factory.mktemp("serve")
    (folder / "jobs.json").write_text(json.dumps(jobs, ensure_ascii=False), encoding="utf-8")
    (folder / "serve.py").write_text(SERVE_SCRIPT, encoding="utf-8")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    process = subprocess.Popen(
        [sys.executable, str(folder / "serve.py"), str(folder / "jobs.json"), str(folder / "out")],
        cwd=folder,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process, folder / "out.npz"
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def in_framework(serving_process, load_trained_run, pair_run, single_run):
    """Per run kind: the run, the training pipeline's ids (tokenize_examples) and the scores
    of predict_logits."""
    from xtune.data.examples import Examples
    from xtune.data.pipeline import tokenize_examples
    from xtune.training.evaluation import predict_logits, scores_of

    outputs = {}
    for kind, run_dir, pairs in (("pair", pair_run, PAIRS), ("single", single_run, None)):
        run = load_trained_run(run_dir)
        examples = Examples("test", TEXTS, pairs, [[] for _ in TEXTS], list(range(len(TEXTS))))
        split = tokenize_examples(
            examples, run.text_encoder, np.zeros((len(TEXTS), len(run.labels)), np.float32)
        )
        logits = predict_logits(run.model, split, batch_size=2, max_length=MAX_LENGTH)
        outputs[kind] = (run, split, scores_of(run.loss, logits))
    return outputs


@pytest.fixture(scope="module")
def served(serving_process, in_framework):
    """What the fresh interpreter got from the exports (after `in_framework` is computed)."""
    process, results_file = serving_process
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    with np.load(results_file, allow_pickle=True) as results:  # our own file
        return dict(results)


def test_fresh_process_imports_neither_xtune_nor_keras_hub(served):
    modules = set(served["modules"].tolist())
    assert "tensorflow_text" in modules
    assert "xtune" not in modules
    assert "keras_hub" not in modules
    assert served["ids/loaded_without_tensorflow_text"]


@pytest.mark.parametrize("kind", ["pair", "single"])
def test_served_probabilities_and_ids_equal_in_framework(served, in_framework, kind):
    run, split, scores = in_framework[kind]
    probabilities = served[f"{kind}/probabilities"]
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (len(TEXTS), len(run.labels))
    np.testing.assert_allclose(probabilities, scores, rtol=0, atol=1e-5)

    token_ids, segment_ids = split.ragged()
    mask = served[f"{kind}/padding_mask"].astype(bool)
    for row in range(len(TEXTS)):
        served_ids = served[f"{kind}/token_ids"][row][mask[row]]
        assert served_ids.tolist() == token_ids[row].numpy().tolist()
        assert (
            served[f"{kind}/segment_ids"][row][mask[row]].tolist()
            == segment_ids[row].numpy().tolist()
        )
    # The long text (and the long title) were cut to exactly max_length.
    assert mask[1].sum() == MAX_LENGTH

    predictions = served[f"{kind}/predictions"]
    assert predictions.dtype == np.int32
    np.testing.assert_array_equal(predictions, np.asarray(run.loss.decide(scores, run.thresholds)))
    for row, names in enumerate(served[f"{kind}/labels"]):
        chosen = {name.decode() for name in names if name}
        assert chosen == {run.labels[i] for i in np.flatnonzero(predictions[row])}


def test_head_tail_truncation_keeps_the_first_and_last_tokens(served, in_framework):
    run = in_framework["single"][0]
    wordpieces = tf.function(run.text_encoder.tokenize)(tf.constant([LONG_TEXT]))[0].numpy()
    tail = MAX_LENGTH - 2 - HEAD_TOKENS
    assert len(wordpieces) > MAX_LENGTH
    expected = [
        run.text_encoder.cls_id,
        *wordpieces[:HEAD_TOKENS],
        *wordpieces[-tail:],
        run.text_encoder.sep_id,
    ]
    assert served["single/token_ids"][1].tolist() == expected


def test_token_id_export_equals_in_framework_without_tensorflow_text(served, in_framework):
    scores = in_framework["pair"][2]
    np.testing.assert_allclose(served["ids/probabilities"], scores, rtol=0, atol=1e-5)


def test_metadata_travels_inside_and_beside_the_saved_model(served, pair_export, pair_run):
    beside = json.loads((pair_export / "export.json").read_text(encoding="utf-8"))
    inside = json.loads((pair_export / "assets" / "export.json").read_text(encoding="utf-8"))
    labels = json.loads((pair_run / "labels.json").read_text(encoding="utf-8"))["labels"]
    thresholds = served_thresholds(pair_run)
    for metadata in (beside, inside):
        assert metadata["labels"] == labels
        assert metadata["thresholds"] == pytest.approx(thresholds)
        assert metadata["max_length"] == MAX_LENGTH
        assert metadata["truncation"] == "head_tail"
        assert metadata["inputs"] == ["text", "text_pair"]
        assert metadata["xtune_version"]
    assert (pair_export / "assets" / "labels.txt").read_text(encoding="utf-8").split() == labels
    assert [n.decode() for n in served["pair/metadata/labels"]] == labels
    np.testing.assert_allclose(served["pair/metadata/thresholds"], thresholds, rtol=1e-6)
    assert served["pair/metadata/max_length"] == MAX_LENGTH
    assert served["pair/metadata/truncation"] == b"head_tail"
    assert served["pair/metadata/xtune_version"].item().decode() == beside["xtune_version"]


def test_weights_are_stored_once(pair_export):
    sizes = json.loads((pair_export / "export.json").read_text())["size_bytes"]
    # The checkpoint holds the float32 values plus a small index: not twice (keras#23553).
    assert sizes["weight_values"] <= sizes["variables"] < 1.2 * sizes["weight_values"] + 4096


# ---------------------------------------------------------------- refusals


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_incomplete_run_folder_is_refused(pair_run, tmp_path):
    from xtune.export.saved_model import export_run
    from xtune.run_folder import IncompleteRunError

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "labels.json", "vocab.txt"):
        (unfinished / name).write_bytes((pair_run / name).read_bytes())
    out = tmp_path / "exports" / "model"
    with pytest.raises(IncompleteRunError, match="missing encoder.json.*metrics.json"):
        export_run(unfinished, out)
    assert leftovers(tmp_path / "exports") == []


def test_existing_output_is_refused_without_force(pair_run, tmp_path):
    from xtune.cli import main
    from xtune.export.saved_model import ExportError, export_run

    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="pass --force"):
        export_run(pair_run, out)
    assert main(["export", str(pair_run), str(out)]) == 2
    # --force replaces only an earlier export (or an empty folder), never arbitrary files.
    with pytest.raises(ExportError, match="neither"):
        export_run(pair_run, out, force=True)
    assert leftovers(tmp_path) == ["model"]
    assert leftovers(out) == ["keep.txt"]


def test_failed_check_leaves_nothing_and_force_keeps_the_old_export(
    load_trained_run, pair_run, token_id_export, tmp_path, monkeypatch
):
    from xtune.export import saved_model

    out = tmp_path / "model"
    shutil.copytree(token_id_export, out)
    before = (out / "export.json").read_text()

    def failing_check(loaded, run):
        assert "serving_token_ids" in loaded.signatures  # it was saved and reloaded
        raise saved_model.ExportError("export check: probabilities differ (simulated)")

    monkeypatch.setattr(saved_model, "check_token_id_export", failing_check)
    with pytest.raises(saved_model.ExportError, match="simulated"):
        saved_model.export_token_id_model(load_trained_run(pair_run).run, out, force=True)
    assert leftovers(tmp_path) == ["model"]
    assert (out / "export.json").read_text() == before


def test_force_replaces_an_earlier_export(
    load_trained_run, pair_run, token_id_export, tmp_path, monkeypatch
):
    from xtune.export import saved_model

    out = tmp_path / "model"
    shutil.copytree(token_id_export, out)
    (out / "stale.txt").write_text("from the earlier export")
    monkeypatch.setattr(
        saved_model,
        "check_token_id_export",
        lambda loaded, run: {"strings": 0, "max_abs_difference": 0.0},
    )
    result = saved_model.export_token_id_model(load_trained_run(pair_run).run, out, force=True)
    assert result.path == out.resolve()
    assert not (out / "stale.txt").exists()
    assert (out / "saved_model.pb").is_file()
    assert leftovers(tmp_path) == ["model"]


# ---------------------------------------------------------------- the single-task signatures

# Recorded from `xtune export` before the one export for every run (commit 1b95ed5): the
# `structured_input_signature` and `structured_outputs` of each signature of a config
# without `tasks:`, as (shape, dtype) by name; `L` stands for the number of labels.
L = "num_labels"
IDS = ((None, None), tf.int32)
RECORDED_SIGNATURES = {
    "serving_default": (
        {"text": ((None,), tf.string), "text_pair": ((None,), tf.string)},
        {
            "probabilities": ((None, L), tf.float32),
            "predictions": ((None, L), tf.int32),
            "labels": ((None, None), tf.string),
        },
    ),
    "tokenize": (
        {"text": ((None,), tf.string), "text_pair": ((None,), tf.string)},
        {"token_ids": IDS, "segment_ids": IDS, "padding_mask": IDS},
    ),
    "serving_token_ids": (
        {"token_ids": IDS, "segment_ids": IDS, "padding_mask": IDS},
        {
            "probabilities": ((None, L), tf.float32),
            "predictions": ((None, L), tf.int32),
            "labels": ((None, None), tf.string),
        },
    ),
}


def signature_structure(signature) -> tuple[dict, dict]:
    """(inputs, outputs) of a loaded signature as {name: (shape, dtype)}; specs named as keyed."""
    args, inputs = signature.structured_input_signature
    assert args == ()
    structure = []
    for specs in (inputs, signature.structured_outputs):
        assert all(spec.name == name for name, spec in specs.items())
        structure.append({name: (tuple(spec.shape), spec.dtype) for name, spec in specs.items()})
    return structure[0], structure[1]


def expected_structure(name: str, num_labels: int, pair: bool) -> tuple[dict, dict]:
    inputs, outputs = RECORDED_SIGNATURES[name]
    if not pair:
        inputs = {key: value for key, value in inputs.items() if key != "text_pair"}
    outputs = {
        key: (tuple(num_labels if size == L else size for size in shape), dtype)
        for key, (shape, dtype) in outputs.items()
    }
    return inputs, outputs


@pytest.mark.parametrize("kind", ["pair", "single"])
def test_a_one_task_export_keeps_the_recorded_signatures(
    kind, pair_export, single_export, load_trained_run, pair_run
):
    """A config without `tasks:` exports exactly the signatures, input and output names,
    shapes and dtypes it did before runs were lists of tasks."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops for loading)

    loaded = tf.saved_model.load(str(pair_export if kind == "pair" else single_export))
    assert set(loaded.signatures) == set(RECORDED_SIGNATURES)
    num_labels = len(load_trained_run(pair_run).labels)
    for name in RECORDED_SIGNATURES:
        pair = kind == "pair" or name == "serving_token_ids"
        expected = expected_structure(name, num_labels, pair)
        assert signature_structure(loaded.signatures[name]) == expected, name
    metadata = json.loads((pair_export / "export.json").read_text(encoding="utf-8"))
    assert metadata["signatures"] == ["serving_default", "tokenize", "serving_token_ids"]
    assert metadata["default_task"] == "default"
    assert metadata["tasks"]["default"]["signatures"] == {
        "serve": "serving_default",
        "tokenize": "tokenize",
        "token_ids": "serving_token_ids",
    }


FIXTURE_V1 = Path(__file__).parent.parent / "fixtures" / "run_folder_v1"


def test_a_run_folder_from_before_tasks_exports_and_predicts(tmp_path):
    """The committed run folder from before tasks (no tasks.json, a bare thresholds list)
    exports with today's single-task signatures and tuned thresholds, and the export and the
    folder both predict what that code predicted."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops for loading)

    from xtune.export.predict import predict_file
    from xtune.export.saved_model import export_run

    folder = Path(shutil.copytree(FIXTURE_V1, tmp_path / "run"))
    expected = json.loads((folder / "expected_predictions.json").read_text(encoding="utf-8"))
    thresholds = json.loads((folder / "thresholds.json").read_text())["thresholds"]
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))["labels"]
    result = export_run(folder, tmp_path / "export")
    assert result.metadata["thresholds"] == pytest.approx(thresholds)
    assert result.metadata["labels"] == labels
    assert result.metadata["check"]["max_abs_difference"] <= 1e-5
    loaded = tf.saved_model.load(str(result.path))
    for name in RECORDED_SIGNATURES:
        expected_signature = expected_structure(name, len(labels), pair=True)
        assert signature_structure(loaded.signatures[name]) == expected_signature, name
    served = loaded.signatures["serving_default"](
        text=tf.constant(expected["texts"]), text_pair=tf.constant(expected["pairs"])
    )
    probabilities = served["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, expected["probabilities"], atol=1e-5)
    decided = (probabilities > np.asarray(thresholds)).astype(np.int32)
    np.testing.assert_array_equal(served["predictions"].numpy(), decided)

    table = tmp_path / "input.csv"
    pd.DataFrame({"body": expected["texts"], "title": expected["pairs"]}).to_csv(table, index=False)
    for source, model_dir in (("run", folder), ("export", result.path)):
        output = tmp_path / f"{source}.csv"
        predict_file(model_dir, table, output, verbose=0)
        written = pd.read_csv(output, keep_default_na=False)
        columns = [f"prob_{label}" for label in labels]
        np.testing.assert_allclose(
            written[columns].to_numpy(np.float64), expected["probabilities"], atol=2e-6
        )


def test_a_full_disk_while_saving_the_export_is_one_line_and_leaves_nothing(
    pair_run, tmp_path, capsys, monkeypatch
):
    """TensorFlow reports a full disk as an OpError ("No space left on device"), not an
    OSError: still one line, exit 2, no partial folder, no export."""
    from tests.reliability.helpers import assert_user_error, run_cli

    def full_disk(module, path, signatures=None):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{path}/variables/variables.data-00000-of-00001; No space left on device"
        )

    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    out = tmp_path / "exports" / "model"
    code, _, err = run_cli(["export", pair_run, out], capsys)
    assert_user_error(code, err, "disk full while writing", "No space left on device")
    assert not out.exists() and leftovers(tmp_path / "exports") == []
