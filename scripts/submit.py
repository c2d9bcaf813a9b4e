"""Upload, score or list submissions: `python scripts/submit.py FILE -m "message" [--dry-run] [--wait]`, `FILE --local`, `--list`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kaggle_digits.cli import run_script  # noqa: E402

run_script("submit")
