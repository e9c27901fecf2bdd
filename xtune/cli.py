"""`xtune train | pretrain | grid | report | export | predict | list | init`: the command line."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shlex
import sys
import threading
from typing import TYPE_CHECKING, Any

from xtune import __version__, interrupts
from xtune.components import ALIASES, KINDS

if TYPE_CHECKING:
    from xtune.grid.ray_executor import RayExecutor

# Nothing here imports TensorFlow: each command imports what it needs, so `--help`,
# `--version`, `list`, `report`, `grid --dry-run` and config mistakes (checked through the
# component catalog, `xtune.catalog`) answer without the seconds TensorFlow takes to import.


# OS errors that are the user's to fix (a path, a permission, a full disk), not xtune bugs.
USER_ERRNOS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.ENAMETOOLONG,
}
PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
DEBUG_HELP = "show the Python traceback of an error instead of one line"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xtune", description=__doc__)
    parser.add_argument("--version", action="version", version=f"xtune {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    # `--debug` also after the command; SUPPRESS keeps a sub-parser from resetting it.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", parents=[debug], help="train one run from a config file")
    train.add_argument("config", help="run config YAML")
    add_run_options(train)

    pretrain = commands.add_parser(
        "pretrain",
        parents=[debug],
        help="further pre-train an encoder (masked LM) and write it as a Hugging Face folder",
    )
    pretrain.add_argument("config", help="run config YAML with one task of type mlm")
    add_run_options(pretrain)
    pretrain.add_argument(
        "--output", help="the Hugging Face folder to write (default: RUN/hf_model)"
    )

    grid = commands.add_parser("grid", parents=[debug], help="run an ablation grid (resumable)")
    grid.add_argument("grid_file", help="grid YAML (base + variants/grid + seeds)")
    grid.add_argument("--only", action="append", default=[], metavar="ROW", help="run only ROW")
    grid.add_argument("--dry-run", action="store_true", help="show the plan, train nothing")
    grid.add_argument("--max-runs", type=int, help="stop after N runs")
    grid.add_argument("--output", help="results folder (default: the grid's, reports/<name>)")
    grid.add_argument(
        "--retry-failed", action="store_true", help="train again the runs recorded as failed"
    )
    grid.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the base config for every run (e.g. data.root=...)",
    )
    add_executor_options(grid)

    report = commands.add_parser(
        "report", parents=[debug], help="write the report of a grid (markdown, CSV or LaTeX)"
    )
    report.add_argument("results_dir", help="reports/<grid>/ (holds results.jsonl)")
    report.add_argument(
        "--output", help="report file (default: reports/<grid>.md, .csv or .tex by --format)"
    )
    report.add_argument(
        "--baseline", metavar="ROW", help="the row Δ and Welch p compare to (default: the first)"
    )
    report.add_argument(
        "--format",
        choices=("md", "csv", "latex"),
        default="md",
        help="md: the full report (default); csv, latex: the table of rows",
    )
    report.add_argument(
        "--ci", action="store_true", help="add a 95%% confidence interval of each row's mean"
    )
    report.add_argument(
        "--test-per-row",
        action="store_true",
        help="add each row's test score to the cost table (a second held-out set, e.g. MNLI "
        "mismatched; the best row is still chosen on dev)",
    )

    export = commands.add_parser(
        "export", parents=[debug], help="export a run as a SavedModel taking raw text"
    )
    export.add_argument("run_dir")
    export.add_argument("out_dir")
    export.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")

    predict = commands.add_parser(
        "predict", parents=[debug], help="label a CSV/TSV/JSONL/XLSX file"
    )
    predict.add_argument("model_dir", help="a run folder or an exported SavedModel")
    predict.add_argument("--input", required=True)
    predict.add_argument("--output", required=True)
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument(
        "--task", help="the task to predict (required when the model has several tasks)"
    )

    listing = commands.add_parser(
        "list", parents=[debug], help="list the components a config can name, with arguments"
    )
    listing.add_argument(
        "kind",
        nargs="?",
        choices=[*KINDS, *ALIASES],
        metavar="KIND",
        help=f"one of {', '.join(KINDS)} (default: all)",
    )

    init = commands.add_parser(
        "init", parents=[debug], help="write a commented run config to start from"
    )
    init.add_argument("path", nargs="?", default="run.yaml", help="where (default: run.yaml)")
    init.add_argument("--force", action="store_true", help="replace PATH if it exists")
    return parser


def add_run_options(command: argparse.ArgumentParser) -> None:
    """`--set`, `--run-dir` and `--resume` of the commands that train one run."""
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.epochs=3 (repeatable)",
    )
    command.add_argument("--run-dir", help="run folder (default: training.output_dir/<time>)")
    command.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of CONFIG from its last finished epoch: the folder "
        "--run-dir names, else the latest unfinished one under training.output_dir",
    )


# Options of `--executor ray` (their defaults are `RayExecutor`'s: None means not given).
RAY_OPTIONS = ("address", "gpus_per_run", "cpus_per_run", "max_retries")


def add_executor_options(grid: argparse.ArgumentParser) -> None:
    grid.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: train the runs one by one in this process (default); ray: as Ray tasks, "
        "several at a time, on this machine or a Ray cluster (pip install xtune[ray])",
    )
    grid.add_argument(
        "--address",
        help="ray: the cluster to join: HEAD:6379, or auto for the one `ray start` started here "
        "(default: a new Ray instance on this machine)",
    )
    grid.add_argument(
        "--gpus-per-run",
        type=float,
        metavar="N",
        help="ray: GPUs a run needs (default 0; 0.5 lets two runs share a GPU)",
    )
    grid.add_argument(
        "--cpus-per-run", type=float, metavar="N", help="ray: CPUs a run needs (default 1)"
    )
    grid.add_argument(
        "--max-retries",
        type=int,
        metavar="N",
        help="ray: times a run whose worker process or machine is lost starts again (default 2)",
    )


def grid_executor(args: argparse.Namespace) -> RayExecutor | None:
    """The executor `--executor` names (None: the runner's local one)."""
    from xtune.registry import ConfigError

    given = {name: getattr(args, name) for name in RAY_OPTIONS if getattr(args, name) is not None}
    if args.executor == "local":
        if given:
            names = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ConfigError(f"{names}: only with --executor ray (local runs one run at a time)")
        return None
    from xtune.grid.ray_executor import RayExecutor

    return RayExecutor(**given)


# xtune's errors that a user can fix, by the module that defines them. An error whose module
# was never imported cannot have been raised, so `main` looks them up in `sys.modules` instead
# of importing them (`xtune.encoders` alone would import TensorFlow for every command).
USER_ERRORS = (
    ("xtune.registry", "ConfigError"),  # also `xtune.config.ConfigError`
    ("xtune.registry", "RegistryError"),
    ("xtune.data.readers", "DataError"),
    ("xtune.encoders.adapter", "EncoderLoadError"),
    ("xtune.export", "ExportError"),
    ("xtune.training.diverged", "TrainingDiverged"),
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        return run_command(args)  # every traceback, and TensorFlow's own start-up lines
    run_folder = sys.modules.get("xtune.run_folder")
    if run_folder is not None:
        run_folder.RunFolder.latest = None  # an earlier command's, in this process
    in_main_thread = threading.current_thread() is threading.main_thread()
    try:
        with interrupts.handled() if in_main_thread else contextlib.nullcontext():
            return run_reporting_errors(args)
    except (KeyboardInterrupt, interrupts.Terminated) as interrupt:
        terminated = isinstance(interrupt, interrupts.Terminated)
        name, code = ("SIGTERM", 143) if terminated else ("SIGINT", 130)
        print(
            f"xtune {args.command}: interrupted ({name}); {unfinished_work(args)}",
            file=sys.stderr,
        )
        return code


def unfinished_work(args: argparse.Namespace) -> str:
    """What an interrupt left: the run folder being written, if any, is unfinished; a `train`
    run's can be resumed from its last checkpoint."""
    run_folder = sys.modules.get("xtune.run_folder")
    latest = getattr(getattr(run_folder, "RunFolder", None), "latest", None)
    if latest is None or (latest / "metrics.json").exists():
        return "every file written is complete or removed"
    if args.command not in ("train", "pretrain"):
        return (
            f"the run folder {latest} is unfinished (no metrics.json); run the command again "
            "to train it"
        )
    from xtune.training.checkpoint import progress_text

    command = ["xtune", args.command, args.config, *(f"--set={item}" for item in args.overrides)]
    return (
        f"the run folder {latest} is unfinished ({progress_text(latest)}); continue it with: "
        f"{shlex.join([*command, '--resume', '--run-dir', str(latest)])}"
    )


def run_reporting_errors(args: argparse.Namespace) -> int:
    # TensorFlow's C++ log, errors included: on a CPU machine its error lines are notices (the
    # oneDNN int64 fallback, cuInit); real failures reach Python as exceptions. A user's own
    # setting wins; --debug shows everything.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from xtune.quiet_tensorflow import tensorflow_start_up_filtered

    try:
        with tensorflow_start_up_filtered():
            return run_command(args)
    except (*user_error_types(), FileNotFoundError, OSError) as error:
        message = user_error_message(error)
        if message is None:
            raise  # a bug: the traceback is the report
        print(f"xtune {args.command}: error: {message}", file=sys.stderr)
        return 2


def user_error_types() -> tuple[type[BaseException], ...]:
    """The classes of `USER_ERRORS` whose modules are loaded."""
    found = []
    for module_name, name in USER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, name):
            found.append(getattr(module, name))
    return tuple(found)


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of a mistake the user can fix (xtune's own errors, a bad path, a
    full disk), or None for a bug."""
    if isinstance(error, OSError):
        custom = error.errno is None and isinstance(error, PATH_ERRORS)  # xtune's own message
        if error.errno not in USER_ERRNOS and not custom:
            return None
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" while writing {error.filename}" if error.filename else ""
            return f"disk full{where} ({error.strerror}); free some space and run again"
        if error.filename and error.strerror:
            return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


def run_command(args: argparse.Namespace) -> int:
    if args.command == "train":
        config, run_dir = run_config_and_folder(args)
        from xtune.training.trainer import train

        train(config, run_dir=run_dir, resume=args.resume)
        return 0
    if args.command == "pretrain":
        config, run_dir = run_config_and_folder(args)
        from xtune.training.pretrain import pretrain

        pretrain(config, run_dir, resume=args.resume, output=args.output, source=args.config)
        return 0
    if args.command == "grid":
        from xtune.grid.runner import run_grid

        return run_grid(
            args.grid_file,
            only=args.only,
            dry_run=args.dry_run,
            max_runs=args.max_runs,
            overrides=args.overrides,
            output=args.output,
            retry_failed=args.retry_failed,
            executor=grid_executor(args),
        )
    if args.command == "report":
        from xtune.grid.report import write_report

        print(
            write_report(
                args.results_dir,
                args.output,
                args.baseline,
                format=args.format,
                ci=args.ci,
                test_per_row=args.test_per_row,
            )
        )
        return 0
    if args.command == "list":
        return list_components(args.kind)
    if args.command == "init":
        return write_template(args.path, force=args.force)
    if args.command == "export":
        from xtune.export.saved_model import export_run  # any run: a signature per task

        export_run(args.run_dir, args.out_dir, force=args.force)
        return 0
    if args.command == "predict":
        from xtune.export.predict import predict_file

        predict_file(
            args.model_dir,
            args.input,
            args.output,
            batch_size=args.batch_size,
            top_k=args.top_k,
            task=args.task,
        )
        return 0
    raise AssertionError(args.command)


def run_config_and_folder(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The run config (checked before TensorFlow is imported) and the run folder: `--run-dir`,
    or with `--resume` the unfinished run of the config it continues."""
    from xtune.config import load_run_config

    config = load_run_config(args.config, args.overrides)
    if args.command == "pretrain":
        from xtune.training.pretrain import pretrain_config

        config, _ = pretrain_config(config, args.config)
    if not args.resume:
        return config, args.run_dir
    from xtune.training.checkpoint import find_resumable

    return config, find_resumable(config, args.run_dir)


def list_components(kind: str | None) -> int:
    from xtune.components import describe, kind_of

    kinds = [kind_of(kind)] if kind else list(KINDS)
    blocks = ["\n".join(describe(each)) for each in kinds]
    print("\n\n".join(blocks))
    return 0


def write_template(path: str, force: bool) -> int:
    from xtune.config_template import TEMPLATE
    from xtune.registry import ConfigError

    try:
        with open(path, "w" if force else "x", encoding="utf-8") as file:
            file.write(TEMPLATE)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; give another path, or --force") from None
    print(f"wrote {path}: edit its data section, then `xtune train {path}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
