"""Each export format against the toolkit's own predictor: faithfulness, file size, start-up, throughput.

    python benchmarks/export.py [--ensemble SUBMISSION.json | --trial runs/<study>/trial-<n>] [--rows 28000]
        [--formats keras,onnx,litert] [--runs-dir runs] [--submissions-dir submissions]

Default predictor: the one `predict` picks (the newest ensemble in submissions/, else the best trial). The rows
are the mirror's test rows (the first --rows of them). For each format: the share of rows whose label equals
the toolkit's own (its fold models as saved, bf16 included) and with the same members in float32, the largest probability difference from the same
members predicted in float32 (what the file computes: compare like with like), the file's size, the seconds
from starting a fresh Python to the first prediction of one image (imports and loading included, in a child
process), and rows per second over the rows in this process. The toolkit's own row is measured the same way.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kaggle_digits.data import dataset as data  # noqa: E402
from kaggle_digits.data.paths import BUNDLED_MNIST_DIR  # noqa: E402
from kaggle_digits.predict import export  # noqa: E402
from kaggle_digits.predict import predictor as predict  # noqa: E402
from kaggle_digits.predict.exported import load_exported  # noqa: E402

# A fresh interpreter: load the predictor, predict one image, print the time it finished.
FIRST_PREDICTION = """
import sys, time
import numpy as np
from kaggle_digits.predict import predictor
which = dict(zip(("runs_dir", "submissions_dir", sys.argv[1]), sys.argv[2:]))
model = predictor.load_predictor(which.pop("runs_dir"), which.pop("submissions_dir"), **which)
model.predict_proba(np.zeros((1, 28, 28), dtype=np.uint8))
print(time.time())
"""


def first_prediction_seconds(option: str, value: str, runs_dir: str, submissions_dir: str) -> float:
    """Seconds from starting `python` to the end of its first prediction (load_predictor with option=value)."""
    began = time.time()
    done = subprocess.run(
        [sys.executable, "-c", FIRST_PREDICTION, option, runs_dir, submissions_dir, value],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1]) - began


def rows_per_second(model: predict.Predictor, X: np.ndarray) -> tuple[np.ndarray, float]:
    model.predict_proba(X[:64])  # warm: compiled functions, allocated tensors
    began = time.perf_counter()
    proba = model.predict_proba(X)
    return proba, len(X) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--ensemble")
    which.add_argument("--trial")
    parser.add_argument("--rows", type=int, default=28_000)
    parser.add_argument("--formats", default=",".join(export.FORMATS))
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--submissions-dir", default="submissions")
    args = parser.parse_args()

    X, _ = data.load_mnist(BUNDLED_MNIST_DIR)
    _, test_idx = data.mirror_split(len(X))
    X = X[test_idx[: args.rows]]
    own = predict.load_predictor(args.runs_dir, args.submissions_dir, args.ensemble, args.trial)
    print(f"predictor: {predict.summary(own)}; {len(X):,} mirror test rows")
    option, value = ("ensemble", args.ensemble) if args.ensemble else ("trial", args.trial)
    if value is None:
        option, value = ("ensemble", str(own.source)) if own.kind == "ensemble" else ("trial", str(own.source))
    own_proba, own_speed = rows_per_second(own, X)
    own_labels = own_proba.argmax(axis=1)
    float32_proba = export.float32_twin(own).predict_proba(X)
    own_start = first_prediction_seconds(option, value, args.runs_dir, args.submissions_dir)

    f32_labels = float32_proba.argmax(axis=1)
    header = f"{'':10} {'labels = own':>13} {'labels = f32':>13} {'max |p - p32|':>14} {'size MB':>8} {'start+first s':>14} {'rows/s':>9}"
    print(header)
    print(
        f"{'toolkit':10} {1.0:13.5f} {(own_labels == f32_labels).mean():13.5f} {np.abs(own_proba - float32_proba).max():14.2e} {'':>8} {own_start:14.1f} "
        f"{own_speed:9,.0f}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for fmt in args.formats.split(","):
            path = Path(folder) / f"model{export.FORMATS[fmt]}"
            began = time.perf_counter()
            export.export(own, fmt, path)
            export_seconds = time.perf_counter() - began
            proba, speed = rows_per_second(load_exported(path), X)
            start = first_prediction_seconds("model", str(path), args.runs_dir, args.submissions_dir)
            agree = float((proba.argmax(axis=1) == own_labels).mean())
            agree_f32 = float((proba.argmax(axis=1) == f32_labels).mean())
            print(
                f"{fmt:10} {agree:13.5f} {agree_f32:13.5f} {np.abs(proba - float32_proba).max():14.2e} {path.stat().st_size / 1e6:8.2f} "
                f"{start:14.1f} {speed:9,.0f}   (export {export_seconds:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
