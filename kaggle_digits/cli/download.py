"""`download`: parse the options, get or verify the competition's files (kaggle_digits.data.download),
print what is there."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaggle_digits.cli.output import say
from kaggle_digits.data import download
from kaggle_digits.data.download import FileSummary

HELP = "get the competition's CSV files (Kaggle kernel, Kaggle API, a zip, or the offline MNIST mirror)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        choices=list(download.SOURCES),
        default="auto",
        help="auto (default): Kaggle kernel input, else the Kaggle API when credentials exist, else the "
        "offline mirror from the bundled MNIST",
    )
    parser.add_argument("--zip", type=Path, help="digit-recognizer.zip downloaded by hand (with --source zip)")
    parser.add_argument("--force", action="store_true", help="fetch again even if valid files are present")
    parser.add_argument("--verify", action="store_true", help="only validate the files already present")


def run(args: argparse.Namespace) -> int:
    if args.verify:
        checked = download.verify(args.paths.data_dir)
        counts = " ".join(map(str, checked.label_counts))
        print(f"{checked.data_dir / 'train.csv'}: {checked.train_rows:,} rows, valid; labels 0-9: {counts}")
        print(f"{checked.data_dir / 'test.csv'}: {checked.test_rows:,} rows, valid")
        print_files(checked.source, checked.files)
        return 0
    fetched = download.fetch(args.paths, args.source, args.zip, args.force, log=say)
    print_files(fetched.source, fetched.files)
    return 0


def print_files(source: str, files: list[FileSummary]) -> None:
    """Where the files came from, and each one's rows and SHA-256."""
    print(f"source: {source}")
    for f in files:
        print(f"  {f.path}  {f.rows:>6,} rows  sha256 {f.sha256[:16]}")
    if any(f.path.name == "solution.csv" for f in files):
        print("  (solution.csv holds the mirror's test labels: only the local scorer reads it)")
