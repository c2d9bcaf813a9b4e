"""Get the competition's files into data/: `python scripts/download.py [--source auto|kaggle|zip|mnist]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kaggle_digits.cli import run_script  # noqa: E402

run_script("download")
