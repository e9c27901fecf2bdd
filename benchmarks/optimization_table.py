"""Train MiniLM on the bundled sample with one optimization feature on per row; print a table.

Closing evidence for issue 4: each row is the baseline below plus one change (layer-wise
learning rates, head learning rate, warm-up, freezing, LoRA, FGM, PGD, EMA, gradient
accumulation, mixed precision). Numbers are measured on one seed, not asserted: the sample
is small (480 train / 120 dev rows), so differences of a few points are noise.

    .venv/bin/python benchmarks/optimization_table.py                  # every row
    .venv/bin/python benchmarks/optimization_table.py --rows baseline fgm --epochs 1
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

BASE: dict[str, Any] = {
    "data": {
        "root": str(REPO),
        "train": "data/sample_appeals/train.csv",
        "dev": "data/sample_appeals/dev.csv",
        "text": "body",
        "text_pair": "title",
        "labels": "labels",
        "label_separator": "|",
        "max_length": 64,
        "truncation": "head_tail",
        "head_tokens": 48,
        "cache_dir": "/tmp/xtune-optimization-table/cache",
    },
    "encoder": "minilm-l6",
    "head": {"name": "pooling", "pooling": "mean", "dropout": 0.1},
    # Concurrent softmax learns this 14-label sample in fewer epochs than BCE (which predicts
    # no label at all for the first epoch or two), so 3 epochs show differences.
    "loss": "multilabel_ce",
    "optimizer": {"name": "adamw", "learning_rate": 2.0e-4, "weight_decay": 0.01},
    "schedule": {"name": "constant"},
    "training": {
        "epochs": 3,
        "batch_size": 16,
        "seed": 0,
        "metric": "subset_accuracy",
        "mixed_precision": "float32",
        "jit_compile": False,
        "verbose": 0,
        "save_weights": False,
        "tune_thresholds": None,
    },
}

# Table rows: a key for --rows -> (label, dotted overrides of BASE).
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline": ("baseline (AdamW 2e-4, constant)", {}),
    "layerwise": ("layer-wise LR decay 0.8", {"optimizer.layerwise_lr_decay": 0.8}),
    "head_lr": ("head LR 2e-3 (10x)", {"optimizer.head_learning_rate": 2.0e-3}),
    "warmup": (
        "warm-up 10% + linear decay",
        {"schedule": {"name": "linear", "warmup_ratio": 0.1}},
    ),
    "freeze": ("freeze encoder", {"finetune.freeze_encoder": True}),
    "top2": ("train top 2 layers", {"finetune.train_top_layers": 2}),
    "lora": (
        "LoRA r=8, alpha=16 (query, value)",
        {"finetune.lora_rank": 8, "finetune.lora_alpha": 16},
    ),
    "fgm": ("FGM eps=1.0", {"adversarial": {"name": "fgm", "epsilon": 1.0}}),
    # The sample's CJK characters have small embedding rows in MiniLM's English vocabulary
    # (norm ~0.6 against a median of 1.1), so eps=1.0 is a large perturbation here.
    "fgm_small": ("FGM eps=0.1", {"adversarial": {"name": "fgm", "epsilon": 0.1}}),
    "pgd": ("PGD eps=1.0, alpha=0.3, 3 steps", {"adversarial": {"name": "pgd", "steps": 3}}),
    "ema": ("EMA 0.95", {"optimizer.use_ema": True, "optimizer.ema_momentum": 0.95}),
    "accumulation": (
        "grad accumulation 2 (eff. batch 32)",
        {"optimizer.gradient_accumulation_steps": 2},
    ),
    "mixed": ("mixed precision (bfloat16)", {"training.mixed_precision": "mixed_bfloat16"}),
}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--epochs", type=int, default=BASE["training"]["epochs"])
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every row"
    )
    parser.add_argument("--output-dir", default=None, help="run folders (default: a temp dir)")
    return parser.parse_args()


def seconds_per_epoch(history: list[dict[str, Any]]) -> float:
    """Mean training time of the epochs after the first (the first also traces the step)."""
    later = [h["train_seconds"] for h in history[1:]] or [history[0]["train_seconds"]]
    return sum(later) / len(later)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | trainable params | val subset acc | micro-F1 | macro-F1 | best epoch "
        "| s/epoch | 1st epoch s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        best = row["best"]
        lines.append(
            f"| {row['label']} | {row['trainable']:,} | {best['subset_accuracy']:.3f} "
            f"| {best['micro_f1']:.3f} | {best['macro_f1']:.3f} | {row['best_epoch']} "
            f"| {row['seconds_per_epoch']:.1f} | {row['first_epoch_seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    from xtune.config import apply_overrides, parse_run_config
    from xtune.encoders import load_encoder
    from xtune.training.trainer import prepare_data, train

    arguments = parse_arguments()
    output = Path(arguments.output_dir or tempfile.mkdtemp(prefix="xtune-optimization-table-"))
    output.mkdir(parents=True, exist_ok=True)
    base = copy.deepcopy(BASE)
    base["training"]["epochs"] = arguments.epochs
    base = apply_overrides(base, [*arguments.set])

    data = None  # tokenized once: every row has the same data config and tokenizer
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for key in arguments.rows:
        label, overrides = ROWS[key]
        raw = apply_overrides(base, overrides)
        config = parse_run_config(raw, source=f"row {label!r}")
        if data is None:
            data = prepare_data(config, load_encoder(config.encoder))
        print(f"\n=== {label} ===", flush=True)
        result = train(config, run_dir=output / key, data=data)
        row = {
            "label": label,
            "trainable": result.parameters["trainable"],
            "best": result.best,
            "best_epoch": result.best_epoch,
            "seconds_per_epoch": seconds_per_epoch(result.history),
            "first_epoch_seconds": result.history[0]["train_seconds"],
            "precision": result.extra["precision"],
        }
        rows.append(row)
        with (output / "results.jsonl").open("a", encoding="utf-8") as file:
            file.write(json.dumps(row) + "\n")
        print(markdown_table(rows), flush=True)

    baseline = max(result.baseline.values(), key=lambda p: p["subset_accuracy"])
    print(
        f"\n## One feature at a time: MiniLM-L6 on data/sample_appeals "
        f"({arguments.epochs} epochs, batch 16, max length {base['data']['max_length']}, "
        f"seed 0; {(time.perf_counter() - started) / 60:.1f} min; {result.device})\n"
    )
    print(markdown_table(rows))
    print(
        f"\nMajority baseline: subset acc {baseline['subset_accuracy']:.3f}, micro-F1 "
        f"{baseline['micro_f1']:.3f}. `s/epoch` is the mean training time of epochs 2.. "
        "(the first also traces the train step); dev evaluation is not included."
    )


if __name__ == "__main__":
    main()
