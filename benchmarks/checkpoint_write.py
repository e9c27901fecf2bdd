"""What a run's per-epoch checkpoint (`training.checkpoints`, for `xtune train --resume`)
costs: bytes written, seconds to write it and to read it back into the model and optimizer.

    .venv/bin/python benchmarks/checkpoint_write.py [--encoder minilm-l6] [--repeats 3]
        [--folder /tmp/xtune-checkpoint-bench]

The model is the trainer's own (`build_run` on the bundled sample, `compile_stage`, one
training step so the optimizer has its moments), checkpointed by the trainer's
`EpochCheckpoint.save` into a scratch run folder: every model variable, the optimizer's
variables and the best epoch's weights, then `progress.json`. Reading back is
`load_checkpoint` + `restore_training_state` (as `--resume` does). Each repeat writes a new
epoch's file, as a run does (the older file is then removed). Compare the seconds with an
epoch's train seconds in a run's history.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def demo_config(encoder: str, folder: Path):
    from xtune.config import load_run_config

    return load_run_config(
        ROOT / "experiments" / "demo_train.yaml",
        [
            f"encoder={encoder}",
            "training.epochs=2",
            "training.steps_per_epoch=1",
            "training.verbose=0",
            f"training.output_dir={folder}",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default="/tmp/xtune-checkpoint-bench")
    args = parser.parse_args()

    import keras

    from xtune.training.callbacks import DevEvaluation, DivergenceGuard, EpochCheckpoint
    from xtune.training.checkpoint import folder_of, load_checkpoint
    from xtune.training.trainer import (
        build_run,
        compile_stage,
        resolve_precision,
        restore_training_state,
        stage_task_datasets,
    )

    folder = Path(args.folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = demo_config(args.encoder, folder)
    keras.mixed_precision.set_global_policy(resolve_precision(config.training.mixed_precision))
    run = build_run(config, None)
    stage = run.stages[0]
    compile_stage(config, run, stage)
    model = run.graph.model
    from xtune.training.adversarial import get_attack
    from xtune.training.task_batches import stage_dataset, stage_kinds
    from xtune.training.task_model import step_plan

    kinds = stage_kinds(run.schedule, 0, 1)
    model.plan = step_plan(run.tasks, list(run.graph.task_models.values()), kinds,
                           get_attack(config.adversarial), 0)  # fmt: skip
    batches = stage_task_datasets(run, config.training, stage, 0)
    model.fit(stage_dataset(run.schedule, 0, 1, kinds, batches), epochs=1, steps_per_epoch=1,
              verbose=0)  # fmt: skip
    evaluation = DevEvaluation(run.tasks, run.graph.task_models, run.splits("dev"), run.names,
                               run.schedule, config.training, "")  # fmt: skip
    evaluation.best_weights = [w.copy() for w in model.get_weights()]
    checkpoint = EpochCheckpoint(folder, evaluation, DivergenceGuard(""))
    checkpoint.set_model(model)
    writes, reads, size = [], [], 0
    for epoch in range(1, args.repeats + 1):
        started = time.perf_counter()
        checkpoint.save(epoch)
        writes.append(time.perf_counter() - started)
        size = sum(f.stat().st_size for f in folder_of(folder).iterdir())
        started = time.perf_counter()
        restore_training_state(model, load_checkpoint(folder), mid_stage=True)
        reads.append(time.perf_counter() - started)
    parameters = sum(int(keras.ops.size(v)) for v in model.variables)
    print(
        f"{args.encoder}: {parameters:,} model parameters; checkpoint {size / 1e6:.0f} MB; "
        f"write best {min(writes):.2f} s / median {statistics.median(writes):.2f} s; "
        f"read + restore best {min(reads):.2f} s / median {statistics.median(reads):.2f} s"
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
