"""`export_run`: a run folder (one task or many) -> a checked SavedModel that takes raw strings.

Layout of an export folder (`xtune export RUN OUT`):

```
OUT/saved_model.pb, fingerprint.pb, variables/   the SavedModel (weights stored once)
OUT/assets/labels.txt                            the default task's label names, one a line
OUT/assets/vocab.txt, ...                        the tokenizer's files (for id clients)
OUT/assets/export.json                           the metadata below
OUT/assets/preparation.json                      tasks with `data.prepare`: the learned preparation
OUT/export.json                                  the same, plus sizes and the export check
OUT/MODEL_CARD.md                                data, labels, metrics, decision rule, versions
```

Signatures (`serving_module.py` has their inputs and outputs): a config without `tasks:`
has today's `serving_default(text[, text_pair])`, `tokenize` and `serving_token_ids`; a run
with named tasks has, per task `T`, `T`, `T_tokenize`, `T_token_ids` and, for a bi-encoder,
`T_embed`; `serving_default`, `tokenize` and `serving_token_ids` are then the FIRST task's
(the default task), and `embed` is the only bi-encoder's embedding.

Metadata (`export.json`): the default task's record at the top level (`labels`,
`thresholds`, `text_column`, `token_id_inputs`, ..., as single-task exports always had), and
`tasks`: every task's record by name (type, labels, metric, columns, loss, decision rule,
thresholds, inputs, signatures, tokenizer settings, text preparation), which
`xtune predict --task` reads. A task's `preparation` says which `data.prepare` steps its
raw-string signatures run in the graph; token-id clients apply them themselves
(assets/preparation.json, `xtune.data.preparation.TextPreparation.from_dict(...).clean`).

Loaders need `tensorflow` and `tensorflow-text` only: `import tensorflow_text` before
`tf.saved_model.load` (TF Serving needs a build with the TF-Text ops, and OUT to be a
numbered version folder such as `models/appeals/1`). A server without
TF-Text ops cannot load any graph that contains them, so `export_token_id_model` writes a
separate SavedModel with only the token-id signatures; its clients tokenize with the
tokenizer files and the `tokenizer` settings of `export.json`.

The folder is written next to OUT under a temporary name, reloaded and every signature checked
against the in-framework model, and only then renamed to OUT: a refused export leaves nothing
behind.
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune.data.preparation import PREPARATION_FILE, TextPreparation
from xtune.export import ExportError
from xtune.export.model_card import MODEL_CARD_FILE, model_card, rule_values
from xtune.export.serving_module import ServingModule, text_input_names
from xtune.run_folder import WEIGHTS_FILE, check_run_folder
from xtune.tasks.run_folder import LoadedRun, load_run, preparation_json, task_inputs
from xtune.tasks.signatures import (
    EMBED,
    SERVING_DEFAULT,
    TOKEN_IDS,
    TOKENIZE,
    check_task_names,
    task_signature_names,
)

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
    run_dir: str | Path | LoadedRun, out_dir: str | Path, force: bool = False
) -> ExportResult:
    """Export a run (one task or many) as a SavedModel whose signatures take raw strings;
    every signature is checked against the in-framework model.

    Args:
        run_dir: a finished run folder, or a `LoadedRun` already loaded (in float32) from one.
        out_dir: the export folder to create.
        force: replace `out_dir` when it holds an earlier export (or is empty).
    """
    return _export(run_dir, out_dir, force, True, check_text_export)


def export_token_id_model(
    run_dir: str | Path | LoadedRun, out_dir: str | Path, force: bool = False
) -> ExportResult:
    """Export a run as a SavedModel with only the token-id signatures: loadable without
    TF-Text."""
    return _export(run_dir, out_dir, force, False, check_token_id_export)


def _export(
    run_or_dir: str | Path | LoadedRun,
    out_dir: str | Path,
    force: bool,
    text_inputs: bool,
    check: Callable[[Any, LoadedRun], dict[str, Any]],
) -> ExportResult:
    started = time.perf_counter()
    loaded = isinstance(run_or_dir, LoadedRun)
    run_dir = check_run_folder(run_or_dir.path if loaded else run_or_dir).resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    check_output_folder(out_dir, run_dir, force)
    run = served_tasks(run_or_dir if loaded else load_float32_run(run_dir))
    signature_names = run_signature_names(run)
    metadata = export_metadata(run, signature_names, text_inputs)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        staging = partial / "staging"
        staging.mkdir()
        asset_files = write_asset_files(staging, run, metadata)
        module = ServingModule(run, signature_names, metadata, asset_files, text_inputs)
        saved = partial / "saved_model"
        save_module(module, saved)
        metadata["check"] = check(tf.saved_model.load(str(saved)), run)
        metadata["size_bytes"] = measure_sizes(saved, run_dir / WEIGHTS_FILE, run.graph.model)
        metadata["export_seconds"] = round(time.perf_counter() - started, 3)
        (saved / EXPORT_FILE).write_text(
            json.dumps(metadata, indent=1, ensure_ascii=False), encoding="utf-8"
        )
        (saved / MODEL_CARD_FILE).write_text(model_card(run, metadata), encoding="utf-8")
        check_output_folder(out_dir, run_dir, force)  # again: it may have appeared meanwhile
        replace_folder(saved, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    sizes = metadata["size_bytes"]
    print(
        f"xtune export: {out_dir}: {format_bytes(sizes['total'])} on disk (variables "
        f"{format_bytes(sizes['variables'])}, graph {format_bytes(sizes['saved_model_pb'])}); "
        f"the run's {WEIGHTS_FILE} is {format_bytes(sizes['run_weights_file'])}; "
        f"signatures {', '.join(metadata['signatures'])}; "
        f"check passed on {metadata['check']['strings']} strings (max |diff| "
        f"{metadata['check']['max_abs_difference']:.1e})",
        flush=True,
    )
    for line in rule_lines(metadata):
        print(f"xtune export: {line}", flush=True)
    return ExportResult(out_dir, metadata)


def save_module(module: ServingModule, saved: Path) -> None:
    """`tf.saved_model.save`; a full disk (TensorFlow reports it as an OpError, not an
    OSError) becomes the OSError the command line reports as one line."""
    try:
        tf.saved_model.save(module, str(saved), signatures=module.signatures())
    except tf.errors.OpError as error:
        for code in (errno.ENOSPC, errno.EDQUOT):
            if os.strerror(code) in str(error):
                raise OSError(code, os.strerror(code), str(saved)) from None
        raise


def rule_lines(metadata: dict[str, Any]) -> list[str]:
    """Per label task: the decision rule the export serves and both rules' dev values."""
    lines = []
    for name, record in metadata["tasks"].items():
        if not record["labels"]:
            continue
        line = f"task {name} serves the {record['served_rule']} rule"
        if record["decision_rule"] == "top1":
            line += " (top-1 label)"
        line += rule_values(record.get("rule_choice"))
        lines.append(line)
    return lines


def served_tasks(run: LoadedRun) -> LoadedRun:
    """The run with only its tasks that serve (`Task.serves`: not an mlm task, which trains
    the shared encoder and has no signature); a run with none is an `ExportError`."""
    tasks = [task for task in run.tasks if task.serves]
    if not tasks:
        raise ExportError(
            f"{run.path}: no task to export (an mlm task has no signature); `xtune pretrain` "
            "writes a pre-trained encoder as a Hugging Face folder"
        )
    return replace(run, tasks=tasks)


def run_signature_names(run: LoadedRun) -> dict[str, dict[str, str]]:
    """Each task's signature names by role; refuses task names that collide with them (a
    run folder from before the config refused them)."""
    named = run.config.tasks is not None
    if named:
        try:
            check_task_names({task.name: task.type_name for task in run.tasks})
        except ValueError as error:
            raise ExportError(f"{run.path}: tasks.{error}") from None
    return {task.name: task_signature_names(task.name, task.type_name, named) for task in run.tasks}


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


def load_float32_run(run_dir: str | Path) -> LoadedRun:
    """Load the run in float32 whatever the global policy: serving numbers must not drift."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return load_run(run_dir)
    finally:
        keras.mixed_precision.set_global_policy(policy)


# ---------------------------------------------------------------- metadata and assets


def xtune_version() -> str:
    try:
        return importlib.metadata.version("xtune")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def export_metadata(
    run: LoadedRun, signature_names: dict[str, dict[str, str]], text_inputs: bool
) -> dict[str, Any]:
    """What a client needs to call the model and read its outputs (export.json): the default
    task's record at the top level (the keys single-task exports always had), every task's
    under `tasks`."""
    tasks = {
        task.name: task_metadata(run, task, signature_names[task.name], text_inputs)
        for task in run.tasks
    }
    signatures = [name for names in tasks.values() for name in names["signatures"].values()]
    if run.config.tasks is not None:  # the aliases of `ServingModule.add_aliases`
        embedders = [names["embed"] for names in signature_names.values() if "embed" in names]
        if text_inputs:
            signatures += [SERVING_DEFAULT, TOKENIZE, TOKEN_IDS]
            signatures += [EMBED] if len(embedders) == 1 else []
        else:
            signatures.append(TOKEN_IDS)
    default = next(iter(tasks.values()))
    top_level = {key: value for key, value in default.items() if key not in TASK_ONLY_KEYS}
    return {
        "format": EXPORT_FORMAT,
        "format_version": FORMAT_VERSION,
        "xtune_version": xtune_version(),
        "tensorflow_version": tf.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(run.path),
        "signatures": signatures,
        "text_inputs": text_inputs,
        "requires": ["tensorflow", "tensorflow-text"] if text_inputs else ["tensorflow"],
        **top_level,
        "default_task": run.tasks[0].name,
        "tasks": tasks,
    }


# Keys of a task's record that stay under `tasks` only (the top level had none of them).
TASK_ONLY_KEYS = ("type", "metric", "columns", "output", "signatures")


def task_metadata(
    run: LoadedRun, task: Any, signature_names: dict[str, str], text_inputs: bool
) -> dict[str, Any]:
    """One task's record: `Task.record()`, its decision rule and thresholds, its inputs and
    signatures, its tokenizer settings."""
    data = task.config.data
    text_encoder = run.text_encoders[task.name]
    settings = text_encoder.settings()
    labels = list(task.labels) if task.decides_labels else []
    decision_rule, thresholds = "score", None
    if labels:
        loss = task.loss
        decision_rule = "top1" if loss.default_threshold is None else "threshold"
        tuned = run.thresholds.get(task.name)
        if decision_rule == "threshold":
            rule = tuned if tuned is not None else loss.default_threshold
            thresholds = [float(t) for t in np.broadcast_to(rule, len(labels))]
    roles = signature_names if text_inputs else {"token_ids": signature_names["token_ids"]}
    return {
        **task.record(),
        "signatures": dict(roles),
        "inputs": text_input_names(task),
        "text_column": data.text,
        "text_pair_column": data.text_pair or "",
        "file_columns": data.columns,  # names of header-less input files (`data.columns`)
        "has_pair": bool(data.text_pair),
        "labels": labels,
        "num_labels": len(labels),
        "loss": task.config.loss.to_dict() if task.config.loss is not None else None,
        "multi_label": bool(labels) and bool(task.loss.multi_label),
        "decision_rule": decision_rule,
        "thresholds": thresholds,
        "thresholds_tuned": run.thresholds.get(task.name) is not None,
        # `tuned` when the tuned thresholds are served, else `default` (the loss's own rule);
        # `rule_choice`: the run's record of why, with both rules' dev values.
        "served_rule": "tuned" if run.thresholds.get(task.name) is not None else "default",
        "rule_choice": run.decision_rules.get(task.name),
        "tokenizer": {**settings, "vocabulary_size": text_encoder.tokenizer.vocabulary_size},
        "token_id_inputs": list(task.input_names(run.encoder)),
        "max_length": settings["max_length"],
        "truncation": settings["truncation"],
        "head_tokens": settings["head_tokens"],
        "lowercase": settings.get("lowercase"),
        "preparation": preparation_metadata(run.preparations.get(task.name), text_inputs),
    }


def preparation_metadata(preparation: TextPreparation | None, text_inputs: bool) -> Any:
    """How a task's raw text is prepared before tokenizing (None: it is not): its steps, run
    in the raw-string signatures' graph, and where the learned lists are."""
    if preparation is None:
        return None
    return {
        "steps": preparation.steps(),
        "in_graph": text_inputs,
        "boilerplate_sentences": len(preparation.sentences),
        "boilerplate_spans": len(preparation.spans),
        "file": f"assets/{PREPARATION_FILE}",
    }


def write_asset_files(folder: Path, run: LoadedRun, metadata: dict[str, Any]) -> list[Path]:
    files = {
        "labels.txt": "".join(f"{name}\n" for name in metadata["labels"]),
        EXPORT_FILE: json.dumps(metadata, indent=1, ensure_ascii=False),
    }
    if run.preparations:
        files[PREPARATION_FILE] = preparation_json(run.preparations)
    run.encoder.tokenizer.save(folder)  # vocab.txt for BERT; the family's own files
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


def check_inputs(task: Any) -> tuple[list[str], list[str] | None]:
    """The fixed check strings plus the first rows of the task's dev file when it is readable."""
    texts, pairs = list(CHECK_TEXTS), list(CHECK_PAIRS)
    data = task.config.data
    try:
        from xtune.data.examples import read_examples

        if data.dev:
            dev = read_examples(data, data.dev)
            texts += dev.texts[:CHECK_DEV_ROWS]
            pairs += (dev.pairs or [])[:CHECK_DEV_ROWS]
    except (OSError, TypeError, ValueError):
        pass  # the dev file is optional here: the fixed strings suffice
    return texts, pairs[: len(texts)] if data.text_pair else None


def reference_outputs(
    run: LoadedRun, task: Any, texts: list[str], pairs: list[str] | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """In-framework ids and outputs: the training `TextEncoder`, the Keras model and the
    task's decision rule with the run's thresholds."""
    inputs = task_inputs(run, task.name, texts, pairs)
    outputs = run.graph.task_models[task.name].predict_on_batch(inputs)
    served = task.serving_outputs(tf.constant(outputs), run.thresholds.get(task.name))
    return inputs, {name: np.asarray(value) for name, value in served.items()}


def compare_outputs(
    served: dict[str, tf.Tensor], reference: dict[str, np.ndarray], task: Any, what: str
) -> float:
    """The largest |difference| of the served numbers; ExportError when beyond the tolerance,
    or when the predictions or label names differ."""
    difference = 0.0
    for name in ("probabilities", "score", "embedding"):
        if name not in reference:
            continue
        got = served[name].numpy()
        if got.shape != reference[name].shape:
            raise ExportError(
                f"export check: {what} returned {name} of shape {got.shape}, "
                f"expected {reference[name].shape}"
            )
        difference = max(difference, float(np.max(np.abs(got - reference[name]), initial=0.0)))
        if not difference <= CHECK_TOLERANCE:
            raise ExportError(
                f"export check: {what} {name} differ from the in-framework model's by up to "
                f"{difference:.3g} (tolerance {CHECK_TOLERANCE:g})"
            )
    if "predictions" in reference:
        predictions = served["predictions"].numpy()
        if not np.array_equal(predictions, reference["predictions"]):
            raise ExportError(
                f"export check: {what} predictions do not follow the task's decision rule and "
                "thresholds"
            )
        names = [sorted(n.decode() for n in row if n) for row in served["labels"].numpy()]
        expected = [sorted(task.labels[i] for i in np.flatnonzero(row)) for row in predictions]
        if names != expected:
            raise ExportError(f"export check: {what} label names do not match its predictions")
    for name in ("paths", "level_labels"):  # hierarchical tasks (xtune.tasks.hierarchical)
        if name in reference and not np.array_equal(served[name].numpy(), reference[name]):
            raise ExportError(f"export check: {what} {name} differ from the in-framework ones")
    return difference


def check_export(loaded: Any, run: LoadedRun, text_inputs: bool) -> dict[str, Any]:
    """Every signature of every task (and its aliases) against the in-framework model."""
    names = run_signature_names(run)
    first = run.tasks[0].name
    strings, difference = 0, 0.0
    for task in run.tasks:
        texts, pairs = check_inputs(task)
        inputs, reference = reference_outputs(run, task, texts, pairs)
        strings += len(texts)
        id_feed = {name: tf.constant(value, tf.int32) for name, value in inputs.items()}
        calls = [(names[task.name]["token_ids"], id_feed, reference)]
        if task.name == first and run.config.tasks is not None:
            calls.append((TOKEN_IDS, id_feed, reference))
        if text_inputs:
            text_feed = {"text": tf.constant(texts)}
            if pairs is not None:
                text_feed["text_pair"] = tf.constant(pairs)
            calls.append((names[task.name]["serve"], text_feed, reference))
            if task.name == first and run.config.tasks is not None:
                calls.append((SERVING_DEFAULT, text_feed, reference))
            if "embed" in names[task.name]:
                embedding = reference_embedding(run, task, texts)
                feed = {"text": tf.constant(texts)}
                calls.append((names[task.name]["embed"], feed, embedding))
                if EMBED in loaded.signatures:
                    calls.append((EMBED, feed, embedding))
        for signature, feed, expected in calls:
            served = loaded.signatures[signature](**feed)
            difference = max(difference, compare_outputs(served, expected, task, signature))
    return {"strings": strings, "max_abs_difference": difference, "tolerance": CHECK_TOLERANCE}


def reference_embedding(run: LoadedRun, task: Any, texts: list[str]) -> dict[str, np.ndarray]:
    """The bi-encoder's in-framework sentence vectors of `texts`, L2-normalised."""
    inputs = task_inputs(run, task.name, texts, texts)
    side = {name: value for name, value in inputs.items() if name.startswith("a_")}
    vectors = np.asarray(run.graph.embed_models[task.name].predict_on_batch(side), np.float32)
    norms = np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    return {"embedding": vectors / norms}


def check_token_id_export(loaded: Any, run: LoadedRun) -> dict[str, Any]:
    return check_export(loaded, run, text_inputs=False)


def check_text_export(loaded: Any, run: LoadedRun) -> dict[str, Any]:
    """Reloaded outputs must equal the in-framework ones on the check strings.

    The token ids are not compared separately: a different id changes the probabilities far
    beyond the tolerance (tests/export compare the ids too).
    """
    return check_export(loaded, run, text_inputs=True)
