"""Bad-input corpus, checkpoint side: Hugging Face folders a user brings (`encoder: {name: hf,
path: ...}`), copied from the tiny fixtures and broken one way each. `xtune train` stops before
any training with exit 2 and one line naming the file, what is wrong and what was expected;
the folder and the data are byte-identical afterwards."""

from __future__ import annotations

import collections
import json
import pickle
import shutil
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.grid.grid_helpers import tiny_base, write_tiny_data
from tests.reliability.helpers import assert_user_error, run_cli, snapshot
from xtune.encoders.torch_pickle import LEGACY_MAGIC_NUMBER

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf_tiny"


def edit_config(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        change(config)
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")

    return edit


def write(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(content)


def recode_config(encoding: str) -> Callable[[Path], None]:
    def recode(folder: Path) -> None:
        text = (folder / "config.json").read_text(encoding="utf-8")
        (folder / "config.json").write_bytes(text.encode(encoding))

    return recode


def truncate(name: str, fraction: float) -> Callable[[Path], None]:
    def cut(folder: Path) -> None:
        path = folder / name
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])

    return cut


def bin_only(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def rewrite_safetensors(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def rewrite(folder: Path) -> None:
        from safetensors.numpy import load_file, save_file

        weights = load_file(str(folder / "model.safetensors"))
        change(weights)
        save_file(weights, str(folder / "model.safetensors"))

    return rewrite


def nan_in(name: str) -> Callable[[dict], None]:
    def poison(weights: dict) -> None:
        weights[name] = weights[name].copy()
        weights[name].flat[3] = np.nan

    return poison


def lying_header(folder: Path) -> None:
    """A header whose word-embedding shape is twice the bytes its range holds."""
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    header["embeddings.word_embeddings.weight"]["shape"][0] *= 2
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + length :])


def vocabulary_lines(change: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        tokens = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
        (folder / "vocab.txt").write_text("\n".join(change(tokens)) + "\n", encoding="utf-8")

    return edit


def repeat_line(tokens: list[str]) -> list[str]:
    return [*tokens[:100], tokens[50], *tokens[101:]]


def huge_legacy_bin(folder: Path) -> None:
    """A ~300-byte torch legacy-format file declaring one storage of 2**45 floats (128 TiB)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    storage = object()

    class Tensor:
        def __reduce__(self):
            return _rebuild_tensor_v2, (storage, 0, (2**45,), (1,), False, {})

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", FloatStorage, "0", "cpu", 2**45)
            return None

    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        with (folder / "pytorch_model.bin").open("wb") as file:
            for header in (LEGACY_MAGIC_NUMBER, 1001, {"little_endian": True}):
                pickle.dump(header, file, protocol=2)
            Pickler(file, protocol=2).dump(
                collections.OrderedDict({"embeddings.word_embeddings.weight": Tensor()})
            )
            pickle.dump(["0"], file, protocol=2)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    (folder / "model.safetensors").unlink()


# name: (fixture family, how to break the copy, needles of the one error line)
CASES: dict[str, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    "config.json not JSON": (
        "bert",
        write("config.json", b'{"model_type": "bert",'),
        ("config.json: not valid JSON (line 1", "expected the model's configuration object"),
    ),
    "config.json a list": (
        "bert",
        write("config.json", b'[{"model_type": "bert"}]'),
        ("config.json: holds a JSON list; expected", "configuration object"),
    ),
    "config.json without model_type": (
        "bert",
        edit_config(lambda config: config.pop("model_type")),
        ('config.json: no "model_type" (its architectures: BertModel)', "expected one of"),
    ),
    "config.json in UTF-16": (
        "bert",
        recode_config("utf-16"),
        ("config.json: starts with a byte-order mark", "plain UTF-8"),
    ),
    "config.json in GB18030 with a Chinese value": (
        "bert",
        write("config.json", '{"model_type": "bert", "名字": 1}'.encode("gb18030")),
        ("config.json: byte 24 is not valid UTF-8",),
    ),
    "model.safetensors cut in half": (
        "bert",
        truncate("model.safetensors", 0.5),
        ("model.safetensors: truncated: tensor", "ends at byte", "the file has"),
    ),
    "model.safetensors cut inside its header": (
        "roberta",
        truncate("model.safetensors", 0.01),
        ("model.safetensors: the header declares", "truncated"),
    ),
    "model.safetensors header shape larger than its bytes": (
        "bert",
        lying_header,
        ("model.safetensors: tensor 'embeddings.word_embeddings.weight' of shape", "needs"),
    ),
    "pytorch_model.bin cut in half": (
        "bert",
        lambda folder: (bin_only(folder), truncate("pytorch_model.bin", 0.5)(folder)),
        ("pytorch_model.bin: a zip archive without its directory: the file is truncated",),
    ),
    "legacy pytorch_model.bin declaring a 128 TiB storage": (
        "bert",
        huge_legacy_bin,
        ("pytorch_model.bin: storage 0 declares 35184372088832 elements", "more than the file"),
    ),
    "a tensor missing (BERT, read by keras-hub)": (
        "bert",
        rewrite_safetensors(lambda w: w.pop("encoder.layer.1.attention.self.query.weight")),
        ("model.safetensors: has no tensor 'encoder.layer.1.attention.self.query.weight'",),
    ),
    "a tensor missing (RoBERTa, read by xtune)": (
        "roberta",
        rewrite_safetensors(lambda w: w.pop("encoder.layer.0.output.dense.bias")),
        ("model.safetensors: has no tensor 'encoder.layer.0.output.dense.bias'",),
    ),
    "NaN in a safetensors weight": (
        "bert",
        rewrite_safetensors(nan_in("encoder.layer.0.output.dense.weight")),
        ("model.safetensors: tensor 'encoder.layer.0.output.dense.weight' holds 1 non-finite",),
    ),
    "vocab.txt longer than the word embedding": (
        "bert",
        vocabulary_lines(lambda tokens: tokens + [f"extra{i}" for i in range(5000)]),
        ("vocab.txt: 5360 tokens, but the word embedding has 360 rows", "ids 360..5359"),
    ),
    "vocab.txt with a repeated token": (
        "bert",
        vocabulary_lines(repeat_line),
        ("vocab.txt: line 101 repeats the token", "of line 51"),
    ),
    "vocab.txt with GB18030 bytes": (
        "distilbert",
        lambda folder: (folder / "vocab.txt").write_bytes(
            (folder / "vocab.txt").read_bytes() + "词\n".encode("gb18030")
        ),
        ("vocab.txt: line 361: bytes that are not valid UTF-8",),
    ),
    "tokenizer_config.json not JSON": (
        "bert",
        write("tokenizer_config.json", b"{do_lower_case: true}"),
        ("tokenizer_config.json: not valid JSON",),
    ),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("checkpoint_data"))


def train_on(folder: Path, data: Path, tmp_path: Path, capsys) -> tuple[int, str, str]:
    config = tiny_base(data, tmp_path / "runs")
    config["encoder"] = {"name": "hf", "path": str(folder)}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return run_cli(["train", path], capsys)


@pytest.mark.parametrize("name", list(CASES))
def test_a_malformed_checkpoint_folder_is_one_line_before_any_training(
    name, data, tmp_path, capsys
):
    family, damage, needles = CASES[name]
    folder = tmp_path / "checkpoint"
    shutil.copytree(FIXTURES / family, folder)
    damage(folder)
    before = snapshot(folder), snapshot(data)
    code, _, err = train_on(folder, data, tmp_path, capsys)
    assert_user_error(code, err, str(folder), *needles)
    assert (snapshot(folder), snapshot(data)) == before
    assert not list(tmp_path.rglob("metrics.json"))  # nothing trained


def test_a_vocabulary_shorter_than_the_embedding_loads_with_a_warning(tmp_path, caplog):
    from xtune.encoders.sources import load_hf_folder

    folder = tmp_path / "checkpoint"
    shutil.copytree(FIXTURES / "bert", folder)
    vocabulary_lines(lambda tokens: tokens[:300])(folder)
    encoder = load_hf_folder(str(folder))
    assert encoder.tokenizer.vocabulary_size == 300
    assert "vocab.txt: 300 tokens for a word embedding of 360 rows" in caplog.text


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "albert", "xlm_roberta"])
def test_every_fixture_family_passes_the_checks(family, caplog):
    from xtune.encoders.sources import load_hf_folder

    encoder = load_hf_folder(str(FIXTURES / family))
    assert encoder.tokenizer.vocabulary_size == int(encoder.word_embeddings.shape[0])
    assert "warning" not in caplog.text
