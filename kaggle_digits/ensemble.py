"""`ensemble`: blend the best tuned trials with weights chosen on out-of-fold probabilities only.

Candidates are the best finished trials of each study. Only trials whose OOF probabilities cover the same
train.csv rows of the same data can be blended; the largest such group is kept and the rest are named.
Weights come from the OOF rows alone (greedy ensemble selection, optimised weights or a plain mean), the
test probabilities are blended with the same weights, and the result is written as a submission plus a
JSON file that describes the blend completely (a later loader rebuilds the predictor from it).
Test labels (solution.csv) are read only afterwards, by `submission.score_local`, to print the local score.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from . import N_CLASSES, __version__, data, report, runs, seeds, storage, submission
from .errors import UserError
from .io import write_json
from .paths import Paths

HELP = "blend the best tuned trials (weights chosen on out-of-fold predictions) and write a submission"

METHODS = {
    "greedy": "greedy ensemble selection with replacement on OOF log-loss (Caruana et al. 2004), bagged",
    "weights": "non-negative weights summing to 1 that minimise OOF log-loss (SLSQP)",
    "mean": "the plain mean of all blendable candidates",
}
DEFAULT_METHOD = "greedy"
DEFAULT_TOP = 5  # candidates per study
DEFAULT_NAME = "ensemble"
DEFAULT_SEED = 0
GREEDY_ROUNDS = 25  # additions per bag; the best prefix is kept, so more rounds can only refine
GREEDY_BAGS = 10  # bootstrap resamples of the OOF rows; their weights are averaged (less OOF overfitting)
HELDOUT_SPLITS = 5  # the honest check: fit weights on 4/5 of the OOF rows, score the other 1/5
PROBA_FLOOR = 1e-7  # log-loss clips probabilities here, so one confident mistake cannot dominate
MIN_WEIGHT = 1e-3  # optimised weights below this are dropped (then the rest are renormalised)
TIE = 1e-12  # log-losses closer than this are a tie, broken by accuracy


# --- the math: probabilities in, weights out ------------------------------------------------------


def blend(probas: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of class probabilities.

    probas : float array of shape (m, n, 10), one slice per trial
    weights : float array of shape (m,), non-negative, summing to 1
    Returns float32 of shape (n, 10), rows summing to 1.
    """
    return np.tensordot(np.asarray(weights, dtype=np.float64), probas, axes=1).astype(np.float32)


def log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-probability of the true class; proba (n, 10), y (n,) ints 0..9."""
    return float(-np.log(np.maximum(proba[np.arange(len(y)), y], PROBA_FLOOR)).mean())


def accuracy(proba: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose most probable class is y; proba (n, 10), y (n,)."""
    return float((proba.argmax(axis=1) == y).mean())


@dataclass
class Weights:
    """Blend weights chosen on OOF rows, and how."""

    weights: np.ndarray  # float64 (m,), non-negative, summing to 1
    method: str
    note: str = ""  # e.g. why the best single trial was kept instead of a blend


def fit_weights(probas: np.ndarray, y: np.ndarray, method: str = DEFAULT_METHOD, seed: int = DEFAULT_SEED) -> Weights:
    """Choose blend weights on OOF probabilities only.

    probas : float array (m, n, 10): each candidate's OOF probabilities for the same n rows, best CV first
    y : int array (n,): the train labels of those rows
    For `greedy` and `weights`, a blend whose OOF accuracy is below the best single candidate's is replaced
    by that candidate alone, so the result never scores below the best single trial on these rows.
    """
    if method not in METHODS:
        raise UserError(f"--method {method}: choose one of {', '.join(METHODS)}")
    m = len(probas)
    if m == 1:
        return Weights(np.ones(1), method)
    truth = _true_class(probas, y)
    if method == "mean":
        return Weights(np.full(m, 1.0 / m), method)
    if method == "greedy":
        weights = _bagged_greedy(probas, truth, y, np.random.default_rng(seed))
    else:
        weights = _optimised(truth)
    single_acc = np.array([accuracy(p, y) for p in probas])
    best = int(np.argmax(single_acc))  # first of equals: the better CV
    blend_acc = accuracy(blend(probas, weights), y)
    if blend_acc < single_acc[best]:
        one = np.zeros(m)
        one[best] = 1.0
        return Weights(
            one,
            method,
            note=f"the blend's OOF accuracy {blend_acc:.5f} was below the best single trial's "
            f"{single_acc[best]:.5f}: that trial alone is used",
        )
    return Weights(weights, method)


def heldout_accuracy(probas: np.ndarray, y: np.ndarray, method: str, seed: int = DEFAULT_SEED) -> float:
    """Accuracy of the weight-fitting procedure on OOF rows it did not see (an honest check of the blend).

    The n rows are split in HELDOUT_SPLITS parts; weights fitted on the other parts score each part.
    """
    from sklearn.model_selection import StratifiedKFold

    splits = StratifiedKFold(HELDOUT_SPLITS, shuffle=True, random_state=seed)
    correct = 0
    for fit_rows, score_rows in splits.split(np.zeros(len(y)), y):
        chosen = fit_weights(probas[:, fit_rows], y[fit_rows], method, seed)
        correct += int((blend(probas[:, score_rows], chosen.weights).argmax(axis=1) == y[score_rows]).sum())
    return correct / len(y)


def _true_class(probas: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(m, n) float64: each candidate's probability of the true class. A blend's log-loss needs only this,
    because blended rows still sum to 1."""
    return probas[:, np.arange(len(y)), y].astype(np.float64)


def _greedy(probas: np.ndarray, truth: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Ensemble selection with replacement on `rows`: start from the best single candidate, add the one
    that lowers log-loss most, GREEDY_ROUNDS times; keep the best prefix. Returns counts / total."""
    t = truth[:, rows]
    m = len(t)
    counts = np.zeros(m)
    total = np.zeros(t.shape[1])
    best_counts, best_loss = None, np.inf
    for k in range(GREEDY_ROUNDS):
        # Log-loss of the current blend plus each candidate, all m at once.
        losses = -np.log(np.maximum((total + t) / (k + 1), PROBA_FLOOR)).mean(axis=1)
        pick = int(np.argmin(losses))
        tied = np.flatnonzero(losses <= losses[pick] + TIE)
        if len(tied) > 1:
            # Ties (e.g. two identical trials) go to the blend with more right answers, then to better CV.
            base = np.tensordot(counts, probas[:, rows], axes=1)
            correct = [int(((base + probas[i, rows]).argmax(axis=1) == y[rows]).sum()) for i in tied]
            pick = int(tied[int(np.argmax(correct))])
        counts[pick] += 1
        total += t[pick]
        if losses[pick] < best_loss - TIE:
            best_counts, best_loss = counts.copy(), losses[pick]
    return best_counts / best_counts.sum()


def _bagged_greedy(probas: np.ndarray, truth: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = truth.shape[1]
    bags = [_greedy(probas, truth, y, rng.integers(0, n, n)) for _ in range(GREEDY_BAGS)]
    return np.mean(bags, axis=0)


def _optimised(truth: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise OOF log-loss (SLSQP, analytic gradient)."""
    from scipy.optimize import minimize

    m, n = truth.shape

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        p = np.maximum(w @ truth, PROBA_FLOOR)
        return float(-np.log(p).mean()), -(truth / p).sum(axis=1) / n

    found = minimize(
        loss_and_grad,
        np.full(m, 1.0 / m),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    w = np.where(found.x < MIN_WEIGHT, 0.0, found.x)
    return w / w.sum()


# --- trials: candidates and the blendable group ----------------------------------------------------


@dataclass
class Candidates:
    """The blendable trials (same OOF rows, same data) and the ones left out, with the reason."""

    trials: list[runs.TrialRun]
    rows: np.ndarray  # int64 (n,): sorted train.csv rows that every trial's OOF covers
    skipped: list[tuple[runs.TrialRun, str]] = field(default_factory=list)


def candidates(
    runs_dir: Path,
    studies: list[str] | None,
    top: int,
    storage_url: str | None = None,
    artifacts: str | None = None,
) -> Candidates:
    """The `top` best finished trials of each study, reduced to the largest group that can be blended.

    Trials come from the folders in runs_dir, or with `storage_url` from that Optuna storage, wherever their
    files are (storage.list_trials: the trial folder, a shared runs folder, or the artifact store).
    """
    if top < 1:
        raise UserError(f"--top {top}: must be at least 1")
    listing = storage.list_trials(runs_dir, studies, storage=storage_url, artifacts=artifacts, top=top)
    for name, why in listing.unreachable:
        print(f"  cannot use {name}: {why}")
    chosen = listing.trials  # best CV first, at most `top` per study
    if not chosen:
        where = f"studies {', '.join(studies)}" if studies else str(runs_dir)
        if storage_url:
            where += f" of {storage.display_url(storage_url)}"
        raise UserError(f"no finished trials in {where}: run `python scripts/tune.py --model cnn` first")
    # A trial whose arrays are missing, truncated or damaged is left out with the reason.
    damaged = [(t, why) for t in chosen if (why := runs.unusable(t)) is not None]
    usable = [t for t in chosen if all(t is not bad for bad, _ in damaged)]
    if not usable:
        reasons = "; ".join(f"{t.name}: {why}" for t, why in damaged)
        raise UserError(f"no usable trials: {reasons}")
    groups: dict[tuple[str, str], list[runs.TrialRun]] = {}
    for trial in usable:
        groups.setdefault(_compatibility_key(trial), []).append(trial)
    # The largest group; among equals, the one holding the best trial (usable is best first).
    key = max(groups, key=lambda k: (len(groups[k]), -usable.index(groups[k][0])))
    kept = groups[key]
    skipped = [(t, _why_not(t, kept[0])) for t in usable if _compatibility_key(t) != key]
    return Candidates(kept, np.sort(kept[0].oof_rows), damaged + skipped)


def _compatibility_key(trial: runs.TrialRun) -> tuple[str, str]:
    """Trials blend only when their data fingerprints are equal and their OOF covers the same rows."""
    fingerprint = json.dumps(trial.info.get("data"), sort_keys=True)
    rows = hashlib.sha256(np.sort(trial.oof_rows).astype(np.int64).tobytes()).hexdigest()
    return fingerprint, rows


def _why_not(trial: runs.TrialRun, reference: runs.TrialRun) -> str:
    mine, theirs = len(trial.oof_rows), len(reference.oof_rows)
    if mine != theirs:
        return f"its OOF covers {mine:,} train rows, the blended group's {theirs:,} (another --subsample)"
    if json.dumps(trial.info.get("data"), sort_keys=True) != json.dumps(reference.info.get("data"), sort_keys=True):
        return f"tuned on other data than {reference.name} (params.json 'data' differs)"
    return f"its OOF covers other train rows than {reference.name} (another --subsample seed)"


def _aligned(trial: runs.TrialRun) -> np.ndarray:
    """A trial's OOF probabilities ordered by train row; checks the artifact's shape."""
    proba, rows = trial.oof_proba, trial.oof_rows
    if proba.shape != (len(rows), N_CLASSES):
        raise UserError(f"{trial.path}: oof.npy has shape {proba.shape}, expected ({len(rows)}, {N_CLASSES})")
    return proba[np.argsort(rows, kind="stable")]


# --- the command -------------------------------------------------------------------------------


@dataclass
class Result:
    """What `build` wrote and measured."""

    submission: Path
    manifest: Path
    cv_accuracy: float  # the blend's OOF accuracy
    best_single: float  # the best constituent candidate's OOF accuracy
    heldout_accuracy: float
    local_score: submission.Score | None
    weights: dict[str, float]  # `<study>/trial-<n>` -> weight (non-zero only)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--studies",
        "--study",
        nargs="+",
        metavar="S",
        help="studies to draw trials from (default: all in --runs-dir, or all in --storage)",
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="read the studies' finished trials from this Optuna storage (a database URL or a journal file), "
        "wherever their files are: their folders, a shared --runs-dir, or the artifact store",
    )
    parser.add_argument(
        "--artifacts",
        metavar="DIR|s3://BUCKET",
        help="the artifact store tune uploaded to (default: the one each trial recorded); files are cached under "
        f"<runs-dir>/{storage.CACHE_DIR}/",
    )
    parser.add_argument(
        "--top", type=int, default=DEFAULT_TOP, metavar="K", help=f"best trials per study (default {DEFAULT_TOP})"
    )
    parser.add_argument(
        "--method",
        choices=list(METHODS),
        default=DEFAULT_METHOD,
        help="; ".join(f"{k}: {v}" for k, v in METHODS.items()) + f" (default {DEFAULT_METHOD})",
    )
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"part of the file name (default '{DEFAULT_NAME}')")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of the greedy bags and checks (default {DEFAULT_SEED})"
    )


def run(args: argparse.Namespace) -> int:
    build(
        args.paths,
        studies=args.studies,
        top=args.top,
        method=args.method,
        name=args.name,
        seed=args.seed,
        storage_url=args.storage,
        artifacts=args.artifacts,
    )
    return 0


def build(
    paths: Paths,
    studies: list[str] | None = None,
    top: int = DEFAULT_TOP,
    method: str = DEFAULT_METHOD,
    name: str = DEFAULT_NAME,
    seed: int = DEFAULT_SEED,
    storage_url: str | None = None,
    artifacts: str | None = None,
) -> Result:
    """Choose trials and weights on OOF, write the blended submission, its JSON and a history row.

    storage_url : read the trials from this Optuna storage instead of the folders in paths.runs_dir.
    """
    if method not in METHODS:
        raise UserError(f"--method {method}: choose one of {', '.join(METHODS)}")
    seeds.check_seed(seed)
    found = candidates(paths.runs_dir, studies, top, storage_url, artifacts)
    n_studies = len({t.study for t in found.trials} | {t.study for t, _ in found.skipped})
    print(
        f"candidates: {len(found.trials) + len(found.skipped)} trials from {n_studies} studies "
        f"(best {top} per study); {len(found.trials)} blendable on the same {len(found.rows):,} OOF rows"
    )
    for trial, why in found.skipped:
        print(f"  skipped {trial.name}: {why}")

    y_train = _train_labels(paths, found.rows, found.trials[0])
    oof = np.stack([_aligned(t) for t in found.trials])
    n_test = _check_test(paths, found.trials)
    test = np.stack([t.test_proba for t in found.trials])

    started = time.monotonic()
    chosen = fit_weights(oof, y_train, method, seed)
    heldout = heldout_accuracy(oof, y_train, method, seed)
    blended_oof = blend(oof, chosen.weights)
    cv_acc, cv_loss = accuracy(blended_oof, y_train), log_loss(blended_oof, y_train)
    singles = [(accuracy(p, y_train), log_loss(p, y_train)) for p in oof]
    best = int(np.argmax([acc for acc, _ in singles]))
    print(f"method {method}: {METHODS[method]} ({time.monotonic() - started:.1f}s)")
    if chosen.note:
        print(f"  {chosen.note}")

    _print_table(found.trials, singles, chosen.weights)
    print(
        f"ensemble OOF accuracy {cv_acc:.5f} (log-loss {cv_loss:.4f}) on {len(y_train):,} rows; "
        f"best single trial {found.trials[best].name} {singles[best][0]:.5f}: gain {cv_acc - singles[best][0]:+.5f}"
    )
    print(
        f"held-out check: weights fitted on {HELDOUT_SPLITS - 1}/{HELDOUT_SPLITS} of the OOF rows score "
        f"{heldout:.5f} on the rest (the OOF figure above is measured on the rows the weights were fitted on)"
    )

    labels = blend(test, chosen.weights).argmax(axis=1).astype(np.int64)
    out = _write_unique(paths.submissions_dir, name, cv_acc, labels)
    local = submission.score_local(out, paths.solution_csv) if paths.solution_csv.exists() else None
    manifest = out.with_suffix(".json")
    weights = {t.name: float(w) for t, w in zip(found.trials, chosen.weights) if w > 0}
    write_json(
        manifest,
        {
            "kind": "ensemble",
            "submission": out.name,
            "created": datetime.now().isoformat(timespec="seconds"),
            "toolkit_version": __version__,
            "method": method,
            "method_description": METHODS[method],
            "note": chosen.note,
            "seed": seed,
            "combine": "weighted mean of each constituent's class probabilities (each the mean over its fold "
            "models); the label is the argmax",
            "constituents": [
                {
                    "name": t.name,
                    "path": str(t.path.resolve()),
                    "model": t.model,
                    "augment": bool(t.info.get("augment", False)),
                    "params": t.params,
                    "weight": float(w),
                    "cv_accuracy": t.cv_accuracy,
                    "cv_std": t.cv_std,
                    "oof_accuracy": acc,
                    "oof_log_loss": loss,
                }
                for t, w, (acc, loss) in zip(found.trials, chosen.weights, singles)
                if w > 0
            ],
            "candidates_with_zero_weight": [t.name for t, w in zip(found.trials, chosen.weights) if w == 0],
            "skipped": [{"name": t.name, "path": str(t.path.resolve()), "reason": why} for t, why in found.skipped],
            "data": found.trials[0].info.get("data"),
            "oof_rows": len(y_train),
            "n_test": n_test,
            "cv_accuracy": cv_acc,
            "oof_log_loss": cv_loss,
            "heldout_accuracy": heldout,
            "best_single": {"name": found.trials[best].name, "oof_accuracy": singles[best][0]},
            "gain_over_best_single": cv_acc - singles[best][0],
            "local_score": None
            if local is None
            else {
                "accuracy": local.accuracy,
                "correct": local.correct,
                "total": local.total,
                "ci95": [local.ci_low, local.ci_high],
            },
        },
    )
    submission.append_history(
        paths.history_csv,
        out,
        cv_accuracy=cv_acc,
        local_score=None if local is None else local.accuracy,
        message=f"ensemble ({method}) of {', '.join(weights)}",
    )
    print(f"wrote {out} ({n_test:,} rows) and {manifest.name}")
    if local is not None:
        print(f"local leaderboard: {local}")
    else:
        print(f"no {paths.solution_csv}: submit the file to get its score (`python scripts/submit.py {out}`)")
    print(f"plots: {report.command_line(paths, submission_file=out)}")
    return Result(out, manifest, cv_acc, singles[best][0], heldout, local, weights)


def _train_labels(paths: Paths, rows: np.ndarray, trial: runs.TrialRun) -> np.ndarray:
    """train.csv's labels for the OOF rows. The trials' data fingerprint must match the current file."""
    if not paths.train_csv.exists():
        raise UserError(f"{paths.train_csv} not found: the ensemble needs the train labels of the OOF rows")
    fingerprint = trial.info.get("data")
    if isinstance(fingerprint, dict) and fingerprint.get("train_sha256"):
        if data.sha256(paths.train_csv) != fingerprint["train_sha256"]:
            raise UserError(
                f"{paths.train_csv} is not the file {trial.name} was tuned on (SHA-256 differs): "
                "use the same --data-dir as tune"
            )
    _, y = data.load_train(paths.train_csv)
    if len(rows) and rows[-1] >= len(y):
        raise UserError(f"{trial.path}: OOF rows go up to {rows[-1]}, but {paths.train_csv} has {len(y):,} rows")
    return y[rows].astype(np.int64)


def _check_test(paths: Paths, trials: list[runs.TrialRun]) -> int:
    """Rows of test.csv; every trial's test.npy must have one row per test image."""
    if not paths.test_csv.exists():
        raise UserError(f"{paths.test_csv} not found: run `python scripts/download.py` first")
    with open(paths.test_csv, "rb") as f:
        n_test = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1
    for trial in trials:
        shape = trial.test_proba.shape
        if shape != (n_test, N_CLASSES):
            raise UserError(
                f"{trial.path}: test.npy has shape {shape}, but {paths.test_csv} has {n_test:,} rows "
                "(tuned on other data?)"
            )
    return n_test


def _write_unique(folder: Path, name: str, cv_accuracy: float, labels: np.ndarray) -> Path:
    """Write the submission under a fresh time-stamped name (never overwriting one written this second)."""
    while True:
        path = folder / submission.submission_name(name, cv_accuracy)
        if not path.exists():
            return submission.write_submission(path, labels)
        time.sleep(0.25)


def _print_table(trials: list[runs.TrialRun], singles: list[tuple[float, float]], weights: np.ndarray) -> None:
    width = max(len("trial"), *(len(t.name) for t in trials))
    model_width = max(len("model"), *(len(t.model) for t in trials))
    print(
        f"  {'trial':<{width}}  {'model':<{model_width}}  {'CV accuracy':>18}  {'OOF acc':>8}  {'OOF loss':>8}  "
        f"{'weight':>6}"
    )
    for trial, (acc, loss), w in zip(trials, singles, weights):
        cv = f"{trial.cv_accuracy:.5f} ± {trial.cv_std:.5f}"
        print(f"  {trial.name:<{width}}  {trial.model:<{model_width}}  {cv:>18}  {acc:>8.5f}  {loss:>8.4f}  {w:>6.3f}")
