"""Stratified k-fold cross-validation of one model: out-of-fold and test probabilities, fold scores.

Every covered train row is predicted exactly once, by the one fold model that did not see it; the test
set is predicted by every fold model and the probabilities are averaged. Works for any ModelSpec.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from kaggle_digits import N_CLASSES
from kaggle_digits.errors import UserError
from kaggle_digits.models.base import ModelSpec, uses_tensorflow
from kaggle_digits.progress import Log, silent, time_left, timing
from kaggle_digits.units import format_seconds

# Called after each epoch of each fold with (fold, epoch, metrics), both 0-based; may raise
# optuna.TrialPruned (or KeyboardInterrupt) to stop the cross-validation.
FoldEpochCallback = Callable[[int, int, dict[str, float]], None]


@dataclass
class CVResult:
    """What a cross-validated fit leaves behind.

    oof_proba : float32 (n_rows, 10); row i is the prediction for train row oof_rows[i]
    oof_rows : int64 (n_rows,), sorted: the train rows covered (all of them unless subsampled)
    test_proba : float32 (n_test, 10), the mean of the fold models' test probabilities
    fold_accuracies, fit_seconds, epochs : one entry per fold
    histories : one dict per fold, {"fold": k, "loss": [...], "val_accuracy": [...], ...}
    models : the fitted fold models
    epoch_seconds : the typical seconds of a fold's epoch after its first, with the folds fitted as
        they ran (side by side or not); None when no fold ran two epochs
    """

    oof_proba: np.ndarray
    oof_rows: np.ndarray
    test_proba: np.ndarray
    fold_accuracies: list[float]
    fit_seconds: list[float]
    epochs: list[int]
    histories: list[dict[str, Any]]
    models: list[Any]
    epoch_seconds: float | None = None

    @property
    def cv_accuracy(self) -> float:
        """Mean fold accuracy: the number a trial is judged by."""
        return float(np.mean(self.fold_accuracies))

    @property
    def cv_std(self) -> float:
        return float(np.std(self.fold_accuracies))

    def metrics(self) -> dict[str, Any]:
        """The JSON-ready summary written to a trial's metrics.json."""
        return {
            "cv_accuracy": self.cv_accuracy,
            "cv_std": self.cv_std,
            "fold_accuracies": self.fold_accuracies,
            "fit_seconds": float(sum(self.fit_seconds)),
            "fold_fit_seconds": self.fit_seconds,
            "epochs": self.epochs,
            "n_rows": int(len(self.oof_rows)),
            "n_test": int(len(self.test_proba)),
            "epoch_seconds": self.epoch_seconds,
        }


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted int64 indices of a stratified random subset of n of the labels y (n,)."""
    if n >= len(y):
        return np.arange(len(y), dtype=np.int64)
    rows, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(rows).astype(np.int64)


def check_folds(y: np.ndarray, folds: int, what: str = "train.csv") -> None:
    """UserError unless every digit has at least `folds` rows in y (StratifiedKFold needs that)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=N_CLASSES)
    missing = ", ".join(str(d) for d in np.flatnonzero(counts == 0))
    if missing:  # no number of folds helps: the rows themselves are missing
        raise UserError(
            f"{what} has no rows of digit{'s' if ',' in missing else ''} {missing}: every digit 0-9 needs at least {folds} rows"
        )
    if counts.min() < folds:
        digit = int(counts.argmin())
        raise UserError(f"--folds {folds}: {what} has only {counts.min()} rows of digit {digit}; use fewer folds")


def planned_epochs(params: dict[str, Any], max_epochs: int | None) -> int | None:
    """Epochs a fit will run at most: params' `epochs` capped by max_epochs (None when unknown)."""
    epochs = params.get("epochs")
    if epochs is None:
        return max_epochs
    return int(epochs) if max_epochs is None else min(int(epochs), int(max_epochs))


class Pace:
    """How the folds of a cross-validation have gone so far, as the parent saw them: each fold's start,
    the end of each of its epochs and its end. From them, the seconds of an epoch (the median of the
    epochs after each fold's first, which also builds the graph) and of a fold besides its epochs
    (starting, the first epoch's extra, predicting), and so the epochs a fold can still run in time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started: dict[int, float] = {}
        self.last_epoch: dict[int, float] = {}
        self.epoch_durations: list[float] = []
        self.overheads: list[float] = []  # finished folds' seconds besides their epochs
        self._fold_epochs: dict[int, int] = {}

    def fold_started(self, fold: int) -> None:
        self.started[fold] = self.clock()

    def epoch_ended(self, fold: int) -> None:
        now = self.clock()
        if fold in self.last_epoch:
            self.epoch_durations.append(now - self.last_epoch[fold])
        self.last_epoch[fold] = now
        self._fold_epochs[fold] = self._fold_epochs.get(fold, 0) + 1

    def fold_ended(self, fold: int) -> None:
        epoch = self.epoch_seconds
        if fold in self.started and epoch is not None:
            self.overheads.append(max(0.0, self.clock() - self.started[fold] - self._fold_epochs.get(fold, 0) * epoch))

    @property
    def epoch_seconds(self) -> float | None:
        return float(np.median(self.epoch_durations)) if self.epoch_durations else None

    def epochs_within(self, deadline: float, planned: int) -> int:
        """The epochs, at most `planned` and at least 1, that a fold starting now can run and still end
        by `deadline` (a time of the clock); `planned` until a fold has ended (nothing to go by)."""
        epoch = self.epoch_seconds
        if not self.overheads or not epoch:
            return planned
        room = deadline - self.clock() - float(np.median(self.overheads))
        return max(1, min(planned, int(room // epoch)))


# Predicting an image costs about a third of training on it (a forward pass, against a forward and a
# backward pass): the share of a fold's time its predictions after training take (training_ends).
PREDICT_COST = 1 / 3


def training_ends(now: float, deadline: float, trained: int, predicted: int) -> float:
    """When a fold starting at `now` should end training so that, with its predictions after, it ends by
    `deadline`: the time left, shared between `trained` images of training (epochs x rows) and
    `predicted` images of prediction (PREDICT_COST of a trained image's time each)."""
    share = trained / (trained + PREDICT_COST * predicted) if trained > 0 else 1.0
    return now + max(0.0, deadline - now) * share


def cross_validate(
    spec: ModelSpec,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    max_epochs: int | None = None,
    rows: np.ndarray | None = None,
    on_epoch: FoldEpochCallback | None = None,
    log: Log | None = silent,
    label: str = "",
    fold_jobs: int = 1,
    monitor: bool = True,
    deadline: float | None = None,
) -> CVResult:
    """Fit `spec` with `params` on each of `folds` stratified folds of X uint8 (n, 28, 28), y (n,).

    rows : int64 indices of the train rows to use (default all); the OOF covers exactly these.
    Fold k trains on the other folds with seed `seed + k`; its held-out fold is the validation data
    (monitoring and on_epoch only) and gets its out-of-fold prediction. `log` receives one progress
    line per epoch and per fold (with elapsed time and ETA); None is silent.
    fold_jobs : folds fitted at once, each in its own process with its share of the cores
    (kaggle_digits.search.processes); 1 fits them one after another in this process.
    monitor : score the held-out fold after every epoch (for on_epoch's val_accuracy, a pruner, the
    curves in history.json). False scores it once, by the fold model's out-of-fold prediction, which
    saves a prediction of the held-out rows per epoch (several percent of an epoch); a fit whose params
    stop early (`patience` > 0) is monitored regardless, as early stopping needs it.
    deadline : a time (time.time()) by which the folds should have ended; each fold gets its share of
    the time left as it starts (Deadline.plan). None: the epochs planned.
    """
    rows = np.arange(len(y), dtype=np.int64) if rows is None else np.sort(np.asarray(rows, dtype=np.int64))
    Xr, yr = X[rows], np.asarray(y)[rows]
    check_folds(yr, folds, "the rows to cross-validate")
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(Xr, yr))
    pace = Pace()
    run = _CrossValidation(
        spec=spec,
        params=params,
        X=Xr,
        y=yr,
        X_test=X_test,
        splits=splits,
        seed=seed,
        max_epochs=max_epochs,
        epochs_per_fold=planned_epochs(params, max_epochs),
        monitor=monitor or _stops_early(params),
        fold_jobs=fold_jobs,
        deadline=None if deadline is None else Deadline(deadline, pace),
        pace=pace,
        on_epoch=on_epoch,
        log=log or silent,
        label=label,
        oof=np.zeros((len(rows), N_CLASSES), dtype=np.float32),
        covered=np.zeros(len(rows), dtype=np.int64),
    )
    if fold_jobs <= 1 or folds == 1:
        fitted_folds = []
        for fold in range(folds):
            fitted = fit_fold(run.start_fold(fold), on_epoch=functools.partial(run.end_epoch, fold))
            run.end_fold(fold, fitted)
            fitted_folds.append(fitted)
    else:
        fitted_folds = _fit_in_processes(run, fold_jobs)

    test = np.zeros((len(X_test), N_CLASSES), dtype=np.float64)
    result = CVResult(run.oof, rows, test, [], [], [], [], [])
    for fold, fitted in enumerate(fitted_folds):
        test += fitted.test_proba / folds
        _, val_idx = splits[fold]
        result.fold_accuracies.append(float((fitted.val_proba.argmax(axis=1) == yr[val_idx]).mean()))
        result.fit_seconds.append(fitted.seconds)
        result.epochs.append(int(fitted.epochs))
        result.histories.append({"fold": fold, **fitted.history})
        result.models.append(fitted.model)
    assert (run.covered == 1).all(), "every OOF row is predicted by exactly one fold model"
    result.test_proba = test.astype(np.float32)
    result.epoch_seconds = pace.epoch_seconds
    return result


def _stops_early(params: dict[str, Any]) -> bool:
    return int(params.get("patience", 0) or 0) > 0


@dataclass(frozen=True)
class FoldPlan:
    """What a fold starting now may spend: `epochs`, and when its training should end (`stop_by`, a
    time.time() for ModelSpec.fit's stop_by)."""

    epochs: int
    stop_by: float


@dataclass(frozen=True)
class Deadline:
    """A time (time.time()) by which the folds should have ended, and how to get there: as each fold
    starts, it is given the epochs that still fit at the pace of the folds that ended (Pace.epochs_within;
    its learning rate schedule fitted to them as for any epoch cap, never more than planned) and the time
    its training should end, its predictions' time kept aside (training_ends). The fit ends sooner when it
    trains slower than that allows (ModelSpec.fit's stop_by): the only check for folds that all start at
    once, with no fold ended to go by."""

    at: float
    pace: Pace

    def plan(self, planned: int, trained_rows: int, predicted_rows: int) -> FoldPlan:
        epochs = self.pace.epochs_within(self.at, planned)
        stop_by = training_ends(self.pace.clock(), self.at, epochs * trained_rows, predicted_rows)
        return FoldPlan(epochs, stop_by)


@dataclass(frozen=True)
class FoldJob:
    """One fold's fit: its rows, the held-out rows and the test set, and how long it may train. It
    travels to a child process when folds are fitted side by side."""

    spec: ModelSpec
    params: dict[str, Any]
    X_fit: np.ndarray
    y_fit: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    max_epochs: int | None
    seed: int
    monitor: bool = True  # validate on the held-out rows after every epoch (they never train the model)
    stop_by: float | None = None  # when its training should end (ModelSpec.fit)


@dataclass
class _CrossValidation:
    """One cross_validate call as it goes: what it fits, and the counters its steps (start_fold,
    end_epoch, end_fold) keep for the progress lines, the ETA and the deadline."""

    spec: ModelSpec
    params: dict[str, Any]
    X: np.ndarray  # the rows cross-validated
    y: np.ndarray
    X_test: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    seed: int
    max_epochs: int | None
    epochs_per_fold: int | None  # planned_epochs: None when unknown
    monitor: bool
    fold_jobs: int
    deadline: Deadline | None
    pace: Pace
    on_epoch: FoldEpochCallback | None
    log: Log
    label: str
    oof: np.ndarray
    covered: np.ndarray
    start: float = field(default_factory=time.monotonic)
    epochs_done: int = 0  # over all folds, for the ETA
    epochs_dropped: int = 0  # planned epochs that will not run (early stopping, the deadline)
    plans: dict[int, FoldPlan] = field(default_factory=dict)  # the deadline's, per fold started

    @property
    def folds(self) -> int:
        return len(self.splits)

    def job(self, fold: int, epochs: int | None = None, stop_by: float | None = None) -> FoldJob:
        fit_idx, val_idx = self.splits[fold]
        return FoldJob(
            self.spec,
            self.params,
            self.X[fit_idx],
            self.y[fit_idx],
            self.X[val_idx],
            self.y[val_idx],
            self.X_test,
            epochs,
            self.seed + fold,
            self.monitor,
            stop_by,
        )

    def start_fold(self, fold: int) -> FoldJob:
        """The job of a fold starting now: max_epochs, or with a deadline the fold's plan (fewer epochs
        when it starts behind the pace; when its training should end in any case)."""
        self.pace.fold_started(fold)
        if self.deadline is None or self.epochs_per_fold is None:
            return self.job(fold, self.max_epochs)
        fit_idx, val_idx = self.splits[fold]
        plan = self.deadline.plan(self.epochs_per_fold, len(fit_idx), len(val_idx) + len(self.X_test))
        self.plans[fold] = plan
        if plan.epochs == self.epochs_per_fold:
            return self.job(fold, self.max_epochs, plan.stop_by)
        self.epochs_dropped += self.epochs_per_fold - plan.epochs
        self.log(
            f"{self.label}fold {fold + 1}/{self.folds}: {plan.epochs} of {self.epochs_per_fold} epochs, to end in "
            f"time (an epoch takes {self.pace.epoch_seconds:.0f} s here)"
        )
        return self.job(fold, plan.epochs, plan.stop_by)

    def end_epoch(self, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs_done += 1
        self.pace.epoch_ended(fold)
        of = f"/{self.epochs_per_fold}" if self.epochs_per_fold else ""
        self.log(
            f"{self.label}fold {fold + 1}/{self.folds} epoch {epoch + 1}{of}  "
            + "  ".join(f"{_short(k)} {v:.4f}" for k, v in metrics.items() if k in _SHOWN)
            + "  "
            + timing(time.monotonic() - self.start, self.eta())
        )
        if self.on_epoch is not None:
            self.on_epoch(fold, epoch, metrics)

    def end_fold(self, fold: int, fitted: FoldFit) -> None:
        self.pace.fold_ended(fold)
        _, val_idx = self.splits[fold]
        self.oof[val_idx] = fitted.val_proba
        self.covered[val_idx] += 1
        accuracy = float((fitted.val_proba.argmax(axis=1) == self.y[val_idx]).mean())
        # A fold that stopped early (early stopping, its stop_by) leaves the rest of its epochs out of the ETA.
        plan = self.plans.get(fold)
        planned = plan.epochs if plan is not None else (self.epochs_per_fold or 0)
        self.epochs_dropped += max(0, planned - fitted.epochs)
        if plan is not None and fitted.epochs < planned and not _stops_early(self.params):
            self.log(
                f"{self.label}fold {fold + 1}/{self.folds}: stopped after {fitted.epochs} of {planned} epochs, "
                "to end in time"
            )
        self.log(
            f"{self.label}fold {fold + 1}/{self.folds} done  accuracy {accuracy:.4f}  {fitted.epochs} epochs in "
            f"{format_seconds(fitted.seconds)}  " + timing(time.monotonic() - self.start, self.eta())
        )

    def eta(self) -> float:
        if self.epochs_per_fold is None:
            return float("nan")
        left = self.folds * self.epochs_per_fold - self.epochs_dropped - self.epochs_done
        at_once = min(max(1, self.fold_jobs), self.folds)
        return time_left(time.monotonic() - self.start, self.epochs_done, left, at_once)


@dataclass
class FoldFit:
    """One fold's fitted model, its predictions of the held-out rows and of the test set, and how the
    fit went."""

    model: Any
    val_proba: np.ndarray
    test_proba: np.ndarray
    history: dict[str, list[float]]
    epochs: int
    seconds: float


def fit_fold(job: FoldJob, on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> FoldFit:
    """Fit one fold's model and predict the held-out rows and the test set."""
    t0 = time.monotonic()
    watched = (job.X_val, job.y_val) if job.monitor else (None, None)
    fitted = job.spec.fit(
        job.params,
        job.X_fit,
        job.y_fit,
        *watched,
        max_epochs=job.max_epochs,
        seed=job.seed,
        on_epoch=on_epoch,
        verbose=False,
        stop_by=job.stop_by,
    )
    seconds = time.monotonic() - t0
    return FoldFit(
        fitted.model,
        job.spec.predict_proba(fitted.model, job.X_val),
        job.spec.predict_proba(fitted.model, job.X_test),
        fitted.history,
        int(fitted.epochs),
        seconds,
    )


def _fit_fold_in_child(job: FoldJob, *, model_path: str, report: Callable[..., None]) -> FoldFit:
    """fit_fold in a child process: epochs are reported to the parent, the model is written to
    model_path (the parent reads it back) and the result travels without it."""
    fitted = fit_fold(job, on_epoch=report)
    job.spec.save(fitted.model, Path(model_path))
    fitted.model = None
    return fitted


def _fit_in_processes(run: _CrossValidation, fold_jobs: int) -> list[FoldFit]:
    """The folds, `fold_jobs` at a time, each in its own process; each fold's job is made as it starts."""
    from kaggle_digits.models import hardware
    from kaggle_digits.search import processes

    with tempfile.TemporaryDirectory(prefix="kaggle-digits-folds-") as folder:
        paths = [str(Path(folder) / f"fold-{k}{run.spec.model_suffix}") for k in range(run.folds)]
        tasks = [
            processes.Task(functools.partial(_fit_fold_in_child, model_path=paths[k]), (), f"fold {k + 1}")
            for k in range(run.folds)
        ]

        def prepare(fold: int, task: processes.Task) -> processes.Task:
            return replace(task, args=(run.start_fold(fold),))

        def on_report(fold: int, values: tuple[Any, ...]) -> None:
            run.end_epoch(fold, *values)

        # A Keras family's children take this process's precision; the others never load TensorFlow.
        policy = hardware.current_policy() if uses_tensorflow(run.spec) else None
        fitted_folds = processes.run(tasks, fold_jobs, on_report, policy, on_done=run.end_fold, prepare=prepare)
        for k, fitted in enumerate(fitted_folds):
            fitted.model = run.spec.load(Path(paths[k]))
    return fitted_folds


# Epoch metrics shown in progress lines, and their short names.
_SHOWN = {"loss": "loss", "accuracy": "acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}


def _short(key: str) -> str:
    return _SHOWN.get(key, key)
