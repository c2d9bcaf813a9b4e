"""`kaggle-digits <command>`: one entry point; scripts/*.py are thin wrappers around it."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from kaggle_digits import __version__
from kaggle_digits.errors import UserError

# Only the standard library above: everything heavy (NumPy, pandas, each command's module) is imported
# inside main, where a Ctrl-C is caught.

# name -> module; each module defines HELP, add_arguments(parser) and run(args) -> int.
# Adding a command is one line here and one module.
COMMANDS = {
    "download": "kaggle_digits.cli.download",
    "tune": "kaggle_digits.cli.tune",
    "ensemble": "kaggle_digits.cli.ensemble",
    "pipeline": "kaggle_digits.cli.pipeline",
    "submit": "kaggle_digits.cli.submit",
    "kernel": "kaggle_digits.cli.kernel",
    "report": "kaggle_digits.cli.report",
    "predict": "kaggle_digits.cli.predict",
    "serve": "kaggle_digits.cli.serve",
    "export": "kaggle_digits.cli.export",
}


class UsageError(Exception):
    """A command line argparse cannot parse: an unknown option, a missing argument, a bad number."""


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage mistake is one `error: ...` line (main prints it), not the usage block.

    Every subcommand's parser is of this class too (argparse makes subparsers of the parent's class).
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


VERBOSE_HELP = "also show TensorFlow's own log lines (hidden unless TF_CPP_MIN_LOG_LEVEL is set)"


def _common_options() -> _Parser:
    common = _Parser(add_help=False)
    group = common.add_argument_group("folders")
    group.add_argument("--data-dir", help="competition CSVs (default: data/)")
    group.add_argument("--runs-dir", help="studies and trial artifacts (default: runs/)")
    group.add_argument("--submissions-dir", help="written submissions (default: submissions/)")
    group.add_argument("--reports-dir", help="plots and HTML reports (default: reports/)")
    common.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kaggle-digits",
        description="Kaggle Digit Recognizer toolkit: data, cross-validated tuning, ensembles, submissions.",
    )
    parser.add_argument("--version", action="version", version=f"kaggle-digits {__version__}")
    # Also before the command's name (a subcommand's own default would overwrite a shared dest).
    parser.add_argument("--verbose", dest="verbose_first", action="store_true", help=VERBOSE_HELP)
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
    that cannot be read or written. Ctrl-C at any moment, the imports included, is one line and 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("\ninterrupted: finished files are kept; partial files were not written", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    _writable_matplotlib_dir()  # before anything imports matplotlib
    from kaggle_digits import tflog
    from kaggle_digits.cli import checks
    from kaggle_digits.data import paths

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tflog.set_verbose(
        getattr(args, "verbose", False) or getattr(args, "verbose_first", False)
    )  # before anything imports TensorFlow
    try:
        checks.check_shared_options(args)
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
    except OSError as exc:
        # A file or folder the command was given cannot be read or written: a path through a file, no
        # permission, a full or read-only disk. Errors without a path (a network failure) still raise.
        message = os_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return UserError.exit_code


def _writable_matplotlib_dir() -> None:
    """Point MPLCONFIGDIR at a private folder under the temporary directory when matplotlib's default
    folders (under HOME) cannot be written: matplotlib would otherwise warn about it on every import.
    A folder of our own (not a fresh one each time) keeps its font cache from one run to the next."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    home = Path(os.path.expanduser("~"))
    if sys.platform == "darwin":
        defaults = [home / ".matplotlib"]
    else:
        defaults = [
            Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib",
            Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib",
        ]
    if all(_usable_folder(folder) for folder in defaults):
        return
    fallback = Path(tempfile.gettempdir()) / f"kaggle-digits-matplotlib-{os.getuid() if hasattr(os, 'getuid') else 0}"
    try:
        fallback.mkdir(mode=0o700, exist_ok=True)
        own = fallback.lstat()
        # Someone else's folder (or a link) at that name is not used: a fresh one instead.
        if not fallback.is_dir() or fallback.is_symlink() or (hasattr(os, "getuid") and own.st_uid != os.getuid()):
            raise PermissionError(fallback)
    except OSError:
        try:
            fallback = Path(tempfile.mkdtemp(prefix="kaggle-digits-matplotlib-"))
        except OSError:
            return  # nowhere to write: matplotlib says so itself
    os.environ["MPLCONFIGDIR"] = str(fallback)


def _usable_folder(folder: Path) -> bool:
    """What matplotlib asks of its config and cache folders: a writable folder, or one that can be made
    (its nearest existing parent is a writable folder). Nothing is created here."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def os_error_message(exc: OSError) -> str | None:
    """One line for an OS error caused by a path the user gave (None when it names no path and is not a
    full disk): the path, then what is wrong with it in plain words."""
    from kaggle_digits import io

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


def main_entry() -> None:
    """Console script `kaggle-digits`."""
    sys.exit(main())
