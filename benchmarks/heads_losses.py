"""Train every head x multi-label loss on the bundled sample with MiniLM; print a markdown table.

Evidence for issue 3: each cell should beat the majority baseline. The settings live in
`experiments/heads_losses.yaml`; this script only swaps `head` and `loss` per cell.

    .venv/bin/python benchmarks/heads_losses.py                      # the full table
    .venv/bin/python benchmarks/heads_losses.py --heads mean --losses bce --set training.epochs=1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "experiments" / "heads_losses.yaml"

# Table rows: a short label -> the head section of the config.
HEAD_ROWS: dict[str, dict[str, Any]] = {
    "pooler+mlp(256)": {"name": "default", "pooling": "pooler", "units": [256]},
    "mean+mlp(512,256)": {"name": "pooling", "pooling": "mean", "units": [512, 256]},
    "textcnn(3,4,5)+mlp(512,256)": {
        "name": "textcnn",
        "filter_sizes": [3, 4, 5],
        "units": [512, 256],
    },
    "multi_layer(4,cls,weighted)": {
        "name": "multi_layer",
        "last_layers": 4,
        "pooling": "cls",
        "combine": "weighted",
    },
    "attention": {"name": "attention"},
    "bilstm(128)+max": {"name": "rnn", "cell": "lstm", "rnn_units": 128, "pooling": "max"},
}
LOSS_NAMES = ("bce", "focal", "multilabel_ce")
METRICS = ("subset_accuracy", "micro_f1", "macro_f1")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="*", default=list(HEAD_ROWS), choices=list(HEAD_ROWS))
    parser.add_argument("--losses", nargs="*", default=list(LOSS_NAMES), choices=LOSS_NAMES)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every cell"
    )
    parser.add_argument(
        "--output-dir", default=None, help="run folders and results.jsonl (default: a temp dir)"
    )
    return parser.parse_args()


def baseline_of(result: Any) -> dict[str, float]:
    """The stronger of the two majority predictors, metric by metric."""
    predictors = result.baseline.values()
    return {metric: max(p[metric] for p in predictors) for metric in METRICS}


def beats(metrics: dict[str, float], baseline: dict[str, float]) -> bool:
    return all(metrics[metric] > baseline[metric] for metric in METRICS)


def markdown_table(rows: list[dict[str, Any]], baseline: dict[str, float] | None) -> str:
    lines = [
        "| head | loss | val subset acc | micro-F1 | macro-F1 | micro-F1 (tuned thr) "
        "| beats baseline | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        best, tuned = row["best"], row["tuned"]
        tuned_micro_f1 = f"{tuned['micro_f1']:.3f}" if tuned else "-"
        lines.append(
            f"| {row['head']} | {row['loss']} | {best['subset_accuracy']:.3f} "
            f"| {best['micro_f1']:.3f} | {best['macro_f1']:.3f} | {tuned_micro_f1} "
            f"| {'yes' if row['beats'] else '**no**'} | {row['seconds']:.0f} |"
        )
    if baseline:
        lines.append(
            f"| majority baseline | - | {baseline['subset_accuracy']:.3f} "
            f"| {baseline['micro_f1']:.3f} | {baseline['macro_f1']:.3f} | - | - | - |"
        )
    return "\n".join(lines)


def main() -> None:
    from xtune.config import load_run_config, parse_override
    from xtune.encoders import load_encoder
    from xtune.training.trainer import prepare_data, train

    arguments = parse_arguments()
    output = Path(arguments.output_dir or tempfile.mkdtemp(prefix="xtune-heads-losses-"))
    output.mkdir(parents=True, exist_ok=True)
    common = {"data.root": str(REPO), **dict(parse_override(o) for o in arguments.set)}

    data = None  # tokenized once, shared by every cell (same data config and tokenizer)
    rows: list[dict[str, Any]] = []
    baseline = None
    started = time.perf_counter()
    for head_label in arguments.heads:
        for loss_name in arguments.losses:
            overrides = {**common, "head": HEAD_ROWS[head_label], "loss": loss_name}
            config = load_run_config(CONFIG, overrides)
            if data is None:
                data = prepare_data(config, load_encoder(config.encoder))
            cell = f"{head_label}__{loss_name}".replace("+", "_").replace(",", "-")
            print(f"\n=== {head_label} x {loss_name} ===", flush=True)
            result = train(config, run_dir=output / cell, data=data)
            baseline = baseline_of(result)
            row = {
                "head": head_label,
                "loss": loss_name,
                "best": result.best,
                "tuned": result.tuned,
                "best_epoch": result.best_epoch,
                "seconds": result.seconds,
                "beats": beats(result.best, baseline),
            }
            rows.append(row)
            with (output / "results.jsonl").open("a", encoding="utf-8") as file:
                file.write(json.dumps({**row, "baseline": baseline}) + "\n")
            print(markdown_table(rows, baseline), flush=True)

    print(
        f"\n## Heads x losses on data/sample_appeals (dev, {len(rows)} cells, "
        f"{(time.perf_counter() - started) / 60:.1f} min; runs in {output})\n"
    )
    print(markdown_table(rows, baseline))


if __name__ == "__main__":
    main()
