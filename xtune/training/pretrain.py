"""`xtune pretrain CONFIG`: further pre-training as a one-task `mlm` run, written out as a
Hugging Face folder.

The run is an ordinary `train` run (`xtune.training.trainer`: mixed precision, the progress
bar, a checkpoint every epoch and `--resume`) of a config whose `tasks:` holds one task of
type `mlm` (`xtune.tasks.mlm`), which also scores the held-out split with the weights it starts
from. Then:

1. `RUN/pretrain.json`: the held-out masked-LM metrics before (the starting weights, in the
   training precision) and after (the kept epoch's weights, in float32), the budget (epochs,
   steps, sequences and tokens seen, seconds) and the folder written; the same is printed.
2. The kept weights' encoder and its masked-LM head as a Hugging Face folder
   (`xtune.encoders.hf_folder_writer.save_hf_folder`; default `RUN/hf_model/`), with a record
   of what it was pre-trained from and on: `encoder: {name: hf, path: FOLDER}` loads it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xtune.config_schema import RunConfig
from xtune.registry import ConfigError
from xtune.run_folder import write_atomic

PRETRAIN_FILE = "pretrain.json"
HF_FOLDER = "hf_model"  # inside the run folder, unless --output names another
SHOWN_METRICS = ("mlm_accuracy", "perplexity", "mlm_loss")


@dataclass
class PretrainResult:
    run_dir: Path
    hf_folder: Path
    record: dict[str, Any]  # pretrain.json


def pretrain_config(config: RunConfig, source: str = "config") -> tuple[RunConfig, str]:
    """The config `xtune pretrain` trains, and its mlm task's name: the epoch kept is the one
    with the lowest held-out `mlm_loss` unless the task names its `metric` (the task type's
    default, `mlm_accuracy`, suits an auxiliary task: it has other tasks' accuracies' scale)."""
    task = masked_lm_task(config, source)
    settings = config.tasks[task]
    if settings.metric is not None:
        return config, task
    tasks = {task: dataclasses.replace(settings, metric="mlm_loss")}
    return dataclasses.replace(config, tasks=tasks), task


def masked_lm_task(config: RunConfig, source: str = "config") -> str:
    """The name of the config's one task, which must be of type `mlm`; else one error."""
    tasks = config.tasks or {}
    if len(tasks) != 1 or next(iter(tasks.values())).type != "mlm":
        found = ", ".join(f"{name} ({task.type})" for name, task in tasks.items()) or "none"
        raise ConfigError(
            f"{source}: tasks: xtune pretrain trains one task of type mlm (found: {found}); "
            "e.g. tasks: {corpus: {type: mlm, data: {train: corpus.csv, text: body}}}"
        )
    return next(iter(tasks))


def pretrain(
    config: RunConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    output: str | Path | None = None,
    source: str = "config",
) -> PretrainResult:
    """Train the config's mlm task, then write pretrain.json and the Hugging Face folder."""
    from xtune.encoders.hf_folder_writer import check_target_folder
    from xtune.training.trainer import train

    config, task = pretrain_config(config, source)
    if output:  # a taken folder is refused before training, not after
        check_target_folder(Path(output).expanduser())
    result = train(config, run_dir=run_dir, resume=resume, initial_evaluation=True)
    hf_folder = Path(output).expanduser() if output else result.run_dir / HF_FOLDER
    record = pretrain_record(config, task, result, hf_folder)
    write_atomic(result.run_dir / PRETRAIN_FILE, json.dumps(record, indent=1, ensure_ascii=False))
    print(metrics_table(record["metrics"]), flush=True)
    write_hf_folder(result.run_dir, task, config, hf_folder, record)
    print(
        f"xtune pretrain: the pre-trained encoder is {hf_folder}; fine-tune it with "
        f"encoder: {{name: hf, path: {hf_folder}}}",
        flush=True,
    )
    return PretrainResult(result.run_dir, hf_folder, record)


def pretrain_record(config: RunConfig, task: str, result: Any, hf_folder: Path) -> dict[str, Any]:
    """pretrain.json: before/after held-out metrics, the budget, the corpus, the folders."""
    before, after = result.extra["initial"], result.best
    steps = sum(int(epoch.get(f"steps_{task}", 0)) for epoch in result.history)
    batch_size, max_length = config.training.batch_size, config.tasks[task].data.max_length
    return {
        "task": task,
        "metrics": {
            "split": "dev",
            "before": {key: before[f"{task}.{key}"] for key in SHOWN_METRICS},
            "after": {key: after[f"{task}.{key}"] for key in SHOWN_METRICS},
            "best_epoch": result.best_epoch,
        },
        "budget": {
            "epochs": len(result.history),
            "steps": steps,
            "sequences": steps * batch_size,
            "max_tokens": steps * batch_size * max_length,  # at most: sequences are shorter
            "fit_seconds": result.extra.get("fit_seconds"),
            "seconds": result.seconds,
            "precision": result.extra.get("precision"),
            "device": result.device,
        },
        "corpus": result.extra.get("data", {}).get(task),
        "pretrained_from": config.encoder.to_dict(),
        "masking": dataclasses.asdict(config.tasks[task].mlm),
        "run_dir": str(result.run_dir),
        "hf_folder": str(hf_folder),
    }


def metrics_table(metrics: dict[str, Any]) -> str:
    """The before/after lines `xtune pretrain` prints."""
    header = f"  {'metric':<14}{'before':>10}{'after':>10}"
    lines = [f"held-out masked-LM metrics ({metrics['split']}):", header]
    for key in SHOWN_METRICS:
        lines.append(f"  {key:<14}{metrics['before'][key]:>10.4f}{metrics['after'][key]:>10.4f}")
    return "\n".join(lines)


def write_hf_folder(
    run_dir: Path, task: str, config: RunConfig, folder: Path, record: dict[str, Any]
) -> Path:
    """The run's kept encoder and masked-LM head (loaded in float32) as a Hugging Face
    folder. Over a trimmed vocabulary the folder holds the full one: the pieces the corpus did
    not use keep the starting encoder's word-embedding rows and output-bias values."""
    from xtune.encoders.hf_folder_writer import save_hf_folder
    from xtune.encoders.masked_lm import hf_head_weights
    from xtune.tasks.run_folder import load_run

    run = load_run(run_dir)  # float32: `train` leaves the global policy at float32
    head = run.graph.model.get_layer(run.task(task).head_name)
    full_embeddings, full_bias = starting_vocabulary_rows(config, run.encoder)
    return save_hf_folder(
        run.encoder,
        folder,
        extra_weights=hf_head_weights(run.encoder, head, full_bias),
        provenance=record,
        full_word_embeddings=full_embeddings,
    )


def starting_vocabulary_rows(config: RunConfig, encoder: Any) -> tuple[Any, Any]:
    """For a trimmed vocabulary: the starting encoder's full word embedding and its
    checkpoint's masked-LM output bias (None without a head); (None, None) otherwise."""
    from xtune.encoders import load_encoder
    from xtune.encoders.masked_lm import checkpoint_head, head_names, kept_rows

    if kept_rows(encoder) is None:
        return None, None
    original = load_encoder(config.encoder)
    head = checkpoint_head(original.checkpoint_folder, head_names(original))
    return original.word_embeddings, None if head is None else head["bias"]
