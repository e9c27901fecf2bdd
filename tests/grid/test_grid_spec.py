"""Grid files expand into the right cells, seeds and runs; bad overrides fail before training."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.grid.grid_helpers import TINY_ENCODER, tiny_base, write_grid
from xtune.config import ConfigError
from xtune.grid.spec import load_grid


@pytest.fixture
def base(tiny_data: Path, tmp_path: Path) -> dict:
    return tiny_base(tiny_data, tmp_path / "runs")


def grid_file(tmp_path: Path, base: dict, **keys) -> Path:
    return write_grid(tmp_path / "grid.yaml", {"base": base, **keys})


# ---------------------------------------------------------------- expansion


def test_variants_keep_file_order_with_the_baseline_first(tmp_path, base):
    path = grid_file(
        tmp_path,
        base,
        seeds=[0, 1],
        variants={
            "baseline": {},
            "lr 1e-2": {"optimizer.learning_rate": 1e-2},
            "concurrent softmax": {"loss.name": "multilabel_ce"},
            "warm-up": {"schedule": {"name": "linear", "warmup_ratio": 0.1}},
        },
    )
    spec = load_grid(path)
    assert [cell.name for cell in spec.cells] == [
        "baseline",
        "lr 1e-2",
        "concurrent softmax",
        "warm-up",
    ]
    assert spec.cells[0].overrides == {}
    assert len(spec.runs) == 4 * 2
    assert [(run.cell.name, run.seed) for run in spec.runs[:3]] == [
        ("baseline", 0),
        ("baseline", 1),
        ("lr 1e-2", 0),
    ]
    configs = {run.cell.name: run.config for run in spec.runs}
    assert configs["baseline"].optimizer.kwargs["learning_rate"] == 1e-3
    assert configs["lr 1e-2"].optimizer.kwargs["learning_rate"] == 1e-2
    assert configs["concurrent softmax"].loss.name == "multilabel_ce"
    assert configs["warm-up"].schedule.to_dict() == {"name": "linear", "warmup_ratio": 0.1}
    assert [run.config.training.seed for run in spec.runs[:2]] == [0, 1]


def test_grid_axes_expand_as_a_cartesian_product(tmp_path, base):
    path = grid_file(
        tmp_path,
        base,
        grid={"optimizer.learning_rate": [1e-3, 1e-2], "training.batch_size": [4, 8, 16]},
    )
    spec = load_grid(path)
    assert len(spec.cells) == 6
    assert spec.cells[0].name == "learning_rate=0.001, batch_size=4"
    pairs = {
        (run.config.optimizer.kwargs["learning_rate"], run.config.training.batch_size)
        for run in spec.runs
    }
    assert pairs == {(lr, b) for lr in (1e-3, 1e-2) for b in (4, 8, 16)}


def test_grid_axes_cross_the_variants(tmp_path, base):
    path = grid_file(
        tmp_path,
        base,
        variants={"baseline": {}, "mlp": {"head.units": [8]}},
        grid={"data.max_length": [12, 16]},
    )
    spec = load_grid(path)
    assert [cell.name for cell in spec.cells] == [
        "baseline, max_length=12",
        "baseline, max_length=16",
        "mlp, max_length=12",
        "mlp, max_length=16",
    ]
    assert spec.cells[3].overrides == {"head.units": [8], "data.max_length": 16}


def test_seeds_from_a_list_from_repeats_or_from_the_base(tmp_path, base):
    assert load_grid(grid_file(tmp_path, base, seeds=[7, 3])).seeds == [7, 3]
    assert load_grid(grid_file(tmp_path, base, repeats=3, seed=10)).seeds == [10, 11, 12]
    base["training"]["seed"] = 5
    spec = load_grid(grid_file(tmp_path, base, repeats=2))
    assert spec.seeds == [5, 6]
    assert load_grid(grid_file(tmp_path, base)).seeds == [5]
    with pytest.raises(ConfigError, match="not both"):
        load_grid(grid_file(tmp_path, base, seeds=[1], repeats=2))


def test_epochs_name_output_and_base_file_with_set(tmp_path, base):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "run.yaml").write_text(yaml.safe_dump(base), encoding="utf-8")
    path = write_grid(
        tmp_path / "ablation.yaml",
        {"base": "configs/run.yaml", "set": {"training.batch_size": 4}, "epochs": 3},
    )
    spec = load_grid(path)
    assert spec.name == "ablation"
    assert spec.output == Path("reports") / "ablation"
    assert spec.runs[0].config.training.epochs == 3
    assert spec.runs[0].config.training.batch_size == 4
    # An inline base may start from a file too; --set overrides come last.
    path = write_grid(
        tmp_path / "inline.yaml",
        {"base": {"base": "configs/run.yaml", "training": {"epochs": 4}}, "output": "out/x"},
    )
    spec = load_grid(path, ["training.batch_size=2"])
    assert spec.output == Path("out/x")
    assert spec.runs[0].config.training.epochs == 4
    assert spec.runs[0].config.training.batch_size == 2


def test_vars_fill_placeholders_and_can_be_set_from_the_command_line(tmp_path, base):
    base["encoder"] = "${vars.encoder}"
    encoder = dict(TINY_ENCODER)
    path = grid_file(
        tmp_path,
        base,
        vars={"encoder": encoder, "lr": 0.01},
        variants={"baseline": {}, "lr": {"optimizer.learning_rate": "${vars.lr}"}},
    )
    spec = load_grid(path)
    assert spec.runs[0].config.encoder.kwargs["num_layers"] == 1
    assert spec.runs[1].config.optimizer.kwargs["learning_rate"] == 0.01
    bigger = {**encoder, "num_layers": 2}
    spec = load_grid(path, {"vars.encoder": bigger})
    assert spec.runs[0].config.encoder.kwargs["num_layers"] == 2
    base["encoder"] = "${vars.missing}"
    with pytest.raises(ConfigError, match=r"\$\{vars.missing\} is not defined"):
        load_grid(grid_file(tmp_path, base, vars={"encoder": encoder}))


# ---------------------------------------------------------------- validation


def test_a_typo_in_a_variant_names_file_variant_and_key(tmp_path, base):
    path = grid_file(
        tmp_path,
        base,
        variants={"baseline": {}, "lower lr": {"optimizer.learnig_rate": 1e-4}},
    )
    with pytest.raises(ConfigError) as caught:
        load_grid(path)
    message = str(caught.value)
    assert str(path) in message
    assert "variant 'lower lr'" in message
    assert "'optimizer.learnig_rate'" in message
    assert "learning_rate" in message  # the valid keys are listed


def test_an_unknown_component_or_section_lists_the_valid_choices(tmp_path, base):
    path = grid_file(tmp_path, base, variants={"baseline": {}, "x": {"head.name": "txtcnn"}})
    with pytest.raises(ConfigError, match=r"variant 'x'.*'head.name'.*valid choices: .*pooling"):
        load_grid(path)
    path = grid_file(tmp_path, base, grid={"trainig.batch_size": [4, 8]})
    with pytest.raises(ConfigError, match=r"override 'trainig.batch_size'.*unknown key 'trainig'"):
        load_grid(path)
    with pytest.raises(ConfigError, match=r"set/--set|base: unknown key"):
        load_grid(grid_file(tmp_path, base), ["training.epoch=3"])


def test_bad_grid_files_fail_with_the_reason(tmp_path, base):
    with pytest.raises(ConfigError, match="unknown grid key 'variant'"):
        load_grid(grid_file(tmp_path, base, variant={"a": {}}))
    text = yaml.safe_dump({"base": base}) + "variants:\n  a: {}\n  a: {training.epochs: 3}\n"
    (tmp_path / "dup.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="'a' appears twice"):
        load_grid(tmp_path / "dup.yaml")
    same = {"baseline": {}, "same lr": {"optimizer.learning_rate": 1e-3}}
    with pytest.raises(ConfigError, match="'baseline' and 'same lr' resolve to the same config"):
        load_grid(grid_file(tmp_path, base, variants=same))
    with pytest.raises(ConfigError, match="training.seed is set per run"):
        load_grid(grid_file(tmp_path, base, variants={"a": {"training.seed": 3}}))
    spec = load_grid(grid_file(tmp_path, base, variants={"a": {}, "b": {"head.units": [4]}}))
    with pytest.raises(ConfigError, match="no such row; rows: 'a', 'b'"):
        spec.select(["c"])
    assert {run.cell.name for run in spec.select(["b"])} == {"b"}


# ---------------------------------------------------------------- run ids


def test_run_ids_are_stable_and_depend_on_config_and_seed_only(tmp_path, base):
    variants = {"baseline": {}, "lr": {"optimizer.learning_rate": 1e-2}}
    first = load_grid(grid_file(tmp_path, base, seeds=[0, 1], variants=variants))
    again = load_grid(grid_file(tmp_path, base, seeds=[0, 1], variants=variants))
    ids = [run.run_id for run in first.runs]
    assert ids == [run.run_id for run in again.runs]
    assert all(re.fullmatch(r"[0-9a-f]{12}", run_id) for run_id in ids)
    assert len(set(ids)) == 4  # seed and lr both change the id

    # Another grid, other row names, reordered keys, more printing, another run folder:
    # the same settings and seed give the same id.
    quiet = dict(reversed(list(base.items())))
    quiet["training"] = {**base["training"], "verbose": 2, "output_dir": str(tmp_path / "x")}
    renamed = {"lr 1e-2": {"optimizer.learning_rate": 1e-2}}
    other = load_grid(write_grid(tmp_path / "other.yaml", {"base": quiet, "variants": renamed}))
    assert other.runs[0].run_id == first.runs[2].run_id

    changed = load_grid(
        grid_file(tmp_path, base, seeds=[0, 1], variants=variants), ["data.max_length=12"]
    )
    assert not set(ids) & {run.run_id for run in changed.runs}
