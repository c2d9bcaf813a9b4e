"""Plots and one HTML page: `python scripts/report.py [--studies S ...] [--submission FILE] [--out DIR]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kaggle_digits.cli import run_script  # noqa: E402

run_script("report")
