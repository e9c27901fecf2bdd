"""Make a tiny random Hugging Face BERT fixture (tests/fixtures/hf_tiny/bert/) with references.

Run with the torch venv: `/work/torchvenv/bin/python tools/make_tiny_hf_bert.py`. The project's
tests read the result without torch (tests/encoders/test_family_bert.py).

`BertModel` (hidden 32, 2 layers, 4 heads, exact GELU, with its pooler), every parameter drawn
at random (LayerNorm scales and biases too, so a mis-mapped tensor shows), saved as
`model.safetensors` and as `pytorch_model.bin`; a WordPiece `vocab.txt` trained here on
`CORPUS` (lower-cased, Chinese characters split as BERT does). `reference.npz` holds the same
fields as the other families' fixtures (see tools/make_tiny_hf_models.py), with the segment
ids of the pair row fed to the model as `token_type_ids`.
"""

from __future__ import annotations

import numpy as np
import tokenizers
import torch
import transformers
from make_tiny_hf_models import (
    CORPUS,
    REFERENCE_TEXTS,
    SEED,
    fresh_folder,
    randomize,
    save_weights,
    tokenizer_ids,
)


def reference_outputs(model: torch.nn.Module, tokenizer) -> dict[str, np.ndarray]:
    rows = [tokenizer(text, pair) for text, pair in REFERENCE_TEXTS]
    length = max(len(r["input_ids"]) for r in rows)
    token_ids = np.full((len(rows), length), tokenizer.pad_token_id, dtype=np.int32)
    mask = np.zeros((len(rows), length), dtype=np.int32)
    segments = np.zeros((len(rows), length), dtype=np.int32)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        token_ids[i, :n], mask[i, :n], segments[i, :n] = (
            row["input_ids"],
            1,
            row["token_type_ids"],
        )
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(token_ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            token_type_ids=torch.tensor(segments, dtype=torch.long),
            output_hidden_states=True,
        )
    return {
        "token_ids": token_ids,
        "padding_mask": mask,
        "segment_ids": segments,
        "sequence_output": out.last_hidden_state.numpy(),
        "pooled_output": out.pooler_output.numpy(),
        "hidden_states": np.stack([h.numpy() for h in out.hidden_states[1:]]),
    }


def main() -> None:
    folder = fresh_folder("bert")
    wordpiece = tokenizers.BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(CORPUS * 4, vocab_size=360, min_frequency=2)
    wordpiece.save_model(str(folder))  # vocab.txt
    tokenizer = transformers.BertTokenizer.from_pretrained(str(folder), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=128,
        hidden_act="gelu",
    )
    torch.manual_seed(SEED + 2)
    model = randomize(transformers.BertModel(config, add_pooling_layer=True), SEED + 2)
    save_weights(model, folder)
    np.savez_compressed(
        folder / "reference.npz", **reference_outputs(model, tokenizer), **tokenizer_ids(tokenizer)
    )


if __name__ == "__main__":
    main()
