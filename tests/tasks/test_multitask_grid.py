"""A grid over a multi-task config: rows that drop a task (`tasks.<name>: null`) and change a
task's loss validate and run; the report has a column per task's selection metric."""

import json

import yaml

from tests.tasks.task_data import multitask_config, shared_three_tasks
from xtune.grid.report import write_report
from xtune.grid.runner import run_grid


def test_multitask_grid_runs_and_reports_per_task_columns(tmp_path):
    folder, tasks = shared_three_tasks()
    base = multitask_config(folder, tasks, steps_per_epoch=2, epochs=1)
    base["training"]["output_dir"] = str(tmp_path / "runs")
    base["data"]["padding"] = "fixed"
    grid = {
        "name": "tiny_multitask",
        "base": base,
        "seeds": [0],
        "variants": {
            "all three": {},
            "sentiment alone": {"tasks.paraphrase": None, "tasks.sts": None},
            "sts cosine loss": {"tasks.sts.loss.name": "cosine", "tasks.sentiment": None},
        },
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    assert run_grid(path, output=tmp_path / "results") == 0
    lines = [json.loads(line) for line in (tmp_path / "results/results.jsonl").open()]
    by_row = {line["row"]: line for line in lines}
    assert all(line["status"] == "ok" and line["metric"] == "mean_score" for line in lines)
    assert by_row["sentiment alone"]["task_metrics"] == ["sentiment.subset_accuracy"]
    assert by_row["sts cosine loss"]["config"]["tasks"]["sts"]["loss"]["name"] == "cosine"
    one = by_row["sentiment alone"]
    assert one["best"]["mean_score"] == one["best"]["sentiment.subset_accuracy"]
    report = write_report(tmp_path / "results", tmp_path / "report.md")
    text = open(report, encoding="utf-8").read()
    header = next(row for row in text.splitlines() if row.startswith("| row |"))
    for key in ("sentiment.subset_accuracy", "paraphrase.subset_accuracy", "sts.pearson"):
        assert f"{key} mean ± std" in header
