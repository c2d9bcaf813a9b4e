"""`report`: parse the options, build the report (kaggle_digits.report.page), print where it is."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from kaggle_digits.cli.output import say
from kaggle_digits.data.paths import Paths
from kaggle_digits.errors import UserError
from kaggle_digits.report.page import Report, refuse_users_files
from kaggle_digits.search import storage

HELP = "Plots of the data, studies, errors and ensemble, gathered in one index.html."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--studies",
        nargs="+",
        metavar="S",
        help="studies to show (default: every study in --runs-dir and in the Optuna storage)",
    )
    parser.add_argument(
        "--submission",
        metavar="FILE",
        help="an ensemble's submission CSV, with its .json beside it (default: the newest in --submissions-dir)",
    )
    parser.add_argument("--out", metavar="DIR", help="report folder (default: <reports-dir>/<yyyymmdd-HHMMSS>)")
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage holding the studies; with it, trials are read from the storage wherever their files "
        "are (default: sqlite:///<runs-dir>/optuna.db, or the journal file of `tune --jobs`, for the tuning plots)",
    )
    parser.add_argument(
        "--artifacts",
        metavar="DIR|s3://BUCKET",
        help="the artifact store tune uploaded trials to (default: the one each trial recorded)",
    )


def run(args: argparse.Namespace) -> int:
    paths: Paths = args.paths
    out = Path(args.out) if args.out else paths.reports_dir / f"{datetime.now():%Y%m%d-%H%M%S}"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    refuse_users_files(out)
    report = Report(
        paths,
        out,
        args.storage or storage.reading_url(paths.runs_dir),
        studies=args.studies,
        submission_file=args.submission,
        trials_storage=args.storage,
        artifacts=args.artifacts,
        log=say,
    )
    index = report.build()
    written = sum(len(s.plots) for s in report.sections)
    skipped = sum(s.skipped is not None for s in report.sections)
    print(f"report: wrote {written} figures and {index}; {skipped} of {len(report.sections)} sections skipped")
    for name, value in report.headline():
        print(f"  {name}: {value}")
    print(f"open {index}")
    return 0
