"""`ensemble`: blend the best tuned trials with weights chosen on out-of-fold probabilities only.

Candidates are the best finished trials of each study. Only trials whose OOF probabilities cover the same
train.csv rows of the same data can be blended; the largest such group is kept and the rest are named.
Weights come from the OOF rows alone (greedy ensemble selection, optimised weights or a plain mean), the
test probabilities are blended with the same weights, and the result is written as a submission plus a
JSON file that describes the blend completely (a later loader rebuilds the predictor from it).
Test labels (solution.csv) are read only afterwards, by `submission.score_local`, to print the local score.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from kaggle_digits import N_CLASSES, __version__, seeds
from kaggle_digits.blend import manifest, submission
from kaggle_digits.blend.manifest import blend
from kaggle_digits.blend.submission import Score
from kaggle_digits.data import dataset as data
from kaggle_digits.data.paths import Paths
from kaggle_digits.errors import UserError
from kaggle_digits.io import writing_to
from kaggle_digits.progress import Log, silent
from kaggle_digits.search import runs, storage
from kaggle_digits.search.listing import list_trials

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
    Whatever the method, a blend whose OOF accuracy is below the best single candidate's is replaced by that
    candidate alone, so the result never scores below the best single trial on these rows.
    """
    if method not in METHODS:
        raise UserError(f"--method {method}: choose one of {', '.join(METHODS)}")
    m = len(probas)
    if m == 1:
        return Weights(np.ones(1), method)
    if method == "mean":
        weights = np.full(m, 1.0 / m)
    elif method == "greedy":
        weights = _bagged_greedy(probas, _true_class(probas, y), y, np.random.default_rng(seed))
    else:
        weights = _optimised(_true_class(probas, y))
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
    assert best_counts is not None, "finite probabilities give a finite first loss"  # runs.unusable checks them
    return best_counts / best_counts.sum()


def _bagged_greedy(probas: np.ndarray, truth: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = truth.shape[1]
    bags = [_greedy(probas, truth, y, np.asarray(rng.integers(0, n, n))) for _ in range(GREEDY_BAGS)]
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
    unreachable: list[tuple[str, str]] = field(default_factory=list)  # (name, why): trials whose files are missing
    n_test: int | None = None  # rows of test.csv, when candidates were checked against it


def candidates(
    runs_dir: Path,
    studies: list[str] | None,
    top: int,
    storage_url: str | None = None,
    artifacts: str | None = None,
    log: Log = silent,
    test_csv: Path | None = None,
) -> Candidates:
    """The `top` best finished trials of each study, reduced to the largest group that can be blended.

    Trials come from the folders in runs_dir, or with `storage_url` from that Optuna storage, wherever their
    files are (listing.list_trials: the trial folder, a shared runs folder, or the artifact store).
    test_csv : when given, a trial whose test.npy has not one row per row of this file is left out too.
    """
    if top < 1:
        raise UserError(f"--top {top}: must be at least 1")
    listing = list_trials(runs_dir, studies, storage=storage_url, artifacts=artifacts, top=top, log=log)
    chosen = listing.trials  # best CV first, at most `top` per study
    if not chosen:
        where = f"studies {', '.join(studies)}" if studies else str(runs_dir)
        if storage_url:
            where += f" of {storage.display_url(storage_url)}"
        raise UserError(f"no finished trials in {where}: run `python scripts/tune.py --model cnn` first")
    n_test = _test_rows(test_csv) if test_csv is not None else None
    # A trial whose arrays are missing, truncated, damaged or of other data is left out with the reason.
    damaged = [(t, why) for t in chosen if (why := _unusable(t, test_csv, n_test)) is not None]
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
    return Candidates(kept, np.sort(kept[0].oof_rows), damaged + skipped, list(listing.unreachable), n_test)


def _unusable(trial: runs.TrialRun, test_csv: Path | None, n_test: int | None) -> str | None:
    """runs.unusable, and a test.npy without one row per row of test_csv."""
    why = runs.unusable(trial)
    if why is None and n_test is not None and len(trial.test_proba) != n_test:
        why = f"test.npy has {len(trial.test_proba):,} rows, but {test_csv} has {n_test:,} (tuned on other data?)"
    return why


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


@dataclass(frozen=True)
class Member:
    """One blendable trial, how it scores alone on the OOF rows, and its weight in the blend."""

    trial: runs.TrialRun
    oof_accuracy: float
    oof_log_loss: float
    weight: float


@dataclass
class Result:
    """What `build` chose, wrote and measured."""

    submission: Path
    manifest: Path
    method: str
    note: str  # why the method's blend was replaced, or ""
    found: Candidates
    members: list[Member]  # every blendable trial, weight 0 included, in candidate order
    cv_accuracy: float  # the blend's OOF accuracy
    cv_log_loss: float
    best_single: Member  # the best blendable trial alone
    heldout_accuracy: float
    local_score: Score | None
    n_test: int
    seconds: float  # fitting the weights

    @property
    def weights(self) -> dict[str, float]:
        """`<study>/trial-<n>` -> weight, non-zero only."""
        return {m.trial.name: m.weight for m in self.members if m.weight > 0}


def build(
    paths: Paths,
    studies: list[str] | None = None,
    top: int = DEFAULT_TOP,
    method: str = DEFAULT_METHOD,
    name: str = DEFAULT_NAME,
    seed: int = DEFAULT_SEED,
    storage_url: str | None = None,
    artifacts: str | None = None,
    log: Log = silent,
) -> Result:
    """Choose trials and weights on OOF, write the blended submission, its manifest and a history row.

    storage_url : read the trials from this Optuna storage instead of the folders in paths.runs_dir.
    """
    if method not in METHODS:
        raise UserError(f"--method {method}: choose one of {', '.join(METHODS)}")
    seeds.check_seed(seed)
    found = candidates(paths.runs_dir, studies, top, storage_url, artifacts, log, test_csv=paths.test_csv)
    assert found.n_test is not None
    n_test = found.n_test
    y_train = _train_labels(paths, found.rows, found.trials[0])
    oof = np.stack([_aligned(t) for t in found.trials])
    test = np.stack([t.test_proba for t in found.trials])

    started = time.monotonic()
    chosen = fit_weights(oof, y_train, method, seed)
    heldout = heldout_accuracy(oof, y_train, method, seed)
    seconds = time.monotonic() - started
    blended_oof = blend(oof, chosen.weights)
    cv_acc, cv_loss = accuracy(blended_oof, y_train), log_loss(blended_oof, y_train)
    members = [
        Member(t, accuracy(p, y_train), log_loss(p, y_train), float(w))
        for t, p, w in zip(found.trials, oof, chosen.weights)
    ]
    best = max(members, key=lambda m: m.oof_accuracy)

    labels = blend(test, chosen.weights).argmax(axis=1).astype(np.int64)
    out = _write_unique(paths.submissions_dir, name, cv_acc, labels)
    # The submission, its manifest and its history row are one unit: when a later step fails (a full disk,
    # Ctrl-C) the files written here are removed, so no submission is left without the other two.
    written_json: Path | None = None
    try:
        with writing_to(paths.submissions_dir):
            local = submission.score_local(out, paths.solution_csv) if paths.solution_csv.exists() else None
            written_json = manifest.write(
                manifest.path_for(out),
                [
                    manifest.Member(
                        name=m.trial.name,
                        weight=m.weight,
                        path=m.trial.path,
                        model=m.trial.model,
                        augment=bool(m.trial.info.get("augment", False)),
                        params=m.trial.params,
                        cv_accuracy=m.trial.cv_accuracy,
                        cv_std=m.trial.cv_std,
                        oof_accuracy=m.oof_accuracy,
                        oof_log_loss=m.oof_log_loss,
                    )
                    for m in members
                ],
                submission=out.name,
                created=datetime.now().isoformat(timespec="seconds"),
                toolkit_version=__version__,
                method=method,
                method_description=METHODS[method],
                note=chosen.note,
                seed=seed,
                candidates_with_zero_weight=[m.trial.name for m in members if m.weight == 0],
                skipped=[{"name": t.name, "path": str(t.path.resolve()), "reason": why} for t, why in found.skipped],
                data=found.trials[0].info.get("data"),
                oof_rows=len(y_train),
                n_test=n_test,
                cv_accuracy=cv_acc,
                oof_log_loss=cv_loss,
                heldout_accuracy=heldout,
                best_single={"name": best.trial.name, "oof_accuracy": best.oof_accuracy},
                gain_over_best_single=cv_acc - best.oof_accuracy,
                local_score=None if local is None else local.as_dict(),
            )
            submission.append_history(
                paths.history_csv,
                out,
                cv_accuracy=cv_acc,
                local_score=None if local is None else local.accuracy,
                message=f"ensemble ({method}) of {', '.join(m.trial.name for m in members if m.weight > 0)}",
            )
    except BaseException:
        for path in (written_json, out):
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    return Result(
        out, written_json, method, chosen.note, found, members, cv_acc, cv_loss, best, heldout, local, n_test, seconds
    )


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


def _test_rows(test_csv: Path) -> int:
    """Rows of test.csv: every blended trial's test.npy must have one per test image."""
    if not test_csv.exists():
        raise UserError(f"{test_csv} not found: run `python scripts/download.py` first")
    return data.count_rows(test_csv)


def _write_unique(folder: Path, name: str, cv_accuracy: float, labels: np.ndarray) -> Path:
    """Write the submission under a fresh time-stamped name, free for its manifest too (never overwriting one
    written this second)."""
    while True:
        path = folder / submission.submission_name(name, cv_accuracy)
        if not path.exists() and not manifest.path_for(path).exists():
            return submission.write_submission(path, labels)
        time.sleep(0.25)
