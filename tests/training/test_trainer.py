"""`train(config)` with the optimization features on: the run folder reloads to the same model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.task_view import load_task_view as load_run
from tests.training.conftest import run_config
from xtune.data.pipeline import MAX_BUCKETS, TRACED_BUCKETS, make_dataset
from xtune.encoders import load_encoder
from xtune.tasks import build_tasks
from xtune.training.evaluation import evaluate_scores, predict_logits, scores_of
from xtune.training.lora import ADAPTER_FILE, load_adapter
from xtune.training.trainer import build_model, prepare_data, train, train_bucket_limit


def test_lora_fgm_ema_run_reloads_to_identical_predictions(tiny_task, tmp_path, capsys):
    config = run_config(
        tiny_task,
        tmp_path,
        data={"padding": "fixed"},
        optimizer={
            "learning_rate": 5e-3,
            "layerwise_lr_decay": 0.8,
            "head_learning_rate": 2e-2,
            "use_ema": True,
            "ema_momentum": 0.5,
            "gradient_accumulation_steps": 2,
        },
        schedule={"name": "linear", "warmup_ratio": 0.25},
        finetune={"lora_rank": 2, "lora_alpha": 4},
        adversarial={"name": "fgm", "epsilon": 0.5},
        training={"epochs": 2, "run_name": "lora_fgm", "verbose": 1},
    )
    data = prepare_data(config, load_encoder(config.encoder))
    result = train(config, data=data)
    printed = capsys.readouterr().out
    assert "  embeddings" in printed and "frozen" in printed  # the learning-rate table
    # Not a terminal: verbose 1 is one Keras line per epoch, no bar of escape codes, and each
    # epoch's dev summary is a line of its own, printed once, after Keras's line.
    lines = printed.splitlines()
    assert "\r" not in printed and "\x1b" not in printed and "━" not in printed
    for epoch in (1, 2):
        summary = [i for i, line in enumerate(lines) if line.startswith(f"epoch {epoch}: loss")]
        assert len(summary) == 1 and "val subset_accuracy" in lines[summary[0]]
        assert "loss:" in lines[summary[0] - 1] and "val_" not in lines[summary[0] - 1]

    run = load_run(result.run_dir)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert set(metrics["weights_sha256"]) == {"model.weights.h5", ADAPTER_FILE}  # both checked
    dev = data.tasks["default"].splits["dev"].sides[0]
    logits = predict_logits(run.model, dev, 64, config.data.max_length)
    # The reloaded (LoRA merged into the kernels) model scores what the run recorded.
    assert evaluate_scores(run.loss, dev.labels, scores_of(run.loss, logits)) == result.best

    # The adapter file alone, on the same base encoder, gives the same model.
    keras.utils.set_random_seed(config.training.seed)
    (task,) = build_tasks(config.named_tasks())
    task.labels = run.labels
    graph = build_model(config, load_encoder(config.encoder), [task])
    load_adapter(graph.model, result.run_dir / ADAPTER_FILE)
    base = graph.task_models["default"]
    inputs = next(
        iter(make_dataset(dev, 64, "fixed", 16, shuffle=False, seed=0, with_labels=False))
    )
    np.testing.assert_array_equal(base(inputs, training=False), run.model(inputs, training=False))
    # The reported count is what trained: the LoRA matrices and the head.
    assert result.parameters["trainable"] == sum(
        int(np.prod(v.shape)) for v in base.trainable_weights
    )
    assert {v.name for v in base.trainable_weights} == {
        "lora_kernel_a",
        "lora_kernel_b",
        "kernel",
        "bias",
    }


def test_the_divergence_bound_is_100x_the_first_loss_and_at_least_10(tiny_task, tmp_path):
    from xtune.training.diverged import TrainingDiverged
    from xtune.training.trainer import DivergenceGuard, learning_rate_text

    config = run_config(tiny_task, tmp_path, optimizer={"learning_rate": 0.5})
    guard = DivergenceGuard(learning_rate_text(config))
    guard.on_epoch_begin(2)
    for loss in (0.05, 9.9, 3.0):  # 100 x 0.05 = 5 is under the floor of 10
        guard.on_train_batch_end(0, {"loss": loss})
    with pytest.raises(
        TrainingDiverged, match=r"epoch 3, step 8: the training loss 10.5 exceeds 10"
    ):
        guard.on_train_batch_end(7, {"loss": 10.5})

    guard = DivergenceGuard(learning_rate_text(config))
    guard.on_train_batch_end(0, {"loss": 0.7})
    guard.on_train_batch_end(1, {"loss": 69.0})
    with pytest.raises(TrainingDiverged, match="71 exceeds 70.*learning_rate 0.5"):
        guard.on_train_batch_end(2, {"loss": 71.0})
    with pytest.raises(
        TrainingDiverged, match="epoch 1, step 1: the training loss inf is non-finite"
    ):
        DivergenceGuard(config).on_train_batch_end(0, {"loss": float("inf")})


@pytest.mark.parametrize("setting", [True, False, "optimizer", "auto"])
def test_train_batches_take_few_lengths_only_where_each_compiles_the_step(setting):
    """A whole step in XLA compiles once per batch shape: `MAX_BUCKETS` lengths; otherwise
    (no XLA, or only the update compiled) `TRACED_BUCKETS`."""
    xla = setting is True or (setting == "auto" and bool(tf.config.list_physical_devices("GPU")))
    expected = MAX_BUCKETS if xla else TRACED_BUCKETS
    assert train_bucket_limit(SimpleNamespace(jit_compile=setting)) == expected
