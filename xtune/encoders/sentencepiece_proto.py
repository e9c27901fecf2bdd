"""Build a SentencePiece unigram `ModelProto` from an XLM-R-style Hugging Face `tokenizer.json`.

Hugging Face's fast XLM-R tokenizer is a unigram model (fairseq ids: `<s>`=0, `<pad>`=1,
`</s>`=2, `<unk>`=3, the pieces from 4, `<mask>` last) behind a `Precompiled` normaliser
(SentencePiece's `nmt_nfkc` charsmap), a `' {2,}' -> ' '` replacement and a `Metaspace`
pre-tokeniser. The proto rebuilds the original `sentencepiece.bpe.model` layout: `<unk>`,
`<s>`, `</s>` as SentencePiece ids 0, 1, 2, then every piece with its score, so that
SentencePiece id `i >= 3` is fairseq id `i + 1`. `tensorflow_text.SentencepieceTokenizer`
runs it in-graph.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from sentencepiece import sentencepiece_model_pb2 as model_pb2

XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
Piece = model_pb2.ModelProto.SentencePiece


class TokenizerJsonError(ValueError):
    """A `tokenizer.json` that is not an XLM-R-style unigram tokenizer."""


def read_tokenizer_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TokenizerJsonError(f"{path}: cannot read a tokenizer.json ({error})") from None


def precompiled_charsmap(tokenizer: dict[str, Any], source: Path) -> bytes:
    """The `Precompiled` normaliser's charsmap (the `nmt_nfkc` rules), decoded."""
    normalizer = tokenizer.get("normalizer") or {}
    steps = normalizer.get("normalizers", [normalizer])
    for step in steps:
        if step.get("type") == "Precompiled":
            return base64.b64decode(step["precompiled_charsmap"])
    raise TokenizerJsonError(f"{source}: normalizer has no Precompiled step (nmt_nfkc charsmap)")


def xlmr_vocabulary(tokenizer: dict[str, Any], source: Path) -> list[tuple[str, float]]:
    """The unigram `(piece, score)` list, checked to follow the fairseq id layout."""
    model = tokenizer.get("model") or {}
    vocabulary = [(str(piece), float(score)) for piece, score in model.get("vocab", [])]
    if model.get("type") != "Unigram" or model.get("unk_id") != 3:
        raise TokenizerJsonError(
            f"{source}: model is {model.get('type')!r} with unk_id {model.get('unk_id')!r}; "
            "expected an XLM-R Unigram model with unk_id 3"
        )
    if [piece for piece, _ in vocabulary[:4]] != XLMR_SPECIALS:
        raise TokenizerJsonError(
            f"{source}: the first four pieces are {[p for p, _ in vocabulary[:4]]}; "
            f"expected {XLMR_SPECIALS}"
        )
    return vocabulary


def unigram_proto_from_tokenizer_json(path: Path) -> bytes:
    """Serialized `ModelProto` equivalent to the unigram model and normaliser of `path`.

    The last fairseq id, `<mask>`, has no SentencePiece piece (as in XLM-R's own model);
    it only appears when literal special tokens are split out of the text before tokenizing.
    """
    return unigram_proto(read_tokenizer_json(path), Path(path))


def unigram_proto(tokenizer: dict[str, Any], source: Path) -> bytes:
    """`unigram_proto_from_tokenizer_json` for an already parsed `tokenizer.json`."""
    vocabulary = xlmr_vocabulary(tokenizer, source)
    pieces = vocabulary[4:-1] if vocabulary[-1][0] == "<mask>" else vocabulary[4:]
    proto = model_pb2.ModelProto()
    for piece, kind in (("<unk>", Piece.UNKNOWN), ("<s>", Piece.CONTROL), ("</s>", Piece.CONTROL)):
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    for piece, score in pieces:
        proto.pieces.add(piece=piece, score=score, type=Piece.NORMAL)
    trainer = proto.trainer_spec
    trainer.model_type = model_pb2.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(proto.pieces)
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = 0, 1, 2, -1
    normalizer = proto.normalizer_spec
    normalizer.name = "nmt_nfkc"
    normalizer.precompiled_charsmap = precompiled_charsmap(tokenizer, source)
    normalizer.add_dummy_prefix = True
    normalizer.remove_extra_whitespaces = True
    normalizer.escape_whitespaces = True
    return proto.SerializeToString()


def added_tokens(tokenizer: dict[str, Any]) -> dict[str, int]:
    """The special tokens Hugging Face matches literally in raw text (`<s>` -> 0, ...)."""
    return {token["content"]: int(token["id"]) for token in tokenizer.get("added_tokens", [])}
