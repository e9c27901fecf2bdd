"""The encoder interface: one adapter per backbone family owns everything family-specific.

Nothing outside `xtune/encoders/` names a backbone's layers. The rest of xtune talks to an
`EncoderAdapter`:

- `tokenizer` (a `PieceTokenizer`): one segment's raw text -> ids without special tokens,
  in-graph (the same object runs in the data pipeline and inside the SavedModel export);
- `packing` (`Packing`): how one or two segments become model inputs
  (`[CLS] a [SEP] b [SEP]` with segment ids vs `<s> a </s></s> b </s>` without);
- `input_names`: the backbone's inputs (`token_ids`, `padding_mask`, and `segment_ids` when
  the family has segment embeddings);
- `features(inputs)`: the features dict heads read: `sequence_output` [b, t, h],
  `pooled_output` [b, h] where the family has a pooler, `hidden_states` (one [b, t, h] per
  transformer layer, bottom first) and `padding_mask`;
- `parameter_group(variable_path)`: `"embeddings"`, `"layer_{i}"` or `"pooler"` for layer-wise
  learning rates and freezing; `num_layers`;
- `lora_layers(targets)`: the dense layers LoRA wraps for target names like `query`, `value`;
- `word_embeddings`: the variable adversarial steps perturb;
- `max_positions`: the longest input the position embeddings allow;
- `set_tuning(EncoderTuning)`: prompt / prefix tuning (`xtune/encoders/prompt_injection.py`)
  for families whose `supports_tuning`; they implement `blocks()` and `pooled_output_layer()` and
  return `tuned_features_model()` from their features model once tuning is set;
- `record()` / `rebuild()`: what a run folder stores to rebuild the architecture (weights are
  loaded separately), with the tokenizer's own files written by `tokenizer.save(folder)`.

Optional, with defaults: the tokenizer's `mask_id` and `word_pieces()` (masked-LM training,
`xtune.tasks.mlm`), `from_hf_folder(folder, **kwargs)` (the `hf` loader dispatches on
config.json's `model_type` through `FAMILIES`) and its inverse `hf_checkpoint(tokenizer,
word_embeddings)` with the class's `hf_names` (`xtune/encoders/hf_folder_writer.py` writes
the folder), `tiny_random(vocabulary_size, **kwargs)` (the parametrized tests in
tests/encoders/test_adapters.py), and the tokenizer's `settings()` and `fingerprint()`
(token-cache keys). `lora_layers` raises `ValueError` for a target that matches
no layer (`match_lora_layers` does the matching). `EncoderLoadError` is the one error for a
checkpoint that cannot be loaded.

A family is one file that subclasses `EncoderAdapter` and registers itself in `FAMILIES`;
`xtune/encoders/__init__.py` imports the family modules so their registrations run.
"""

from __future__ import annotations

import abc
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np

from xtune.encoders.keras_hub_internals import nested_layers
from xtune.encoders.prompt_injection import EncoderTuning, tuned_features_model
from xtune.registry import Registry

# Adapter classes by family name ("bert", "roberta", "albert", "xlm_roberta", ...).
FAMILIES = Registry("encoder family")


class EncoderLoadError(ValueError):
    """A checkpoint folder is missing, incomplete, altered or of an unsupported kind."""


class PieceTokenizer(abc.ABC):
    """One segment of raw text -> token ids (no special tokens), in a TensorFlow graph.

    `tokenize` must work inside `tf.function` and a SavedModel (TF / TF-Text ops only).
    Special ids are the ones packing adds: `cls_id`/`sep_id` are `[CLS]`/`[SEP]` for
    WordPiece families and `<s>`/`</s>` for RoBERTa-style ones.
    """

    cls_id: int
    sep_id: int
    pad_id: int
    unk_id: int
    mask_id: int | None = None  # the masked-LM mask token (`[MASK]`, `<mask>`); None: none

    @property
    @abc.abstractmethod
    def vocabulary_size(self) -> int:
        """Number of ids (rows of the word embedding this tokenizer feeds)."""

    @abc.abstractmethod
    def tokenize(self, texts: Any) -> Any:
        """`tf.string [b]` -> `tf.RaggedTensor int32 [b, None]`."""

    @abc.abstractmethod
    def save(self, folder: Path) -> dict[str, Any]:
        """Write this tokenizer's files into `folder`; return a JSON-able record for `load`."""

    @classmethod
    @abc.abstractmethod
    def load(cls, folder: Path, record: dict[str, Any]) -> PieceTokenizer:
        """Rebuild from the files `save` wrote and its record."""

    def settings(self) -> dict[str, Any]:
        """Optional: JSON-able settings shown in export metadata (e.g. `lowercase`)."""
        return {}

    def word_pieces(self) -> WordPieces:
        """Optional (whole-word masking): every id's piece text and whether it begins a word."""
        raise NotImplementedError(f"{type(self).__name__} does not list its pieces")

    def fingerprint(self) -> str:
        """Identity of everything that decides the ids (token-cache keys): by default a hash
        of the class, the record and every file `save` writes. Override when cheaper."""
        cached = getattr(self, "_fingerprint", None)
        if cached is None:
            digest = hashlib.sha256(type(self).__qualname__.encode())
            with tempfile.TemporaryDirectory() as folder:
                record = self.save(Path(folder))
                digest.update(json.dumps(record, sort_keys=True, default=str).encode())
                for path in sorted(Path(folder).rglob("*")):
                    if path.is_file():
                        digest.update(path.name.encode() + b"\x00" + path.read_bytes())
            cached = self._fingerprint = digest.hexdigest()[:24]
        return cached


@dataclass(frozen=True)
class WordPieces:
    """Every id's piece as text (without the tokenizer's word marker: `##`, `▁`, `Ġ`) and
    whether the piece begins a word: what whole-word masking groups pieces by
    (`xtune.data.whole_word_masking`)."""

    texts: list[str]
    starts_word: np.ndarray  # bool [vocabulary_size]


@dataclass(frozen=True)
class Packing:
    """Joining segments: "bert" = `[CLS] a [SEP] b [SEP]`; "roberta" = `<s> a </s></s> b </s>`."""

    style: str = "bert"
    segment_ids: bool = True  # the backbone takes segment (token type) ids

    def special_tokens(self, num_segments: int) -> int:
        """How many special tokens packing adds around `num_segments` segments."""
        if self.style == "roberta":
            return 2 if num_segments == 1 else 4
        return num_segments + 1


@dataclass(frozen=True)
class HfNames:
    """How Hugging Face names a family's models, for the folders xtune writes."""

    base_prefix: str  # the base model inside a task model: `bert.` in `BertForMaskedLM`
    model_class: str  # `architectures` of a folder holding the base model alone
    masked_lm_class: str  # ... and of one with the masked-LM head too
    masked_lm_prefixes: tuple[str, ...]  # the names of that head's tensors start so
    # The head's tensors with one row per vocabulary id (their first dimension).
    vocabulary_tensors: tuple[str, ...] = ()


@dataclass(frozen=True)
class HfCheckpoint:
    """What a family writes into a Hugging Face folder: config.json (without `architectures`),
    the base model's tensors by Hugging Face name (no task prefix), the tokenizer's files."""

    config: dict[str, Any]
    tensors: dict[str, Any]  # name -> float32 numpy array
    tokenizer_files: dict[str, bytes]


class EncoderAdapter(abc.ABC):
    """A backbone family's adapter; see the module docstring for the contract."""

    family: ClassVar[str]
    packing: ClassVar[Packing] = Packing()
    supports_tuning: ClassVar[bool] = False  # prompt and prefix tuning (`set_tuning`)
    hf_names: ClassVar[HfNames | None] = None  # None: no Hugging Face folder is written

    def __init__(self, backbone: keras.Model, tokenizer: PieceTokenizer, source: str):
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.source = source
        self.tuning: EncoderTuning | None = None
        self._tuned_model: keras.Model | None = None
        # The Hugging Face folder the weights came from (`hf` loads): its masked-LM head
        # initialises an `mlm` task's (`xtune.encoders.masked_lm`); None: none to read.
        self.checkpoint_folder: Path | None = None

    @property
    def input_names(self) -> tuple[str, ...]:
        if self.packing.segment_ids:
            return ("token_ids", "segment_ids", "padding_mask")
        return ("token_ids", "padding_mask")

    @property
    @abc.abstractmethod
    def num_layers(self) -> int:
        """Transformer layers (for ALBERT: applications of the shared layer)."""

    @property
    @abc.abstractmethod
    def max_positions(self) -> int:
        """The longest packed input the position embeddings allow."""

    @abc.abstractmethod
    def features(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Symbolic inputs (keyed by `input_names`) -> the features dict heads read."""

    @abc.abstractmethod
    def parameter_group(self, variable_path: str) -> str | None:
        """`"embeddings"`, `"layer_{i}"`, `"pooler"` for a backbone variable path, else None."""

    @abc.abstractmethod
    def lora_layers(self, targets: list[str]) -> list[keras.layers.Layer]:
        """The dense layers LoRA wraps for each target name (`query`, `key`, `value`, ...)."""

    @property
    @abc.abstractmethod
    def word_embeddings(self) -> keras.Variable:
        """The word-embedding matrix (adversarial steps perturb it)."""

    @abc.abstractmethod
    def record(self) -> dict[str, Any]:
        """JSON-able record that `rebuild` turns back into this architecture (no weights)."""

    @classmethod
    @abc.abstractmethod
    def rebuild(cls, record: dict[str, Any], tokenizer: PieceTokenizer) -> EncoderAdapter:
        """The architecture `record()` describes, randomly initialised; weights load after."""

    # ---- optional, with defaults

    def set_tuning(self, tuning: EncoderTuning) -> None:
        """Build the features graph with `tuning`'s soft prompt and prefixes; call before the
        first `features`. A family without support is a `ValueError` naming it."""
        if not self.supports_tuning:
            supported = ", ".join(n for n in FAMILIES.names() if FAMILIES.get(n).supports_tuning)
            raise ValueError(
                f"prompt and prefix tuning are not supported for the {self.family!r} encoder "
                f"family (supported: {supported})"
            )
        self.tuning, self._tuned_model = tuning, None

    def tuned_features_model(self) -> keras.Model:
        """The features model with the soft prompt and prefixes of `set_tuning`."""
        if self._tuned_model is None:
            self._tuned_model = tuned_features_model(
                self.backbone,
                self.blocks(),
                self.word_embeddings,
                self.pooled_output_layer(),
                self.tuning,
                f"{self.family}_tuned_features",
            )
        return self._tuned_model

    def blocks(self) -> list[keras.layers.Layer]:
        """The transformer blocks, bottom first (families that support tuning)."""
        raise NotImplementedError(f"encoder family {self.family!r} lists no blocks")

    def pooled_output_layer(self) -> keras.layers.Layer | None:
        """The Dense on the first token that gives `pooled_output`; None: no pooled output."""
        return None

    @classmethod
    def from_hf_folder(cls, folder: Path, **kwargs: Any) -> EncoderAdapter:
        """Optional: load a local Hugging Face folder whose config.json names this family
        (`encoder: {name: hf, path: ...}` dispatches on `model_type` through `FAMILIES`)."""
        raise EncoderLoadError(
            f"{folder}: Hugging Face folders of the {cls.family!r} family are not supported"
        )

    def hf_checkpoint(self, tokenizer: PieceTokenizer, word_embeddings: Any) -> HfCheckpoint:
        """Optional: the inverse of `from_hf_folder`, for `tokenizer` (this encoder's, or the
        full one a trimmed vocabulary wraps) and the `word_embeddings` rows it indexes."""
        supported = ", ".join(n for n in FAMILIES.names() if FAMILIES.get(n).hf_names)
        raise ValueError(
            f"writing a Hugging Face folder is not supported for the {self.family!r} encoder "
            f"family (supported: {supported})"
        )

    @classmethod
    def tiny_random(cls, vocabulary_size: int, **kwargs: Any) -> EncoderAdapter:
        """Optional: a tiny randomly initialised model (2 layers, hidden 16-32) for the
        parametrized tests in tests/encoders/test_adapters.py."""
        raise NotImplementedError(f"encoder family {cls.family!r} has no tiny random factory")

    @classmethod
    def has_tiny_random(cls) -> bool:
        return cls.tiny_random.__func__ is not EncoderAdapter.tiny_random.__func__


def match_lora_layers(
    blocks: list[keras.layers.Layer], targets: list[str]
) -> list[keras.layers.Layer]:
    """The LoRA-capable layers inside `blocks` whose name is a target (`query` also matches
    a `query_dense` target); a target that matches nothing is a `ValueError` that lists the
    projections there are. A helper for `lora_layers`."""
    found, available, unmatched = [], set(), set(targets)
    for block in blocks:
        for layer in nested_layers(block):
            if not hasattr(layer, "enable_lora"):
                continue
            available.add(layer.name)
            hits = [t for t in targets if layer.name in (t, t.removesuffix("_dense"))]
            if hits:
                found.append(layer)
                unmatched.difference_update(hits)
    if unmatched:
        raise ValueError(
            f"{', '.join(sorted(unmatched))} match no layer; projections in a transformer "
            f"layer: {', '.join(sorted(available))}"
        )
    return found
