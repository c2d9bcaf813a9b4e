"""Write the model as one file: `python scripts/export.py [--ensemble J | --trial T] --format {keras,onnx,litert} --out FILE`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kaggle_digits.cli import run_script  # noqa: E402

# The guard: worker processes (spawned) import this file again and must not run the command.
if __name__ == "__main__":
    run_script("export")
