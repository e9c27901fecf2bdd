"""What each row of a grid file costs to train: steady-state train samples/s and peak
resident memory, each row in a fresh process (issue 25: fine-tuning methods side by side).

    python benchmarks/method_cost.py experiments/mnli_peft.yaml
    python benchmarks/method_cost.py experiments/ocnli_peft.yaml --steps 20

Each row trains its grid config (first seed) for 2 epochs of `--steps` steps in its own
Python process with no test set: epoch 1 includes tracing and warm-up, so samples/s is taken
over epoch 2 alone (steps x batch size / its train seconds). Peak memory is the process's
`ru_maxrss` at the end (the encoder, the optimizer state of what trains, activations of the
batch, and TensorFlow itself, which a process pays whatever it trains: see the first line,
a process that only loads the encoder). Rows run one after another, so the machine load is
the same for each; the load average and CPU flags are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from train_throughput import load_average, machine_description

REPO = Path(__file__).resolve().parents[1]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(grid_file: str, row: str | None, steps: int) -> dict:
    """Train one row (or, with no row, only load its encoder) and measure it."""
    from xtune.encoders import load_encoder
    from xtune.grid.spec import load_grid
    from xtune.training.trainer import train

    overrides = {
        "training.epochs": 2,
        "training.steps_per_epoch": steps,
        "training.checkpoints": False,
        "data.test": None,
    }
    spec = load_grid(grid_file, overrides)
    if row is None:
        load_encoder(spec.runs[0].config.encoder)
        return {"row": "(encoder loaded, nothing trained)", "peak_mib": peak_mib()}
    config = next(run.config for run in spec.runs if run.cell.name == row)
    with tempfile.TemporaryDirectory() as folder:
        result = train(config, run_dir=Path(folder) / "run")
    seconds = result.history[1]["train_seconds"]
    return {
        "row": row,
        "trainable": result.parameters["trainable"],
        "samples_per_second": steps * config.training.batch_size / seconds,
        "peak_mib": peak_mib(),
    }


def measure(grid_file: str, row: str | None, steps: int) -> dict:
    command = [sys.executable, __file__, grid_file, "--child", json.dumps(row), "--steps"]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [*command, str(steps)], capture_output=True, text=True, env=environment, cwd=REPO
    )
    if done.returncode != 0:
        raise SystemExit(f"row {row!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid_file")
    parser.add_argument("--steps", type=int, default=30, help="train steps per epoch (2 epochs)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.grid_file, json.loads(args.child), args.steps)))
        return 0
    from xtune.grid.spec import load_grid

    rows = [cell.name for cell in load_grid(args.grid_file).cells]
    print(f"# {args.grid_file}: {args.steps} steps x 2 epochs per row, one process each")
    print(f"machine: {machine_description()}; load average before: {load_average()}")
    results = [measure(args.grid_file, None, args.steps)]
    results += [measure(args.grid_file, row, args.steps) for row in rows]
    print("\n| row | trainable parameters | train samples/s (epoch 2) | peak RSS MiB |")
    print("|---|---|---|---|")
    for result in results:
        trainable = f"{result['trainable']:,}" if "trainable" in result else "–"
        speed = f"{result['samples_per_second']:.1f}" if "samples_per_second" in result else "–"
        print(f"| {result['row']} | {trainable} | {speed} | {result['peak_mib']:.0f} |")
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
