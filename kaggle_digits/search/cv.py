"""Stratified k-fold cross-validation of one model: out-of-fold and test probabilities, fold scores.

Every covered train row is predicted exactly once, by the one fold model that did not see it; the test
set is predicted by every fold model and the probabilities are averaged. Works for any ModelSpec.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from kaggle_digits import N_CLASSES
from kaggle_digits.errors import UserError
from kaggle_digits.models.base import ModelSpec
from kaggle_digits.progress import Log, silent
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


def time_left(elapsed: float, epochs_done: int, epochs_left: int, at_once: int = 1) -> float:
    """The seconds the epochs left should take at the pace so far (NaN before any epoch ended): the
    elapsed time per epoch ended, where `at_once` folds train side by side. Until each of those has ended
    an epoch, the first to end stands for all of them (they started together), not for one in a row.
    """
    if epochs_done <= 0:
        return float("nan")
    return elapsed / max(epochs_done, at_once) * max(0, epochs_left)


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
    deadline : a time (time.time()) by which the folds should have ended. Once a fold has ended, a fold
    that starts behind that pace gets only the epochs that still fit (Pace.epochs_within; its learning
    rate schedule fitted to them as for any epoch cap); never more than planned. Each fold is also told
    when its training should end (training_ends: the time left less its predictions'), and ends sooner
    when it trains slower than that allows (ModelSpec.fit's stop_by): the only check for folds that all
    start at once. None: the epochs planned.
    """
    rows = np.arange(len(y), dtype=np.int64) if rows is None else np.sort(np.asarray(rows, dtype=np.int64))
    Xr, yr = X[rows], np.asarray(y)[rows]
    check_folds(yr, folds, "the rows to cross-validate")
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(Xr, yr))
    epochs_per_fold = planned_epochs(params, max_epochs)
    oof = np.zeros((len(rows), N_CLASSES), dtype=np.float32)
    covered = np.zeros(len(rows), dtype=np.int64)
    test = np.zeros((len(X_test), N_CLASSES), dtype=np.float64)
    result = CVResult(oof, rows, test, [], [], [], [], [])
    start = time.monotonic()
    epochs_done = 0  # over all folds, for the ETA
    epochs_dropped = 0  # planned epochs that will not run (early stopping, a deadline)
    folds_done = 0
    pace = Pace()

    def eta() -> float:
        if epochs_per_fold is None:
            return float("nan")
        left = folds * epochs_per_fold - epochs_dropped - epochs_done
        return time_left(time.monotonic() - start, epochs_done, left, min(max(1, fold_jobs), folds))

    def fold_epoch(fold: int, epoch: int, metrics: dict[str, float]) -> None:
        nonlocal epochs_done
        epochs_done += 1
        pace.epoch_ended(fold)
        if log is not None:
            of = f"/{epochs_per_fold}" if epochs_per_fold else ""
            log(
                f"{label}fold {fold + 1}/{folds} epoch {epoch + 1}{of}  "
                + "  ".join(f"{_short(k)} {v:.4f}" for k, v in metrics.items() if k in _SHOWN)
                + f"  elapsed {format_seconds(time.monotonic() - start)}"
                + f"  ETA {format_seconds(eta())}"
            )
        if on_epoch is not None:
            on_epoch(fold, epoch, metrics)

    def fold_done(fold: int, fitted: FoldFit) -> None:
        nonlocal folds_done, epochs_dropped
        folds_done += 1
        pace.fold_ended(fold)
        fit_idx, val_idx = splits[fold]
        oof[val_idx] = fitted.val_proba
        covered[val_idx] += 1
        accuracy = float((fitted.val_proba.argmax(axis=1) == yr[val_idx]).mean())
        # A fold that stopped early (early stopping, its stop_by) leaves the rest of its epochs out of the ETA.
        planned = fold_planned.get(fold, epochs_per_fold or 0)
        epochs_dropped += max(0, planned - fitted.epochs)
        if log is not None and fold in fold_stop_by and fitted.epochs < planned and not stops_early:
            log(f"{label}fold {fold + 1}/{folds}: stopped after {fitted.epochs} of {planned} epochs, to end in time")
        if log is not None:
            log(
                f"{label}fold {fold + 1}/{folds} done  accuracy {accuracy:.4f}  {fitted.epochs} epochs in "
                f"{format_seconds(fitted.seconds)}  elapsed {format_seconds(time.monotonic() - start)}"
                f"  ETA {format_seconds(eta())}"
            )

    stops_early = int(params.get("patience", 0) or 0) > 0
    watch = monitor or stops_early

    fold_planned: dict[int, int] = {}  # folds given fewer epochs than planned, to end by the deadline

    fold_stop_by: dict[int, float] = {}  # when each fold's training should end, to end by the deadline

    def fold_epochs(fold: int) -> int | None:
        """The epoch cap of a fold starting now: max_epochs, or fewer to end by the deadline. With a
        deadline, the fold's training is also told when to end (fold_stop_by), for a fold that trains
        slower than the pace so far (or than planned, when none has ended)."""
        nonlocal epochs_dropped
        pace.fold_started(fold)
        if deadline is None or epochs_per_fold is None:
            return max_epochs
        epochs = pace.epochs_within(deadline, epochs_per_fold)
        fit_idx, val_idx = splits[fold]
        fold_stop_by[fold] = training_ends(pace.clock(), deadline, epochs * len(fit_idx), len(val_idx) + len(X_test))
        if epochs == epochs_per_fold:
            return max_epochs
        fold_planned[fold] = epochs
        epochs_dropped += epochs_per_fold - epochs
        if log is not None:
            log(
                f"{label}fold {fold + 1}/{folds}: {epochs} of {epochs_per_fold} epochs, to end in time "
                f"(an epoch takes {pace.epoch_seconds:.0f} s here)"
            )
        return epochs

    def arguments(fold: int, epochs: int | None = max_epochs) -> tuple[Any, ...]:
        fit_idx, val_idx = splits[fold]
        return (
            spec,
            params,
            Xr[fit_idx],
            yr[fit_idx],
            Xr[val_idx],
            yr[val_idx],
            X_test,
            epochs,
            seed + fold,
            watch,
            fold_stop_by.get(fold),
        )

    fitted_folds: list[FoldFit] = []
    if fold_jobs <= 1 or folds == 1:
        for fold in range(folds):
            fitted = fit_fold(
                *arguments(fold, fold_epochs(fold)), on_epoch=lambda e, m, fold=fold: fold_epoch(fold, e, m)
            )
            fold_done(fold, fitted)
            fitted_folds.append(fitted)
    else:
        fitted_folds = _fit_in_processes(spec, folds, fold_jobs, arguments, fold_epochs, fold_epoch, fold_done)

    for fold, fitted in enumerate(fitted_folds):
        test += fitted.test_proba / folds
        _, val_idx = splits[fold]
        result.fold_accuracies.append(float((fitted.val_proba.argmax(axis=1) == yr[val_idx]).mean()))
        result.fit_seconds.append(fitted.seconds)
        result.epochs.append(int(fitted.epochs))
        result.histories.append({"fold": fold, **fitted.history})
        result.models.append(fitted.model)
    assert (covered == 1).all(), "every OOF row is predicted by exactly one fold model"
    result.test_proba = test.astype(np.float32)
    result.epoch_seconds = pace.epoch_seconds
    return result


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


def fit_fold(
    spec: ModelSpec,
    params: dict[str, Any],
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    X_test: np.ndarray,
    max_epochs: int | None,
    seed: int,
    monitor: bool = True,
    stop_by: float | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FoldFit:
    """Fit one fold's model and predict the held-out rows and the test set. monitor: the fit validates
    on the held-out rows after every epoch (see cross_validate); they never train the model. stop_by:
    when its training should end (ModelSpec.fit)."""
    t0 = time.monotonic()
    watched = (X_val, y_val) if monitor else (None, None)
    fitted = spec.fit(
        params,
        X_fit,
        y_fit,
        *watched,
        max_epochs=max_epochs,
        seed=seed,
        on_epoch=on_epoch,
        verbose=False,
        stop_by=stop_by,
    )
    seconds = time.monotonic() - t0
    return FoldFit(
        fitted.model,
        spec.predict_proba(fitted.model, X_val),
        spec.predict_proba(fitted.model, X_test),
        fitted.history,
        int(fitted.epochs),
        seconds,
    )


def _fit_fold_in_child(*args: Any, model_path: str, report: Callable[..., None]) -> FoldFit:
    """fit_fold in a child process: epochs are reported to the parent, the model is written to
    model_path (the parent reads it back) and the result travels without it."""
    spec = args[0]
    fitted = fit_fold(*args, on_epoch=report)
    spec.save(fitted.model, Path(model_path))
    fitted.model = None
    return fitted


def _fit_in_processes(spec, folds, fold_jobs, arguments, fold_epochs, fold_epoch, fold_done) -> list[FoldFit]:
    from kaggle_digits.models import hardware
    from kaggle_digits.search import processes

    with tempfile.TemporaryDirectory(prefix="kaggle-digits-folds-") as folder:
        paths = [str(Path(folder) / f"fold-{k}{spec.model_suffix}") for k in range(folds)]
        tasks = [
            processes.Task(functools.partial(_fit_fold_in_child, model_path=paths[k]), arguments(k), f"fold {k + 1}")
            for k in range(folds)
        ]

        def prepare(fold: int, task: processes.Task) -> processes.Task:
            return replace(task, args=arguments(fold, fold_epochs(fold)))

        def on_report(fold: int, values: tuple[Any, ...]) -> None:
            fold_epoch(fold, *values)

        def on_done(fold: int, fitted: FoldFit) -> None:
            fold_done(fold, fitted)

        fitted_folds = processes.run(
            tasks, fold_jobs, on_report, hardware.current_policy(), on_done=on_done, prepare=prepare
        )
        for k, fitted in enumerate(fitted_folds):
            fitted.model = spec.load(Path(paths[k]))
    return fitted_folds


# Epoch metrics shown in progress lines, and their short names.
_SHOWN = {"loss": "loss", "accuracy": "acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}


def _short(key: str) -> str:
    return _SHOWN.get(key, key)
