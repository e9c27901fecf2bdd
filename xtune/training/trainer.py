"""`train(config) -> RunResult`: one pipeline for one task or many.

A run is a list of named tasks on one shared encoder; a config without `tasks:` is one
classification task (`RunConfig.named_tasks`). `train` runs four steps, each a function:

1. `build_run`: the encoder, every task's tokenized data (vocabulary-trimmed when asked),
   the `TaskModel` with the `finetune` settings, the stages and the epochs' task schedule.
2. `open_run_folder`: config, tasks, labels and tokenizer files.
3. `fit_run`: `Model.fit` per stage (head only first with `finetune.frozen_epochs`), a fresh
   optimizer each, every task scored on dev after each epoch (`DevEvaluation`).
4. `finish_run`: the best epoch's weights saved, dev and test scored in float32 as the
   export serves them, thresholds tuned for classification tasks, the result written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune import faults
from xtune.config_schema import RunConfig
from xtune.data.pipeline import bucket_limit
from xtune.encoders import EncoderAdapter, load_encoder
from xtune.encoders.prompt_injection import tune_encoder
from xtune.encoders.trimmed_vocabulary import TrimmedTokenizer, trim_encoder, used_token_ids
from xtune.metrics import fixed_threshold_report
from xtune.model import TaskGraph, build_task_graph, count_parameters
from xtune.registry import ConfigError
from xtune.run_folder import WEIGHTS_FILE, RunFolder, save_model_weights, write_atomic
from xtune.tasks import Task, TaskData, build_tasks
from xtune.tasks.run_folder import LoadedRun, create_run_folder, load_run_files
from xtune.thresholds import RuleChoice, choose_decision_rule, top1_rule
from xtune.training.adversarial import get_attack
from xtune.training.callbacks import (
    DevEvaluation,
    DivergenceGuard,
    EpochCheckpoint,
    EpochLines,
    FirstStepTimer,
    InterruptPoint,
    StepFaultPoint,
    fit_verbosity,
    mean_score,
)
from xtune.training.checkpoint import (
    Checkpoint,
    assign_variables,
    check_resumable,
    load_checkpoint,
    remove_checkpoint,
)
from xtune.training.distribution import (
    describe,
    distribute,
    distribution_record,
    run_strategy,
    single_replica_views,
)
from xtune.training.ema import uses_ema
from xtune.training.evaluation import scores_of
from xtune.training.freezing import (
    check_finetune,
    reinitialize_top_layers,
    set_trainable,
    trainable_layer_indices,
)
from xtune.training.label_reports import (
    confusion_matrix,
    confusion_matrix_file,
    per_label_rows,
    write_confusion_matrix,
    write_per_label_table,
)
from xtune.training.layerwise import learning_rate_table
from xtune.training.lora import ADAPTER_FILE, enable_lora, save_adapter
from xtune.training.metric_names import MetricNames
from xtune.training.mlflow_tracking import MlflowTracker, ending_status, start_mlflow
from xtune.training.optimizers import OPTIMIZERS
from xtune.training.schedules import SCHEDULES
from xtune.training.task_batches import (
    Schedule,
    batches_taken,
    plan_epochs,
    stage_dataset,
    stage_kinds,
)
from xtune.training.task_model import TaskModel, step_plan
from xtune.training.tracking import tracking_callbacks

log = logging.getLogger(__name__)

# Dev metrics of the weights a run starts from (`train(..., initial_evaluation=True)`).
INITIAL_METRICS_FILE = "initial_metrics.json"
# `data.trim_vocabulary: auto` trims vocabularies larger than this (multilingual ones: XLM-R's
# 250,002 pieces; not BERT's 21-30k, whose embedding is a small share of the model).
TRIM_AUTO_ABOVE = 100_000

# A head that does not read the pooler leaves its weights without gradients; that is fine.
warnings.filterwarnings("ignore", message="Gradients do not exist for variables")


@dataclass
class PreparedData:
    """Every task's tokenized splits for one config and tokenizer (a grid reuses them);
    `trimmed`: the corpus's trimmed tokenizer when the vocabulary was trimmed."""

    tasks: dict[str, TaskData]
    trimmed: TrimmedTokenizer | None = None

    @property
    def warnings(self) -> list[str]:
        return [note for data in self.tasks.values() for note in data.warnings]


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best: dict[str, float]
    tuned: dict[str, float] | None
    test: dict[str, Any] | None
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
    """Whether the whole train step is XLA-compiled. `auto`: on GPU; not on CPU, where its
    compile time per batch shape outweighs its gain in short runs (benchmarks/README.md)."""
    if setting == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return setting is True


def train_bucket_limit(training: Any) -> int:
    """How many bucket lengths the train batches may take (`bucket_limit`)."""
    return bucket_limit(resolve_jit(training.jit_compile))


def resolve_xla_update(setting: str | bool) -> bool:
    """Whether only the optimizer's update is XLA-compiled (`optimizer`)."""
    return setting == "optimizer"


# ---------------------------------------------------------------- data


def prepare_data(config: RunConfig, encoder: Any) -> PreparedData:
    """Read and tokenize every task's splits (through the on-disk token cache); `encoder`
    needs only its `tokenizer` and `packing`."""
    tasks = build_tasks(config.named_tasks())
    prepared = PreparedData({task.name: task.load(encoder) for task in tasks})
    setting = next(iter(config.named_tasks().values())).data.trim_vocabulary
    if should_trim_vocabulary(setting, encoder.tokenizer.vocabulary_size):
        required = [i for task in tasks for i in task.required_token_ids(encoder.tokenizer)]
        prepared = trim_to_corpus(prepared, encoder.tokenizer, required)
    return prepared


def should_trim_vocabulary(setting: str | bool, vocabulary_size: int) -> bool:
    """`data.trim_vocabulary`: `auto` trims vocabularies over `TRIM_AUTO_ABOVE` pieces."""
    if setting == "auto":
        return vocabulary_size > TRIM_AUTO_ABOVE
    return bool(setting)


def trim_to_corpus(
    prepared: PreparedData, tokenizer: Any, required: list[int] | None = None
) -> PreparedData:
    """The same data over a vocabulary of only the pieces its splits use (and the specials,
    and the `required` ids: an mlm task's mask token); `build_run` trims the encoder's word
    embedding to match (`encoder_for`)."""
    sides = [
        side
        for data in prepared.tasks.values()
        for split in data.splits.values()
        for side in split.sides
    ]
    ids = [side.token_ids for side in sides] + [np.asarray(required or [], np.int32)]
    trimmed = TrimmedTokenizer(tokenizer, used_token_ids(ids))
    tasks = {
        name: dataclasses.replace(
            data,
            splits={
                split_name: dataclasses.replace(
                    split,
                    sides=[
                        dataclasses.replace(side, token_ids=trimmed.map_ids(side.token_ids))
                        for side in split.sides
                    ],
                )
                for split_name, split in data.splits.items()
            },
        )
        for name, data in prepared.tasks.items()
    }
    print(
        f"xtune: vocabulary trimmed to the {trimmed.vocabulary_size:,} pieces the data uses "
        f"(of {tokenizer.vocabulary_size:,}); data.trim_vocabulary: false keeps all",
        flush=True,
    )
    return PreparedData(tasks, trimmed)


def encoder_for(data: PreparedData, encoder: EncoderAdapter) -> EncoderAdapter:
    """The encoder with its word embedding trimmed when the data's vocabulary was."""
    if data.trimmed is None:
        return encoder
    return trim_encoder(encoder, data.trimmed.kept_ids)


# ---------------------------------------------------------------- train


def learning_rate_text(config: RunConfig) -> str:
    """The configured learning rate(s), for messages about a diverged run."""
    optimizer = config.optimizer.to_dict()
    text = f"optimizer.learning_rate {optimizer.get('learning_rate')}"
    if optimizer.get("head_learning_rate") is not None:
        text += f", optimizer.head_learning_rate {optimizer['head_learning_rate']}"
    return text


def train(
    config: RunConfig,
    run_dir: str | Path | None = None,
    data: PreparedData | None = None,
    resume: bool = False,
    tags: dict[str, str] | None = None,
    initial_evaluation: bool = False,
) -> RunResult:
    """Train one run and write its run folder; `data` lets a grid reuse tokenized splits.

    `resume`: `run_dir` is an interrupted run of this config; training continues from its
    last checkpoint (`xtune.training.checkpoint`) to the result an uninterrupted run gets.
    `tags` label the run in the tracking tools `training.report_to` names (a grid's: grid,
    row, seed, run id). `initial_evaluation`: also score dev with the weights training starts
    from (metrics.json's `initial`; `xtune pretrain` reports before and after)."""
    started = time.perf_counter()
    keras.utils.set_random_seed(config.training.seed)
    precision = resolve_precision(config.training.mixed_precision)
    keras.mixed_precision.set_global_policy(precision)
    try:
        resumed = resume_point(config, run_dir) if resume else None
        run = build_run(config, data, run_strategy(config))
        folder = open_run_folder(config, run, run_dir, precision)
        initial = (
            initial_metrics(run, folder, config.training, resume) if initial_evaluation else None
        )
        mlflow = start_mlflow(config, folder.path, tags or {})
        try:
            evaluation, clock = fit_run(config, run, folder, resumed, mlflow)
            clock.started = started
            result = finish_run(config, run, folder, evaluation, precision, clock, initial)
        except BaseException as error:
            mlflow.end(ending_status(error))
            raise
        mlflow.finish(folder.path, result.summary())
        return result
    finally:
        keras.mixed_precision.set_global_policy("float32")


def resume_point(config: RunConfig, run_dir: str | Path | None) -> Checkpoint | None:
    """The checkpoint `--resume` continues from (None: the run had finished no epoch)."""
    if run_dir is None:
        raise ConfigError("resuming needs the run folder (--run-dir)")
    check_resumable(Path(run_dir), config)
    resumed = load_checkpoint(run_dir)
    where = "from the start (no epoch had finished)"
    if resumed is not None:
        where = f"after epoch {resumed.progress.epochs_done} of {config.training.epochs}"
    print(f"xtune: resuming {run_dir} {where}", flush=True)
    return resumed


@dataclass
class Run:
    """What the steps of `train` hand on: encoder, data, tasks, model, stages, schedule,
    and the `tf.distribute` strategy the model's variables were made under."""

    encoder: EncoderAdapter
    data: PreparedData
    tasks: list[Task]
    graph: TaskGraph
    names: MetricNames
    parameters: dict[str, int]
    stages: list[Stage]
    schedule: Schedule
    strategy: tf.distribute.Strategy = field(default_factory=tf.distribute.get_strategy)

    def splits(self, name: str) -> dict[str, Any]:
        """`{task name: that task's split}` for the tasks that have split `name`."""
        return {
            task.name: self.data.tasks[task.name].splits[name]
            for task in self.tasks
            if name in self.data.tasks[task.name].splits
        }


@dataclass
class FitClock:
    """When the run started, `fit` started, its first step ended and `fit` ended."""

    fit_started: float
    first_step_done: float | None
    fit_ended: float
    started: float = 0.0


def build_run(
    config: RunConfig,
    data: PreparedData | None,
    strategy: tf.distribute.Strategy | None = None,
) -> Run:
    """Step 1: encoder, tokenized data (unless given), tasks, model, stages and schedule;
    the encoder and model made under `strategy` (default: none, one device)."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():  # the weights: one copy per replica
        encoder = load_encoder(config.encoder)
        if data is None:
            data = prepare_data(config, encoder)
        encoder = encoder_for(data, encoder)
        tasks = build_tasks(config.named_tasks())
        for task in tasks:
            task.attach(data.tasks[task.name])
            if getattr(task.loss, "multi_label", None) is not None:
                check_report_thresholds(config.training.report_thresholds, task.loss)
        graph = build_model(config, encoder, tasks)
    if strategy is not tf.distribute.get_strategy():  # the default strategy needs none
        graph = single_replica_views(graph)
    for task in tasks:
        task.initialize(graph.model, data.tasks[task.name])
    parameters = count_parameters(graph.model)
    stages = training_stages(config)
    if stages[0].head_only:
        set_trainable(graph.model, config.finetune, head_only=True)
        parameters["trainable_head_only_stage"] = count_parameters(graph.model)["trainable"]
    train = {task.name: data.tasks[task.name].splits["train"] for task in tasks}
    schedule = plan_epochs(config.training, tasks, train, train_bucket_limit(config.training))
    names = MetricNames(tasks, implicit=config.tasks is None)
    return Run(encoder, data, tasks, graph, names, parameters, stages, schedule, strategy)


def build_model(config: RunConfig, encoder: EncoderAdapter, tasks: list[Task]) -> TaskGraph:
    """Every task's output on the encoder, with the `finetune` settings applied:
    soft prompt and prefixes, re-initialized top layers, LoRA, and the trainable set of the
    main stage."""
    finetune = config.finetune
    check_finetune(finetune, encoder.num_layers, config.training.epochs)
    try:
        tune_encoder(encoder, finetune)  # prompt / prefix tuning: part of the graph
    except ValueError as error:
        raise ConfigError(f"finetune: {error}") from None
    graph = build_task_graph(encoder, tasks, TaskModel)
    reinitialize_top_layers(graph.model, finetune.reinit_top_layers)
    if finetune.lora_rank is not None:
        enable_lora(
            graph.model,
            finetune.lora_rank,
            finetune.lora_alpha,
            finetune.lora_targets,
            trainable_layer_indices(finetune, encoder.num_layers),
        )
    set_trainable(graph.model, finetune)
    return graph


def open_run_folder(
    config: RunConfig, run: Run, run_dir: str | Path | None, precision: str
) -> RunFolder:
    """Step 2: the run folder with the config, tasks, labels and tokenizer files."""
    folder = create_run_folder(run_dir or default_run_dir(config), config, run.tasks, run.encoder)
    print(
        f"xtune: {run.encoder.source}; {task_summary(run)}; "
        f"{run.parameters['trainable']:,} trainable parameters; "
        f"{precision}; {device_name()}{describe(run.strategy)}; run folder {folder.path}",
        flush=True,
    )
    return folder


def initial_metrics(
    run: Run, folder: RunFolder, training: Any, resume: bool
) -> dict[str, dict[str, float]]:
    """Every task's dev metrics with the weights training starts from (in the training
    precision), kept in `INITIAL_METRICS_FILE`: a resumed run reports the ones its start had."""
    path = folder.path / INITIAL_METRICS_FILE
    if resume and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    metrics = {}
    for task in run.tasks:
        dev = run.data.tasks[task.name].splits["dev"]
        view = run.graph.task_models[task.name]
        outputs = task.predict(view, dev, training.eval_batch_size)
        metrics[task.name] = {k: float(v) for k, v in task.evaluate(dev.targets, outputs).items()}
    write_atomic(path, json.dumps(metrics, indent=1))
    print(f"dev before training: {metrics_line(run.tasks, metrics)}", flush=True)
    return metrics


def metrics_line(tasks: list[Task], metrics: dict[str, dict[str, float]]) -> str:
    """`task metric value ...` of each task's `line_metrics`."""
    return "; ".join(
        f"{task.name} "
        + "  ".join(f"{key} {metrics[task.name][key]:.4f}" for key in task.line_metrics)
        for task in tasks
    )


def task_summary(run: Run) -> str:
    """`N labels; train a / dev b rows` for one task, `tasks x (type, n train rows), ...`."""
    if run.names.implicit:
        (task,) = run.tasks
        splits = run.data.tasks[task.name].splits
        return (
            f"{len(task.labels)} labels; train {len(splits['train'])} / dev "
            f"{len(splits['dev'])} rows"
        )
    return "tasks " + ", ".join(
        f"{task.name} ({task.type_name}, {size} train rows)"
        for task, size in zip(run.tasks, run.schedule.sizes, strict=True)
    )


def fit_run(
    config: RunConfig,
    run: Run,
    folder: RunFolder,
    resumed: Checkpoint | None,
    mlflow: MlflowTracker,
) -> tuple[DevEvaluation, FitClock]:
    """Step 3: `model.fit` per stage (a fresh optimizer each), scored on dev every epoch,
    checkpointed after every epoch; a resumed run starts after its checkpoint's epoch."""
    training, model = config.training, run.graph.model
    rate = learning_rate_text(config)
    evaluation = DevEvaluation(
        run.tasks, run.graph.task_models, run.splits("dev"), run.names, run.schedule, training,
        rate,
    )  # fmt: skip
    divergence, first_step = DivergenceGuard(rate), FirstStepTimer()
    start = 0
    if resumed is not None:
        evaluation.load_state(resumed.progress.evaluation, resumed)
        divergence.first_loss = resumed.progress.first_loss
        start = resumed.progress.epochs_done
    checkpoint = EpochCheckpoint(folder.path, evaluation, divergence)
    callbacks = [InterruptPoint(), divergence, evaluation, keras.callbacks.ProgbarLogger(),
                 first_step, EpochLines(evaluation)]  # fmt: skip
    # The bar's logger explicitly, so the dev summary line is printed after it.
    callbacks += [checkpoint] if training.checkpoints else []
    callbacks += tracking_callbacks(
        training.report_to, folder.path, run.schedule.steps_per_epoch, evaluation, mlflow
    )
    callbacks += [StepFaultPoint()] if faults.enabled("train_step") else []
    fit_started = time.perf_counter()
    for stage in run.stages:
        if stage.end_epoch <= start:
            continue
        if evaluation.patience_spent():  # early stopping ends the whole run, not the stage
            break
        fit_stage(config, run, stage, start, resumed, callbacks)
        last = stage is run.stages[-1]
        if training.checkpoints and not last and uses_ema(model):
            checkpoint.save(stage.end_epoch)  # `fit` ended by moving the EMA into the weights
    return evaluation, FitClock(fit_started, first_step.first_step_done, time.perf_counter())


def fit_stage(
    config: RunConfig,
    run: Run,
    stage: Stage,
    start: int,
    resumed: Checkpoint | None,
    callbacks: list[keras.callbacks.Callback],
) -> None:
    """One stage's `fit`, from epoch `start` when the run resumes inside it."""
    training, model = config.training, run.graph.model
    first = max(stage.start_epoch, start)
    kinds = stage_kinds(run.schedule, stage.start_epoch, stage.end_epoch)
    with run.strategy.scope():  # the optimizer's and the loss trackers' variables
        compile_stage(config, run, stage)
        model.plan = step_plan(
            run.tasks,
            [run.graph.task_models[task.name] for task in run.tasks],
            kinds,
            get_attack(config.adversarial),
            training.seed,
            xla_update=resolve_xla_update(training.jit_compile),
        )
    if resumed is not None and first == start > 0:
        restore_training_state(model, resumed, mid_stage=first > stage.start_epoch)

    def dataset() -> tf.data.Dataset:
        batches = stage_task_datasets(run, training, stage, first)
        return stage_dataset(run.schedule, first, stage.end_epoch, kinds, batches)

    # `fit` itself runs outside the scope: the model keeps its strategy, and the dev
    # scoring its callbacks run must not pick the strategy up (`single_replica_views`).
    model.fit(
        distribute(run.strategy, dataset),
        initial_epoch=first,
        epochs=stage.end_epoch,
        steps_per_epoch=run.schedule.steps_per_epoch,
        callbacks=callbacks,
        verbose=fit_verbosity(training.verbose),
        shuffle=False,  # the dataset shuffles itself, reproducibly from the seed
    )


def stage_task_datasets(run: Run, training: Any, stage: Stage, first: int) -> list[Any]:
    """Each task's endless shuffled batches for `stage`, from epoch `first` of it.

    Built afresh per stage with the stage's own seed: a `shuffle` that reshuffles every
    iteration draws its orders from a generator that lives in the dataset object, so reusing
    one dataset across stages would make a stage's order depend on how many iterators came
    before it, and a resumed run, which makes fewer, would read other batches. A run resumed
    inside a stage skips the batches its finished epochs took.
    """
    seed = stage_seed(training.seed, run.stages.index(stage))
    taken = batches_taken(run.schedule, len(run.tasks), stage.start_epoch, first)
    datasets, buckets = [], train_bucket_limit(training)
    for task, skipped in zip(run.tasks, taken, strict=True):
        split = run.data.tasks[task.name].splits["train"]
        dataset = task.dataset(split, training.batch_size, True, seed, max_buckets=buckets)
        dataset = dataset.repeat()
        datasets.append(dataset.skip(skipped) if skipped else dataset)
    return datasets


def stage_seed(seed: int, stage_index: int) -> int:
    """The first stage shuffles with `training.seed`; later ones with seeds drawn from it."""
    if stage_index == 0:
        return seed
    return int(np.random.SeedSequence([seed, stage_index]).generate_state(1)[0])


def restore_training_state(model: keras.Model, resumed: Checkpoint, mid_stage: bool) -> None:
    """The model's variables (and, inside a stage, the optimizer's and PCGrad's random state)
    as the checkpoint holds them; a stage's first epoch starts with a fresh optimizer."""
    assign_variables(model.variables, resumed.listed("model"), "model")
    if not mid_stage:
        return
    assign_variables(model.optimizer.variables, resumed.listed("optimizer"), "optimizer")
    if "generator" in resumed.arrays:
        model.plan.generator.reset(resumed.arrays["generator"])


def compile_stage(config: RunConfig, run: Run, stage: Stage) -> None:
    """The stage's trainable set and a fresh optimizer whose schedule spans the stage."""
    model = run.graph.model
    set_trainable(model, config.finetune, head_only=stage.head_only)
    schedule = SCHEDULES.build(config.schedule.to_dict())
    stage_steps = run.schedule.steps_per_epoch * (stage.end_epoch - stage.start_epoch)
    optimizer = OPTIMIZERS.build(config.optimizer.to_dict())(model, schedule, stage_steps)
    jit = resolve_jit(config.training.jit_compile)
    model.compile(optimizer=optimizer, jit_compile=jit)
    # Built before the first step, or the train function is traced twice (the step would
    # create the optimizer's variables).
    model.optimizer.build(model.trainable_variables)
    print(
        f"{stage.description}, epochs {stage.start_epoch + 1}-{stage.end_epoch}; "
        f"learning rates by parameter group:\n"
        + learning_rate_table(
            model, optimizer.learning_rate_multipliers, optimizer.base_learning_rate
        ),
        flush=True,
    )


# ---------------------------------------------------------------- finish


@dataclass
class Scored:
    """What `finish_run` computes per task, in float32 as the export serves it."""

    best: dict[str, dict[str, float]] = field(default_factory=dict)
    tuned: dict[str, dict[str, float]] = field(default_factory=dict)
    thresholds: dict[str, np.ndarray] = field(default_factory=dict)
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    test_tuned: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, RuleChoice] = field(default_factory=dict)  # label tasks' decision rules
    per_label: list[dict[str, Any]] = field(default_factory=list)  # per_label.csv's rows
    confusion: dict[str, np.ndarray] = field(default_factory=dict)  # single-label tasks, dev


def finish_run(
    config: RunConfig,
    run: Run,
    folder: RunFolder,
    evaluation: DevEvaluation,
    precision: str,
    clock: FitClock,
    initial: dict[str, dict[str, float]] | None = None,
) -> RunResult:
    """Step 4: the best epoch's weights saved, dev (and test) scored as the export serves
    them, thresholds tuned, and the result written (with `initial`, the dev metrics of the
    starting weights, when given)."""
    training, model = config.training, run.graph.model
    print(after_fit_line(run, precision, training), flush=True)
    model.set_weights(evaluation.best_weights)
    if training.save_weights:
        folder.write_weights(model)
        if config.finetune.parameter_efficient():
            folder.write_binary(ADAPTER_FILE, lambda path: save_adapter(model, path))
    served = served_run(model, folder, precision, training.save_weights)
    scored = Scored()
    for task in run.tasks:
        score_task(task, run, served, evaluation, training, scored)
    result = run_result(config, run, folder, evaluation, scored, precision, clock)
    if initial is not None:
        result.extra["initial"] = run.names.best(initial, mean_score(run.tasks, initial))
    write_label_reports(folder.path, run, scored)
    folder.write_result(result, thresholds_record(run, scored))
    remove_checkpoint(folder.path)
    print_summary(result, run, scored)
    return result


def after_fit_line(run: Run, precision: str, training: Any) -> str:
    """What happens between the last epoch and the summary (up to a third of a short run)."""
    steps = ["saving the best epoch's weights"] if training.save_weights else []
    if precision != "float32":
        steps.append("rebuilding the model in float32 as the export serves it")
    has_test = any("test" in run.data.tasks[task.name].splits for task in run.tasks)
    steps.append("scoring dev and test" if has_test else "scoring dev")
    if any(task.decides_labels for task in run.tasks):
        steps.append("choosing the decision rule")
    return "after training: " + ", ".join(steps) + " ..."


def served_run(
    model: keras.Model, folder: RunFolder, precision: str, weights_saved: bool
) -> LoadedRun | None:
    """The kept weights as `xtune export` and `xtune predict` serve them: in float32.

    None in float32 (the trained model is what they serve). A mixed-precision model is
    rebuilt in float32 the way the export loads a run folder (from the weights file; a
    scratch copy when `save_weights` is off), so metrics.json and the tuned thresholds are
    exactly what the served model gives on dev.
    """
    if precision == "float32":
        return None
    keras.mixed_precision.set_global_policy("float32")
    try:
        if weights_saved:
            return load_run_files(folder.path)
        with tempfile.TemporaryDirectory() as scratch:
            weights = Path(scratch) / WEIGHTS_FILE
            save_model_weights(model, weights)
            return load_run_files(folder.path, weights)
    finally:
        keras.mixed_precision.set_global_policy(precision)


def score_task(
    task: Task,
    run: Run,
    served: LoadedRun | None,
    evaluation: DevEvaluation,
    training: Any,
    scored: Scored,
) -> None:
    """One task's dev metrics, tuned thresholds and test metrics into `scored`."""
    splits = run.data.tasks[task.name].splits
    view = (served.graph if served else run.graph).task_models[task.name]
    batch = training.eval_batch_size
    dev = splits["dev"]
    dev_outputs = (
        evaluation.best_outputs[task.name] if served is None else task.predict(view, dev, batch)
    )
    scored.best[task.name] = task.evaluate(dev.targets, dev_outputs)
    test_outputs = task.predict(view, splits["test"], batch) if "test" in splits else None
    if test_outputs is not None:
        scored.test[task.name] = task.evaluate(splits["test"].targets, test_outputs)
    scored.baseline[task.name] = task.baseline(splits["train"].targets, dev.targets)
    if not task.decides_labels:
        return
    loss = task.loss
    dev_scores = scores_of(loss, dev_outputs)
    fixed = {"dev": fixed_threshold_reports(training, task.labels, dev.targets, dev_scores)}
    scored.rules[task.name] = decision_rule(task, training, dev.targets, dev_scores, scored)
    thresholds = scored.rules[task.name].thresholds
    if thresholds is not None:
        scored.thresholds[task.name] = thresholds
        scored.tuned[task.name] = task.evaluate_scores(dev.targets, dev_scores, thresholds)
    add_label_reports(task, "dev", dev.targets, dev_scores, scored)
    if test_outputs is not None:
        test = splits["test"]
        test_scores = scores_of(loss, test_outputs)
        if thresholds is not None:
            scored.test_tuned[task.name] = task.evaluate_scores(
                test.targets, test_scores, thresholds
            )
        fixed["test"] = fixed_threshold_reports(training, task.labels, test.targets, test_scores)
        add_label_reports(task, "test", test.targets, test_scores, scored)
    scored.fixed[task.name] = fixed


def add_label_reports(
    task: Task, split: str, targets: np.ndarray, scores: np.ndarray, scored: Scored
) -> None:
    """The split's per-label rows under the served rule, and a single-label task's dev
    confusion matrix."""
    served = scored.rules[task.name].served_thresholds
    predictions = np.asarray(task.loss.decide(scores, served))
    shown = served
    if served is None and task.loss.default_threshold is not None:
        shown = task.loss.default_threshold
    scored.per_label += per_label_rows(task.name, split, task.labels, targets, predictions, shown)
    if split == "dev" and not task.loss.multi_label:
        scored.confusion[task.name] = confusion_matrix(targets, predictions)


def decision_rule(
    task: Task, training: Any, targets: np.ndarray, scores: np.ndarray, scored: Scored
) -> RuleChoice:
    """The task's served rule (`xtune.thresholds.choose_decision_rule`) on its dev scores."""
    default_threshold = task.loss.default_threshold
    if default_threshold is None:
        return top1_rule(task.metric, scored.best[task.name].get(task.metric))
    return choose_decision_rule(
        targets,
        scores,
        task.metric,
        training.decision_rule,
        training.tune_thresholds,
        default_threshold,
        seed=training.seed,
    )


def write_label_reports(path: Path, run: Run, scored: Scored) -> None:
    """per_label.csv and the single-label tasks' confusion matrices (`label_reports`)."""
    if scored.per_label:
        write_per_label_table(path, scored.per_label)
    for task in run.tasks:
        if task.name in scored.confusion:
            name = confusion_matrix_file(task.name, run.names.implicit)
            write_confusion_matrix(path / name, task.labels, scored.confusion[task.name])


def run_result(
    config: RunConfig,
    run: Run,
    folder: RunFolder,
    evaluation: DevEvaluation,
    scored: Scored,
    precision: str,
    clock: FitClock,
) -> RunResult:
    """The `RunResult`: metrics named by `run.names` (see `xtune.training.metric_names`)."""
    names, training = run.names, config.training
    train_seconds = sum(h["train_seconds"] for h in evaluation.history)
    epochs = len(evaluation.history)
    samples = run.schedule.steps_per_epoch * run.schedule.samples_per_step * epochs
    if names.implicit:  # at most the train split per epoch, as before tasks existed
        (size,) = run.schedule.sizes
        samples = min(size, run.schedule.steps_per_epoch * training.batch_size) * epochs
    extra: dict[str, Any] = {
        "precision": precision,
        "eval_precision": "float32",  # of `best`, `tuned`, `test` and the thresholds
        "distribution": distribution_record(run.strategy),
        "fit_seconds": round(clock.fit_ended - clock.fit_started, 3),
        "timings": run_timings(
            clock.started, clock.fit_started, clock.first_step_done, clock.fit_ended
        ),
    }
    if not names.implicit:
        extra["tasks"] = {
            task.name: {"type": task.type_name, "metric": task.metric, "weight": task.weight}
            for task in run.tasks
        }
    if scored.rules:
        extra["decision_rule"] = names.per_task(rule_records(run, scored))
    if training.report_thresholds:
        extra["fixed_thresholds"] = names.per_task(scored.fixed)
    if run.data.warnings:
        extra["data_warnings"] = run.data.warnings
    summaries = {name: data.summary for name, data in run.data.tasks.items() if data.summary}
    if summaries:  # what the tasks' data were (an mlm task's corpus)
        extra["data"] = names.per_task(summaries)
    return RunResult(
        run_dir=folder.path,
        history=evaluation.history,
        best_epoch=evaluation.best_epoch,
        best=names.best(scored.best, mean_score(run.tasks, scored.best)),
        tuned=names.flat_some(scored.tuned),
        test=test_record(names, scored),
        baseline=names.per_task(scored.baseline),
        parameters=run.parameters,
        seconds=round(time.perf_counter() - clock.started, 3),
        train_samples_per_second=round(samples / train_seconds, 2) if train_seconds else 0.0,
        device=device_name(),
        extra=extra,
    )


def test_record(names: MetricNames, scored: Scored) -> dict[str, Any] | None:
    """metrics.json's `test`: by rule for a config without `tasks:`; flat per task else."""
    if not scored.test:
        return None
    if names.implicit:
        test: dict[str, Any] = {"default_rule": names.flat(scored.test)}
        if scored.test_tuned:
            test["tuned_thresholds"] = names.flat(scored.test_tuned)
        return test
    test = names.flat(scored.test)
    if scored.test_tuned:
        test["tuned_thresholds"] = names.flat(scored.test_tuned)
    return test


def rule_records(run: Run, scored: Scored) -> dict[str, dict[str, Any]]:
    """Each label task's decision rule: the rule served, both rules' dev values of its
    selection metric (and test values when there is a test split), the tuned thresholds by
    label name."""
    records = {}
    for task in run.tasks:
        if task.name not in scored.rules:
            continue
        record = scored.rules[task.name].record(task.labels)
        if task.name in scored.test:
            record["test"] = {
                "default": scored.test[task.name].get(task.metric),
                "tuned": scored.test_tuned.get(task.name, {}).get(task.metric),
            }
        records[task.name] = record
    return records


def thresholds_record(run: Run, scored: Scored) -> dict[str, Any] | None:
    """thresholds.json: `thresholds`, the served thresholds by task and label name (null for
    a task that serves its default rule), and `decision_rules`, each task's `rule_records`."""
    if not scored.rules:
        return None
    records = rule_records(run, scored)
    served = {
        name: record["tuned_thresholds"] if record["served"] == "tuned" else None
        for name, record in records.items()
    }
    return {"thresholds": served, "decision_rules": records}


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
    training: Any, label_names: list[str], labels: np.ndarray, scores: np.ndarray
) -> dict[str, dict[str, Any]]:
    """`training.report_thresholds` -> {"0.3": per-label P/R/F1 and their macro means}."""
    return {
        f"{threshold:g}": fixed_threshold_report(labels, scores, label_names, threshold)
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


def default_run_dir(config: RunConfig) -> Path:
    name = config.training.run_name or time.strftime("run-%Y%m%d-%H%M%S")
    return Path(config.training.output_dir) / name


SUMMARY_KEYS = (
    "subset_accuracy",
    "top1_accuracy",
    "micro_f1",
    "macro_f1",
    "samples_f1",
    "hamming_loss",
)


def print_summary(result: RunResult, run: Run, scored: Scored) -> None:
    if run.names.implicit:
        print_classification_summary(result, run.tasks[0].metric)
    else:
        print(
            f"\nbest epoch {result.best_epoch} by the mean score; dev (float32) mean "
            f"{result.best['mean_score']:.4f}; {metrics_line(run.tasks, scored.best)}",
            flush=True,
        )
    for name, choice in scored.rules.items():
        prefix = "" if run.names.implicit else f"{name}: "
        print(f"{prefix}{choice.line()}", flush=True)
    for task in run.tasks:
        if task.name in scored.test:
            print(test_line(task, scored, run.names.implicit), flush=True)
    print(
        f"{result.parameters['trainable']:,} trainable parameters; "
        f"{result.train_samples_per_second} train samples/s; {result.seconds:.1f} s in all; "
        f"run folder {result.run_dir}",
        flush=True,
    )


def test_line(task: Task, scored: Scored, implicit: bool) -> str:
    """A task's test metrics under the rule it serves (what the export gives on test)."""
    choice = scored.rules.get(task.name)
    tuned = choice is not None and choice.served == "tuned" and task.name in scored.test_tuned
    values = scored.test_tuned[task.name] if tuned else scored.test[task.name]
    keys = [key for key in SUMMARY_KEYS if key in values] or [
        key for key, value in values.items() if isinstance(value, int | float)
    ]
    rule = "" if choice is None else f" ({'tuned thresholds' if tuned else 'default rule'})"
    name = "" if implicit else f" {task.name}"
    return f"test{name}{rule}: " + "  ".join(f"{key} {values[key]:.4f}" for key in keys)


def print_classification_summary(result: RunResult, metric: str) -> None:
    baseline = result.baseline.get("most_frequent_label_set", {})
    print(f"\nbest epoch {result.best_epoch} by val {metric}; dev metrics:")
    print(f"  {'metric':<16}{'model':>10}{'tuned thr':>11}{'majority':>10}")
    for key in SUMMARY_KEYS:
        tuned = f"{result.tuned[key]:.4f}" if result.tuned else "-"
        base = f"{baseline[key]:.4f}" if key in baseline else "-"
        print(f"  {key:<16}{result.best[key]:>10.4f}{tuned:>11}{base:>10}")


def result_json(result: RunResult) -> str:
    return json.dumps(result.summary(), indent=1, ensure_ascii=False, default=str)
