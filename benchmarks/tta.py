"""Test-time augmentation on a finished run's fold models: does averaging the predictions of shifted,
rotated or zoomed copies of each image beat the plain prediction?

    python benchmarks/tta.py --runs-dir RUNS --studies cnn-aug-budget,cnn-aug-budget-run2

For each study's best trial, every fold model predicts its own held-out rows (the fold split is
recomputed from the trial's seed and checked against its saved OOF) and the test set, once per view:
the image itself, the four one-pixel shifts, the four diagonal ones, rotations of -6 and +6 degrees and
zooms of 0.92 and 1.08. A view set is scored the same way on both sides: its views' mean probability, for
the OOF rows and for the test set, averaged over the studies as the ensemble averages them. Printed per
view set: OOF accuracy and local leaderboard (data/solution.csv, through the toolkit's scorer), each as a
difference from the plain prediction of the same models, and the prediction time as a ratio to it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from kaggle_digits.blend import submission  # noqa: E402
from kaggle_digits.data.dataset import load_dataset  # noqa: E402
from kaggle_digits.search import runs  # noqa: E402

SHIFTS = [(1, 0), (-1, 0), (0, 1), (0, -1)]
DIAGONALS = [(1, 1), (1, -1), (-1, 1), (-1, -1)]


def shifted(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Images moved dx columns right and dy rows down, the uncovered border black."""
    out = np.zeros_like(images)
    h, w = images.shape[1:3]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def affine(images: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    """Images rotated and zoomed about their centre with the training augmentation's resampling."""
    import tensorflow as tf

    from kaggle_digits.models import augment

    n = len(images)
    matrices = augment.affine_matrices(
        tf.fill([n], degrees * np.pi / 180), tf.fill([n], scale), tf.zeros([n]), tf.zeros([n]), 28, 28
    )
    out = augment.transform(tf.constant(images[..., None].astype(np.float32)), matrices).numpy()[..., 0]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def views() -> dict[str, object]:
    chosen: dict[str, object] = {"plain": lambda a: a}
    for dx, dy in SHIFTS + DIAGONALS:
        chosen[f"shift {dx:+d},{dy:+d}"] = lambda a, dx=dx, dy=dy: shifted(a, dx, dy)
    for degrees in (-6, 6):
        chosen[f"rotate {degrees:+d}"] = lambda a, d=degrees: affine(a, d, 1.0)
    for scale in (0.92, 1.08):
        chosen[f"zoom {scale}"] = lambda a, s=scale: affine(a, 0.0, s)
    return chosen


def view_sets(names: list[str]) -> dict[str, list[str]]:
    shifts = [f"shift {dx:+d},{dy:+d}" for dx, dy in SHIFTS]
    diagonals = [f"shift {dx:+d},{dy:+d}" for dx, dy in DIAGONALS]
    turns, zooms = ["rotate -6", "rotate +6"], ["zoom 0.92", "zoom 1.08"]
    return {
        "plain": ["plain"],
        "+ 4 shifts": ["plain", *shifts],
        "+ 8 shifts": ["plain", *shifts, *diagonals],
        "+ rotations": ["plain", *turns],
        "+ zooms": ["plain", *zooms],
        "+ 4 shifts + rotations": ["plain", *shifts, *turns],
        "all 13 views": names,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--studies", required=True, help="comma-separated studies (their best trial each)")
    parser.add_argument("--data-dir", default=str(CHECKOUT / "data"))
    args = parser.parse_args()

    from sklearn.model_selection import StratifiedKFold

    from kaggle_digits.models import keras_common as kc

    data = load_dataset(args.data_dir)
    chosen = views()
    oof = {name: [] for name in chosen}
    test = {name: [] for name in chosen}
    seconds = dict.fromkeys(chosen, 0.0)
    rows = None
    for study in args.studies.split(","):
        trial = runs.list_trials(args.runs_dir, [study])[0]
        rows = trial.oof_rows
        folds = int(trial.info["folds"])
        X, y = data.X_train[rows], data.y_train[rows]
        splits = StratifiedKFold(folds, shuffle=True, random_state=int(trial.info["seed"])).split(X, y)
        study_oof = {name: np.zeros((len(rows), 10), np.float32) for name in chosen}
        study_test = {name: np.zeros((len(data.X_test), 10), np.float64) for name in chosen}
        for k, (_, held_out) in enumerate(splits):
            model = kc.load(trial.path / f"fold-{k}.keras")
            for name, view in chosen.items():
                t0 = time.monotonic()
                study_oof[name][held_out] = kc.predict_proba(model, view(X[held_out]))
                study_test[name] += kc.predict_proba(model, view(data.X_test)) / folds
                seconds[name] += time.monotonic() - t0
            gap = np.abs(study_oof["plain"][held_out] - trial.oof_proba[held_out]).max()
            print(f"{study} fold {k + 1}/{folds}: {len(chosen)} views predicted (plain vs saved OOF: {gap:.1e})")
        for name in chosen:
            oof[name].append(study_oof[name])
            test[name].append(study_test[name])

    y = data.y_train[rows]
    solution = Path(args.data_dir) / "solution.csv"
    with tempfile.TemporaryDirectory() as folder:

        def local(proba: np.ndarray) -> float:
            path = Path(folder) / f"submission-{len(scores)}.csv"  # submissions are never overwritten
            submission.write_submission(path, proba.argmax(axis=1))
            return submission.score_local(path, solution).accuracy

        scores = {}
        for label, names in view_sets(list(chosen)).items():
            o = np.mean([np.mean([oof[n][s] for n in names], axis=0) for s in range(len(oof["plain"]))], axis=0)
            t = np.mean([np.mean([test[n][s] for n in names], axis=0) for s in range(len(test["plain"]))], axis=0)
            scores[label] = (float((o.argmax(axis=1) == y).mean()), local(t), sum(seconds[n] for n in names))
    base_oof, base_local, base_seconds = scores["plain"]
    print(f"\n{'views':<24} {'OOF':>8} {'vs plain':>9} {'local':>8} {'vs plain':>9} {'predict time':>13}")
    for label, (o, loc, s) in scores.items():
        print(
            f"{label:<24} {o:8.5f} {o - base_oof:+9.5f} {loc:8.5f} {loc - base_local:+9.5f} {s / base_seconds:12.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
