"""Every Hugging Face family end to end: a grid trains one row per family, each family exports.

One grid process trains all families (1 epoch of 2 steps on the tiny grid data), so the
encoders share the data reading and the process; a run folder of each family then exports to
a SavedModel whose raw-string signature must reproduce the in-framework probabilities and the
token-id signature's (export's own check, tolerance 1e-5), and the exported ids must equal
the run's tokenizer's (special tokens in the text, accents, emoji, whitespace runs included).

Two rows train but do not export, as their parts are exported by other rows: ALBERT with a
`vocab.txt` is the ALBERT backbone (row `albert`) with the WordPiece tokenizer (rows `bert`,
`distilbert`); the untrimmed XLM-R is row `xlm_roberta_trimmed`, whose `TrimmedTokenizer`
runs (and the SavedModel tracks) the XLM-R SentencePiece tokenizer inside.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.grid.grid_helpers import read_lines, tiny_base, write_grid, write_tiny_data

pytestmark = pytest.mark.heavy

HF_TINY = Path(__file__).parent.parent / "fixtures" / "hf_tiny"
FAMILIES = ("bert", "roberta", "distilbert", "albert", "albert_vocab_txt", "xlm_roberta")
# Rows: one per family, plus XLM-R with its vocabulary trimmed to the data's pieces.
ROWS = (*FAMILIES, "xlm_roberta_trimmed")
EXPORTED = ("bert", "roberta", "distilbert", "albert", "xlm_roberta_trimmed")
# Served ids vs the run's own TextEncoder (max_length 16: the long one is truncated, the
# others fit whole, so the special token, accents, emoji and spaces are all compared).
TEXTS = ["港灣東格 hello", "", "意理真空" * 20, "<s> Café naïve", "中文，🤖", "  two  spaces "]


@pytest.fixture(scope="module")
def family_grid(tmp_path_factory) -> tuple[Path, list[dict]]:
    from xtune.grid.runner import run_grid

    root = tmp_path_factory.mktemp("families")
    base = tiny_base(write_tiny_data(root / "data"), root / "runs")
    base["training"].update(save_weights=True, steps_per_epoch=2)
    base["encoder"] = {"name": "hf", "path": str(HF_TINY / "bert")}
    variants = {family: {"encoder.path": str(HF_TINY / family)} for family in FAMILIES}
    variants["xlm_roberta_trimmed"] = {
        "encoder.path": str(HF_TINY / "xlm_roberta"),
        "data.trim_vocabulary": True,
    }
    grid = write_grid(
        root / "families.yaml",
        {"name": "families", "base": base, "variants": variants, "seeds": [0]},
    )
    assert run_grid(grid, output=root / "results") == 0
    return root, read_lines(root / "results" / "results.jsonl")


def test_grid_trains_every_family(family_grid):
    _, lines = family_grid
    assert sorted(line["row"] for line in lines) == sorted(ROWS)
    assert all(line["status"] == "ok" for line in lines), [line.get("error") for line in lines]


@pytest.mark.parametrize("family", EXPORTED)
def test_family_run_exports_and_serves_like_training(family_grid, family):
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the SavedModel uses)

    from tests.task_view import load_task_view as load_run
    from xtune.export.saved_model import export_run

    root, lines = family_grid
    line = next(line for line in lines if line["row"] == family)
    run = load_run(line["run_dir"])
    result = export_run(run.run, root / "exports" / family)
    assert result.metadata["check"]["max_abs_difference"] <= 1e-5

    served = tf.saved_model.load(str(result.path)).signatures["tokenize"](text=tf.constant(TEXTS))
    expected = run.text_encoder.pad(run.text_encoder(tf.constant(TEXTS)))
    assert sorted(served) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(served[name].numpy(), np.asarray(value))
    trimmed = family.endswith("_trimmed")
    assert ("trimmed_vocabulary_size" in run.text_encoder.settings()) == trimmed
