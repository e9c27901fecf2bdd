"""The typed run config: frozen dataclasses, one per YAML section, and the task and component
specs they hold. Reading YAML into them is `xtune.config`'s job; this module imports no parser
and no component registry, so data and components can read the schema alone."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

# Settings that change where a run writes or how much it prints, not what it computes: left
# out of a grid's run ids (changing them does not retrain a finished grid) and free to change
# when a run is resumed.
NON_RESULT_KEYS = (
    "data.cache_dir",
    "training.output_dir",
    "training.run_name",
    "training.save_weights",
    "training.checkpoints",
    "training.report_to",
    "training.verbose",
    "tracking.mlflow_uri",
    "tracking.experiment",
)


def without_non_result_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """A config dict (changed in place) without `NON_RESULT_KEYS`; a section they leave empty
    is dropped too, so setting only them changes no run id."""
    for dotted in NON_RESULT_KEYS:
        section, key = dotted.split(".")
        if isinstance(raw.get(section), dict):
            raw[section].pop(key, None)
            if not raw[section]:
                raw.pop(section)
    return raw


@dataclass(frozen=True)
class ComponentSpec:
    """A registry component picked by short name, with its keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}


# `data.prepare` choices (xtune.data.preparation).
PREPARE_WIDTHS = ("none", "alphanumeric", "ascii")
PREPARE_WHITESPACE = ("keep", "collapse")
PREPARE_DUPLICATES = ("keep", "drop")


@dataclass(frozen=True)
class BoilerplateConfig:
    """Boilerplate removal learned from the training rows (`xtune.data.preparation`): texts are
    split into sentences after 。！？；!?; and line breaks, and a sentence (compared without
    whitespace) that occurs in more than `share` of the training rows, and in at least
    `min_rows` of them, is removed from every text of every split, at prediction time too.
    The learned list is saved in the run folder (preparation.json) and in the export."""

    share: float = 0.05  # a sentence in more than this share of the training rows is removed
    min_rows: int = 5  # ... and in at least this many rows (small corpora)
    min_chars: int = 4  # sentences shorter than this (without whitespace) are never removed
    # Also remove template text that does not follow sentence ends: the spans covered by
    # character n-grams of this length in more than `share` of the rows (e.g. 16); null: off.
    ngram_chars: int | None = None
    # At most this many sentences (and spans) are learned, the most common first; spans also
    # stop where their pattern would outgrow 16 kB (the export's regex engine's fast path).
    max_items: int = 1000


@dataclass(frozen=True)
class PrepareConfig:
    """Text preparation (`xtune.data.preparation`, docs/preparation.md): applied to every
    split's `text` and `text_pair` before tokenizing, the same way by `xtune predict` and
    inside the exported model. Every step is off by default."""

    # Full-width forms to ASCII: none; alphanumeric (Ａ-Ｚ ａ-ｚ ０-９ only, Chinese
    # punctuation such as ，！？：（） kept); ascii (the whole U+FF01-U+FF5E block, punctuation
    # included, and the ideographic space U+3000).
    width: str = "none"
    # Remove control and invisible format characters (zero-width spaces, BOMs, bidi marks,
    # soft hyphens); line ends become \n, tabs stay.
    control_characters: bool = False
    whitespace: str = "keep"  # keep | collapse (every run of whitespace -> one space, ends trimmed)
    boilerplate: BoilerplateConfig | None = None  # learned boilerplate removal; null: off
    # Train rows whose prepared text (and pair), compared without whitespace, punctuation and
    # case, repeats an earlier train row: keep | drop (the first is kept). Rows of dev/test
    # that repeat a train row are reported either way (preparation_report.json).
    duplicates: str = "keep"

    def enabled(self) -> bool:
        """Whether any step is on (off: texts are used as read, nothing is reported)."""
        return self != PrepareConfig()


@dataclass(frozen=True)
class DataConfig:
    """Where the texts and labels are, how to read them, and how to fit them into the encoder."""

    train: str = ""  # the training file (csv, tsv/txt, jsonl/json, xlsx)
    dev: str | None = None  # the dev file; None: a seeded split of train (dev_fraction)
    test: str | None = None  # optional test file, scored once with the kept weights
    root: str = "."  # relative file paths are resolved against this folder
    format: str = "auto"  # auto | csv | tsv | jsonl | xlsx
    columns: list[str] | None = None  # names for header-less files
    text: str = "text"  # the text column (dots reach into JSON objects: meta.title)
    text_pair: str | None = None  # optional second segment's column (e.g. a title)
    labels: str | None = "labels"  # the label column (for label_format: delimited | list)
    label_format: str = "delimited"  # delimited | list | columns
    label_separator: str = "|"  # text between labels in a delimited cell
    label_columns: list[str] | None = None  # for label_format: columns
    label_names: str | list[str] | None = None  # file (one name a line) or list
    labels_are_indices: bool = False  # label cells hold 0-based ids into label_names
    dev_fraction: float = 0.2  # seeded split of `train` when `dev` is not given
    split_seed: int = 0  # seed of the dev split and of the max_train_rows subset
    max_train_rows: int | None = None  # seeded label-stratified subset of train (quick grids)
    max_length: int = 128  # tokens per example, both segments and the specials together
    # head | tail | head_tail | head_tail_pair (head_tail's tokens as two segments: the head
    # as `text`, the tail as `text_pair`; `text_pair` must not be set)
    truncation: str = "head"
    # head_tail, head_tail_pair: first k tokens kept, the rest of the budget from the end
    head_tokens: int = 64
    bad_rows: str = "error"  # error | skip
    unknown_labels: str = "error"  # dev/test labels not in train: error | skip_rows | ignore_labels
    sheet: str | None = None  # XLSX sheet to read (default: the first)
    # Text encoding of CSV/TSV/JSONL files (e.g. gb18030); auto: UTF-8 (BOM or not) when a
    # file decodes as UTF-8, else GB18030, decided per file.
    encoding: str = "utf-8"
    # bucket (train rows of similar length batched together, padded to one of <= 32 lengths
    # fitted to the data; 8 when the step is XLA-compiled, each length a compile) | dynamic
    # (to the batch's longest row) | fixed (to max_length).
    padding: str = "bucket"
    # Keep only the word-embedding rows the data's pieces use (encoders/trimmed_vocabulary.py):
    # auto = for vocabularies over 100,000 pieces (multilingual ones), true, false.
    trim_vocabulary: str | bool = "auto"
    cache_dir: str | None = ".cache/xtune"  # on-disk cache of tokenized splits; None: off
    # Hierarchical labels (xtune.data.hierarchy): a label may be a path of names joined by
    # `label_path_separator`; `label_hierarchy` names a tree file the paths must follow.
    label_hierarchy: str | None = None
    label_path_separator: str = "/"  # between the names of a hierarchical label path
    prepare: PrepareConfig = PrepareConfig()  # text clean-up and boilerplate removal (off)


@dataclass(frozen=True)
class TrainingConfig:
    """How long and how to train, what to select on, where the run folder goes."""

    epochs: int = 5  # training epochs (the best one by `metric` on dev is kept)
    batch_size: int = 32  # training examples a step
    eval_batch_size: int = 64  # examples a step when scoring dev and test
    seed: int = 0  # seeds weight initialisation, dropout and batch order
    metric: str = "subset_accuracy"  # the "val-acc" of reports
    early_stopping_patience: int | None = None  # stop after this many epochs without improvement
    output_dir: str = "runs"  # each run gets a folder output_dir/run_name
    run_name: str | None = None  # the run folder's name; None: run-<date>-<time>
    mixed_precision: str = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
    # XLA: auto (the whole step on GPU; off on CPU) | true | false | optimizer (the optimizer's
    # update alone: one fused pass over each weight and its moments; not under a strategy)
    jit_compile: str | bool = "auto"
    steps_per_epoch: int | None = None  # cap for smoke tests and benchmarks
    save_weights: bool = True  # false: no model.weights.h5 (then no export or predict)
    # Keep the last finished epoch's model and optimizer state in RUN/checkpoint/ while the
    # run trains (removed when it ends), so `xtune train CONFIG --resume` continues an
    # interrupted run to the result of an uninterrupted one; false: write none.
    checkpoints: bool = True
    # Tracking tools that get the run (xtune.training.tracking): tensorboard (events in
    # RUN/tensorboard/: training loss and learning rate every step, dev metrics every epoch).
    report_to: list[str] = field(default_factory=list)
    # Thresholds tuned on dev (xtune.thresholds): auto = for the selection metric `metric`
    # (macro_f1: per label; micro_f1, subset_accuracy, samples_f1, hamming_loss: one shared
    # threshold), per_label_f1, micro_f1, subset_accuracy, samples_f1, hamming_loss, or None.
    # The default stays per_label_f1 so every committed grid's run ids (a hash of the resolved
    # config) stay what they were; `decision_rule: auto` keeps it from being served when it
    # does worse than the default rule.
    tune_thresholds: str | None = "per_label_f1"
    # What the export and predict serve: auto = the tuned thresholds only when they beat the
    # loss's default threshold on `metric`, cross-validated on dev; default; tuned.
    decision_rule: str = "auto"
    # Also score dev (and test) with these fixed thresholds on the per-label scores, reported
    # as per-label P/R/F1 and their macro means (the GoEmotions paper uses [0.3]).
    report_thresholds: list[float] = field(default_factory=list)
    verbose: int = 1  # Keras fit output: 0 none, 1 progress bar (on a terminal), 2 a line an epoch
    # Multi-task runs (`tasks:`) only: which task's batch comes next (xtune.tasks.samplers;
    # default proportional), and PCGrad over the tasks' gradients (one batch of every task a
    # step). Left out of `to_dict` when unset, so single-task run ids stay what they were.
    sampler: str | dict | None = None
    pcgrad: bool = False  # multi-task runs: combine the tasks' gradients by PCGrad
    # Data parallelism (xtune.training.distribution): mirrored = one replica per GPU (or per
    # logical CPU), the global batch `batch_size` split across them; none = one device;
    # auto = mirrored when more than one GPU is visible and the run can be mirrored.
    distribution: str = "auto"


@dataclass(frozen=True)
class FinetuneConfig:
    """Which encoder weights train, and how (`xtune.training.freezing`, `xtune.training.lora`)."""

    freeze_encoder: bool = False  # train the head only
    freeze_embeddings: bool = False  # freeze the embedding tables and their LayerNorm
    train_top_layers: int | None = None  # train only the top N transformer layers (+ pooler)
    reinit_top_layers: int = 0  # re-initialize the top N transformer layers and the pooler
    frozen_epochs: int = 0  # first train the head alone for this many epochs, then the rest
    lora_rank: int | None = None  # LoRA on `lora_targets`; the encoder's own weights freeze
    lora_alpha: float | None = None  # LoRA delta scale is alpha / rank; default alpha = rank
    # The projections of each transformer layer that LoRA adapts, by layer name.
    lora_targets: list[str] = field(default_factory=lambda: ["query", "value"])
    # Prompt tuning: this many soft-prompt vectors before the embedded input; prefix tuning:
    # this many key/value vectors in every attention layer (xtune/encoders/prompt_injection.py).
    # Either freezes the encoder's own weights; null: off.
    prompt_length: int | None = None
    prefix_length: int | None = None  # prefix tuning (see prompt_length); null: off
    bitfit: bool = False  # the encoder's biases (and LayerNorm betas) train, nothing else

    def parameter_efficient(self) -> bool:
        """Whether only some new or chosen encoder weights train (LoRA, prompt, prefix,
        BitFit): the run folder then also writes them alone (adapter.npz)."""
        return (
            self.lora_rank is not None
            or self.prompt_length is not None
            or self.prefix_length is not None
            or self.bitfit
        )


# DataConfig keys left out of `to_dict` while unset, so run ids stay what they were before
# they existed.
OPTIONAL_DATA_KEYS = {
    "label_hierarchy": None,
    "label_path_separator": "/",
    "prepare": dataclasses.asdict(PrepareConfig()),
}


@dataclass(frozen=True)
class HierarchyConfig:
    """How a classification task uses hierarchical labels (`xtune.tasks.hierarchical`).

    `mode`: `none` (labels are flat names; with `data.label_hierarchy` set it reads as
    `leaves`), `leaves` (flat over the nodes where rows' paths end), `ancestors` (flat over
    every node, each row's ancestors added to its targets), `per_level` (a softmax per level
    over the node logits, `level_weights` per level), `coherent` (C-HMCNN's max-constraint
    output and loss). `decoding`: `auto` (best path for `per_level` and single-label losses,
    else thresholds), `threshold` (per-label thresholds, then a child only with its parent),
    `best_path` (the full path with the largest product of its nodes' probabilities),
    `top_down` (the most probable first level, then its most probable child, ...).
    """

    mode: str = "none"  # none | leaves | ancestors | per_level | coherent (see above)
    decoding: str = "auto"  # auto | threshold | best_path | top_down (see above)
    level_weights: list[float] | None = None  # per_level: loss weight of each level; None: 1 each


@dataclass(frozen=True)
class MaskedLMConfig:
    """What an `mlm` task reads and how it masks (`xtune.tasks.mlm`, whole-word masking in
    `xtune.data.whole_word_masking`). A document is a row: its columns' texts joined."""

    # The text columns of every file read; [] = data.text (and data.text_pair when set).
    columns: list[str] = field(default_factory=list)
    # More training files besides data.train (relative to data.root): a path (read with the
    # same columns and data.format), or {path, columns, format, header} for a file of another
    # shape (`header`: column names of a header-less file; the data.columns of that file).
    files: list[str | dict[str, Any]] = field(default_factory=list)
    # The held-out documents of data.train when there is no data.dev: `documents` (a seeded
    # data.dev_fraction of them) or `labels` (exactly the dev rows a classification task with
    # the same data keys holds out: labels, dev_fraction, split_seed), so that pre-training
    # and an auxiliary mlm task never read the fine-tuning's dev texts.
    dev_split: str = "documents"
    # The share of the words masked; each piece of a masked word becomes the mask token
    # (80%), a random piece (10%) or stays (10%).
    mask_rate: float = 0.15
    # Mask whole words (a `##` piece joins the word before it, a `▁` one begins one; Chinese
    # words from jieba); false: each piece on its own.
    whole_words: bool = True
    # A jieba user dictionary (UTF-8 lines of `word [frequency] [tag]`; relative to data.root)
    # for the Chinese words of whole-word masking.
    user_dictionary: str | None = None
    # Pack several documents into one sequence of up to data.max_length tokens; false: one
    # document a sequence (a long one is cut at word starts either way).
    pack: bool = True


# Bi-encoder pair features (xtune.heads.pair.PAIR_PARTS): Sentence-BERT's default, all four.
DEFAULT_PAIR_PARTS = ("u", "v", "abs_diff", "product")


# The name of the one task of a config without `tasks:`.
SINGLE_TASK = "default"


@dataclass(frozen=True)
class TaskConfig:
    """One named task of a multi-task run (`tasks: {name: {...}}`); types in xtune/tasks.

    `data` is merged over the run's top-level `data` (shared settings: root, max_length,
    cache_dir). `loss: null` takes the task type's default. `low`/`high` are the score range
    of score tasks; `output`, `pooling`, `parts`, `units` shape the bi-encoder.
    """

    type: str = "classification"  # the task type (`xtune list tasks`)
    data: DataConfig = DataConfig()  # the task's data keys, merged over the top-level `data`
    head: ComponentSpec = ComponentSpec("default")  # the task's head
    loss: ComponentSpec | None = None  # the task's loss; None: the task type's default
    weight: float = 1.0  # loss weight; also its metric's share of the best-epoch score if it serves
    metric: str | None = None  # selection metric; None: the task type's default
    low: float = 0.0  # score tasks: the lowest score
    high: float = 5.0  # score tasks: the highest score
    output: str = "classifier"  # bi_encoder: classifier (pair features -> MLP) | cosine
    pooling: str = "mean"  # bi_encoder sentence vector: mean (mask-aware) | cls
    # bi_encoder classifier's pair features: any of u, v, abs_diff (|u - v|), product (u * v).
    parts: list[str] = field(default_factory=lambda: list(DEFAULT_PAIR_PARTS))
    units: list[int] = field(default_factory=list)  # bi_encoder classifier's hidden layers
    # Head-only first epochs of this task alone: its loss trains only its own head (not the
    # shared encoder) for this many epochs; `finetune.frozen_epochs` does it for every task.
    frozen_epochs: int = 0
    hierarchy: HierarchyConfig = HierarchyConfig()  # hierarchical labels of a classification task
    # Score tasks: a label outside [low, high] is an error naming its file and row (`error`),
    # or is set to the nearest bound, the count printed (`clip`).
    out_of_range: str = "error"
    mlm: MaskedLMConfig = MaskedLMConfig()  # mlm tasks: the corpus columns and files, masking

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ComponentSpec):
                value = value.to_dict()
            elif dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            out[f.name] = copy.deepcopy(value)
        drop_unset_hierarchy(out)
        if out["out_of_range"] == "error":
            out.pop("out_of_range")  # added later: unset, run ids stay what they were
        if out["mlm"] == dataclasses.asdict(MaskedLMConfig()):
            out.pop("mlm")  # likewise
        return out


def drop_unset_hierarchy(out: dict[str, Any]) -> None:
    """Leave the hierarchy settings out of a config dict while they are unset (run ids)."""
    if out.get("hierarchy") == dataclasses.asdict(HierarchyConfig()):
        out.pop("hierarchy")
    for key, default in OPTIONAL_DATA_KEYS.items():
        if key in out.get("data", {}) and out["data"][key] == default:
            out["data"].pop(key)


@dataclass(frozen=True)
class TrackingConfig:
    """Where `training.report_to: [mlflow]` sends the run (xtune.training.mlflow_tracking)."""

    # Any MLflow tracking URI: the default is an embedded SQLite store in ./mlruns/ (no
    # server; artifacts in mlruns/artifacts/), or e.g. http://HOST:5000 for a server.
    mlflow_uri: str = "sqlite:///mlruns/mlflow.db"
    experiment: str | None = None  # the MLflow experiment; None: the grid's name, else xtune


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs."""

    data: DataConfig  # the texts and labels (the `data` section)
    encoder: ComponentSpec = ComponentSpec("minilm-l6")  # the pretrained encoder
    head: ComponentSpec = ComponentSpec("default")  # the classification head over its features
    loss: ComponentSpec = ComponentSpec("bce")  # the loss, with its decision rule
    # The optimizer and its learning rates.
    optimizer: ComponentSpec = ComponentSpec("adamw", {"learning_rate": 5e-5})
    schedule: ComponentSpec = ComponentSpec("constant")  # learning-rate schedule
    adversarial: ComponentSpec = ComponentSpec("none")  # adversarial training (fgm, pgd)
    finetune: FinetuneConfig = FinetuneConfig()  # which encoder weights train (`finetune`)
    training: TrainingConfig = TrainingConfig()  # epochs, batches, selection (`training`)
    tasks: dict[str, TaskConfig] | None = None  # None: one classification task (`data` ...)
    hierarchy: HierarchyConfig = HierarchyConfig()  # of the one task of a config without tasks
    tracking: TrackingConfig = TrackingConfig()  # the MLflow store (`tracking`)

    def named_tasks(self) -> dict[str, TaskConfig]:
        """The run's tasks by name; a config without `tasks:` is one classification task,
        `SINGLE_TASK`, over the top-level `data`, `head` and `loss`, selected by
        `training.metric`."""
        if self.tasks is not None:
            return self.tasks
        single = TaskConfig(
            data=self.data, head=self.head, loss=self.loss, hierarchy=self.hierarchy
        )
        return {SINGLE_TASK: dataclasses.replace(single, metric=self.training.metric)}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "tasks":
                if value is not None:
                    out["tasks"] = {name: task.to_dict() for name, task in value.items()}
            elif isinstance(value, ComponentSpec):
                out[f.name] = value.to_dict()
            else:
                out[f.name] = dataclasses.asdict(value)
        # Multi-task settings, the decision rule and the distribution are written only when
        # set: a config's dict (and so its grid run id) is the same as before they existed.
        for key, default in (
            ("sampler", None),
            ("pcgrad", False),
            ("decision_rule", "auto"),
            ("distribution", "auto"),
        ):
            if out["training"].get(key) == default:
                out["training"].pop(key)
        # Likewise the parameter-efficient methods added later (run ids stay what they were).
        for key, default in (("prompt_length", None), ("prefix_length", None), ("bitfit", False)):
            if out["finetune"].get(key) == default:
                out["finetune"].pop(key)
        drop_unset_hierarchy(out)
        if out["tracking"] == dataclasses.asdict(TrackingConfig()):
            out.pop("tracking")  # written only when set: run ids stay what they were
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# Losses of a whole batch rather than a mean over its rows: a replica's slice changes them.
BATCH_LOSSES = ("cosent",)


def mirroring_blocker(config: RunConfig) -> str | None:
    """Why `training.distribution: mirrored` cannot train this run, or None.

    A mirrored step synchronizes its replicas (gradient sums), which TensorFlow cannot do
    inside the `tf.switch_case` a stage with several step kinds needs
    (`xtune.training.task_model`): several tasks taking turns, or a task's head-only epochs.
    """
    tasks = config.named_tasks()
    if len(tasks) > 1 and not config.training.pcgrad:
        return (
            "several tasks taking turns (a step kind each) cannot be mirrored; "
            "use training.pcgrad: true (a batch of every task each step)"
        )
    pairwise = [
        name for name, task in tasks.items() if task.loss and task.loss.name in BATCH_LOSSES
    ]
    if pairwise:
        return (
            f"the loss of task {pairwise[0]!r} compares the rows of a batch with each other; "
            "each replica would see only its slice of the batch"
        )
    frozen = [name for name, task in tasks.items() if task.frozen_epochs]
    if frozen:
        return (
            f"tasks.{frozen[0]}.frozen_epochs gives a stage two step kinds (head only and "
            "full), which cannot be mirrored"
        )
    if uses_lazy_embeddings(config):
        return "optimizer.lazy_embeddings (rows touched by one replica's tokens) is not mirrored"
    return None


def uses_lazy_embeddings(config: RunConfig) -> bool:
    """Whether the optimizer updates the word embedding lazily (`optimizer.lazy_embeddings`)."""
    return bool(config.optimizer.to_dict().get("lazy_embeddings"))
