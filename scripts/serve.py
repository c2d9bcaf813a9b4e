"""Serve the drawing page on 127.0.0.1: `python scripts/serve.py [--port 8000] [--ensemble J | --trial T]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kaggle_digits.cli import run_script  # noqa: E402

run_script("serve")
