"""`tasks:` in run configs: parsing, defaults, overrides and errors (no training)."""

import pytest

from tests.conftest import sample_run_config
from tests.tasks.task_data import multitask_config
from xtune.config import ConfigError, apply_overrides, parse_run_config
from xtune.tasks import build_tasks


@pytest.fixture
def raw(tmp_path):
    data = {"train": "a.csv", "dev": "b.csv", "text_pair": "text_pair"}
    return multitask_config(
        tmp_path,
        {
            "sst": {"type": "classification", "data": {"train": "s.csv"}, "loss": "softmax_ce"},
            "sts": {"type": "bi_encoder", "output": "cosine", "loss": "cosent", "data": data},
        },
        sampler={"name": "annealed"},
    )


def test_tasks_parse_with_shared_data_defaults(raw):
    config = parse_run_config(raw)
    assert list(config.tasks) == ["sst", "sts"]
    sts = config.tasks["sts"]
    assert sts.data.max_length == 16  # from the top-level data section
    assert sts.data.text_pair == "text_pair" and sts.loss.name == "cosent"
    assert config.training.sampler == {"name": "annealed"}
    tasks = build_tasks(config.tasks)
    assert [t.metric for t in tasks] == ["subset_accuracy", "pearson"]
    assert tasks[1].loss.model_output == "cosine"
    # the written config reads back to the same config
    assert parse_run_config(config.to_dict()) == config


def test_task_overrides_validate_like_other_keys(raw):
    changed = apply_overrides(raw, {"tasks.sts.loss.name": "cosine", "tasks.sst": None})
    config = parse_run_config(changed)
    assert list(config.tasks) == ["sts"] and config.tasks["sts"].loss.name == "cosine"
    with pytest.raises(ConfigError, match=r"tasks.sts.loss.name: unknown score loss 'cosnt'"):
        parse_run_config(apply_overrides(raw, {"tasks.sts.loss.name": "cosnt"}))
    with pytest.raises(ConfigError, match=r"tasks.sts.data.padding: 'wide' is not one of"):
        parse_run_config(apply_overrides(raw, {"tasks.sts.data.padding": "wide"}))
    with pytest.raises(ConfigError, match=r"tasks.sts.data.max_length: expected"):
        parse_run_config(apply_overrides(raw, {"tasks.sts.data.max_length": 2}))
    with pytest.raises(ConfigError, match="unknown task type 'bi_encode'.*did you mean"):
        parse_run_config(apply_overrides(raw, {"tasks.sts.type": "bi_encode"}))
    with pytest.raises(ConfigError, match="unknown key 'tasks.sts.wieght'"):
        parse_run_config(apply_overrides(raw, {"tasks.sts.wieght": 2}))


def test_task_type_checks(raw):
    with pytest.raises(ConfigError, match="tasks.sst.data.text_pair: the bi_encoder task"):
        parse_run_config(apply_overrides(raw, {"tasks.sst.type": "bi_encoder"}))
    with pytest.raises(ConfigError, match="tasks.sts.loss.name: unknown score loss 'softmax_ce'"):
        # a classification loss name on a cosine output is not a score loss
        parse_run_config(apply_overrides(raw, {"tasks.sts.loss.name": "softmax_ce"}))
    regression = apply_overrides(raw, {"tasks.sts.type": "regression", "tasks.sts.loss": "cosent"})
    with pytest.raises(ConfigError, match="scores a cosine output"):
        parse_run_config(regression)
    with pytest.raises(ConfigError, match="weight: expected a positive"):
        parse_run_config(apply_overrides(raw, {"tasks.sts.weight": 0}))
    with pytest.raises(ConfigError, match="tasks.sts.data.max_length: 200 is more than"):
        parse_run_config(apply_overrides(raw, {"tasks.sts.data.max_length": 200}))
    with pytest.raises(ConfigError, match="training.sampler.name: unknown task sampler"):
        parse_run_config(apply_overrides(raw, {"training.sampler": "anealed"}))
    # a sequential order naming a task index the run does not have: found at config time
    order = {"training.sampler": {"name": "sequential", "order": [0, 7]}}
    with pytest.raises(ConfigError, match=r"training.sampler.order: \[0, 7\] must list each"):
        parse_run_config(apply_overrides(raw, order))


@pytest.mark.parametrize(
    ("name", "taken_by"),
    [
        ("serving_default", "an export signature of every run"),
        ("embed", "an export signature of every run"),
        ("tokenize", "an export signature of every run"),
        ("serving_token_ids", "an export signature of every run"),
        ("sts_embed", "task 'sts''s embed signature"),
        ("sst_token_ids", "task 'sst''s token_ids signature"),
    ],
)
def test_a_task_named_like_an_export_signature_is_refused(raw, name, taken_by):
    """The export names a signature after each task, so a task cannot take the name of
    another signature; the error says which and lists the reserved names."""
    raw["tasks"][name] = dict(raw["tasks"]["sst"])
    with pytest.raises(ConfigError) as error:
        parse_run_config(raw)
    message = str(error.value)
    assert f"tasks.{name}: the task name is also the name of {taken_by}" in message
    assert "reserved: serving_default, tokenize, serving_token_ids, embed" in message
    assert "\n" not in message


def test_a_cross_encoder_task_may_end_in_embed(raw):
    """Only a bi-encoder task `T` has a `T_embed` signature."""
    raw["tasks"]["sst_embed"] = dict(raw["tasks"]["sst"])
    assert "sst_embed" in parse_run_config(raw).tasks


def test_single_task_config_is_unchanged(tmp_path):
    raw = sample_run_config(tmp_path)
    config = parse_run_config(raw)
    assert config.tasks is None
    written = config.to_dict()
    # no new keys in a single-task config's dict: grid run ids stay what they were
    assert "tasks" not in written
    assert "sampler" not in written["training"] and "pcgrad" not in written["training"]
    # One pipeline: a config without `tasks:` is one task, and PCGrad / samplers apply to it
    # too (with one task PCGrad is a plain step); only an explicit setting is written.
    pcgrad = parse_run_config({**raw, "training": {**raw["training"], "pcgrad": True}})
    assert pcgrad.to_dict()["training"]["pcgrad"] is True


def test_a_config_without_tasks_is_one_classification_task(tmp_path):
    """The single-task trainer takes its loss, label checks, metrics and decision rule from
    this task object (xtune.training.trainer.build_single_task)."""
    from xtune.config import SINGLE_TASK
    from xtune.tasks import ClassificationTask

    raw = sample_run_config(tmp_path, loss={"name": "focal", "gamma": 1.0})
    raw["training"] = {**raw.get("training", {}), "metric": "micro_f1"}
    config = parse_run_config(raw)
    ((name, task_config),) = config.named_tasks().items()
    assert name == SINGLE_TASK and task_config.type == "classification"
    assert task_config.data == config.data and task_config.head == config.head
    (task,) = build_tasks(config.named_tasks())
    assert isinstance(task, ClassificationTask) and task.metric == "micro_f1"
    assert type(task.loss).__name__ == "FocalCrossentropy" and task.loss.gamma == 1.0
