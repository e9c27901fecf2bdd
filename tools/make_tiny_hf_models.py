"""Make tiny random Hugging Face RoBERTa / DistilBERT fixtures with reference outputs and ids.

Run with the torch venv: `/work/torchvenv/bin/python tools/make_tiny_hf_models.py [family ...]`
(no argument: every family in `FAMILIES`). The project's tests read the result without torch.
Writes, under tests/fixtures/hf_tiny/:

- `roberta/`: RobertaModel (hidden 32, 2 layers, with its pooler) + a byte-level BPE
  (`vocab.json`, `merges.txt`) trained here on `CORPUS`, read by `RobertaTokenizer`;
- `distilbert/`: DistilBertModel (hidden 32, 2 layers) + a WordPiece `vocab.txt` trained here,
  read by `DistilBertTokenizer` (lower-cased);
- `torch_pickle/`: tensors of every dtype and layout saved by `torch.save` in the zip and the
  legacy (torch < 1.6) format, the expected values in `expected.npz`, and DistilBERT's weights
  in the legacy format (`distilbert_legacy.bin`).

Each model folder holds `model.safetensors` and `pytorch_model.bin` (the same weights; every
parameter is drawn at random, LayerNorm scales and biases included, so a mis-mapped tensor
shows) and `reference.npz`: `token_ids`/`padding_mask`/`segment_ids` [rows, t] (right-padded),
the model's `sequence_output`, `pooled_output` (where the family has a pooler) and
`hidden_states` [layers, rows, t, h] on them; the HF tokenizer's ids for `STRINGS` (flat `ids`
+ `row_lengths`, no special tokens) and for `PAIR` with special tokens (`pair_ids`).

Another family is one `make_<family>()` function added to `FAMILIES`.
"""

from __future__ import annotations

import collections
import shutil
import sys
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf_tiny"
SEED = 0

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, this is a tiny corpus for a tiny tokenizer.",
    "Citizens write to the city about roads, water, noise and housing.",
    "The appeal was filed on 12 March 2019 and answered within ten days.",
    "A café in the old town serves crème brûlée and naïve résumés.",
    "Please fix the street lights near the school as soon as possible!",
    "I'm sure they'll say it's fine, but we've waited and you'd agree.",
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
    "I'm sure they'll say it's fine; we've waited, you'd agree.",
    "我们今天去北京看看天安门。",
    "上诉人不服一审判决，提起上诉（二审）！",
    "全角标点：，。！？；「」『』【】",
    "Café naïve résumé Ångström crème brûlée",
    "Emoji 🤖 and 🎉 in text 😀👍🏽",
    "",
    " ",
    "   ",
    "  leading and trailing spaces  ",
    "double  spaces   inside",
    "tabs\tand\nnew lines\r\nhere",
    "``quoted'' text and 9, 10, 2019年12月, 3.14159 and 1,000,000",
    "ＦＵＬＬ－ＷＩＤＴＨ ｌｅｔｔｅｒｓ １２３",
    "mixed 中文 and English 文本 together",
    "unknown 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and ∮ symbols, zero\u200bwidth, soft\u00adhyphen",
    "e-mail: someone@example.com, https://example.com/a?b=c",
    "special tokens <s> and </s>, <pad><unk> <mask> inside text",
    # Unicode spaces outside RE2's \s before a contraction or punctuation (U+2028, U+0085...)
    "rare spaces:\u2028's line\u2029'm \x85'll \x0b'd\u2003!! \u205f've\u1680's\u2028",
    ("市民反映小区附近道路施工噪音严重，影响居民休息。 The appeal was filed. " * 40).strip(),
]
PAIR = ("上诉人不服一审判决。", "The appeal was filed on 12 March 2019.")
# Rows the backbone reference runs on (one is a pair); different lengths, so one is padded.
REFERENCE_TEXTS = [
    ("Hello world, 我们去北京。", None),
    ("上诉人不服一审判决，提起上诉。 The appeal!", PAIR[1]),
    ("Café 🤖 ＦＵＬＬ", None),
]


def fresh_folder(name: str) -> Path:
    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter at random (LayerNorm scales around 1), so no mapping hides behind 0/1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            centre = 1.0 if "LayerNorm.weight" in name or "layer_norm.weight" in name else 0.0
            parameter.copy_(centre + 0.1 * noise)
    return model.eval()


def save_weights(model: torch.nn.Module, folder: Path) -> None:
    """config.json + model.safetensors (save_pretrained) and the same weights as a zip .bin
    (what `save_pretrained(safe_serialization=False)` wrote before transformers 5)."""
    model.save_pretrained(folder)
    state = collections.OrderedDict((k, v.contiguous()) for k, v in model.state_dict().items())
    torch.save(state, folder / "pytorch_model.bin")


def tokenizer_ids(tokenizer, strings: list[str] = STRINGS) -> dict[str, np.ndarray]:
    """The HF tokenizer's ids for `strings` (no special tokens) and for `PAIR` (with them)."""
    rows = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in strings]
    pair = tokenizer(PAIR[0], PAIR[1])["input_ids"]
    return {
        "ids": np.array([i for row in rows for i in row], dtype=np.int32),
        "row_lengths": np.array([len(row) for row in rows], dtype=np.int32),
        "pair_ids": np.array(pair, dtype=np.int32),
        "pair": np.array(PAIR),
        "strings": np.array(strings),
    }


def reference_outputs(model: torch.nn.Module, tokenizer) -> dict[str, np.ndarray]:
    """The model on right-padded rows of different lengths (segment ids where it has them)."""
    rows = [tokenizer(text, pair) for text, pair in REFERENCE_TEXTS]
    length = max(len(r["input_ids"]) for r in rows)
    token_ids = np.full((len(rows), length), tokenizer.pad_token_id, dtype=np.int32)
    mask = np.zeros((len(rows), length), dtype=np.int32)
    segments = np.zeros((len(rows), length), dtype=np.int32)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        token_ids[i, :n] = row["input_ids"]
        mask[i, :n] = 1
        if "token_type_ids" in row:
            segments[i, :n] = row["token_type_ids"]
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(token_ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            output_hidden_states=True,
        )
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


def write_reference(folder: Path, model, tokenizer) -> None:
    np.savez_compressed(
        folder / "reference.npz", **reference_outputs(model, tokenizer), **tokenizer_ids(tokenizer)
    )


def make_roberta() -> None:
    folder = fresh_folder("roberta")
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4 as in roberta-base
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=420, min_frequency=2, special_tokens=specials)
    bpe.save_model(str(folder))  # vocab.json + merges.txt
    # transformers 5 reads vocab.json + merges.txt in from_pretrained (its constructor
    # takes the vocabulary itself); save_pretrained adds tokenizer.json and the config.
    tokenizer = transformers.RobertaTokenizer.from_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    config = transformers.RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=130,  # 128 usable: positions start at pad_token_id + 1
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(SEED)
    model = randomize(transformers.RobertaModel(config, add_pooling_layer=True), SEED)
    save_weights(model, folder)
    write_reference(folder, model, tokenizer)


def make_distilbert() -> None:
    folder = fresh_folder("distilbert")
    wordpiece = tokenizers.BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(CORPUS * 4, vocab_size=360, min_frequency=2)
    wordpiece.save_model(str(folder))  # vocab.txt
    tokenizer = transformers.DistilBertTokenizer.from_pretrained(str(folder), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    config = transformers.DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=48,
        max_position_embeddings=128,
        activation="gelu",
    )
    torch.manual_seed(SEED + 1)
    model = randomize(transformers.DistilBertModel(config), SEED + 1)
    save_weights(model, folder)
    write_reference(folder, model, tokenizer)
    state = collections.OrderedDict((k, v.contiguous()) for k, v in model.state_dict().items())
    (OUT / "torch_pickle").mkdir(parents=True, exist_ok=True)
    torch.save(
        state, OUT / "torch_pickle" / "distilbert_legacy.bin", _use_new_zipfile_serialization=False
    )


def make_torch_pickle() -> None:
    """Tensors of every dtype and layout a state dict may hold, in both torch formats."""
    folder = OUT / "torch_pickle"
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(SEED)
    base = torch.randn(4, 6, generator=generator)
    tensors = collections.OrderedDict(
        float32=torch.randn(3, 5, generator=generator),
        float64=torch.randn(2, 2, generator=generator).double(),
        float16=torch.randn(7, generator=generator).half(),
        bfloat16=torch.randn(2, 3, generator=generator).bfloat16(),
        int64=torch.arange(5) - 2,
        int32=torch.arange(3, dtype=torch.int32),
        int8=torch.tensor([-3, 0, 7], dtype=torch.int8),
        uint8=torch.tensor([0, 255], dtype=torch.uint8),
        bool=torch.tensor([True, False, True]),
        scalar=torch.tensor(3.5),
        empty=torch.zeros(0, 4),
        transposed=base.t(),  # a strided view of a shared storage
        sliced=base[1:3, 2:5],  # an offset view of the same storage
        parameter=torch.nn.Parameter(torch.randn(2, 2, generator=generator)),
    )
    torch.save(tensors, folder / "legacy.bin", _use_new_zipfile_serialization=False)
    tensors["float8_e4m3fn"] = torch.randn(3, generator=generator).to(torch.float8_e4m3fn)
    torch.save(tensors, folder / "zip.bin")
    expected = {}
    for name, tensor in tensors.items():
        value = tensor.detach()
        if value.dtype in (torch.bfloat16, torch.float8_e4m3fn):
            value = value.float()  # numpy has no such dtype; the test compares in float32
        expected[name] = value.numpy()
    np.savez_compressed(folder / "expected.npz", **expected)


FAMILIES = {
    "roberta": make_roberta,
    "distilbert": make_distilbert,
    "torch_pickle": make_torch_pickle,
}


def main(names: list[str]) -> None:
    for name in names or list(FAMILIES):
        FAMILIES[name]()
        folder = OUT / name
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"{folder.relative_to(OUT.parent.parent.parent)}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
