"""One lever at a time: a family's default (the cnn's unless --model names another) trained in two or more
variants ("arms") on the same fold, side by side (one process each, as the pipeline's folds run), over
several seeds. Arms of different families compare members: an arm that names a "model" starts from that
family's default.

    python benchmarks/ablation.py '{}' '{"dropout": 0.4}'                     # one param of the default
    python benchmarks/ablation.py '{"precision": "float32"}' '{"precision": "fast"}'   # bf16 against float32
    python benchmarks/ablation.py --teacher RUNS/cnn-aug-budget/trial-0 '{}' '{"pseudo": 0.99, "epochs": 7}'
    python benchmarks/ablation.py "$RECIPE" '{}'     # the strided net, dropout, schedule and order of before against the default
    python benchmarks/ablation.py --ensembles --jobs 2 '{}' '{"seed": 100}' '{"downsample": "stride"}'   # diversity
    python benchmarks/ablation.py --model simplecnn '{}' '{"width": 0.5}' '{"kernel": 3, "width": 0.5}'
    python benchmarks/ablation.py --ensembles '{}' '{"model": "simplecnn", "width": 0.5}'   # a second member
    # with RECIPE='{"downsample": "stride", "dropout": 0.4, "norm_last": false, "schedule": "exponential", "lr": 0.001}'
    # (the default before the one-cycle, max-pooling and dropout 0.2)

Each arm is a JSON object: "epochs" (that arm's epoch cap, default --epochs), "precision" (default
fast), "pseudo" (add the test images that the --teacher trials' averaged test predictions give at
least this probability, labelled with their prediction: the toolkit's own predictions, never
solution.csv), "seed" (added to the seed the arm trains with; the fold split stays the seed's), "model"
(the Keras family it trains, default --model), anything else overrides that family's default params
(augmented). The levers measured and not adopted (EMA of the
weights, label smoothing, snapshot ensembles, elastic distortion, random erasing) left the toolkit: their
rows in docs/experiments.md name the commit they ran at, where this script still takes them. Seed s trains on all but one of the --folds
(default 4) folds of a stratified split with seed s and scores that one (held-out train rows): `--folds
2` is the fold of a plan that trains two folds at once. Printed: each seed's accuracies and seconds,
then each arm's mean accuracy, its mean paired difference from the first arm with the standard error,
and its training time as a ratio to the first arm's. With --ensembles, also each pair of arms' accuracy
when their held-out probabilities are averaged (what two members of an ensemble give), against the
first pair's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

FOLDS = 4
ARM_OPTIONS = ("epochs", "precision", "pseudo", "seed", "model")  # an arm's keys that are not params


def fit_arm(
    arm: dict, seed: int, epochs: int, data_dir: str, teacher: list[str], folds: int, report
) -> tuple[float, float, int, np.ndarray, np.ndarray]:
    """(held-out accuracy, training seconds, training images per epoch, held-out probabilities, held-out
    labels) of one arm (its "model" filled in), in a child process."""
    from kaggle_digits.models import hardware

    hardware.configure(arm.get("precision", "fast"))
    from sklearn.model_selection import StratifiedKFold

    from kaggle_digits import models
    from kaggle_digits.data.dataset import load_dataset

    data = load_dataset(data_dir)
    fit, held_out = next(
        iter(StratifiedKFold(folds, shuffle=True, random_state=seed).split(data.X_train, data.y_train))
    )
    X, y = data.X_train[fit], data.y_train[fit]
    if "pseudo" in arm:
        proba = np.mean([np.load(Path(trial) / "test.npy") for trial in teacher], axis=0)
        sure = proba.max(axis=1) >= float(arm["pseudo"])
        X = np.concatenate([X, data.X_test[sure]])
        y = np.concatenate([y, proba[sure].argmax(axis=1).astype(y.dtype)])
    spec = models.get(arm["model"])
    params = spec.default_params(augment=True)
    params |= {k: v for k, v in arm.items() if k not in ARM_OPTIONS}
    started = time.monotonic()
    max_epochs, fit_seed = int(arm.get("epochs", epochs)), seed + int(arm.get("seed", 0))
    fitted = spec.fit(params, X, y, max_epochs=max_epochs, seed=fit_seed, verbose=False)
    seconds = time.monotonic() - started
    proba = spec.predict_proba(fitted.model, data.X_train[held_out])
    labels = data.y_train[held_out]
    return float((proba.argmax(axis=1) == labels).mean()), seconds, len(y), proba, labels


def paired(values: np.ndarray, k: int) -> tuple[float, float]:
    """Column k's mean difference from column 0 over the seeds (rows), and its standard error."""
    diff = values[:, k] - values[:, 0]
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return float(diff.mean()), float(se)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arms", nargs="+", help="JSON objects, the first the baseline")
    parser.add_argument("--epochs", type=int, default=13, help="epochs of an arm that names none (default 13)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--folds", type=int, default=FOLDS, help=f"folds of the split (default {FOLDS})")
    parser.add_argument("--data-dir", default=str(CHECKOUT / "data"))
    parser.add_argument("--teacher", default="", help="comma-separated trial folders whose test.npy label pseudo arms")
    parser.add_argument("--jobs", type=int, default=0, help="arms trained at once (default: all)")
    parser.add_argument("--ensembles", action="store_true", help="also each pair of arms averaged")
    parser.add_argument("--model", default="cnn", help="the family of an arm that names none (default cnn)")
    args = parser.parse_args()

    from kaggle_digits import models
    from kaggle_digits.search import processes

    arms = [json.loads(arm) for arm in args.arms]
    for arm in arms:
        if not isinstance(arm, dict):
            parser.error(f"an arm is a JSON object, not {json.dumps(arm)}")
        if arm.get("model", args.model) not in models.FAMILIES:
            parser.error(f"arm {json.dumps(arm)}: unknown model, choose from {', '.join(models.FAMILIES)}")
    # Each arm trains its own family; the printed arms show the model only where an arm named one.
    filled = [{"model": args.model, **arm} for arm in arms]
    teacher = [t for t in args.teacher.split(",") if t]
    if any("pseudo" in arm for arm in arms) and not teacher:
        parser.error("a pseudo arm needs --teacher")
    accuracy, seconds, pairs = [], [], []
    pair_arms = list(itertools.combinations(range(len(arms)), 2)) if args.ensembles else []
    for seed in (int(s) for s in args.seeds.split(",")):
        tasks = [
            processes.Task(fit_arm, (arm, seed, args.epochs, args.data_dir, teacher, args.folds), f"arm {k + 1}")
            for k, arm in enumerate(filled)
        ]
        results = processes.run(tasks, args.jobs or len(arms))
        accuracy.append([r[0] for r in results])
        seconds.append([r[1] for r in results])
        labels = results[0][4]
        pairs.append([float(((results[a][3] + results[b][3]).argmax(axis=1) == labels).mean()) for a, b in pair_arms])
        print(
            f"seed {seed}: "
            + "  ".join(
                f"{json.dumps(arm)} {r[0]:.5f} ({r[1]:.0f} s, {r[2]:,} images)" for arm, r in zip(arms, results)
            ),
            flush=True,
        )
        if pair_arms:
            averaged = "  ".join(f"{a + 1} + {b + 1} {v:.5f}" for (a, b), v in zip(pair_arms, pairs[-1]))
            print(f"  averaged: {averaged}", flush=True)
    acc, secs = np.array(accuracy), np.array(seconds)
    print(f"\n{'arm':<44} {'accuracy':>9} {'vs first':>9} {'SE':>8} {'time':>6}")
    for k, arm in enumerate(arms):
        mean, se = paired(acc, k)
        ratio = np.median(secs[:, k] / secs[:, 0])
        print(f"{json.dumps(arm):<44} {acc[:, k].mean():9.5f} {mean:+9.5f} {se:8.5f} {ratio:5.2f}x")
    if pair_arms:
        both = np.array(pairs)
        print(f"\n{'arms averaged':<14} {'accuracy':>9} {'vs first':>9} {'SE':>8}   (per seed)")
        for k, (a, b) in enumerate(pair_arms):
            mean, se = paired(both, k)
            per_seed = " ".join(f"{v:.5f}" for v in both[:, k])
            print(f"{f'{a + 1} + {b + 1}':<14} {both[:, k].mean():9.5f} {mean:+9.5f} {se:8.5f}   {per_seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
