"""`export_run`: a run folder -> a checked TensorFlow SavedModel that takes raw strings.

Layout of an export folder (`xtune export RUN OUT`):

```
OUT/saved_model.pb, fingerprint.pb, variables/   the SavedModel (weights stored once)
OUT/assets/labels.txt                            label names, one a line, in output order
OUT/assets/vocab.txt, ...                        the tokenizer's files (for id clients)
OUT/assets/export.json                           the metadata below
OUT/export.json                                  the same, plus sizes and the export check
```

Signatures (see `serving_module.py` for the outputs):

- `serving_default(text)` or, for runs trained on pairs, `serving_default(text, text_pair)`:
  batches of raw `tf.string`, tokenized in-graph by the run's own `TextEncoder`;
- `tokenize(text[, text_pair])`: the padded `token_ids`, `segment_ids` (for encoders that take
  them), `padding_mask`;
- `serving_token_ids(token_ids, [segment_ids,] padding_mask)`: the classifier on ids.

Loaders need `tensorflow` and `tensorflow-text` only: `import tensorflow_text` before
`tf.saved_model.load` (TF Serving needs a build with the TF-Text ops, and OUT to be a
numbered version folder such as `models/appeals/1`). A server without
TF-Text ops cannot load any graph that contains them, so `export_token_id_model` writes a
separate SavedModel with only `serving_token_ids`; its clients tokenize with the tokenizer files
and the `tokenizer` settings of `export.json`.

The folder is written next to OUT under a temporary name, reloaded and checked against the
in-framework model, and only then renamed to OUT: a refused export leaves nothing behind.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune.export import ExportError
from xtune.export.serving_module import TextServingModule, TokenIdServingModule
from xtune.export.trained_run import TrainedRun, load_trained_run
from xtune.run_folder import WEIGHTS_FILE, check_run_folder

EXPORT_FILE = "export.json"
EXPORT_FORMAT = "xtune-saved-model"
FORMAT_VERSION = 1
# Served and in-framework probabilities run the same ops on the same ids; anything beyond
# float32 round-off means the export is broken.
CHECK_TOLERANCE = 1e-5
CHECK_DEV_ROWS = 8
# Fixed check inputs: Chinese, English with accents and case, full-width characters, control
# characters, an empty string, and a text longer than any max length (exercises truncation).
CHECK_TEXTS = [
    "小区楼下的KTV每天唱到凌晨两点，噪音严重扰民，希望有关部门尽快处理。",
    "Héllo WORLD, the new iPhone cafe is open 2018!",
    "ＰＭ２.５超标，\t工厂排放黑烟\n请环保局查一下",
    "",
    "我们是北京的居民。" * 40 + "最后一句话说明真正的问题。",
    "what can 你 do？",
]
CHECK_PAIRS = ["噪音扰民", "hello", "环境保护", "", "长文本的标题" * 30, "问题"]


@dataclass
class ExportResult:
    path: Path
    metadata: dict[str, Any]

    @property
    def size_bytes(self) -> dict[str, int]:
        return self.metadata["size_bytes"]


def export_run(
    run_dir: str | Path | TrainedRun, out_dir: str | Path, force: bool = False
) -> ExportResult:
    """Export a run as a SavedModel whose `serving_default` takes raw strings; checked.

    Args:
        run_dir: a finished run folder, or a `TrainedRun` already loaded (in float32) from one.
        out_dir: the export folder to create.
        force: replace `out_dir` when it holds an earlier export (or is empty).
    """
    return _export(run_dir, out_dir, force, TextServingModule, check_text_export)


def export_token_id_model(
    run_dir: str | Path | TrainedRun, out_dir: str | Path, force: bool = False
) -> ExportResult:
    """Export a run as a SavedModel with only `serving_token_ids`: loadable without TF-Text."""
    return _export(run_dir, out_dir, force, TokenIdServingModule, check_token_id_export)


def _export(
    run_or_dir: str | Path | TrainedRun,
    out_dir: str | Path,
    force: bool,
    module_class: type[TokenIdServingModule],
    check: Callable[[Any, TrainedRun], dict[str, Any]],
) -> ExportResult:
    started = time.perf_counter()
    loaded = isinstance(run_or_dir, TrainedRun)
    run_dir = check_run_folder(run_or_dir.path if loaded else run_or_dir).resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    check_output_folder(out_dir, run_dir, force)
    run = run_or_dir if loaded else load_float32_run(run_dir)
    metadata = export_metadata(run, module_class)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        staging = partial / "staging"
        staging.mkdir()
        asset_files = write_asset_files(staging, run, metadata)
        module = module_class(run, metadata, asset_files)
        saved = partial / "saved_model"
        tf.saved_model.save(module, str(saved), signatures=module.signatures())
        metadata["check"] = check(tf.saved_model.load(str(saved)), run)
        metadata["size_bytes"] = measure_sizes(saved, run_dir / WEIGHTS_FILE, run.model)
        metadata["export_seconds"] = round(time.perf_counter() - started, 3)
        (saved / EXPORT_FILE).write_text(
            json.dumps(metadata, indent=1, ensure_ascii=False), encoding="utf-8"
        )
        check_output_folder(out_dir, run_dir, force)  # again: it may have appeared meanwhile
        replace_folder(saved, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    sizes = metadata["size_bytes"]
    print(
        f"xtune export: {out_dir}: {format_bytes(sizes['total'])} on disk (variables "
        f"{format_bytes(sizes['variables'])}, graph {format_bytes(sizes['saved_model_pb'])}); "
        f"the run's {WEIGHTS_FILE} is {format_bytes(sizes['run_weights_file'])}; "
        f"check passed on {metadata['check']['strings']} strings (max |diff| "
        f"{metadata['check']['max_abs_difference']:.1e})",
        flush=True,
    )
    return ExportResult(out_dir, metadata)


# ---------------------------------------------------------------- refusals and the folder


def check_output_folder(out_dir: Path, run_dir: Path, force: bool) -> None:
    """Refuse an existing OUT without --force, and with --force anything but an old export."""
    if out_dir == run_dir or out_dir in run_dir.parents or run_dir in out_dir.parents:
        raise ExportError(
            f"{out_dir}: the export folder must not be, contain or lie inside the run folder "
            f"{run_dir} (a finished run folder is never changed)"
        )
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not force:
        raise FileExistsError(f"{out_dir}: already exists; pass --force to replace it")
    is_empty = out_dir.is_dir() and not any(out_dir.iterdir())
    if not (is_empty or is_xtune_export(out_dir)):
        raise ExportError(
            f"{out_dir}: --force only replaces an earlier xtune export or an empty folder, and "
            f"this is neither (no saved_model.pb with an {EXPORT_FILE} of format "
            f"{EXPORT_FORMAT!r}); remove it yourself or choose another path"
        )


def is_xtune_export(folder: Path) -> bool:
    """Whether `xtune export` wrote `folder`: the only non-empty folder `--force` deletes."""
    try:
        metadata = json.loads((folder / EXPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        (folder / "saved_model.pb").is_file()
        and isinstance(metadata, dict)
        and metadata.get("format") == EXPORT_FORMAT
    )


def replace_folder(source: Path, target: Path) -> None:
    """Rename `source` to `target`; an old `target` is moved aside first, then deleted."""
    if not target.exists():
        os.replace(source, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    os.replace(target, old)
    try:
        os.replace(source, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_float32_run(run_dir: Path) -> TrainedRun:
    """Load the run in float32 whatever the global policy: serving numbers must not drift."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return load_trained_run(run_dir)
    finally:
        keras.mixed_precision.set_global_policy(policy)


# ---------------------------------------------------------------- metadata and assets


def xtune_version() -> str:
    try:
        return importlib.metadata.version("xtune")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def export_metadata(run: TrainedRun, module_class: type) -> dict[str, Any]:
    """What a client needs to call the model and read its outputs (export.json)."""
    loss = run.loss
    decision_rule = "top1" if loss.default_threshold is None else "threshold"
    thresholds = None
    if decision_rule == "threshold":
        thresholds = [float(t) for t in np.broadcast_to(run.decision_thresholds, len(run.labels))]
    data = run.config["data"]
    settings = run.text_encoder.settings()
    text_inputs = module_class.takes_text
    return {
        "format": EXPORT_FORMAT,
        "format_version": FORMAT_VERSION,
        "xtune_version": xtune_version(),
        "tensorflow_version": tf.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(run.path),
        "signatures": list(module_class.signature_names),
        "inputs": ["text", "text_pair"] if run.has_pair else ["text"],
        "text_inputs": text_inputs,
        "requires": ["tensorflow", "tensorflow-text"] if text_inputs else ["tensorflow"],
        "text_column": data["text"],
        "text_pair_column": data.get("text_pair") or "",
        "has_pair": run.has_pair,
        "labels": list(run.labels),
        "num_labels": len(run.labels),
        "loss": run.config["loss"],
        "multi_label": bool(loss.multi_label),
        "decision_rule": decision_rule,
        "thresholds": thresholds,
        "thresholds_tuned": run.thresholds is not None,
        "tokenizer": {**settings, "vocabulary_size": run.text_encoder.tokenizer.vocabulary_size},
        "token_id_inputs": list(run.text_encoder.input_names),
        "max_length": settings["max_length"],
        "truncation": settings["truncation"],
        "head_tokens": settings["head_tokens"],
        "lowercase": settings.get("lowercase"),
    }


def write_asset_files(folder: Path, run: TrainedRun, metadata: dict[str, Any]) -> list[Path]:
    files = {
        "labels.txt": "".join(f"{name}\n" for name in run.labels),
        EXPORT_FILE: json.dumps(metadata, indent=1, ensure_ascii=False),
    }
    run.text_encoder.tokenizer.save(folder)  # vocab.txt for BERT; the family's own files
    paths = sorted(path for path in folder.iterdir() if path.name not in files)
    for name, text in files.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def measure_sizes(saved: Path, weights_file: Path, model: keras.Model) -> dict[str, int]:
    def size_of(path: Path) -> int:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    return {
        "total": size_of(saved),
        "variables": size_of(saved / "variables"),
        "saved_model_pb": size_of(saved / "saved_model.pb"),
        "assets": size_of(saved / "assets"),
        "weight_values": int(sum(np.asarray(w).nbytes for w in model.get_weights())),
        "run_weights_file": size_of(weights_file),
    }


def format_bytes(count: int) -> str:
    for unit in ("B", "KB", "MB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.2f} GB"


# ---------------------------------------------------------------- the export check


def check_inputs(run: TrainedRun) -> tuple[list[str], list[str] | None]:
    """The fixed check strings plus the first rows of the run's dev file when it is readable."""
    texts, pairs = list(CHECK_TEXTS), list(CHECK_PAIRS)
    try:
        from xtune.config_schema import DataConfig
        from xtune.data.examples import read_examples

        data_config = DataConfig(**run.config["data"])
        if data_config.dev:
            dev = read_examples(data_config, data_config.dev)
            texts += dev.texts[:CHECK_DEV_ROWS]
            pairs += (dev.pairs or [])[:CHECK_DEV_ROWS]
    except (OSError, TypeError, ValueError):
        pass  # the dev file is optional here: the fixed strings suffice
    return texts, pairs if run.has_pair else None


def reference_outputs(
    run: TrainedRun, texts: list[str], pairs: list[str] | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """In-framework ids and scores: the training `TextEncoder` and the Keras model."""
    encoded = run.text_encoder(tf.constant(texts), None if pairs is None else tf.constant(pairs))
    inputs = {k: np.asarray(v) for k, v in run.text_encoder.pad(encoded).items()}
    logits = run.model.predict_on_batch(inputs)
    return inputs, np.asarray(run.loss.scores(logits), dtype=np.float32)


def compare_outputs(
    served: dict[str, tf.Tensor], reference: np.ndarray, run: TrainedRun, what: str
) -> float:
    probabilities = served["probabilities"].numpy()
    if probabilities.shape != reference.shape:
        raise ExportError(
            f"export check: {what} returned probabilities of shape {probabilities.shape}, "
            f"expected {reference.shape}"
        )
    difference = float(np.max(np.abs(probabilities - reference)))
    if not difference <= CHECK_TOLERANCE:
        raise ExportError(
            f"export check: {what} probabilities differ from the in-framework model's by up to "
            f"{difference:.3g} (tolerance {CHECK_TOLERANCE:g})"
        )
    expected = np.asarray(run.loss.decide(probabilities, run.thresholds))
    if not np.array_equal(served["predictions"].numpy(), expected):
        raise ExportError(
            f"export check: {what} predictions do not follow the run's decision rule and thresholds"
        )
    names = [[n.decode() for n in row if n] for row in served["labels"].numpy()]
    expected_names = [sorted(run.labels[i] for i in np.flatnonzero(row)) for row in expected]
    if [sorted(row) for row in names] != expected_names:
        raise ExportError(f"export check: {what} label names do not match its predictions")
    return difference


def check_token_id_export(loaded: Any, run: TrainedRun) -> dict[str, Any]:
    texts, pairs = check_inputs(run)
    inputs, reference = reference_outputs(run, texts, pairs)
    served = loaded.signatures["serving_token_ids"](
        **{name: tf.constant(value, tf.int32) for name, value in inputs.items()}
    )
    difference = compare_outputs(served, reference, run, "serving_token_ids")
    return {"strings": len(texts), "max_abs_difference": difference, "tolerance": CHECK_TOLERANCE}


def check_text_export(loaded: Any, run: TrainedRun) -> dict[str, Any]:
    """Reloaded probabilities must equal the in-framework ones on the check strings.

    The token ids are not compared separately: a different id changes the probabilities far
    beyond the tolerance (tests/export compare the ids too).
    """
    texts, pairs = check_inputs(run)
    inputs, reference = reference_outputs(run, texts, pairs)
    feed = {"text": tf.constant(texts)}
    if pairs is not None:
        feed["text_pair"] = tf.constant(pairs)
    difference = compare_outputs(
        loaded.signatures["serving_default"](**feed), reference, run, "serving_default"
    )
    token_id_difference = compare_outputs(
        loaded.signatures["serving_token_ids"](
            **{name: tf.constant(value, tf.int32) for name, value in inputs.items()}
        ),
        reference,
        run,
        "serving_token_ids",
    )
    return {
        "strings": len(texts),
        "max_abs_difference": max(difference, token_id_difference),
        "tolerance": CHECK_TOLERANCE,
    }
