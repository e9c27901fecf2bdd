"""Make the tiny random Hugging Face ALBERT and XLM-R fixtures with reference outputs and ids.

Run with the torch venv (`/work/torchvenv/bin/python tools/make_tiny_hf_albert_xlmr.py`);
the project's tests read the result without torch. Writes, under tests/fixtures/hf_tiny/:

- `albert/`: AlbertModel (hidden 32, 2 layers sharing one group) + a SentencePiece
  `spiece.model` trained here, with ALBERT's pieces `<pad> <unk> [CLS] [SEP] [MASK]`;
- `albert_vocab_txt/`: AlbertModel (2 layers in 2 groups, exact GELU) + a BERT `vocab.txt`,
  read by `BertTokenizer`, as the Chinese ALBERT checkpoints ship;
- `xlm_roberta/`: XLMRobertaModel (hidden 32, 2 layers) + `sentencepiece.bpe.model`.

Each folder holds `model.safetensors` and `pytorch_model.bin` (same weights) and
`reference.npz`: `token_ids`/`padding_mask`/`segment_ids` [2, t], the model's
`sequence_output`, `pooled_output` and `hidden_states` [layers, 2, t, h] on them, and the HF
tokenizer's ids for `STRINGS` (flat `ids` + `row_lengths`; no special tokens) and for the pair
`pair` with special tokens (`pair_ids`).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import transformers
from make_tiny_hf_models import fresh_folder, save_weights, tokenizer_ids

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf_tiny"
SEED = 0
# Far above BERT's 0.02: pre-activations then reach the range where exact and tanh GELU
# differ by more than the tests' 1e-4, so a wrong activation fails them.
INIT_RANGE = 0.4

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, this is a tiny corpus for a tiny tokenizer.",
    "Citizens write to the city about roads, water, noise and housing.",
    "The appeal was filed on 12 March 2019 and answered within ten days.",
    "A café in the old town serves crème brûlée and naïve résumés.",
    "Please fix the street lights near the school as soon as possible!",
    "我们今天去北京看看天安门。",
    "上诉人不服一审判决，提起上诉。",
    "市民反映小区附近道路施工噪音严重，影响居民休息。",
    "请尽快处理垃圾清运问题，谢谢！",
    "原告与被告于二〇一九年签订借款合同，约定利息。",
    "自来水管道破裂，已经停水三天了。",
    "公交车站的指示牌损坏，希望有关部门及时修复。",
    "English and 中文 mixed together: 北京 Beijing, 上海 Shanghai.",
]

STRINGS = [
    "Hello world!",
    "The QUICK brown fox, jumps over the lazy dog.",
    "我们今天去北京看看天安门。",
    "上诉人不服一审判决，提起上诉（二审）！",
    "全角标点：，。！？；「」『』【】",
    "Café naïve résumé Ångström crème brûlée",
    "Emoji 🤖 and 🎉 in text 😀",
    "",
    "   ",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew lines\r\nhere",
    "``quoted'' text and 9, 10, 2019年12月",
    "ＦＵＬＬ－ＷＩＤＴＨ ｌｅｔｔｅｒｓ １２３",
    "mixed 中文 and English 文本 together",
    "unknown 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and ∮ symbols",
    "literal<s>specials</s> <unk> <pad>x <mask> [CLS]a[SEP] [MASK]. [cls]",
    ("市民反映小区附近道路施工噪音严重，影响居民休息。 The appeal was filed. " * 40).strip(),
]
PAIR = ("上诉人不服一审判决。", "The appeal was filed on 12 March 2019.")
REFERENCE_TEXTS = ["Hello world, 我们去北京。", "上诉人不服一审判决，提起上诉。 The appeal!"]


def train_sentencepiece(vocab_size: int, **options) -> bytes:
    """A unigram SentencePiece model over `CORPUS` (nmt_nfkc, deterministic on one thread)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        num_threads=1,
        hard_vocab_limit=False,
        shuffle_input_sentence=False,
        normalization_rule_name="nmt_nfkc",
        minloglevel=2,
        **options,
    )
    return model.getvalue()


def reference_outputs(model: torch.nn.Module, tokenizer, pad_id: int) -> dict[str, np.ndarray]:
    """The model on two right-padded rows of different length, one a pair (segment ids 1)."""
    first = tokenizer(REFERENCE_TEXTS[0])
    second = tokenizer(REFERENCE_TEXTS[1], PAIR[1])
    rows = [first, second]
    length = max(len(r["input_ids"]) for r in rows)
    token_ids = np.full((2, length), pad_id, dtype=np.int32)
    mask = np.zeros((2, length), dtype=np.int32)
    segments = np.zeros((2, length), dtype=np.int32)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        token_ids[i, :n] = row["input_ids"]
        mask[i, :n] = 1
        if "token_type_ids" in row:
            segments[i, :n] = row["token_type_ids"]
    arguments = {
        "input_ids": torch.tensor(token_ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "output_hidden_states": True,
    }
    if model.config.type_vocab_size > 1:
        arguments["token_type_ids"] = torch.tensor(segments, dtype=torch.long)
    with torch.no_grad():
        out = model(**arguments)
    result = {
        "token_ids": token_ids,
        "padding_mask": mask,
        "segment_ids": segments,
        "sequence_output": out.last_hidden_state.numpy(),
        "hidden_states": np.stack([h.numpy() for h in out.hidden_states[1:]]),
    }
    if getattr(out, "pooler_output", None) is not None:
        result["pooled_output"] = out.pooler_output.numpy()
    return result


def write_reference(folder: Path, model, tokenizer, pad_id: int) -> None:
    np.savez_compressed(
        folder / "reference.npz",
        **reference_outputs(model, tokenizer, pad_id),
        **tokenizer_ids(tokenizer, STRINGS),
    )


def make_albert_spiece() -> None:
    folder = fresh_folder("albert")
    proto = train_sentencepiece(
        160, pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"]
    )
    (folder / "spiece.model").write_bytes(proto)
    # Like albert-base-v2's: lower-cased, accents stripped.
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "keep_accents": False, "model_max_length": 128})
    )
    tokenizer = transformers.AlbertTokenizer.from_pretrained(str(folder))
    config = transformers.AlbertConfig(
        vocab_size=int(spm.SentencePieceProcessor(model_proto=proto).vocab_size()),
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_hidden_groups=1,
        num_attention_heads=2,
        intermediate_size=37,
        initializer_range=INIT_RANGE,
        max_position_embeddings=128,
        hidden_act="gelu_new",
    )
    torch.manual_seed(SEED)
    model = transformers.AlbertModel(config).eval()
    save_weights(model, folder)
    tokenizer.save_pretrained(str(folder))
    write_reference(folder, model, tokenizer, pad_id=tokenizer.pad_token_id)


def make_albert_vocab_txt() -> None:
    folder = fresh_folder("albert_vocab_txt")
    shutil.copy(OUT.parent / "vocab_zh_small.txt", folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)
    config = transformers.AlbertConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_hidden_groups=2,
        num_attention_heads=2,
        intermediate_size=37,
        initializer_range=INIT_RANGE,
        max_position_embeddings=128,
        hidden_act="gelu",
    )
    torch.manual_seed(SEED + 1)
    model = transformers.AlbertModel(config).eval()
    save_weights(model, folder)
    write_reference(folder, model, tokenizer, pad_id=tokenizer.pad_token_id)


def make_xlm_roberta() -> None:
    folder = fresh_folder("xlm_roberta")
    proto = train_sentencepiece(160)  # <unk>=0, <s>=1, </s>=2 as fairseq's models
    (folder / "sentencepiece.bpe.model").write_bytes(proto)
    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(str(folder))
    config = transformers.XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        initializer_range=INIT_RANGE,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(SEED + 2)
    model = transformers.XLMRobertaModel(config).eval()
    save_weights(model, folder)
    tokenizer.save_pretrained(str(folder))
    write_reference(folder, model, tokenizer, pad_id=tokenizer.pad_token_id)


def main() -> None:
    make_albert_spiece()
    make_albert_vocab_txt()
    make_xlm_roberta()
    for folder in sorted(OUT.glob("*")):
        if folder.name in ("albert", "albert_vocab_txt", "xlm_roberta"):
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            print(f"{folder.relative_to(OUT.parent.parent.parent)}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
