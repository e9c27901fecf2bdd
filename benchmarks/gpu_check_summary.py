"""The summary of `benchmarks/gpu_check.sh`: step times and the numbers for benchmarks/README.md.

    python3 benchmarks/gpu_check_summary.py OUT WORK

Reads what the script left (standard library only, so any Python runs it): `OUT/steps.tsv`
(one line per step: name, status, seconds, budget), the logs `OUT/<step>.log`, and the grids'
`WORK/goemotions/results.jsonl` and `WORK/ray_grid/results.jsonl`; prints markdown.
`GPUS_PER_RUN` (the script exports it) names the Ray grid's GPU share.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []


def read_results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_lines(path) if line.strip()]


def steps_table(out: Path) -> list[str]:
    lines = ["| step | status | seconds | budget s |", "|---|---|---:|---:|"]
    for row in read_lines(out / "steps.tsv"):
        name, status, seconds, budget = row.split("\t")
        lines.append(f"| {name} | {status} | {seconds} | {budget} |")
    return lines


def device_lines(out: Path) -> list[str]:
    """The GPU, TensorFlow and PyTorch lines of the devices step."""
    prefixes = ("GPU:", "TF ", "torch ")
    return [line for line in read_lines(out / "devices.log") if line.startswith(prefixes)]


def throughput_lines(out: Path) -> list[str]:
    """train_throughput.py's header, its BERT-base table and ratios, and the peak."""
    lines = read_lines(out / "throughput.log")
    header = [
        line for line in lines if line.startswith(("train_throughput:", "xtune ", "PyTorch "))
    ]
    start = next((k for k, line in enumerate(lines) if line.startswith("== fixed shapes")), None)
    if start is None:
        return header + ["(no table: see throughput.log)"]
    end = next((k for k, line in enumerate(lines) if line.startswith("total ")), len(lines))
    return header + lines[start:end]


def metric(run: dict[str, Any], section: str, name: str) -> str:
    value = run.get(section) or {}
    value = value.get(name) if isinstance(value, dict) else None
    return "-" if value is None else f"{value:.4f}"


def run_line(run: dict[str, Any]) -> str:
    """One grid result line: what a GPU run's speed and scores are."""
    if run.get("status") != "ok":
        return f"- {run.get('run_id')}: {run.get('status')} {run.get('error', '')}"
    test = run.get("test") or {}
    test_default = test.get("default_rule") if isinstance(test, dict) else None
    test_macro = "-" if not test_default else f"{test_default.get('macro_f1', float('nan')):.4f}"
    return (
        f"- {run['row']} seed {run['seed']}: {run.get('device')} {run.get('precision')}, "
        f"{run.get('steps')} steps, train {run.get('train_seconds')} s "
        f"({run.get('train_samples_per_second')} samples/s), data {run.get('data_seconds')} s, "
        f"wall {run.get('wall_seconds')} s; dev macro-F1 {metric(run, 'best', 'macro_f1')} "
        f"(tuned thresholds {metric(run, 'tuned', 'macro_f1')}), test macro-F1 {test_macro}"
    )


def run_interval(run: dict[str, Any]) -> tuple[float, float] | None:
    """(start, end) of a run in seconds since the epoch, from its end time and wall time."""
    if "finished_at" not in run or "wall_seconds" not in run:
        return None
    end = datetime.strptime(run["finished_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    return end - run["wall_seconds"], end


def overlap_line(runs: list[dict[str, Any]]) -> str:
    """Whether the grid's runs ran at the same time (the point of --gpus-per-run 0.5)."""
    intervals = [interval for interval in map(run_interval, runs) if interval is not None]
    if len(intervals) < 2:
        return f"- overlap: {len(intervals)} timed run(s), nothing to compare"
    shared = min(end for _, end in intervals) - max(start for start, _ in intervals)
    span = max(end for _, end in intervals) - min(start for start, _ in intervals)
    return (
        f"- overlap: the runs ran together for {max(shared, 0):.0f} s of the {span:.0f} s "
        f"from the first start to the last end (sum of walls "
        f"{sum(end - start for start, end in intervals):.0f} s)"
    )


def gpu_processes_line(out: Path) -> str:
    counts = [int(line.split()[1]) for line in read_lines(out / "ray_gpu_processes.log")]
    if not counts:
        return "- nvidia-smi samples: none"
    return (
        f"- nvidia-smi, sampled every second: at most {max(counts)} compute process(es) on the "
        "GPU at once (0 where the container hides processes from nvidia-smi)"
    )


def summary(out: Path, work: Path) -> list[str]:
    goemotions = read_results(work / "goemotions" / "results.jsonl")
    ray_runs = read_results(work / "ray_grid" / "results.jsonl")
    return [
        "# GPU check summary",
        "",
        *steps_table(out),
        "",
        "## Devices",
        "```",
        *device_lines(out),
        "```",
        "",
        "## BERT-base shape, length 128, batch 32 (train_throughput.py --sections bert-base)",
        "```",
        *throughput_lines(out),
        "```",
        "",
        "## GoEmotions, 1 seed, full train split, 1 epoch",
        *([run_line(run) for run in goemotions] or ["- no result line"]),
        "",
        f"## Ray grid, 2 runs, --gpus-per-run {os.environ.get('GPUS_PER_RUN', '0.5')}",
        *([run_line(run) for run in ray_runs] or ["- no result line"]),
        overlap_line(ray_runs),
        gpu_processes_line(out),
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print("\n".join(summary(Path(argv[0]), Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
