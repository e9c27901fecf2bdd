"""`train(config) -> RunResult`: data, encoder, model, fit with per-epoch dev metrics."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune.config import ConfigError, RunConfig
from xtune.data.examples import Examples, load_splits
from xtune.data.labels import LabelVocab
from xtune.data.pipeline import TokenizedSplit, batches_per_epoch, make_dataset, tokenize_examples
from xtune.data.tokenization import TextEncoder
from xtune.encoders import EncoderAdapter, load_encoder
from xtune.encoders.trimmed_vocabulary import TrimmedTokenizer, trim_encoder, used_token_ids
from xtune.heads import get_head
from xtune.metrics import fixed_threshold_report, majority_baseline
from xtune.model import TextClassifier, build_classifier, count_parameters
from xtune.run_folder import WEIGHTS_FILE, RunFolder, load_run_files, save_model_weights
from xtune.tasks import ClassificationTask, build_tasks
from xtune.thresholds import tune_thresholds
from xtune.training.adversarial import AdversarialTextClassifier, get_attack
from xtune.training.diverged import TrainingDiverged
from xtune.training.ema import ema_weights
from xtune.training.evaluation import evaluate_scores, predict_logits, scores_of
from xtune.training.freezing import (
    check_finetune,
    reinitialize_top_layers,
    set_trainable,
    trainable_layer_indices,
)
from xtune.training.layerwise import learning_rate_table
from xtune.training.lora import ADAPTER_FILE, enable_lora, save_adapter
from xtune.training.optimizers import OPTIMIZERS
from xtune.training.schedules import SCHEDULES

log = logging.getLogger(__name__)

# `data.trim_vocabulary: auto` trims vocabularies larger than this (multilingual ones: XLM-R's
# 250,002 pieces; not BERT's 21-30k, whose embedding is a small share of the model).
TRIM_AUTO_ABOVE = 100_000

# A head that does not read the pooler leaves its weights without gradients; that is fine.
warnings.filterwarnings("ignore", message="Gradients do not exist for variables")


@dataclass
class PreparedData:
    """Examples, labels and token ids for every split of one (data config, tokenizer) pair."""

    vocab: LabelVocab
    examples: dict[str, Examples]
    tokenized: dict[str, TokenizedSplit]
    text_encoder: TextEncoder
    warnings: list[str] = field(default_factory=list)  # data notes (logged; in results lines)


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best: dict[str, float]
    tuned: dict[str, float] | None
    test: dict[str, float] | None
    baseline: dict[str, Any]
    parameters: dict[str, int]
    seconds: float
    train_samples_per_second: float
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "best_epoch": self.best_epoch,
            "best": self.best,
            "tuned": self.tuned,
            "test": self.test,
            "baseline": self.baseline,
            "parameters": self.parameters,
            "seconds": self.seconds,
            "train_samples_per_second": self.train_samples_per_second,
            "device": self.device,
            **self.extra,
        }


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU x{len(gpus)}" if gpus else "CPU"


def cpu_supports_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(setting: str) -> str:
    """`auto`: bfloat16 on GPUs and on CPUs with bf16 instructions, float32 elsewhere."""
    if setting != "auto":
        return setting
    if tf.config.list_physical_devices("GPU") or cpu_supports_bfloat16():
        return "mixed_bfloat16"
    return "float32"


def resolve_jit(setting: str | bool) -> bool:
    """`auto`: XLA on GPU; off on CPU, where it measured slower for training."""
    if setting == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return bool(setting)


def prepare_data(config: RunConfig, encoder: EncoderAdapter) -> PreparedData:
    """Read every split and tokenize it (through the on-disk token cache)."""
    examples, vocab = load_splits(config.data)
    text_encoder = TextEncoder(
        encoder.tokenizer,
        encoder.packing,
        config.data.max_length,
        config.data.truncation,
        config.data.head_tokens,
    )
    tokenized = {
        name: tokenize_examples(
            split, text_encoder, vocab.encode(split.label_sets), config.data.cache_dir
        )
        for name, split in examples.items()
    }
    notes = [note for split in examples.values() for note in split.warnings]
    data = PreparedData(vocab, examples, tokenized, text_encoder, notes)
    if should_trim_vocabulary(config.data.trim_vocabulary, encoder.tokenizer.vocabulary_size):
        data = trim_to_corpus(data)
    return data


def should_trim_vocabulary(setting: str | bool, vocabulary_size: int) -> bool:
    """`data.trim_vocabulary`: `auto` trims vocabularies over `TRIM_AUTO_ABOVE` pieces."""
    if setting == "auto":
        return vocabulary_size > TRIM_AUTO_ABOVE
    return bool(setting)


def trim_to_corpus(data: PreparedData) -> PreparedData:
    """The same data over a vocabulary of only the pieces its splits use (and the specials);
    `_train` trims the encoder's word embedding to match (`encoder_for`)."""
    text_encoder = data.text_encoder
    kept = used_token_ids([split.token_ids for split in data.tokenized.values()])
    tokenizer = TrimmedTokenizer(text_encoder.tokenizer, kept)
    tokenized = {
        name: dataclasses.replace(split, token_ids=tokenizer.map_ids(split.token_ids))
        for name, split in data.tokenized.items()
    }
    trimmed = TextEncoder(
        tokenizer,
        text_encoder.packing,
        text_encoder.max_length,
        text_encoder.truncation,
        text_encoder.head_tokens,
    )
    print(
        f"xtune: vocabulary trimmed to the {tokenizer.vocabulary_size:,} pieces the data uses "
        f"(of {text_encoder.tokenizer.vocabulary_size:,}); data.trim_vocabulary: false keeps all",
        flush=True,
    )
    return dataclasses.replace(data, text_encoder=trimmed, tokenized=tokenized)


def encoder_for(data: PreparedData, encoder: EncoderAdapter) -> EncoderAdapter:
    """The encoder with its word embedding trimmed when the data's vocabulary was."""
    tokenizer = data.text_encoder.tokenizer
    if not isinstance(tokenizer, TrimmedTokenizer):
        return encoder
    return trim_encoder(encoder, tokenizer.kept_ids)


class FirstStepTimer(keras.callbacks.Callback):
    """Records when the first training step (tracing included) ends."""

    def __init__(self) -> None:
        super().__init__()
        self.first_step_done: float | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.first_step_done is None:
            self.first_step_done = time.perf_counter()


# A training loss over DIVERGENCE_FACTOR x the run's first-step loss (with the prior-initialised
# logits bias that is about the labels' entropy) and over DIVERGENCE_FLOOR is divergence, not
# noise; so is a non-finite one.
DIVERGENCE_FACTOR = 100.0
DIVERGENCE_FLOOR = 10.0


def learning_rate_text(config: RunConfig) -> str:
    """The configured learning rate(s), for messages about a diverged run."""
    optimizer = config.optimizer.to_dict()
    text = f"optimizer.learning_rate {optimizer.get('learning_rate')}"
    if optimizer.get("head_learning_rate") is not None:
        text += f", optimizer.head_learning_rate {optimizer['head_learning_rate']}"
    return text


class DivergenceGuard(keras.callbacks.Callback):
    """Raises `TrainingDiverged`, naming the epoch and the learning rate, at the first step
    whose running training loss is non-finite or beyond the bound above.

    `keras.callbacks.TerminateOnNaN` stops on NaN / inf only, and says neither where nor why.
    """

    def __init__(self, config: RunConfig):
        super().__init__()
        self.learning_rate = learning_rate_text(config)
        self.first_loss: float | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if self.first_loss is None and math.isfinite(loss):
            self.first_loss = loss
        bound = max(DIVERGENCE_FACTOR * (self.first_loss or 0.0), DIVERGENCE_FLOOR)
        if math.isfinite(loss) and loss <= bound:
            return
        why = (
            "is non-finite"
            if not math.isfinite(loss)
            else f"exceeds {bound:.4g} (max of {DIVERGENCE_FACTOR:g} x the first step's "
            f"{self.first_loss:.4g} and {DIVERGENCE_FLOOR:g})"
        )
        raise TrainingDiverged(
            f"training diverged in epoch {self.epoch + 1}, step {batch + 1}: the training loss "
            f"{loss:.4g} {why}; {self.learning_rate}: lower the learning rate or set "
            "optimizer.clipnorm"
        )


class DevEvaluation(keras.callbacks.Callback):
    """After each epoch: full dev-set metrics by the task's decision rule; keeps the best
    weights by the task's selection metric (`training.metric`).

    Why not Keras's `EarlyStopping(restore_best_weights=True)`: it resets its best epoch and
    weights at the start of every `fit`, and a run with `finetune.frozen_epochs` calls `fit`
    once per stage; the run also keeps the best epoch's dev logits (thresholds are tuned on
    them). Why not `SwapEMAWeights`: `ema_weights` does the same copy, scoped to the
    evaluation, so with `use_ema` the best-weights snapshot holds the averages and training
    resumes on bitwise the same values.
    """

    def __init__(self, dev: TokenizedSplit, task: ClassificationTask, config: RunConfig):
        super().__init__()
        self.dev = dev
        self.task = task
        self.metric = task.metric
        self.direction = task.direction
        self.batch_size = config.training.eval_batch_size
        self.max_length = config.data.max_length
        self.patience = config.training.early_stopping_patience
        self.learning_rate = learning_rate_text(config)
        self.history: list[dict[str, Any]] = []
        self.best_value: float | None = None
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.best_logits: np.ndarray | None = None  # dev logits of `best_weights`
        self.epoch_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        train_seconds = time.perf_counter() - self.epoch_started
        # With `optimizer.use_ema` the epoch is scored, and kept as best, on the EMA weights.
        with ema_weights(self.model):
            self.evaluate_epoch(epoch, logs, train_seconds)

    def evaluate_epoch(self, epoch: int, logs: dict | None, train_seconds: float) -> None:
        eval_started = time.perf_counter()
        logits = predict_logits(self.model, self.dev, self.batch_size, self.max_length)
        if not np.all(np.isfinite(logits)):
            raise TrainingDiverged(
                f"training diverged in epoch {epoch + 1}: non-finite logits on the dev set; "
                f"{self.learning_rate}: lower the learning rate or set optimizer.clipnorm"
            )
        metrics = self.task.evaluate(self.dev.labels, logits)
        record = {
            "epoch": epoch + 1,
            "train_loss": float((logs or {}).get("loss", math.nan)),
            "train_seconds": round(train_seconds, 3),
            "eval_seconds": round(time.perf_counter() - eval_started, 3),
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        self.history.append(record)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in metrics.items()})
        value = metrics[self.metric]
        improved = self.best_value is None or (
            value > self.best_value if self.direction == "max" else value < self.best_value
        )
        if improved:
            self.best_value, self.best_epoch = value, epoch + 1
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
            self.best_logits = logits
        print(
            f"epoch {epoch + 1}: loss {record['train_loss']:.4f}  val {self.metric} {value:.4f}  "
            f"micro-F1 {metrics['micro_f1']:.4f}  macro-F1 {metrics['macro_f1']:.4f}"
            + ("  (best)" if improved else ""),
            flush=True,
        )
        if self.patience is not None and epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True


def train(
    config: RunConfig, run_dir: str | Path | None = None, data: PreparedData | None = None
) -> RunResult:
    """Train one run and write its run folder; `data` lets a grid reuse tokenized splits."""
    started = time.perf_counter()
    keras.utils.set_random_seed(config.training.seed)
    precision = resolve_precision(config.training.mixed_precision)
    keras.mixed_precision.set_global_policy(precision)
    try:
        if config.tasks is not None:  # several named tasks on one encoder
            from xtune.training.multitask import train_tasks

            return train_tasks(config, run_dir, started, precision)
        return _train(config, run_dir, data, started, precision)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@dataclass
class SingleTaskRun:
    """What the steps of `_train` hand on: the encoder, data, the task (its loss, metrics and
    decision rule), the model and its stages."""

    encoder: EncoderAdapter
    data: PreparedData
    task: ClassificationTask
    model: keras.Model
    parameters: dict[str, int]
    stages: list[Stage]
    steps_per_epoch: int


def _train(
    config: RunConfig,
    run_dir: str | Path | None,
    data: PreparedData | None,
    started: float,
    precision: str,
) -> RunResult:
    """One classification task, in four steps: build (data, loss, model), open the run
    folder, fit the stages with per-epoch dev evaluation, then score and write the result."""
    run = build_single_task(config, data)
    folder = open_run_folder(config, run, run_dir, precision)
    evaluation, clock = fit_single_task(config, run)
    clock.started = started
    return finish_single_task(config, run, folder, evaluation, precision, clock)


@dataclass
class FitClock:
    """When the run started, `fit` started, its first step ended and `fit` ended."""

    fit_started: float
    first_step_done: float | None
    fit_ended: float
    started: float = 0.0


def build_single_task(config: RunConfig, data: PreparedData | None) -> SingleTaskRun:
    """Step 1: encoder, tokenized data (unless given), loss, model and its training stages."""
    training = config.training
    encoder = load_encoder(config.encoder)
    if data is None:
        data = prepare_data(config, encoder)
    encoder = encoder_for(data, encoder)
    (task,) = build_tasks(config.named_tasks())  # the one classification task
    task.check_label_counts(data.examples)
    check_report_thresholds(training.report_thresholds, task.loss)
    model = build_model(config, encoder, len(data.vocab))
    task.initialize_logits(model, data.tokenized["train"].labels, "logits")
    parameters = count_parameters(model)
    stages = training_stages(config)
    if stages[0].head_only:
        set_trainable(model, config.finetune, head_only=True)
        parameters["trainable_head_only_stage"] = count_parameters(model)["trainable"]
    steps_per_epoch = batches_per_epoch(
        data.tokenized["train"], training.batch_size, config.data.padding, config.data.max_length
    )
    if training.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, training.steps_per_epoch)
    return SingleTaskRun(encoder, data, task, model, parameters, stages, steps_per_epoch)


def open_run_folder(
    config: RunConfig, run: SingleTaskRun, run_dir: str | Path | None, precision: str
) -> RunFolder:
    """Step 2: the run folder with the config, labels and tokenizer files."""
    data = run.data
    folder = RunFolder.create(run_dir or default_run_dir(config))
    folder.write_setup(config, data.vocab, run.encoder, data.text_encoder)
    print(
        f"xtune: {run.encoder.source}; {len(data.vocab)} labels; train "
        f"{len(data.tokenized['train'])} / dev {len(data.tokenized['dev'])} rows; "
        f"{run.parameters['trainable']:,} trainable parameters; "
        f"{precision}; {device_name()}; run folder {folder.path}",
        flush=True,
    )
    return folder


def fit_single_task(config: RunConfig, run: SingleTaskRun) -> tuple[DevEvaluation, FitClock]:
    """Step 3: `model.fit` per stage (a fresh optimizer each), scored on dev every epoch."""
    training, model = config.training, run.model
    dataset = make_dataset(
        run.data.tokenized["train"],
        training.batch_size,
        config.data.padding,
        config.data.max_length,
        shuffle=True,
        seed=training.seed,
    ).repeat()
    evaluation = DevEvaluation(run.data.tokenized["dev"], run.task, config)
    divergence = DivergenceGuard(config)
    first_step = FirstStepTimer()
    fit_started = time.perf_counter()
    for stage in run.stages:
        set_trainable(model, config.finetune, head_only=stage.head_only)
        schedule = SCHEDULES.build(config.schedule.to_dict())
        stage_steps = run.steps_per_epoch * (stage.end_epoch - stage.start_epoch)
        optimizer = OPTIMIZERS.build(config.optimizer.to_dict())(model, schedule, stage_steps)
        model.compile(
            optimizer=optimizer, loss=run.task.loss, jit_compile=resolve_jit(training.jit_compile)
        )
        # Built before the first step, or the train function is traced twice (the step
        # would create the optimizer's variables).
        model.optimizer.build(model.trainable_variables)
        print(
            f"{stage.description}, epochs {stage.start_epoch + 1}-{stage.end_epoch}; "
            f"learning rates by parameter group:\n"
            + learning_rate_table(
                model, optimizer.learning_rate_multipliers, optimizer.base_learning_rate
            ),
            flush=True,
        )
        model.fit(
            dataset,
            initial_epoch=stage.start_epoch,
            epochs=stage.end_epoch,
            steps_per_epoch=run.steps_per_epoch,
            callbacks=[divergence, evaluation, first_step],
            verbose=training.verbose,
            shuffle=False,  # the dataset shuffles itself, reproducibly from the seed
        )
        if model.stop_training:  # early stopping ends the whole run, not just the stage
            break
    return evaluation, FitClock(fit_started, first_step.first_step_done, time.perf_counter())


def finish_single_task(
    config: RunConfig,
    run: SingleTaskRun,
    folder: RunFolder,
    evaluation: DevEvaluation,
    precision: str,
    clock: FitClock,
) -> RunResult:
    """Step 4: the best epoch's weights saved, dev (and test) scored as the export serves
    them, thresholds tuned, and the result written."""
    training, model, loss, data = config.training, run.model, run.task.loss, run.data
    train_split, dev_split = data.tokenized["train"], data.tokenized["dev"]
    train_seconds = sum(h["train_seconds"] for h in evaluation.history)
    samples = min(len(train_split), run.steps_per_epoch * training.batch_size) * len(
        evaluation.history
    )
    model.set_weights(evaluation.best_weights)
    if training.save_weights:
        folder.write_weights(model)
        if config.finetune.lora_rank is not None:
            folder.write_binary(ADAPTER_FILE, lambda path: save_adapter(model, path))
    # Dev and test are scored, and thresholds tuned, in the precision the export serves in.
    served = served_model(model, folder, precision, training.save_weights)
    if served is model:  # float32: the best epoch's dev logits came from these very weights
        dev_logits = evaluation.best_logits
    else:
        dev_logits = predict_logits(
            served, dev_split, training.eval_batch_size, config.data.max_length
        )
    dev_scores = scores_of(loss, dev_logits)
    best = run.task.evaluate(dev_split.labels, dev_logits)
    thresholds, tuned = None, None
    if training.tune_thresholds and loss.default_threshold is not None:
        thresholds = tune_thresholds(
            dev_split.labels,
            dev_scores,
            training.tune_thresholds,
            default_threshold=loss.default_threshold,
        )
        tuned = evaluate_scores(loss, dev_split.labels, dev_scores, thresholds)
    fixed = {"dev": fixed_threshold_reports(training, data, dev_split.labels, dev_scores)}
    test = None
    if "test" in data.tokenized:
        test_split = data.tokenized["test"]
        test_scores = scores_of(
            loss,
            predict_logits(served, test_split, training.eval_batch_size, config.data.max_length),
        )
        test = {"default_rule": evaluate_scores(loss, test_split.labels, test_scores)}
        if thresholds is not None:
            test["tuned_thresholds"] = evaluate_scores(
                loss, test_split.labels, test_scores, thresholds
            )
        fixed["test"] = fixed_threshold_reports(training, data, test_split.labels, test_scores)
    baseline = majority_baseline(train_split.labels, dev_split.labels)
    result = RunResult(
        run_dir=folder.path,
        history=evaluation.history,
        best_epoch=evaluation.best_epoch,
        best=best,
        tuned=tuned,
        test=test,
        baseline=baseline,
        parameters=run.parameters,
        seconds=round(time.perf_counter() - clock.started, 3),
        train_samples_per_second=round(samples / train_seconds, 2) if train_seconds else 0.0,
        device=device_name(),
        extra={
            "precision": precision,
            "eval_precision": "float32",  # of `best`, `tuned`, `test` and the thresholds
            "fit_seconds": round(clock.fit_ended - clock.fit_started, 3),
            "timings": run_timings(
                clock.started, clock.fit_started, clock.first_step_done, clock.fit_ended
            ),
        },
    )
    if training.report_thresholds:
        result.extra["fixed_thresholds"] = fixed
    if data.warnings:
        result.extra["data_warnings"] = data.warnings
    folder.write_result(result, thresholds)
    print_summary(result, config.training.metric)
    return result


def served_model(
    model: keras.Model, folder: RunFolder, precision: str, weights_saved: bool
) -> keras.Model:
    """The kept weights as `xtune export` and `xtune predict` serve them: in float32.

    A mixed-precision model is rebuilt in float32 the way the export loads a run folder (from
    the weights file; a scratch copy when `save_weights` is off), so metrics.json and the tuned
    thresholds are exactly what the served model gives on dev.
    """
    if precision == "float32":
        return model
    keras.mixed_precision.set_global_policy("float32")
    try:
        if weights_saved:
            return load_run_files(folder.path).model
        with tempfile.TemporaryDirectory() as scratch:
            weights = Path(scratch) / WEIGHTS_FILE
            save_model_weights(model, weights)
            return load_run_files(folder.path, weights).model
    finally:
        keras.mixed_precision.set_global_policy(precision)


def run_timings(
    started: float, fit_started: float, first_step_done: float | None, fit_ended: float
) -> dict[str, float | None]:
    """Where a run's wall time went besides the epochs' training and dev evaluation (those are
    in the history): seconds from `train()` to the start of `fit` (encoder load, data unless a
    grid passed it in, model build, compile), from there to the end of the first training step
    (tracing included), and after `fit` (threshold tuning, test-set predictions)."""
    return {
        "setup_seconds": round(fit_started - started, 3),
        "first_step_seconds": (
            None if first_step_done is None else round(first_step_done - fit_started, 3)
        ),
        "after_fit_seconds": round(time.perf_counter() - fit_ended, 3),
    }


def check_report_thresholds(thresholds: list[Any], loss: Any) -> None:
    for value in thresholds:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ConfigError(
                f"training.report_thresholds: expected numbers in (0, 1), got {value!r}"
            )
    if thresholds and loss.default_threshold is None:
        raise ConfigError(
            f"training.report_thresholds: the loss {type(loss).__name__} predicts the top-1 "
            "label and has no per-label thresholds; remove report_thresholds"
        )


def fixed_threshold_reports(
    training: Any, data: PreparedData, labels: np.ndarray, scores: np.ndarray
) -> dict[str, dict[str, Any]]:
    """`training.report_thresholds` -> {"0.3": per-label P/R/F1 and their macro means}."""
    return {
        f"{threshold:g}": fixed_threshold_report(labels, scores, data.vocab.names, threshold)
        for threshold in training.report_thresholds
    }


@dataclass
class Stage:
    """Epochs `start_epoch` (0-based) to `end_epoch` (exclusive) with one trainable set."""

    start_epoch: int
    end_epoch: int
    head_only: bool
    description: str


def training_stages(config: RunConfig) -> list[Stage]:
    """One stage, or with `finetune.frozen_epochs` the head alone first, then the rest.

    Each stage gets a fresh optimizer whose schedule (warm-up included) spans that stage.
    """
    epochs, frozen = config.training.epochs, config.finetune.frozen_epochs
    if not frozen:
        return [Stage(0, epochs, False, "training")]
    return [
        Stage(0, frozen, True, "stage 1: head only (encoder frozen)"),
        Stage(frozen, epochs, False, "stage 2: encoder unfrozen per `finetune`"),
    ]


def build_model(config: RunConfig, encoder: EncoderAdapter, num_labels: int) -> keras.Model:
    """The classifier with the `finetune` settings applied: re-initialized top layers, LoRA,
    and the trainable set of the main stage; `adversarial` picks the training step."""
    finetune = config.finetune
    check_finetune(finetune, encoder.num_layers, config.training.epochs)
    attack = get_attack(config.adversarial)
    head = get_head(config.head)
    if attack is None:
        model = build_classifier(encoder, head, num_labels, TextClassifier)
    else:
        model = build_classifier(
            encoder, head, num_labels, AdversarialTextClassifier, attack=attack
        )
    reinitialize_top_layers(model, finetune.reinit_top_layers)
    if finetune.lora_rank is not None:
        enable_lora(
            model,
            finetune.lora_rank,
            finetune.lora_alpha,
            finetune.lora_targets,
            trainable_layer_indices(finetune, encoder.num_layers),
        )
    set_trainable(model, finetune)
    return model


def default_run_dir(config: RunConfig) -> Path:
    name = config.training.run_name or time.strftime("run-%Y%m%d-%H%M%S")
    return Path(config.training.output_dir) / name


def print_summary(result: RunResult, metric: str) -> None:
    keys = (
        "subset_accuracy",
        "top1_accuracy",
        "micro_f1",
        "macro_f1",
        "samples_f1",
        "hamming_loss",
    )
    baseline = result.baseline.get("most_frequent_label_set", {})
    print(f"\nbest epoch {result.best_epoch} by val {metric}; dev metrics:")
    print(f"  {'metric':<16}{'model':>10}{'tuned thr':>11}{'majority':>10}")
    for key in keys:
        tuned = f"{result.tuned[key]:.4f}" if result.tuned else "-"
        base = f"{baseline[key]:.4f}" if key in baseline else "-"
        print(f"  {key:<16}{result.best[key]:>10.4f}{tuned:>11}{base:>10}")
    print(
        f"{result.parameters['trainable']:,} trainable parameters; "
        f"{result.train_samples_per_second} train samples/s; {result.seconds:.1f} s in all; "
        f"run folder {result.run_dir}",
        flush=True,
    )


def result_json(result: RunResult) -> str:
    return json.dumps(result.summary(), indent=1, ensure_ascii=False, default=str)
