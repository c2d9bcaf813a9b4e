"""Serve the drawing page on 127.0.0.1: `python scripts/serve.py [--port 8000] [--ensemble J | --trial T]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kaggle_digits.cli import run_script  # noqa: E402

# The guard: worker processes (spawned) import this file again and must not run the command.
if __name__ == "__main__":
    run_script("serve")
