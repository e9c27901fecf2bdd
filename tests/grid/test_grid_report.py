"""The report's numbers equal statistics computed independently from results.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.grid.grid_helpers import markdown_table, read_lines
from xtune.grid.report import write_report

BASE_CONFIG = {
    "data": {"train": "train.csv", "max_length": 128, "truncation": "head"},
    "encoder": {"name": "random", "vocabulary": "vocab.txt", "num_layers": 4},
    "head": {"name": "default", "units": [256]},
    "loss": {"name": "bce"},
    "optimizer": {"name": "adamw", "learning_rate": 5e-4},
    "schedule": {"name": "constant"},
    "training": {"epochs": 3, "seed": 0, "metric": "subset_accuracy", "verbose": 1},
}
SCORE = "val-acc (dev subset_accuracy) mean ± std"  # the cells table's column of the metric
# row -> (overrides of the config, best-epoch val-acc per seed)
ROWS = {
    "baseline": ({}, [0.61, 0.64, 0.60]),
    "lr 5e-5": ({"optimizer": {"learning_rate": 5e-5}}, [0.70, 0.66, 0.69]),
    "head+tail": ({"data": {"truncation": "head_tail"}}, [0.58, 0.63]),
    "one seed": ({"loss": {"name": "multilabel_ce"}}, [0.65]),
}


def config_of(overrides: dict) -> dict:
    config = json.loads(json.dumps(BASE_CONFIG))
    for section, values in overrides.items():
        if section == "loss":
            config[section] = dict(values)
        else:
            config[section].update(values)
    return config


def ok_line(row: str, index: int, seed: int, value: float, overrides: dict) -> dict:
    rng = np.random.default_rng(index * 10 + seed)
    history = []
    for epoch in (1, 2, 3):
        accuracy = value if epoch == 2 else value - 0.05 * rng.random()
        history.append(
            {
                "epoch": epoch,
                "train_loss": 1.0 / epoch,
                "train_seconds": 1.0,
                "val_subset_accuracy": accuracy,
                "val_micro_f1": accuracy + 0.1,
                "val_macro_f1": accuracy - 0.1,
            }
        )
    config = config_of(overrides)
    config["training"]["seed"] = seed
    return {
        "grid": "toy",
        "grid_file": "experiments/toy.yaml",
        "grid_description": "A toy grid:\n  three rows.",
        "run_id": f"{index:02d}{seed:010d}",
        "status": "ok",
        "row": row,
        "row_index": index,
        "overrides": overrides,
        "seed": seed,
        "metric": "subset_accuracy",
        "config": config,
        "history": history,
        "best_epoch": 2,
        "final_epoch": 3,
        "best": {"subset_accuracy": value, "micro_f1": value + 0.1, "macro_f1": value - 0.1},
        "final": {"subset_accuracy": history[-1]["val_subset_accuracy"]},
        "wall_seconds": 12.5,
        "steps_per_second": 3.25,
        "device": "CPU",
        "encoder": "random BERT (4 layers, hidden 256, vocab vocab.txt)",
        "host": {"cpu_count": 2, "gpus": []},
        "git_commit": "0123456789abcdef",
        "git_dirty": False,
        "versions": {"xtune": "0.1.0"},
    }


@pytest.fixture
def toy_results(tmp_path: Path) -> Path:
    folder = tmp_path / "reports" / "toy"
    folder.mkdir(parents=True)
    lines = []
    for index, (row, (overrides, values)) in enumerate(ROWS.items()):
        lines += [ok_line(row, index, seed, v, overrides) for seed, v in enumerate(values)]
    failed = {**ok_line("lr 5e-5", 1, 9, 0.0, ROWS["lr 5e-5"][0]), "status": "failed"}
    failed["error"] = "FloatingPointError: epoch 1: non-finite logits on the dev set"
    lines.append(failed)
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"run_id": "cut sh'
    (folder / "results.jsonl").write_text(text, encoding="utf-8")
    return folder


def test_cell_numbers_match_an_independent_computation(toy_results):
    path = Path(write_report(toy_results))
    assert path == toy_results.parent / "toy.md"
    text = path.read_text(encoding="utf-8")
    lines = read_lines(toy_results / "results.jsonl")
    baseline = [run["best"]["subset_accuracy"] for run in lines if run["row"] == "baseline"]
    cells = {row["row"].strip("*"): row for row in markdown_table(text, "Cells")}
    assert list(cells) == list(ROWS)
    for row in ROWS:
        ok = [run for run in lines if run["row"] == row and run["status"] == "ok"]
        values = np.array([run["best"]["subset_accuracy"] for run in ok])
        cell = cells[row]
        shown_mean, shown_std = cell[SCORE].strip("*").split(" ± ")
        assert float(shown_mean) == pytest.approx(values.mean(), abs=5e-5)
        assert cell["n"].startswith(str(len(values)))
        micro = np.mean([run["best"]["micro_f1"] for run in ok])
        assert float(cell["micro-F1"]) == pytest.approx(micro, abs=5e-5)
        if len(values) > 1:
            variance = values.var(ddof=1)
            assert float(cell["V(val-acc)"]) == pytest.approx(variance, rel=1e-3)
            assert float(shown_std) == pytest.approx(values.std(ddof=1), abs=5e-5)
        else:
            assert cell["V(val-acc)"] == "–"
        if row != "baseline":
            delta = values.mean() - np.mean(baseline)
            assert float(cell["Δ vs baseline"]) == pytest.approx(delta, abs=5e-5)
            if len(values) > 1:
                p = stats.ttest_ind(values, baseline, equal_var=False).pvalue
                assert float(cell["p (Welch)"]) == pytest.approx(p, rel=1e-2)
            else:
                assert cell["p (Welch)"] == "–"
    assert cells["lr 5e-5"]["row"] == "**lr 5e-5**"  # the best mean is bold
    assert cells["lr 5e-5"]["n"] == "3 (1 failed)"


def test_settings_that_vary_become_readable_columns(toy_results):
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    cells = markdown_table(text, "Cells")
    assert {"learning rate", "truncation", "loss"} <= set(cells[0])
    assert [cell["learning rate"] for cell in cells] == ["0.0005", "5e-05", "0.0005", "0.0005"]
    assert "seed" not in cells[0] and "verbose" not in cells[0]


def test_header_seeds_failures_and_plot(toy_results):
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    assert "random BERT (4 layers" in text and "no pretrained weights" in text
    assert "\n> A toy grid: three rows.\n" in text
    assert "`subset_accuracy`" in text and "ddof=1" in text and "Welch" in text
    assert "incomplete line" in text
    seeds = markdown_table(text, "Per seed")
    assert len(seeds) == 3 + 3 + 2 + 1
    assert seeds[0]["val-acc (dev subset_accuracy, best epoch)"] == "0.6100"
    failed = markdown_table(text, "Failed runs")
    assert [(row["row"], row["seed"]) for row in failed] == [("lr 5e-5", "9")]
    assert "non-finite logits" in failed[0]["error"]
    assert "](toy/dev_curves.png)" in text
    assert (toy_results / "dev_curves.png").stat().st_size > 1000


def test_many_varying_settings_collapse_into_one_changes_column(toy_results, tmp_path):
    lines = read_lines(toy_results / "results.jsonl")
    for number, line in enumerate(lines):
        line["config"]["head"][f"extra_{line['row_index']}"] = number % 2 == 0
        line["config"]["training"]["batch_size"] = 8 * (line["row_index"] + 1)
    (toy_results / "results.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    output = tmp_path / "elsewhere" / "toy.md"
    text = Path(write_report(toy_results, output)).read_text(encoding="utf-8")
    cells = markdown_table(text, "Cells")
    assert cells[0]["changes vs baseline"] == "(baseline)"
    assert "learning rate 5e-05" in cells[1]["changes vs baseline"]
    assert "batch size 16" in cells[1]["changes vs baseline"]
    assert "](../reports/toy/dev_curves.png)" in text
    assert math.isfinite(float(cells[1]["Δ vs baseline"]))


def with_other_rules(line: dict) -> dict:
    """The line with tuned-threshold, fixed-threshold and test metrics derived from its seed."""
    value = line["best"]["subset_accuracy"]
    line["tuned"] = {"macro_f1": value - 0.05}

    def fixed(shift: float) -> dict:
        per_label = [
            {"label": name, "precision": value, "recall": value + shift, "f1": value + shift / 2}
            for name in ("joy", "grief")
        ]
        for row in per_label:
            row.update(support=7, predicted=5)
        macro = {"macro_precision": value, "macro_recall": value + shift}
        return {
            "0.3": {"threshold": 0.3, **macro, "macro_f1": value + shift, "per_label": per_label}
        }

    line["fixed_thresholds"] = {"dev": fixed(0.01), "test": fixed(0.02)}
    line["test"] = {
        "default_rule": {"macro_f1": value - 0.02, "micro_f1": value},
        "tuned_thresholds": {"macro_f1": value - 0.03},
    }
    return line


def test_other_decision_rules_and_test_numbers_of_the_best_row_only(toy_results):
    lines = [with_other_rules(line) for line in read_lines(toy_results / "results.jsonl")]
    (toy_results / "results.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    cells = {row["row"].strip("*"): row for row in markdown_table(text, "Cells")}
    for row, (_, values) in ROWS.items():
        tuned = cells[row]["macro-F1 (tuned thr.) mean ± std"].split(" ± ")[0]
        assert float(tuned) == pytest.approx(np.mean(values) - 0.05, abs=5e-5)
        fixed = cells[row]["macro-F1 (> 0.3) mean ± std"].split(" ± ")[0]
        assert float(fixed) == pytest.approx(np.mean(values) + 0.01, abs=5e-5)

    assert "Best dev row only: **lr 5e-5**" in text
    best = np.array(ROWS["lr 5e-5"][1])  # its failed seed carries no test numbers
    test = {row["decision rule"]: row for row in markdown_table(text, "Test set")}
    assert list(test) == ["default rule", "tuned thr.", "> 0.3"]
    expected = {"default rule": -0.02, "tuned thr.": -0.03, "> 0.3": 0.02}
    for rule, shift in expected.items():
        shown_mean, shown_std = test[rule]["macro f1"].split(" ± ")
        assert float(shown_mean) == pytest.approx(best.mean() + shift, abs=5e-5)
        assert float(shown_std) == pytest.approx(best.std(ddof=1), abs=5e-5)
    assert test["> 0.3"]["macro recall"].startswith(f"{best.mean() + 0.02:.4f}")
    assert test["tuned thr."]["micro f1"] == "–"
    per_label = markdown_table(text, "Test set per label")
    assert [row["label"] for row in per_label] == ["joy", "grief"]
    assert float(per_label[0]["F1"]) == pytest.approx(best.mean() + 0.01, abs=5e-4)


def test_description_of_older_lines_comes_from_the_grid_file(toy_results, tmp_path):
    grid_file = tmp_path / "toy.yaml"
    grid_file.write_text("name: toy\ndescription: >-\n  Read from\n  the file.\n", encoding="utf-8")
    lines = read_lines(toy_results / "results.jsonl")
    for line in lines:
        del line["grid_description"]
        line["grid_file"] = str(grid_file)
    (toy_results / "results.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    assert "\n> Read from the file.\n" in Path(write_report(toy_results)).read_text("utf-8")
    grid_file.unlink()
    assert "\n> " not in Path(write_report(toy_results)).read_text("utf-8")


def test_one_epoch_grids_plot_each_rows_seeds_instead_of_curves(toy_results):
    lines = read_lines(toy_results / "results.jsonl")
    for line in lines:
        line["history"] = line["history"][:1]
    (toy_results / "results.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    assert "![dev subset_accuracy per row](toy/dev_curves.png)" in text
    assert (toy_results / "dev_curves.png").stat().st_size > 1000


def test_data_warnings_are_listed_once_with_the_rows_that_met_them(toy_results):
    lines = read_lines(toy_results / "results.jsonl")
    unseen = "dev: 12 of 40 label occurrences (30%) are labels train never saw"
    for line in lines:
        line["data_warnings"] = [unseen]
        if line["row"] == "head+tail":
            line["data_warnings"].append("test: label 丙 has 2 training examples (< 5)")
    (toy_results / "results.jsonl").write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    section = text.split("## Data warnings\n", 1)[1].split("\n## ", 1)[0]
    assert section.strip().splitlines() == [
        f"- {unseen} (every run)",
        "- test: label 丙 has 2 training examples (< 5) (rows: head+tail)",
    ]
    for line in lines:
        del line["data_warnings"]
    (toy_results / "results.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    assert "## Data warnings" not in Path(write_report(toy_results)).read_text(encoding="utf-8")


def test_a_retried_run_counts_once_with_its_last_line(toy_results):
    lines = read_lines(toy_results / "results.jsonl")
    failed = lines[-1]
    retried = {**ok_line("lr 5e-5", 1, 9, 0.5, ROWS["lr 5e-5"][0]), "run_id": failed["run_id"]}
    with (toy_results / "results.jsonl").open("w", encoding="utf-8") as file:
        file.write("".join(json.dumps(line) + "\n" for line in [*lines, retried]))
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    assert "Runs: 10 ok, 0 failed" in text
    assert text.split("## Failed runs")[1].split("\n## ")[0].strip() == "None."


def test_another_row_as_the_baseline(toy_results, tmp_path, capsys):
    """`xtune report --baseline ROW`: that row is listed first and Δ / Welch p compare to it;
    an unknown row is one error line naming the rows."""
    from tests.reliability.helpers import assert_user_error, run_cli

    path = Path(write_report(toy_results, tmp_path / "vs-lr.md", baseline="lr 5e-5"))
    cells = {row["row"].strip("*"): row for row in markdown_table(path.read_text(), "Cells")}
    assert list(cells) == ["lr 5e-5", "baseline", "head+tail", "one seed"]
    lines = [run for run in read_lines(toy_results / "results.jsonl") if run["status"] == "ok"]
    values = {row: [r["best"]["subset_accuracy"] for r in lines if r["row"] == row] for row in ROWS}
    assert cells["lr 5e-5"]["p (Welch)"] == "–"
    delta = np.mean(values["baseline"]) - np.mean(values["lr 5e-5"])
    assert float(cells["baseline"]["Δ vs baseline"]) == pytest.approx(delta, abs=5e-5)
    p = stats.ttest_ind(values["baseline"], values["lr 5e-5"], equal_var=False).pvalue
    assert float(cells["baseline"]["p (Welch)"]) == pytest.approx(p, rel=1e-2)
    output = tmp_path / "bad.md"
    code, _, err = run_cli(["report", toy_results, "--baseline", "lr", "--output", output], capsys)
    assert_user_error(code, err, "--baseline: no row 'lr'", "rows: baseline, lr 5e-5")
    assert not output.exists()


def test_task_settings_vary_per_key_unless_a_row_leaves_the_task_out():
    """A change inside a task is one column (`tasks.pairs.type`), not the whole task; a task
    some rows leave out stays one setting (`tasks.extra`)."""
    from xtune.grid.report import Cell, changes_from, partial_tasks, varying_settings

    def cell(index, pair_type, extra):
        tasks = {"pairs": {"type": pair_type, "data": {"train": "a.csv"}, "weight": 1}}
        if extra:
            tasks["extra"] = {"type": "classification", "data": {"train": "b.csv"}}
        return Cell(index, f"row {index}", {**config_of({}), "tasks": tasks})

    cells = [cell(0, "pair_classification", True), cell(1, "bi_encoder", True)]
    assert varying_settings(cells) == ["tasks.pairs.type"]
    cells.append(cell(2, "pair_classification", False))
    assert varying_settings(cells) == ["tasks.pairs.type", "tasks.extra"]
    whole = partial_tasks(cells)
    assert changes_from(cells[2], cells[0], ["tasks.extra"], whole) == "no tasks extra"
    assert changes_from(cells[0], cells[2], ["tasks.extra"], whole) == "tasks extra classification"
    cells[1].config["tasks"]["pairs"]["data"]["prepare"] = {"width": "ascii"}  # one data key
    cells[1].config["tasks"]["extra"]["weight"] = 0.5  # inside a task some rows leave out
    assert set(varying_settings(cells)) == {
        "tasks.pairs.type",
        "tasks.pairs.data.prepare",
        "tasks.extra",
        "tasks.extra.weight",
    }


def rewrite(folder: Path, lines: list[dict]) -> None:
    (folder / "results.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )


def as_multitask_grid(folder: Path, tasks_of) -> None:
    """The toy results as a multi-task grid's: val-acc is `mean_score` (the toy's subset
    accuracy), each row's tasks are `tasks_of(row)`."""
    lines = read_lines(folder / "results.jsonl")
    for line in lines:
        line["metric"] = "mean_score"
        line["best"]["mean_score"] = line["best"]["subset_accuracy"]
        line["final"]["mean_score"] = line["final"]["subset_accuracy"]
        for record in line["history"]:
            record["val_mean_score"] = record["val_subset_accuracy"]
        line["config"]["tasks"] = tasks_of(line["row"])
    rewrite(folder, lines)


def test_rows_that_train_other_tasks_are_not_ranked_or_tested(toy_results):
    """A multi-task grid's val-acc is `mean_score`; a row over another set of tasks (here the
    best-scoring one) is neither bold nor given Δ / p, and a note says why."""

    def tasks_of(row: str) -> dict:
        if row == "lr 5e-5":
            return {"sts": {"type": "regression"}}
        return {"sst": {"type": "classification"}, "sts": {"type": "regression"}}

    as_multitask_grid(toy_results, tasks_of)
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    cells = {row["row"]: row for row in markdown_table(text, "Cells")}
    assert "val-acc (dev mean_score) mean ± std" in cells["baseline"]
    assert cells["lr 5e-5"]["Δ vs baseline"] == "–" and cells["lr 5e-5"]["p (Welch)"] == "–"
    assert "**one seed**" in cells  # the best of the rows over the baseline's tasks
    assert float(cells["head+tail"]["Δ vs baseline"]) == pytest.approx(
        np.mean(ROWS["head+tail"][1]) - np.mean(ROWS["baseline"][1]), abs=5e-5
    )
    assert "other tasks or labels than the baseline (sst, sts): lr 5e-5 (sts)" in text
    assert "the mean of the tasks' selection metrics" in text


def test_a_row_with_an_auxiliary_mlm_task_is_compared_on_its_labelled_task(toy_results):
    """An `mlm` task trains the encoder but does not serve and is not scored: a row that adds
    one beside the baseline's task measures the same val-acc, so it gets Δ and p."""

    def tasks_of(row: str) -> dict:
        tasks = {"appeal": {"type": "classification", "data": {"labels": "y"}}}
        if row == "lr 5e-5":
            tasks["corpus"] = {"type": "mlm", "data": {"labels": "y"}, "mlm": {"pack": False}}
        return tasks

    as_multitask_grid(toy_results, tasks_of)
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    cells = {row["row"]: row for row in markdown_table(text, "Cells")}
    auxiliary = cells["**lr 5e-5**"]  # ranked with the others: the best row, in bold
    assert float(auxiliary["Δ vs baseline"]) == pytest.approx(
        np.mean(ROWS["lr 5e-5"][1]) - np.mean(ROWS["baseline"][1]), abs=5e-5
    )
    assert auxiliary["p (Welch)"] != "–"
    assert "other tasks or labels" not in text


def test_a_row_that_trains_other_labels_is_not_ranked_or_tested(toy_results):
    """The demo's hierarchy row trains the sample's `label_path` instead of `labels`: its
    subset accuracy is over other targets, so it gets no Δ, p or bold."""
    lines = read_lines(toy_results / "results.jsonl")
    for line in lines:
        if line["row"] == "head+tail":
            line["config"]["data"]["labels"] = "label_path"
            line["best"]["subset_accuracy"] = 0.99
    rewrite(toy_results, lines)
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    cells = {row["row"]: row for row in markdown_table(text, "Cells")}
    assert cells["head+tail"]["Δ vs baseline"] == "–" and "**head+tail**" not in cells
    assert "head+tail (the single task, labels from 'label_path')" in text


def test_a_seed_held_twice_by_a_row_counts_once_and_is_a_warning(toy_results, capsys):
    """Lines appended by another run of the grid (a new run id, the same row and seed): the
    last one counts, and the report and stderr say so."""
    lines = read_lines(toy_results / "results.jsonl")
    copy = {**ok_line("baseline", 0, 0, 0.99, {}), "run_id": "copy-of-seed-0"}
    rewrite(toy_results, [*lines, copy])
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    cells = {row["row"].strip("*"): row for row in markdown_table(text, "Cells")}
    assert cells["baseline"]["n"] == "3"
    expected = np.mean([0.99, *ROWS["baseline"][1][1:]])
    assert float(cells["baseline"][SCORE].strip("*").split(" ± ")[0]) == pytest.approx(
        expected, abs=5e-5
    )
    warning = "row 'baseline' holds seed 0 2 times (run ids 000000000000, copy-of-seed-0)"
    assert f"- **Warning:** {warning}; only the last, copy-of-seed-0, is counted." in text
    assert f"xtune report: warning: {warning}" in capsys.readouterr().err
    seeds = [row for row in markdown_table(text, "Per seed") if row["row"] == "baseline"]
    assert [row["seed"] for row in seeds] == ["0", "1", "2"]


def test_settings_given_for_every_run_are_in_the_header(toy_results):
    lines = read_lines(toy_results / "results.jsonl")
    for line in lines:
        line["shared_overrides"] = {"data.root": "../data", "training.epochs": 3}
    rewrite(toy_results, lines)
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    assert "- Set for every run (the grid's `set:` and `--set`): `data.root=../data`; " in text
    assert "`training.epochs=3`." in text
    lines[0]["shared_overrides"] = {"data.root": "elsewhere"}
    rewrite(toy_results, lines)
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    assert "**Runs were given different `set:` / `--set` settings:** `data.root=elsewhere` " in text
    assert f"({len(lines) - 1} runs)" in text


def t_interval(values: list[float]) -> tuple[float, float]:
    return stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))


def test_a_confidence_interval_column(toy_results):
    text = Path(write_report(toy_results, ci=True)).read_text(encoding="utf-8")
    cells = {row["row"].strip("*"): row for row in markdown_table(text, "Cells")}
    for row, (_, values) in ROWS.items():
        shown = cells[row]["val-acc 95% CI"]
        if len(values) < 2:
            assert shown == "–"
            continue
        low, high = (float(part) for part in shown.strip("[]").split(", "))
        assert (low, high) == pytest.approx(t_interval(values), abs=5e-5)
    assert "val-acc 95% CI" not in Path(write_report(toy_results)).read_text(encoding="utf-8")


def test_csv_and_latex_formats(toy_results, capsys):
    import csv

    from tests.reliability.helpers import run_cli

    code, out, _ = run_cli(["report", toy_results, "--format", "csv", "--ci"], capsys)
    assert code == 0 and out.strip() == str(toy_results.parent / "toy.csv")
    with open(out.strip(), encoding="utf-8", newline="") as file:
        rows = {row["row"]: row for row in csv.DictReader(file)}
    assert list(rows) == list(ROWS)
    values = ROWS["lr 5e-5"][1]
    row = rows["lr 5e-5"]
    assert float(row["val-acc (dev subset_accuracy) mean"]) == pytest.approx(np.mean(values))
    assert float(row["val-acc (dev subset_accuracy) std"]) == pytest.approx(np.std(values, ddof=1))
    low, high = t_interval(values)
    assert float(row["val-acc 95% CI low"]) == pytest.approx(low)
    assert float(row["val-acc 95% CI high"]) == pytest.approx(high)
    assert rows["baseline"]["Δ vs baseline"] == "" and rows["one seed"]["p (Welch)"] == ""
    assert float(row["p (Welch)"]) == pytest.approx(
        stats.ttest_ind(values, ROWS["baseline"][1], equal_var=False).pvalue
    )

    code, out, _ = run_cli(["report", toy_results, "--format", "latex"], capsys)
    assert code == 0 and out.strip() == str(toy_results.parent / "toy.tex")
    latex = Path(out.strip()).read_text(encoding="utf-8")
    assert r"\begin{tabular}{" in latex and r"\end{table}" in latex
    assert r"\textbf{lr 5e-5} & " in latex
    assert r"val-acc (dev subset\_accuracy) mean $\pm$ std" in latex
    assert "±" not in latex and "–" not in latex


def test_the_decision_rule_served_and_both_rules_dev_values(toy_results):
    lines = read_lines(toy_results / "results.jsonl")
    for line in lines:
        value = line["best"]["subset_accuracy"]
        served = "tuned" if line["seed"] == 0 else "default"
        dev = {"default": value, "tuned": value + 0.04, "tuned_cross_validated": value + 0.02}
        line["decision_rule"] = {"served": served, "metric": "subset_accuracy", "dev": dev}
    lines[0].pop("decision_rule")  # a line from before the record existed
    (toy_results / "results.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    text = Path(write_report(toy_results)).read_text(encoding="utf-8")
    rules = {row["row"]: row for row in markdown_table(text, "Decision rule served")}
    assert list(rules) == list(ROWS)
    assert rules["lr 5e-5"]["served (runs)"] == "default ×2, tuned ×1"
    assert rules["baseline"]["served (runs)"] == "default ×2"  # seed 0 has no record
    values = np.array(ROWS["lr 5e-5"][1])
    shown = float(rules["lr 5e-5"]["tuned (cross-validated)"].split(" ± ")[0])
    assert shown == pytest.approx(values.mean() + 0.02, abs=5e-5)
    assert rules["lr 5e-5"]["metric"] == "subset_accuracy"


def test_cost_per_row_and_test_scores_on_request(toy_results, tmp_path):
    lines = read_lines(toy_results / "results.jsonl")
    for line in lines:
        index, seed = line["row_index"], line["seed"]
        line["parameters"] = {"trainable": 1000 * (index + 1), "non_trainable": 5}
        line["train_samples_per_second"] = 10.0 * (index + 1) + seed
        line["test"] = {"default_rule": {"subset_accuracy": 0.5 + 0.01 * seed}}
    rewrite(toy_results, lines)
    plain = Path(write_report(toy_results)).read_text(encoding="utf-8")
    assert "test subset_accuracy mean ± std" not in plain
    text = Path(write_report(toy_results, tmp_path / "with_test.md", test_per_row=True)).read_text(
        encoding="utf-8"
    )
    cost = {row["row"]: row for row in markdown_table(text, "Cost per row")}
    assert list(cost) == list(ROWS)
    for index, (row, (_, values)) in enumerate(ROWS.items()):
        speeds = 10.0 * (index + 1) + np.arange(len(values))
        assert cost[row]["trainable parameters"] == f"{1000 * (index + 1):,}"
        shown = cost[row]["train samples/s mean ± std"].split(" ± ")
        assert float(shown[0]) == pytest.approx(speeds.mean(), abs=0.05)
        if len(values) > 1:  # one seed: no spread shown
            assert float(shown[1]) == pytest.approx(speeds.std(ddof=1), abs=0.05)
        scores = 0.5 + 0.01 * np.arange(len(values))
        shown = cost[row]["test subset_accuracy mean ± std"].split(" ± ")[0]
        assert float(shown) == pytest.approx(scores.mean(), abs=5e-5)
    assert text.index("## Cost per row") < text.index("## Per seed")
