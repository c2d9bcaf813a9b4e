"""`kaggle-digits <command>`: one entry point; scripts/*.py are thin wrappers around it."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from pathlib import Path

from . import __version__, io, paths
from .errors import UserError

# name -> module; each module defines HELP, add_arguments(parser) and run(args) -> int.
# Adding a command is one line here and one module.
COMMANDS = {
    "download": "kaggle_digits.download",
    "tune": "kaggle_digits.tune",
    "ensemble": "kaggle_digits.ensemble",
    "pipeline": "kaggle_digits.pipeline",
    "submit": "kaggle_digits.submit",
    "kernel": "kaggle_digits.kernel",
    "report": "kaggle_digits.report",
    "predict": "kaggle_digits.predict",
    "serve": "kaggle_digits.serve",
}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("folders")
    group.add_argument("--data-dir", help="competition CSVs (default: data/)")
    group.add_argument("--runs-dir", help="studies and trial artifacts (default: runs/)")
    group.add_argument("--submissions-dir", help="written submissions (default: submissions/)")
    group.add_argument("--reports-dir", help="plots and HTML reports (default: reports/)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaggle-digits",
        description="Kaggle Digit Recognizer toolkit: data, cross-validated tuning, ensembles, submissions.",
    )
    parser.add_argument("--version", action="version", version=f"kaggle-digits {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options()
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, parents=[common], help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; user mistakes become one line on stderr and exit code 2, including a file or folder
    that cannot be read or written."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.paths = paths.resolve(
            data_dir=args.data_dir,
            runs_dir=args.runs_dir,
            submissions_dir=args.submissions_dir,
            reports_dir=args.reports_dir,
        )
        return int(args._module.run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: finished files are kept; partial files were not written", file=sys.stderr)
        return 130
    except OSError as exc:
        # A file or folder the command was given cannot be read or written: a path through a file, no
        # permission, a full or read-only disk. Errors without a path (a network failure) still raise.
        message = os_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return UserError.exit_code


def os_error_message(exc: OSError) -> str | None:
    """One line for an OS error caused by a path the user gave (None when it names no path and is not a
    full disk): the path, then what is wrong with it in plain words."""
    if io.is_disk_full(exc):
        # shutil.copyfile names the source first and the destination second: name what was written.
        target = exc.filename2 or exc.filename
        where = f"{Path(str(target)).parent}: " if target else ""
        return f"{where}the disk is full (no space left on device)"
    if not exc.filename:
        return None
    path = Path(str(exc.filename))
    if isinstance(exc, FileExistsError) and path.exists() and not path.is_dir():
        return f"{path}: is a file, expected a folder"
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a folder, expected a file"
    return f"{path}: {exc.strerror or exc}"


def run_script(command: str) -> None:
    """Entry point of scripts/<command>.py."""
    sys.exit(main([command, *sys.argv[1:]]))


class Progress:
    """Prints `label i/n  elapsed  ETA` lines for long loops."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.start = label, total, time.monotonic()

    def step(self, done: int, extra: str = "") -> None:
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        print(
            f"{self.label} {done}/{self.total}  elapsed {format_seconds(elapsed)}  ETA {format_seconds(eta)}"
            + (f"  {extra}" if extra else ""),
            flush=True,
        )


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):  # NaN: no estimate yet
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def main_entry() -> None:
    """Console script `kaggle-digits`."""
    sys.exit(main())
