"""`xtune train | grid | report | export | predict`: the command line."""

from __future__ import annotations

import argparse
import errno
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    # `--debug` also after the command; SUPPRESS keeps a sub-parser from resetting it.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", parents=[debug], help="train one run from a config file")
    train.add_argument("config", help="run config YAML")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.epochs=3 (repeatable)",
    )
    train.add_argument("--run-dir", help="run folder (default: training.output_dir/<time>)")

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

    report = commands.add_parser(
        "report", parents=[debug], help="write the markdown report of a grid"
    )
    report.add_argument("results_dir", help="reports/<grid>/ (holds results.jsonl)")
    report.add_argument("--output", help="markdown file (default: reports/<grid>.md)")
    report.add_argument(
        "--baseline", metavar="ROW", help="the row Δ and Welch p compare to (default: the first)"
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
        "--task", help="the task to predict (required for a multi-task model, else not given)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from xtune.config import ConfigError
    from xtune.data.readers import DataError
    from xtune.encoders.sources import EncoderLoadError
    from xtune.export import ExportError
    from xtune.registry import RegistryError
    from xtune.training.diverged import TrainingDiverged

    user_errors = (
        ConfigError,
        DataError,
        EncoderLoadError,
        ExportError,
        RegistryError,
        TrainingDiverged,
        FileNotFoundError,
    )
    try:
        return run_command(args)
    except (*user_errors, OSError) as error:
        message = user_error_message(error)
        if message is None or args.debug:
            raise  # a bug (or --debug): the traceback is the report
        print(f"xtune {args.command}: error: {message}", file=sys.stderr)
        return 2


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
        from xtune.config import load_run_config
        from xtune.training.trainer import train

        train(load_run_config(args.config, args.overrides), run_dir=args.run_dir)
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
        )
    if args.command == "report":
        from xtune.grid.report import write_report

        print(write_report(args.results_dir, args.output, args.baseline))
        return 0
    if args.command == "export":
        from xtune.tasks.run_folder import is_multitask_run

        if is_multitask_run(args.run_dir):  # a signature per task
            from xtune.export.multitask import export_multitask_run

            export_multitask_run(args.run_dir, args.out_dir, force=args.force)
            return 0
        from xtune.export.saved_model import export_run

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


if __name__ == "__main__":
    sys.exit(main())
