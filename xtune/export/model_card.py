"""`MODEL_CARD.md` beside an export: the data, labels, metrics, decision rule served and
versions of the run it came from, and what the model is (and is not) meant for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL_CARD_FILE = "MODEL_CARD.md"


def rule_values(record: dict[str, Any] | None) -> str:
    """`"; dev micro_f1: default rule 0.61, tuned 0.63 (cross-validated) ..."` or ''."""
    if not record:
        return ""
    dev = record.get("dev") or {}
    text = f"; dev {record['metric']}: default rule {number(dev.get('default'))}"
    if record.get("tuned_thresholds") is not None:
        text += (
            f", tuned thresholds {number(dev.get('tuned_cross_validated'))} cross-validated "
            f"({number(dev.get('tuned'))} fitted on all of dev)"
        )
    if record.get("reason"):
        text += f"; {record['reason']}"
    return text


def parameter_text(parameters: dict[str, Any]) -> str:
    """`22,718,606 trainable, 40 not` from metrics.json's `parameters`, or `-`."""
    if "trainable" not in parameters:
        return "-"
    return f"{parameters['trainable']:,} trainable, {parameters.get('non_trainable', 0):,} not"


def number(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def model_card(run: Any, metadata: dict[str, Any]) -> str:
    """The card's markdown for a `LoadedRun` and its export metadata."""
    metrics = read_json(Path(run.path) / "metrics.json")
    config = run.config
    lines = [
        f"# Model card: {Path(run.path).name}",
        "",
        f"Exported by xtune {metadata['xtune_version']} on {metadata['created']} from the run "
        f"folder `{run.path}`.",
        "",
        "## Model",
        f"- Encoder: `{config.encoder.name}` ({json.dumps(config.encoder.kwargs) or '{}'}), "
        f"fine-tuned for {config.training.epochs} epoch(s); best epoch "
        f"{metrics.get('best_epoch', '-')} by the dev selection metric.",
        f"- Parameters: {parameter_text(metrics.get('parameters') or {})}; trained on "
        f"{metrics.get('device', '-')} in {metrics.get('precision', '-')}.",
        f"- Signatures: {', '.join(metadata['signatures'])}; inputs are raw strings.",
        "",
        "## Data and labels",
    ]
    for name, task in config.named_tasks().items():
        if name not in metadata["tasks"]:  # an mlm task: trained the encoder, has no signature
            lines.append(f"- Task `{name}` ({task.type}): trained the shared encoder; not served")
            continue
        record = metadata["tasks"][name]
        data = task.data
        splits = ", ".join(
            f"{split} `{getattr(data, split)}`"
            for split in ("train", "dev", "test")
            if getattr(data, split)
        )
        lines.append(
            f"- Task `{name}` ({record['type']}): {splits}; text column "
            f"`{data.text}`" + (f", pair column `{data.text_pair}`" if data.text_pair else "")
        )
        if record["labels"]:
            kind = "multi-label" if record["multi_label"] else "single-label"
            lines.append(
                f"  - {len(record['labels'])} labels ({kind}): " + ", ".join(record["labels"])
            )
    lines += preparation_lines(metadata)
    lines += ["", "## Metrics (dev, float32 as served)"]
    lines += metric_lines(metrics)
    lines += ["", "## Decision rule served"]
    for name, record in metadata["tasks"].items():
        if not record["labels"]:
            lines.append(f"- `{name}`: a score (no labels to decide).")
            continue
        rule = record["served_rule"]
        how = (
            "the top-1 label"
            if record["decision_rule"] == "top1"
            else (
                "tuned per-label thresholds (thresholds.json, export.json `thresholds`)"
                if rule == "tuned"
                else "the loss's default threshold"
            )
        )
        lines.append(f"- `{name}`: {rule} rule, {how}{rule_values(record.get('rule_choice'))}.")
    lines += [
        "",
        "## Versions",
        f"- xtune {metadata['xtune_version']}, TensorFlow {metadata['tensorflow_version']}; "
        f"serving needs {', '.join(metadata['requires'])}.",
        "",
        "## Intended use",
        "- Classifying texts like those of the training data (same language, domain and label "
        "set), as a decision aid whose outputs a person reviews; the probabilities are the "
        "model's scores, not calibrated risks.",
        "- Not for texts from other domains or languages, labels outside the list above, or "
        "decisions about people without human review. Check the per-label table "
        "(`per_label.csv` in the run folder): labels with little support are unreliable.",
        "",
    ]
    return "\n".join(lines)


def preparation_lines(metadata: dict[str, Any]) -> list[str]:
    """The text preparation (`data.prepare`) of each task that has one, and where it runs."""
    prepared = {
        name: record["preparation"]
        for name, record in metadata["tasks"].items()
        if record.get("preparation")
    }
    if not prepared:
        return []
    lines = ["", "## Text preparation"]
    for name, preparation in prepared.items():
        steps = ", ".join(preparation["steps"]) or "nothing that changes a text"
        where = (
            "inside the graph, by every raw-string signature, as in training"
            if preparation["in_graph"]
            else "NOT in this graph (it takes token ids): apply it before tokenizing"
        )
        lines.append(f"- `{name}`: {steps}; applied {where}.")
    lines.append(
        f"- The learned boilerplate lists are in `{next(iter(prepared.values()))['file']}`; "
        "clients that tokenize themselves (token-id signatures) apply the same steps first "
        "(`xtune.data.preparation.TextPreparation.from_dict(record).clean(text)`). Dropping "
        "duplicated training rows applied to the training data only."
    )
    return lines


def metric_lines(metrics: dict[str, Any]) -> list[str]:
    lines = []
    for title, values in (
        ("dev (default rule)", metrics.get("best")),
        ("dev (tuned thresholds, fitted on dev)", metrics.get("tuned")),
    ):
        if values:
            lines.append(
                f"- {title}: "
                + ", ".join(
                    f"{key} {number(value)}"
                    for key, value in values.items()
                    if isinstance(value, (int, float))
                )
            )
    test = metrics.get("test") or {}
    flat = test.get("default_rule", test)
    if flat:
        lines.append(
            "- test (default rule): "
            + ", ".join(
                f"{key} {number(value)}"
                for key, value in flat.items()
                if isinstance(value, (int, float))
            )
        )
    return lines or ["- (no metrics recorded)"]


def read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}
