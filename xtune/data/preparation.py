"""Text preparation (`data.prepare`): width and control-character clean-up, boilerplate
sentences and spans learned from the training rows, whitespace, duplicate rows and the
leakage of rows across splits.

`TextPreparation.clean` is the one definition of what a text becomes: training and evaluation
read their splits through it (`prepare_splits`), `xtune predict` on a run folder calls it, and
`xtune.data.preparation_graph` runs the same steps as TensorFlow string ops inside the export,
on patterns built here (`Patterns`), so the served text is the trained text.

The steps, in order (each off unless `data.prepare` turns it on):

1. `width`: full-width forms to ASCII by code point (`alphanumeric`: Ａ-Ｚ ａ-ｚ ０-９ only;
   `ascii`: U+FF01-U+FF5E, punctuation included, and the ideographic space U+3000).
2. `control_characters`: line ends (\\r\\n, \\r, VT, FF, NEL, U+2028/9) become \\n; other
   control characters and invisible format characters (zero-width spaces, BOM, bidi marks,
   soft hyphen) are removed.
3. `boilerplate`: a text is a sequence of sentences, each a run of other characters and the
   sentence ends after it (。！？；!?; and \\n); a sentence whose key (its characters without
   sentence ends and whitespace) is in the learned list is removed with its ends.
4. `boilerplate.ngram_chars`: the learned spans are removed wherever they occur (at each
   leftmost position, the longest span that matches there).
5. `whitespace: collapse`: every run of whitespace becomes one space; the ends are trimmed.

Only numpy and the standard library: the config and data layers import this module.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtune.config_schema import (
    PREPARE_WHITESPACE,
    PREPARE_WIDTHS,
    BoilerplateConfig,
    PrepareConfig,
)

PREPARATION_FILE = "preparation.json"  # the learned preparation, per task (run folder, export)
REPORT_FILE = "preparation_report.json"  # what it removed, per task and split (run folder)
FORMAT = "xtune-preparation"
FORMAT_VERSION = 1

SENTENCE_ENDS = "。！？；!?;\n"
# Code point ranges, inclusive. Whitespace is listed, not `\s`: RE2 (TensorFlow) reads `\s`
# as ASCII only, Python as Unicode.
WHITESPACE = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0x85, 0x85),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)
LINE_ENDS = ((0x0B, 0x0C), (0x85, 0x85), (0x2028, 0x2029))  # and \r\n, \r: all become \n
# Control characters (C0 but tab, newline and the line ends above; DEL; C1) and invisible
# format characters: soft hyphen, zero-width space/joiners, direction marks and embeddings,
# word joiner and invisible operators, isolates and deprecated format controls, BOM,
# interlinear annotation marks.
CONTROL = (
    (0x00, 0x08),
    (0x0E, 0x1F),
    (0x7F, 0x84),
    (0x86, 0x9F),
    (0xAD, 0xAD),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
)
FULL_WIDTH_SHIFT = 0xFEE0  # U+FF01 - U+0021
# (first, last) full-width code points mapped down by FULL_WIDTH_SHIFT, per `width`.
WIDTH_RANGES = {
    "none": (),
    "alphanumeric": ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)),
    "ascii": ((0xFF01, 0xFF5E),),
}
IDEOGRAPHIC_SPACE = 0x3000  # `ascii` maps it to a space
METACHARACTERS = set("\\.^$|?*+()[]{}")
TOP_REMOVED = 10  # sentences listed in the report and the printed summary


# ---------------------------------------------------------------- patterns (Python and RE2)


def escape(character: str) -> str:
    """One character as a regex literal, written the same for Python's `re` and RE2."""
    point = ord(character)
    if point < 0x20 or point == 0x7F:
        return f"\\x{point:02x}"
    if character in METACHARACTERS:
        return "\\" + character
    return character


def code_point(point: int, dialect: str) -> str:
    """A code point inside a character class: `\\x{...}` in RE2, `\\U...` in Python."""
    if dialect == "re2":
        return f"\\x{{{point:x}}}"
    return f"\\U{point:08x}"


def character_class(ranges: Iterable[tuple[int, int]], dialect: str, negate: bool = False) -> str:
    parts = []
    for first, last in ranges:
        part = code_point(first, dialect)
        if last != first:
            part += "-" + code_point(last, dialect)
        parts.append(part)
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def ranges_of(characters: str) -> list[tuple[int, int]]:
    return [(ord(c), ord(c)) for c in characters]


def literal_trie(words: Sequence[str]) -> str:
    """One regex matching any of `words`, as a trie: at a position, the longest word that
    matches there (a longer continuation is tried before ending a word). An alternation of
    hundreds of literals is slow in Python's `re`; the trie walks each position once. The
    pattern is the same for Python's `re` and RE2, which both take the first alternative that
    matches (leftmost-first)."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for character in word:
            node = node.setdefault(character, {})
        node[""] = {}

    def pattern(node: dict[str, Any]) -> str:
        branches = [escape(c) + pattern(node[c]) for c in sorted(node) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return pattern(root)


@dataclass(frozen=True)
class Patterns:
    """The regular expressions of the steps, in one dialect: `python` or `re2` (TensorFlow's
    string ops). Built from the same code point ranges, so both match the same text."""

    dialect: str

    @property
    def line_ends(self) -> str:
        return "\\r\\n|" + character_class([(0x0D, 0x0D), *LINE_ENDS], self.dialect)

    @property
    def control(self) -> str:
        return character_class(CONTROL, self.dialect)

    @property
    def whitespace_run(self) -> str:
        return character_class(WHITESPACE, self.dialect) + "+"

    @property
    def sentence(self) -> str:
        """One sentence: other characters and the sentence ends after them, or a run of
        sentence ends alone (at the start of a text)."""
        ends = ranges_of(SENTENCE_ENDS)
        inside = character_class(ends, self.dialect, negate=True)
        end = character_class(ends, self.dialect)
        return f"{inside}+{end}*|{end}+"

    @property
    def not_in_key(self) -> str:
        """What a sentence's key leaves out: sentence ends and whitespace."""
        return character_class([*ranges_of(SENTENCE_ENDS), *WHITESPACE], self.dialect)


PYTHON = Patterns("python")


@functools.cache
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def sentences_of(text: str) -> list[str]:
    """The text's sentences (see the module docstring); joined, they are the text."""
    return compiled(PYTHON.sentence).findall(text)


def sentence_key(sentence: str) -> str:
    """What boilerplate sentences are compared by: no sentence ends, no whitespace."""
    return compiled(PYTHON.not_in_key).sub("", sentence)


# ---------------------------------------------------------------- the preparation


@dataclass(frozen=True)
class TextPreparation:
    """What `data.prepare` does to one text, with what was learned from the training rows
    (`sentences`: boilerplate sentence keys; `spans`: boilerplate spans). `report` is what it
    removed from the splits it was learned and applied on (not part of its identity)."""

    width: str = "none"
    control_characters: bool = False
    whitespace: str = "keep"
    sentences: tuple[str, ...] = ()
    spans: tuple[str, ...] = ()
    report: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: PrepareConfig) -> TextPreparation:
        """The steps that need nothing learned."""
        return cls(config.width, config.control_characters, config.whitespace)

    def to_dict(self) -> dict[str, Any]:
        """The record saved in the run folder and the export (preparation.json)."""
        return {
            "width": self.width,
            "control_characters": self.control_characters,
            "whitespace": self.whitespace,
            "sentences": list(self.sentences),
            "spans": list(self.spans),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TextPreparation:
        """The preparation `to_dict` wrote; ValueError for a record it cannot have written."""
        preparation = cls(
            width=record.get("width", "none"),
            control_characters=bool(record.get("control_characters", False)),
            whitespace=record.get("whitespace", "keep"),
            sentences=tuple(record.get("sentences") or ()),
            spans=tuple(record.get("spans") or ()),
        )
        if preparation.width not in PREPARE_WIDTHS:
            raise ValueError(f"width {preparation.width!r} is not one of {PREPARE_WIDTHS}")
        if preparation.whitespace not in PREPARE_WHITESPACE:
            raise ValueError(
                f"whitespace {preparation.whitespace!r} is not one of {PREPARE_WHITESPACE}"
            )
        learned = (*preparation.sentences, *preparation.spans)
        if not all(isinstance(item, str) and item for item in learned):
            raise ValueError("sentences and spans must be non-empty strings")
        return preparation

    @functools.cached_property
    def width_table(self) -> dict[int, int]:
        table = {
            point: point - FULL_WIDTH_SHIFT
            for first, last in WIDTH_RANGES[self.width]
            for point in range(first, last + 1)
        }
        if self.width == "ascii":
            table[IDEOGRAPHIC_SPACE] = 0x20
        return table

    @functools.cached_property
    def sentence_set(self) -> frozenset[str]:
        return frozenset(self.sentences)

    @functools.cached_property
    def span_pattern(self) -> re.Pattern[str] | None:
        return re.compile(literal_trie(self.spans)) if self.spans else None

    # ------------------------------------------------------------ the steps

    def normalize(self, text: str) -> str:
        """Steps 1-2: width, then line ends and control characters."""
        if self.width != "none":
            text = text.translate(self.width_table)
        if self.control_characters:
            text = compiled(PYTHON.line_ends).sub("\n", text)
            text = compiled(PYTHON.control).sub("", text)
        return text

    def remove_sentences(self, text: str) -> tuple[str, list[str]]:
        """Step 3: the text without its boilerplate sentences, and their keys."""
        if not self.sentences:
            return text, []
        kept, removed = [], []
        for sentence in sentences_of(text):
            key = sentence_key(sentence)
            if key in self.sentence_set:
                removed.append(key)
            else:
                kept.append(sentence)
        return "".join(kept), removed

    def remove_spans(self, text: str) -> str:
        """Step 4."""
        return self.span_pattern.sub("", text) if self.span_pattern is not None else text

    def tidy_whitespace(self, text: str) -> str:
        """Step 5."""
        if self.whitespace == "collapse":
            text = compiled(PYTHON.whitespace_run).sub(" ", text).strip(" ")
        return text

    def stages(self, text: str) -> tuple[list[str], list[str]]:
        """The text after each step (normalized, sentences removed, spans removed, whitespace
        tidied) and the keys of the sentences removed."""
        normalized = self.normalize(text)
        without_sentences, removed = self.remove_sentences(normalized)
        without_spans = self.remove_spans(without_sentences)
        tidied = self.tidy_whitespace(without_spans)
        return [normalized, without_sentences, without_spans, tidied], removed

    def clean(self, text: str) -> str:
        """What the text becomes: in training, evaluation, `xtune predict` and the export."""
        without_sentences, _ = self.remove_sentences(self.normalize(text))
        return self.tidy_whitespace(self.remove_spans(without_sentences))

    def clean_all(self, texts: Sequence[str] | None) -> list[str] | None:
        return None if texts is None else [self.clean(text) for text in texts]

    def steps(self) -> list[str]:
        """The steps that change a text, by name (export.json, the model card); the export
        runs all of them in its graph."""
        steps = []
        if self.width != "none":
            steps.append(f"width: {self.width}")
        if self.control_characters:
            steps.append("control characters")
        if self.sentences:
            steps.append(f"{len(self.sentences)} boilerplate sentences")
        if self.spans:
            steps.append(f"{len(self.spans)} boilerplate spans")
        if self.whitespace != "keep":
            steps.append(f"whitespace: {self.whitespace}")
        return steps

    def is_identity(self) -> bool:
        return not self.steps()


# ---------------------------------------------------------------- learning boilerplate


def frequent(counts: Counter[str], rows: int, settings: BoilerplateConfig) -> list[str]:
    """Items in more than `share` of `rows` and in at least `min_rows`, most common first
    (ties by length, longest first, then by text), at most `max_items`."""
    chosen = [
        item
        for item, count in counts.items()
        if count > settings.share * rows and count >= settings.min_rows
    ]
    chosen.sort(key=lambda item: (-counts[item], -len(item), item))
    return chosen[: settings.max_items]


def learn_sentences(
    documents: Sequence[Sequence[str]], settings: BoilerplateConfig
) -> tuple[list[str], Counter[str]]:
    """Boilerplate sentence keys of the training rows (each row's fields, normalized), and
    every key's row count."""
    counts: Counter[str] = Counter()
    for fields in documents:
        keys = {sentence_key(s) for text in fields for s in sentences_of(text)}
        counts.update(key for key in keys if len(key) >= settings.min_chars)
    return frequent(counts, len(documents), settings), counts


NGRAM_SEED = 20240526


@functools.cache
def ngram_weights(length: int) -> np.ndarray:
    """Random odd 64-bit multipliers: an n-gram's hash is its code points' dot product with
    them (wrapping), which a collision-free count would need far more memory for."""
    rng = np.random.default_rng(NGRAM_SEED)
    return rng.integers(0, 2**63, size=length, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def ngram_hashes(text: str, length: int) -> np.ndarray:
    """The hash of each `length`-character n-gram of `text`, in order."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < length:
        return np.zeros(0, np.uint64)
    windows = np.lib.stride_tricks.sliding_window_view(codes, length)
    with np.errstate(over="ignore"):
        return windows @ ngram_weights(length)


def covered_spans(text: str, starts: np.ndarray, length: int) -> set[str]:
    """The maximal runs of `text` covered by n-grams starting at `starts` (a 0/1 mask)."""
    if not starts.any():
        return set()
    depth = np.convolve(starts.astype(np.int32), np.ones(length, np.int32))[: len(text)]
    covered = np.concatenate([[False], depth > 0, [False]])
    edges = np.flatnonzero(covered[1:] != covered[:-1])
    return {text[begin:end] for begin, end in zip(edges[::2], edges[1::2], strict=True)}


def learn_spans(documents: Sequence[Sequence[str]], settings: BoilerplateConfig) -> list[str]:
    """Boilerplate spans: the maximal runs covered by character n-grams of length
    `ngram_chars` that are in more than `share` of the rows, kept when the run itself is in
    more than `share` of the rows (and `min_rows`)."""
    length = settings.ngram_chars
    if length is None:
        return []
    per_row = [
        np.unique(np.concatenate([ngram_hashes(text, length) for text in fields]))
        for fields in documents
    ]
    hashes, counts = np.unique(
        np.concatenate([np.zeros(0, np.uint64), *per_row]), return_counts=True
    )
    rows = len(documents)
    common = hashes[(counts > settings.share * rows) & (counts >= settings.min_rows)]
    if not len(common):
        return []
    span_counts: Counter[str] = Counter()
    for fields in documents:
        spans: set[str] = set()
        for text in fields:
            starts = np.isin(ngram_hashes(text, length), common)
            spans |= covered_spans(text, starts, length)
        span_counts.update(spans)
    return within_pattern_budget(frequent(span_counts, rows, settings))


# RE2 (the export's regex engine) falls back from its fast DFA to a slow matcher, logging a
# line per call, when a pattern's program outgrows its memory budget: an alternation of some
# 200 spans of 16-40 Chinese characters (17 kB) still fits, 400 do not.
MAX_SPAN_PATTERN_BYTES = 16_000


def within_pattern_budget(spans: list[str]) -> list[str]:
    """The first spans whose UTF-8 bytes (plus a few pattern characters each) fit
    `MAX_SPAN_PATTERN_BYTES`."""
    kept, size = [], 0
    for span in spans:
        size += len(span.encode()) + 8
        if size > MAX_SPAN_PATTERN_BYTES:
            break
        kept.append(span)
    return kept


# ---------------------------------------------------------------- duplicates and leakage


def duplicate_key(text: str, pair: str | None) -> str:
    """Rows are duplicates when their prepared text and pair are equal without whitespace,
    punctuation and case."""

    def plain(value: str) -> str:
        return "".join(
            c
            for c in value.casefold()
            if not (c.isspace() or unicodedata.category(c).startswith("P"))
        )

    return plain(text) + "\x1f" + ("" if pair is None else plain(pair))


def duplicate_keys(texts: list[str], pairs: list[str] | None) -> list[str]:
    return [
        duplicate_key(text, None if pairs is None else pairs[i]) for i, text in enumerate(texts)
    ]


# ---------------------------------------------------------------- applying it to splits


def learn_preparation(
    config: PrepareConfig, train_texts: list[str], train_pairs: list[str] | None
) -> tuple[TextPreparation, Counter[str]]:
    """The preparation with its boilerplate learned from the training rows (never from dev or
    test), and each sentence key's training row count."""
    base = TextPreparation.from_config(config)
    if config.boilerplate is None:
        return base, Counter()
    fields = [train_texts] + ([train_pairs] if train_pairs is not None else [])
    documents = [[base.normalize(text) for text in row] for row in zip(*fields, strict=True)]
    sentences, counts = learn_sentences(documents, config.boilerplate)
    with_sentences = dataclasses.replace(base, sentences=tuple(sentences))
    documents = [[with_sentences.remove_sentences(text)[0] for text in row] for row in documents]
    spans = learn_spans(documents, config.boilerplate)
    return dataclasses.replace(with_sentences, spans=tuple(spans)), counts


# The report's names of what `TextPreparation.stages` returns.
STEP_NAMES = (
    "width_and_control_characters",
    "boilerplate_sentences",
    "boilerplate_spans",
    "whitespace",
)


def apply_with_counts(
    preparation: TextPreparation, texts: list[str] | None, stats: dict[str, Any]
) -> list[str] | None:
    """`preparation.clean` of each text, counting in `stats` the characters each step removed
    and the sentences removed by key."""
    if texts is None:
        return None
    cleaned = []
    for text in texts:
        stages, removed = preparation.stages(text)
        before = len(text)
        for name, stage in zip(STEP_NAMES, stages, strict=True):
            stats["characters_removed_by_step"][name] += before - len(stage)
            before = len(stage)
        stats["characters_before"] += len(text)
        stats["characters_after"] += len(stages[-1])
        stats["sentences_removed"] += len(removed)
        stats["removed_sentence_counts"].update(removed)
        cleaned.append(stages[-1])
    return cleaned


def new_stats(rows: int) -> dict[str, Any]:
    return {
        "rows": rows,
        "characters_before": 0,
        "characters_after": 0,
        "characters_removed_by_step": dict.fromkeys(STEP_NAMES, 0),
        "sentences_removed": 0,
        "removed_sentence_counts": Counter(),
    }


@dataclass
class PreparedSplits:
    """`prepare_splits`' result: each split's prepared texts and pairs, the train rows kept
    (indices into the given train split), the preparation (its `report` filled) and notes
    for the user (leakage)."""

    texts: dict[str, list[str]]
    pairs: dict[str, list[str] | None]
    train_kept: np.ndarray
    preparation: TextPreparation
    notes: dict[str, list[str]]  # by split name


def prepare_splits(
    splits: dict[str, Any], config: PrepareConfig, sources: dict[str, str] | None = None
) -> PreparedSplits:
    """Learn the preparation from `splits["train"]`, apply it to every split, drop duplicated
    train rows (`duplicates: drop`) and report rows of dev/test that repeat a train row (or
    test rows that repeat a dev row). `splits` hold `texts`, `pairs` and `rows` (1-based
    data-row numbers), as `xtune.data.examples.Examples` does."""
    train = splits["train"]
    preparation, train_counts = learn_preparation(config, train.texts, train.pairs)
    texts, pairs, stats = {}, {}, {}
    for name, split in splits.items():
        stats[name] = new_stats(len(split.texts))
        texts[name] = apply_with_counts(preparation, split.texts, stats[name])
        pairs[name] = apply_with_counts(preparation, split.pairs, stats[name])
        stats[name]["rows_emptied"] = sum(1 for text in texts[name] if not text)
    keys = {name: duplicate_keys(texts[name], pairs[name]) for name in splits}
    train_kept, dropped = kept_rows(keys["train"], config.duplicates == "drop")
    leakage = cross_split_repeats(splits, keys)
    report = preparation_report(
        preparation, config, stats, train_counts, len(train.texts), dropped, leakage, sources
    )
    preparation = dataclasses.replace(preparation, report=report)
    texts["train"] = [texts["train"][i] for i in train_kept]
    if pairs["train"] is not None:
        pairs["train"] = [pairs["train"][i] for i in train_kept]
    return PreparedSplits(texts, pairs, train_kept, preparation, leakage_notes(leakage, sources))


def kept_rows(keys: list[str], drop: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Row indices kept (the first of each duplicate key when `drop`), and the count of
    duplicated rows (dropped or not)."""
    first: dict[str, int] = {}
    kept, repeats = [], 0
    for index, key in enumerate(keys):
        if key in first:
            repeats += 1
            if drop:
                continue
        else:
            first[key] = index
        kept.append(index)
    return np.asarray(kept, np.int64), {
        "duplicated_rows": repeats,
        "dropped": repeats if drop else 0,
    }


def cross_split_repeats(splits: dict[str, Any], keys: dict[str, list[str]]) -> dict[str, Any]:
    """For dev and test: how many rows repeat a row of an earlier split (train; dev for
    test), with the first few row pairs (1-based data-row numbers)."""
    leakage = {}
    order = [name for name in ("train", "dev", "test") if name in splits]
    for position, name in enumerate(order[1:], start=1):
        for earlier in order[:position]:
            where = {}
            for index, key in enumerate(keys[earlier]):
                where.setdefault(key, splits[earlier].rows[index])
            shared = [
                (splits[name].rows[index], where[key])
                for index, key in enumerate(keys[name])
                if key in where
            ]
            leakage[f"{name}_in_{earlier}"] = {
                "rows": len(shared),
                "share": round(len(shared) / max(len(keys[name]), 1), 4),
                "examples": [{name: row, earlier: other} for row, other in shared[:5]],
            }
    return leakage


def leakage_notes(leakage: dict[str, Any], sources: dict[str, str] | None) -> dict[str, list[str]]:
    """By split: a note for each earlier split some of its rows repeat."""
    notes: dict[str, list[str]] = {}
    for pair, record in leakage.items():
        if record["rows"]:
            name, earlier = pair.split("_in_")
            first = record["examples"][0]
            notes.setdefault(name, []).append(
                f"{name} ({(sources or {}).get(name, name)}): {record['rows']} row(s) "
                f"({record['share']:.1%}) repeat a {earlier} row after text preparation (e.g. "
                f"{name} row {first[name]} = {earlier} row {first[earlier]}); their "
                f"{name} metrics partly measure memorised rows"
            )
    return notes


def preparation_report(
    preparation: TextPreparation,
    config: PrepareConfig,
    stats: dict[str, dict[str, Any]],
    train_counts: Counter[str],
    train_rows: int,
    duplicates: dict[str, Any],
    leakage: dict[str, Any],
    sources: dict[str, str] | None,
) -> dict[str, Any]:
    """preparation_report.json's record of one task (see `report_summary`)."""
    splits = {}
    for name, record in stats.items():
        record = dict(record)
        counts = record.pop("removed_sentence_counts")
        before = record["characters_before"]
        record["characters_removed"] = before - record["characters_after"]
        record["share_of_characters_removed"] = round(
            record["characters_removed"] / before if before else 0.0, 4
        )
        record["top_removed_sentences"] = [
            {"sentence": key, "removed": count} for key, count in counts.most_common(TOP_REMOVED)
        ]
        if sources and name in sources:
            record["source"] = sources[name]
        splits[name] = record
    splits["train"]["duplicated_rows"] = duplicates["duplicated_rows"]
    splits["train"]["duplicate_rows_dropped"] = duplicates["dropped"]
    splits["train"]["rows_kept"] = train_rows - duplicates["dropped"]
    learned = [
        {
            "sentence": key,
            "train_rows": train_counts[key],
            "share": round(train_counts[key] / train_rows, 4),
        }
        for key in preparation.sentences
    ]
    return {
        "settings": dataclasses.asdict(config),
        "learned_from": "train",
        "boilerplate_sentences": learned,
        "boilerplate_spans": list(preparation.spans),
        "splits": splits,
        "leakage": leakage,
    }


def report_summary(report: dict[str, Any]) -> list[str]:
    """The printed lines of a preparation report."""
    lines = []
    learned = report["boilerplate_sentences"]
    settings = report["settings"]
    if settings.get("boilerplate") is not None:
        share = settings["boilerplate"]["share"]
        spans = report["boilerplate_spans"]
        lines.append(
            f"{len(learned)} boilerplate sentence(s) learned from train (in more than "
            f"{share:.0%} of its rows)" + (f", {len(spans)} span(s)" if spans else "")
        )
    for name, split in report["splits"].items():
        text = (
            f"{name}: {split['rows']} rows, {split['characters_removed']:,} of "
            f"{split['characters_before']:,} characters removed "
            f"({split['share_of_characters_removed']:.1%})"
        )
        if split["sentences_removed"]:
            text += f", {split['sentences_removed']:,} sentences"
        if split["rows_emptied"]:
            text += f", {split['rows_emptied']} text(s) left empty"
        if name == "train" and split["duplicated_rows"]:
            action = "dropped" if split["duplicate_rows_dropped"] else "kept (duplicates: keep)"
            text += f", {split['duplicated_rows']} duplicated row(s) {action}"
        lines.append(text)
    for pair, record in report["leakage"].items():
        if record["rows"]:
            name, earlier = pair.split("_in_")
            lines.append(f"leakage: {record['rows']} {name} row(s) repeat a {earlier} row")
    top = report["splits"]["train"]["top_removed_sentences"][:3]
    if top:
        shown = "; ".join(f"{item['sentence'][:30]!r} ({item['removed']}x)" for item in top)
        lines.append(f"most removed: {shown}")
    return lines
