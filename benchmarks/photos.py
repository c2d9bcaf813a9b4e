"""Accuracy on photos of digits on paper, under even and uneven light, before and after the background is evened out.

    python benchmarks/photos.py [--ensemble SUBMISSION.json | --trial runs/<study>/trial-<n>] [--photos 300]
        [--seed 0] [--runs-dir runs] [--submissions-dir submissions]

Default predictor: the one `predict` picks (the newest ensemble in submissions/, else the best trial).
The photos (tests/photos.py) are real MNIST digits from the mirror's test rows, which no trial trains on,
drawn large in dark ink on paper, turned a few degrees, some on ruled paper, with camera noise and JPEG;
each is taken twice, evenly lit and under uneven light (a gradient of any direction and strength, and a
soft shadow on half of them). "before" is the preprocessing as it was, which took the whole paper's level
from the border (kept below as the baseline); "after" is `predict.prepare` today. The same digits as
28x28 MNIST images give the model's own accuracy, the ceiling for both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from kaggle_digits import IMAGE_SHAPE  # noqa: E402
from kaggle_digits.data import dataset as data  # noqa: E402
from kaggle_digits.data.paths import BUNDLED_MNIST_DIR  # noqa: E402
from kaggle_digits.errors import UserError  # noqa: E402
from kaggle_digits.predict import predictor as predict  # noqa: E402
from tests import photos  # noqa: E402

FIRST_TEST_ROW = 1000  # the photos' digits: mirror test rows from here on


def baseline_to_mnist(gray: np.ndarray) -> np.ndarray:
    """The preprocessing before the background was evened out: one paper level (the border's median)
    for the whole image, and the crop around every pixel above the paper floor."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    darker, lighter = paper - float(gray.min()), float(gray.max()) - paper
    ink = (paper - gray) if darker >= lighter else (gray - paper)
    strength = max(darker, lighter)
    if strength < predict.MIN_INK_CONTRAST:
        raise UserError("no ink found")
    ink = np.clip((ink / strength - predict.PAPER_FLOOR) / (1.0 - predict.PAPER_FLOOR), 0.0, 1.0)
    rows, cols = np.nonzero(ink)
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = ink.shape
    scale = predict.DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    patch = np.clip(np.asarray(Image.fromarray(ink).resize(size, resample), dtype=np.float32), 0.0, 1.0)
    if patch.max() <= 0:
        patch = np.ones_like(patch)
    patch /= patch.max()
    field_h, field_w = IMAGE_SHAPE
    total = patch.sum()
    centre_row = float(np.arange(patch.shape[0]) @ patch.sum(axis=1)) / total
    centre_col = float(np.arange(patch.shape[1]) @ patch.sum(axis=0)) / total
    top = int(np.clip(round(field_h / 2 - centre_row), 0, field_h - patch.shape[0]))
    left = int(np.clip(round(field_w / 2 - centre_col), 0, field_w - patch.shape[1]))
    out = np.zeros(IMAGE_SHAPE, dtype=np.float32)
    out[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return np.round(out * 255).astype(np.uint8)


def prepared(files: list[bytes], to_mnist) -> np.ndarray:
    """Each photo as a 28x28 digit; a photo the preprocessing refuses becomes a blank image (wrong)."""
    out = np.zeros((len(files), *IMAGE_SHAPE), dtype=np.uint8)
    for i, content in enumerate(files):
        try:
            out[i] = to_mnist(predict.read_gray(content))
        except UserError:
            pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--ensemble")
    which.add_argument("--trial")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--submissions-dir", default="submissions")
    args = parser.parse_args()

    predictor = predict.load_predictor(args.runs_dir, args.submissions_dir, args.ensemble, args.trial)
    print(f"predictor: {predict.summary(predictor)}")
    X, y = data.load_mnist(BUNDLED_MNIST_DIR)
    _, test_idx = data.mirror_split(len(X))
    rows = test_idx[FIRST_TEST_ROW : FIRST_TEST_ROW + args.photos]
    shots = photos.photo_set(X[rows], y[rows], seed=args.seed)
    files = {"even": [photos.render(p, even=True) for p in shots], "uneven": [photos.render(p) for p in shots]}
    labels = y[rows]
    mnist_accuracy = float((predictor.predict_proba(X[rows]).argmax(axis=1) == labels).mean())
    print(f"{len(rows)} photos (seed {args.seed}); the same digits as 28x28 MNIST: accuracy {mnist_accuracy:.3f}")
    ruled = np.array([p.ruled for p in shots])
    subsets = {"all": np.ones(len(shots), dtype=bool), "plain paper": ~ruled, "ruled paper": ruled}
    print(f"{'photos':<12} {'n':>4}  {'light':<7} {'before':>7} {'after':>7}")
    for light, contents in files.items():
        right = [
            predictor.predict_proba(prepared(contents, to_mnist)).argmax(axis=1) == labels
            for to_mnist in (baseline_to_mnist, predict.to_mnist)
        ]
        for subset, chosen in subsets.items():
            before, after = (float(r[chosen].mean()) for r in right)
            print(f"{subset:<12} {chosen.sum():>4}  {light:<7} {before:>7.3f} {after:>7.3f}")


if __name__ == "__main__":
    main()
