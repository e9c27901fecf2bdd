"""`data.prepare` (xtune/data/preparation.py): normalisation, boilerplate learned from train
only, spans, duplicates and leakage, the saved record, its graph twin, and config errors."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xtune.config_schema import BoilerplateConfig, DataConfig, PrepareConfig
from xtune.data.examples import load_splits
from xtune.data.preparation import (
    TextPreparation,
    learn_preparation,
    literal_trie,
    prepare_splits,
    report_summary,
    sentences_of,
)

# Characters that are whole tokens of the fixture vocabulary (tests/export/conftest.py).
CHARACTERS = (
    "一中习买了二于享京今他价你全写分剧北博发句吕吗含呢国在型堂处天好子学宠属巷布年度很意"
    "我是更机東格案模气注深港灣然燃爱理的真空第答级网自言论说谢这里问领题香"
)
# The planted templates, each in this share of the rows (all above the 5% threshold).
TEMPLATES = {
    "尊敬的领导您好！": 0.6,
    "我是本市的一名普通市民。": 0.3,
    "恳请有关部门尽快处理，谢谢！": 0.4,
    "此致敬礼\n": 0.2,  # a line of its own (ends with a line break)
}
RARE = "这句话只在少数几行里出现。"  # in 3% of the rows: below the share, stays
FEW = "这句只出现三次。"  # in 3 rows only: below min_rows, stays


def random_sentence(rng: random.Random) -> str:
    return "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(6, 14))) + rng.choice(
        "。！？；"
    )


def planted_corpus(rows: int, seed: int) -> tuple[list[str], list[str]]:
    """Texts of unique random sentences with the templates planted at their shares (in
    random places), and the same texts without the templates."""
    rng = random.Random(seed)
    texts, expected = [], []
    for index in range(rows):
        body = [random_sentence(rng) for _ in range(rng.randint(2, 5))]
        if index < rows * 0.03:
            body.insert(rng.randint(0, len(body)), RARE)
        if index in (5, 50, 150):
            body.insert(rng.randint(0, len(body)), FEW)
        sentences = list(body)
        for template, share in TEMPLATES.items():
            if rng.random() < share:
                sentences.insert(rng.randint(0, len(sentences)), template)
        texts.append("".join(sentences))
        expected.append("".join(body))
    return texts, expected


BOILERPLATE = PrepareConfig(boilerplate=BoilerplateConfig(share=0.05, min_rows=5))


def test_boilerplate_removal_removes_exactly_the_planted_template_sentences():
    texts, expected = planted_corpus(300, seed=1)
    preparation, counts = learn_preparation(BOILERPLATE, texts, None)
    keys = {"尊敬的领导您好", "我是本市的一名普通市民", "恳请有关部门尽快处理，谢谢", "此致敬礼"}
    assert set(preparation.sentences) == keys
    assert preparation.spans == ()
    assert [preparation.clean(text) for text in texts] == expected
    assert counts["这句只出现三次"] == 3  # counted, but below min_rows


def test_boilerplate_is_learned_from_train_only():
    """A sentence common in dev (or test) but absent from train is never removed."""
    texts, _ = planted_corpus(100, seed=2)
    dev = [f"开发集才有的一句话。{text}" for text in texts[:40]]
    splits = {"train": split(texts), "dev": split(dev)}
    prepared = prepare_splits(splits, BOILERPLATE)
    assert "开发集才有的一句话" not in prepared.preparation.sentences
    assert all(text.startswith("开发集才有的一句话。") for text in prepared.texts["dev"])
    assert prepared.preparation.report["learned_from"] == "train"


def test_boilerplate_spans_remove_a_template_inside_sentences():
    """`ngram_chars`: template text with no sentence end around it goes as one span."""
    rng = random.Random(3)
    template = "根据有关规定现将情况反映如下"
    texts, expected = [], []
    for index in range(200):
        head, tail = random_sentence(rng)[:-1], random_sentence(rng)
        planted = index % 3 != 0
        texts.append(head + (template if planted else "") + tail)
        expected.append(head + tail)
    settings = PrepareConfig(boilerplate=BoilerplateConfig(share=0.2, ngram_chars=8))
    preparation, _ = learn_preparation(settings, texts, None)
    assert preparation.sentences == ()
    assert preparation.spans == (template,)
    assert [preparation.clean(text) for text in texts] == expected


def test_a_text_pair_counts_once_per_row_and_is_prepared_too():
    texts, expected = planted_corpus(120, seed=4)
    pairs = ["尊敬的领导您好！" + text[-5:] for text in texts]
    preparation, counts = learn_preparation(BOILERPLATE, texts, pairs)
    assert counts["尊敬的领导您好"] == len(texts)  # in every row's pair: once per row
    assert preparation.clean(pairs[0]) == texts[0][-5:]


@pytest.mark.parametrize(
    ("settings", "text", "expected"),
    [
        (
            {"width": "alphanumeric"},
            "ＰＭ２.５超标，Ｈｅｌｌｏ！（北京）",
            "PM2.5超标，Hello！（北京）",
        ),
        ({"width": "ascii"}, "ＰＭ２.５超标，Ｈｅｌｌｏ！（北京）", "PM2.5超标,Hello!(北京)"),
        ({"width": "ascii"}, "全角\u3000空格。句号、顿号《书名》", "全角 空格。句号、顿号《书名》"),
        ({"width": "alphanumeric"}, "全角\u3000空格", "全角\u3000空格"),
        ({"width": "none"}, "ＡＢＣ", "ＡＢＣ"),
        ({"control_characters": True}, "a\u200bb\ufeffc\x00d\x07e\u202ef", "abcdef"),
        ({"control_characters": True}, "一\r\n二\r三\x0b四\u2028五\t六", "一\n二\n三\n四\n五\t六"),
        ({"whitespace": "collapse"}, "  一 \u3000 二\n\n三\t\xa0四  ", "一 二 三 四"),
        ({"whitespace": "keep"}, "  一  二 ", "  一  二 "),
        (
            {"width": "ascii", "control_characters": True, "whitespace": "collapse"},
            "\ufeff  ＯＫ？\u200b\r\n好 ",
            "OK? 好",
        ),
    ],
)
def test_normalisation(settings, text, expected):
    assert TextPreparation(**settings).clean(text) == expected


def test_sentences_split_after_runs_of_sentence_ends_and_rejoin_to_the_text():
    text = "！！开头。第二句？！第三句；no end\n\n下一行!英文?x"
    sentences = sentences_of(text)
    assert sentences == [
        "！！",
        "开头。",
        "第二句？！",
        "第三句；",
        "no end\n\n",
        "下一行!",
        "英文?",
        "x",
    ]
    assert "".join(sentences) == text


def test_a_sentence_matches_whatever_its_whitespace_and_sentence_ends():
    preparation = TextPreparation(sentences=("尊敬的领导您好",))
    assert preparation.clean("尊敬的 领导您好！！正文。") == "正文。"
    # The spaces before it belong to it (a sentence starts after the previous one's ends).
    assert preparation.clean("正文。\n  尊敬的领导您好\n") == "正文。\n"
    assert preparation.clean("尊敬的领导您好呀！正文。") == "尊敬的领导您好呀！正文。"


def test_spans_take_the_longest_at_the_leftmost_position():
    preparation = TextPreparation(spans=("现将情况", "现将情况反映如下", "a.b"))
    assert preparation.clean("甲现将情况反映如下乙现将情况丙a.b丁axb") == "甲乙丙丁axb"
    assert literal_trie(["ab", "abc"]) == "ab(?:c)?"


def split(texts, pairs=None, rows=None):
    from xtune.data.examples import Examples

    rows = rows or list(range(1, len(texts) + 1))
    return Examples("file.csv", list(texts), pairs, [["a"]] * len(texts), rows)


def test_duplicates_are_dropped_from_train_and_repeats_across_splits_reported():
    train = ["第一行的内容。", "第二行的内容。", "第一行 的内容！", "ＦＩＲＳＴ row", "first, ROW"]
    dev = ["第二行的内容", "新的一行"]
    test = ["新的一行。", "first row"]
    splits = {"train": split(train), "dev": split(dev), "test": split(test)}
    config = PrepareConfig(width="ascii", duplicates="drop")
    prepared = prepare_splits(splits, config)
    assert prepared.train_kept.tolist() == [0, 1, 3]
    assert prepared.texts["train"] == ["第一行的内容。", "第二行的内容。", "FIRST row"]
    leakage = prepared.preparation.report["leakage"]
    assert leakage["dev_in_train"]["rows"] == 1
    assert leakage["dev_in_train"]["examples"] == [{"dev": 1, "train": 2}]
    assert leakage["test_in_train"]["rows"] == 1
    assert leakage["test_in_dev"]["rows"] == 1
    report = prepared.preparation.report["splits"]["train"]
    assert (report["duplicated_rows"], report["duplicate_rows_dropped"], report["rows_kept"]) == (
        2,
        2,
        3,
    )
    assert set(prepared.notes) == {"dev", "test"}
    kept = prepare_splits(splits, dataclasses.replace(config, duplicates="keep"))
    assert kept.train_kept.tolist() == [0, 1, 2, 3, 4]


def test_load_splits_prepares_every_split_and_notes_leakage(tmp_path, capsys):
    texts, expected = planted_corpus(120, seed=5)
    labels = ["交通" if i % 2 else "环境" for i in range(len(texts))]
    frame = pd.DataFrame({"text": texts, "labels": labels})
    frame.iloc[:100].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[100:].to_csv(tmp_path / "dev.csv", index=False)
    pd.concat([frame.iloc[:3], frame.iloc[100:102]]).to_csv(tmp_path / "test.csv", index=False)
    config = DataConfig(
        train="train.csv",
        dev="dev.csv",
        test="test.csv",
        root=str(tmp_path),
        prepare=dataclasses.replace(BOILERPLATE, duplicates="drop"),
    )
    splits, vocab = load_splits(config)
    assert splits["train"].texts == expected[:100]
    assert splits["dev"].texts == expected[100:]
    assert splits["test"].preparation is splits["train"].preparation
    assert any("repeat a train row" in note for note in splits["test"].warnings)
    assert any("repeat a dev row" in note for note in splits["test"].warnings)
    printed = capsys.readouterr().out
    assert "text preparation of" in printed and "4 boilerplate sentence(s)" in printed
    report = splits["train"].preparation.report
    assert [item["sentence"] for item in report["boilerplate_sentences"]][0] == "尊敬的领导您好"
    assert report["splits"]["train"]["top_removed_sentences"][0]["sentence"] == "尊敬的领导您好"
    assert report["splits"]["dev"]["sentences_removed"] > 0
    json.dumps(report, ensure_ascii=False)  # JSON-able as written
    assert report_summary(report)


def test_preparation_off_leaves_the_rows_as_read(tmp_path):
    pd.DataFrame({"text": [" ＡＢ ", "ab", "ab"], "labels": ["x", "y", "x"]}).to_csv(
        tmp_path / "train.csv", index=False
    )
    config = DataConfig(train="train.csv", dev="train.csv", root=str(tmp_path))
    splits, _ = load_splits(config)
    assert splits["train"].texts == ["ＡＢ", "ab", "ab"]  # stripped by the reader only
    assert splits["train"].preparation is None


def test_learned_preparation_is_saved_and_reloaded(tmp_path):
    from xtune.run_folder import RunFolderError
    from xtune.tasks.run_folder import read_preparations, write_preparation

    texts, _ = planted_corpus(100, seed=6)
    config = PrepareConfig(
        width="ascii",
        control_characters=True,
        whitespace="collapse",
        boilerplate=BoilerplateConfig(ngram_chars=6),
    )
    prepared = prepare_splits({"train": split(texts)}, config)

    @dataclasses.dataclass
    class Task:
        name: str
        preparation: TextPreparation | None

    write_preparation(tmp_path, [Task("default", prepared.preparation), Task("other", None)])
    loaded = read_preparations(tmp_path)
    assert list(loaded) == ["default"]
    assert loaded["default"] == prepared.preparation
    assert [loaded["default"].clean(t) for t in texts] == prepared.texts["train"]
    report = json.loads((tmp_path / "preparation_report.json").read_text(encoding="utf-8"))
    assert report["default"]["splits"]["train"]["rows"] == 100
    assert read_preparations(tmp_path / "missing") == {}
    record = json.loads((tmp_path / "preparation.json").read_text(encoding="utf-8"))
    record["tasks"]["default"]["width"] = "wide"
    (tmp_path / "preparation.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"preparation.json: task 'default': damaged"):
        read_preparations(tmp_path)


TRICKY = list(
    "ab 我你。！？；!?;\n\r\t\u3000\u200b\ufeff\x00\x0b\x0c\x85\u2028ＡＺａｚ０９，！（）"
    "\\.*+[](){}|^$-#_\xa0\u2003好的谢谢"
) + ["\r\n", "谢谢。", "好的！"]


@pytest.mark.parametrize("width", ["none", "alphanumeric", "ascii"])
def test_the_graph_prepares_texts_exactly_as_python(width):
    import tensorflow as tf

    from xtune.data.preparation_graph import GraphPreparation

    rng = random.Random(7)
    texts = ["".join(rng.choice(TRICKY) for _ in range(rng.randint(0, 30))) for _ in range(400)]
    texts += ["", " ", "谢谢", "好的。谢谢。好的", "尊敬的领导您好！正文。谢谢！"]
    learned = {
        "sentences": ("谢谢", "好的", "ab", "尊敬的领导您好", "a*b", "\x00x"),
        "spans": ("我你", "我你好", "a\tb", "*+", "\\."),
    }
    for control in (False, True):
        for whitespace in ("keep", "collapse"):
            preparation = TextPreparation(width, control, whitespace, **learned)
            graph = GraphPreparation(preparation)
            served = [text.decode("utf-8") for text in graph(tf.constant(texts)).numpy()]
            assert served == [preparation.clean(text) for text in texts], (control, whitespace)


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        ({"width": "full"}, "data.prepare.width: 'full' is not one of: none, alphanumeric"),
        ({"whitespace": "strip"}, "data.prepare.whitespace: 'strip' is not one of: keep"),
        ({"duplicates": "remove"}, "data.prepare.duplicates: 'remove' is not one of: keep"),
        ({"boilerplate": {"share": 1.5}}, "data.prepare.boilerplate.share: expected a number"),
        ({"boilerplate": {"min_rows": 1}}, "data.prepare.boilerplate.min_rows: expected an int"),
        ({"boilerplate": {"ngram_chars": 2}}, "data.prepare.boilerplate.ngram_chars: expected"),
        ({"boilerplate": True}, "data.prepare.boilerplate: expected a mapping of its keys"),
        ({"boilerplat": {}}, "unknown key 'data.prepare.boilerplat' (did you mean 'boilerplate'"),
        ({"control_characters": "yes"}, "data.prepare.control_characters: expected bool"),
        ("yes", "data.prepare: expected a mapping of its keys"),
    ],
)
def test_bad_prepare_values_are_one_clear_error(tmp_path, prepare, message):
    from tests.conftest import sample_run_config
    from xtune.config import ConfigError, parse_run_config

    raw = sample_run_config(tmp_path, data={"prepare": prepare})
    with pytest.raises(ConfigError) as error:
        parse_run_config(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_prepare_settings_and_their_absence_in_the_run_id(tmp_path):
    """Unset, `data.prepare` stays out of the config dict (run ids stay what they were);
    set, it is there, and a task's own `data.prepare` is checked like the top level's."""
    from tests.conftest import sample_run_config
    from xtune.config import ConfigError, parse_run_config

    assert "prepare" not in parse_run_config(sample_run_config(tmp_path)).to_dict()["data"]
    raw = sample_run_config(tmp_path, data={"prepare": {"boilerplate": {}}})
    written = parse_run_config(raw).to_dict()["data"]["prepare"]
    assert written["boilerplate"]["share"] == 0.05
    assert parse_run_config(parse_run_config(raw).to_dict()).data.prepare.boilerplate.min_rows == 5
    raw = sample_run_config(tmp_path)
    raw["tasks"] = {"appeals": {"data": {"prepare": {"width": "wide"}}}}
    with pytest.raises(ConfigError, match=r"tasks\.appeals\.data\.prepare\.width: 'wide'"):
        parse_run_config(raw)


def test_head_tail_pair_packs_the_head_and_the_tail_as_two_segments(tmp_path):
    import tensorflow as tf

    from tests.data.test_tokenization import words_encoder

    encoder, vocabulary = words_encoder(10, "head_tail_pair", 3)  # pair budget: 7 tokens
    text = " ".join(f"w{i}" for i in range(12))
    encoded = encoder(tf.constant([text, "w0 w1", "w0 w1 w2 w3 w4"]))
    words = [[vocabulary[i] for i in row] for row in encoded["token_ids"].to_list()]
    assert words[0] == "[CLS] w0 w1 w2 [SEP] w8 w9 w10 w11 [SEP]".split()
    assert words[1] == "[CLS] w0 w1 [SEP] [SEP]".split()  # all head: an empty tail
    assert words[2] == "[CLS] w0 w1 w2 [SEP] w3 w4 [SEP]".split()
    assert encoded["segment_ids"].to_list()[0] == [0] * 5 + [1] * 5
    with pytest.raises(ValueError, match="head_tail_pair"):
        encoder(tf.constant(["w1"]), tf.constant(["w2"]))

    from tests.conftest import sample_run_config
    from xtune.config import ConfigError, parse_run_config

    raw = sample_run_config(tmp_path, data={"truncation": "head_tail_pair"})
    with pytest.raises(ConfigError, match="head_tail_pair makes the pair from data.text alone"):
        parse_run_config(raw)
    raw["data"]["text_pair"] = None
    assert parse_run_config(raw).data.truncation == "head_tail_pair"


def test_the_token_cache_keys_on_the_prepared_texts(tmp_path):
    """Two preparations of one file tokenize into two cache entries (the key hashes the
    prepared texts); the same preparation reuses its entry."""
    from tests.data.test_tokenization import words_encoder
    from xtune.data.pipeline import cache_key

    encoder, _ = words_encoder(16)
    texts, _ = planted_corpus(40, seed=8)
    keys = set()
    for config in (PrepareConfig(), BOILERPLATE, PrepareConfig(width="alphanumeric"), BOILERPLATE):
        prepared = prepare_splits({"train": split(texts)}, config)
        keys.add(cache_key(split(prepared.texts["train"]), encoder))
    assert len(keys) == 2  # these texts hold no full-width letters or digits
    assert np.all(np.asarray([len(k) for k in keys]) == 24)


def test_the_grid_cache_keys_on_each_tasks_prepare(tmp_path):
    from tests.conftest import sample_run_config
    from xtune.config import parse_run_config
    from xtune.grid.prepared_data_cache import PreparedDataCache, TokenizerSettings

    class Tokenizer:
        def fingerprint(self) -> str:
            return "t"

    tokenizer = TokenizerSettings(Tokenizer(), type("P", (), {"style": "bert", "segment_ids": 1}))
    plain = parse_run_config(sample_run_config(tmp_path))
    prepared = parse_run_config(sample_run_config(tmp_path, data={"prepare": {"width": "ascii"}}))
    assert PreparedDataCache.data_key(plain, tokenizer) != PreparedDataCache.data_key(
        prepared, tokenizer
    )


def test_preparation_module_stays_light():
    """The config and data layers import it: numpy and the standard library only."""
    source = Path(__file__).parents[2] / "xtune" / "data" / "preparation.py"
    text = source.read_text(encoding="utf-8")
    assert "import tensorflow" not in text and "import pandas" not in text


def test_score_tasks_keep_each_kept_rows_score(tmp_path):
    """The score tasks' reader (regression, cosine bi-encoder) prepares its splits too; a
    dropped duplicate takes its score with it."""
    from xtune.tasks.regression import load_score_splits

    texts = ["尊敬的领导您好！第一。", "尊敬的领导您好！第二。", "第一", "尊敬的领导您好！第三。"]
    frame = pd.DataFrame({"text": texts, "pair": ["甲", "乙", "甲", "丙"], "labels": [1, 2, 3, 4]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[:2].to_csv(tmp_path / "dev.csv", index=False)
    prepare = PrepareConfig(boilerplate=BoilerplateConfig(share=0.5, min_rows=3), duplicates="drop")
    data = DataConfig(
        train="train.csv", dev="dev.csv", root=str(tmp_path), text_pair="pair", prepare=prepare
    )
    scored = load_score_splits(data)
    train, scores = scored["train"]
    assert train.texts == ["第一。", "第二。", "第三。"]  # row 3 repeats row 1 (punctuation aside)
    assert scores.tolist() == [1.0, 2.0, 4.0]
    assert train.rows == [1, 2, 4]
    dev, dev_scores = scored["dev"]
    assert dev.texts == ["第一。", "第二。"] and dev_scores.tolist() == [1.0, 2.0]
    assert any("repeat a train row" in note for note in dev.warnings)
