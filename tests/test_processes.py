"""Folds fitted side by side in child processes (kaggle_digits.search.processes, cv's fold_jobs)."""

from __future__ import annotations

import math
import multiprocessing

import numpy as np
import optuna
import pytest

from kaggle_digits.errors import UserError
from kaggle_digits.models import dense, mlp
from kaggle_digits.search import cv, processes
from tests import child_env
from tests.child_env import child_devices


def _small_set(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digits drawn as a bright square whose position is the label (learnable in one epoch)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    X = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(y):
        r, c = divmod(int(label), 4)
        X[i, 2 + 6 * r : 7 + 6 * r, 2 + 6 * c : 7 + 6 * c] = 250
    return X, y.astype(np.int64)


# The process mechanics are the same for every family: the mlp's children start without TensorFlow.
PARAMS = {**mlp.SPEC.default_params(False), "epochs": 1}
DENSE = {**dense.SPEC.default_params(False), "epochs": 1}


def test_folds_in_processes_cover_every_row_once_and_return_models_that_made_the_predictions(policies_given):
    from kaggle_digits.models import hardware

    hardware.ensure_configured()  # a precision chosen in this process (as the pipeline's cnn leaves one) ...
    X, y = _small_set()
    X_test = X[:100]
    events: list[tuple[int, int]] = []
    result = cv.cross_validate(
        mlp.SPEC, PARAMS, X, y, X_test, folds=4, fold_jobs=2, seed=3, on_epoch=lambda f, e, m: events.append((f, e))
    )
    assert sorted(events) == [(k, 0) for k in range(4)], "each fold's epoch reached the parent"
    assert len(result.models) == 4 and len(result.fold_accuracies) == 4
    assert np.allclose(result.oof_proba.sum(axis=1), 1, atol=1e-4)
    assert result.cv_accuracy > 0.5
    assert policies_given == [None], "... is not handed to the children of a family without Keras: no TensorFlow there"
    # The models read back are the ones that predicted: the test set is their mean prediction.
    mean = np.mean([mlp.SPEC.predict_proba(m, X_test) for m in result.models], axis=0)
    assert np.allclose(mean, result.test_proba, atol=1e-4)
    # The same folds as one after another in this process (the split depends on the seed alone).
    sequential = cv.cross_validate(mlp.SPEC, PARAMS, X, y, X_test, folds=4, fold_jobs=1, seed=3)
    assert sequential.oof_rows.tolist() == result.oof_rows.tolist()
    assert not multiprocessing.active_children()


def test_a_childs_user_error_is_one_line_in_the_parent_and_a_bug_keeps_its_traceback():
    with pytest.raises(UserError, match="row 7: a planted mistake"):
        processes.run([processes.Task(child_env.fails, (), "fold 1")], 1)
    with pytest.raises(RuntimeError, match=r"(?s)fold 2 failed in its process.*ZeroDivisionError: a planted bug"):
        processes.run([processes.Task(child_env.crashes, (), "fold 2")], 1)
    assert not multiprocessing.active_children()


def test_what_stops_the_parent_ends_every_child():
    # As a pruned trial does: the parent's callback raises on a child's report; both children end.
    def on_report(i, values):
        raise optuna.TrialPruned("behind")

    tasks = [processes.Task(child_env.reports_then_waits, (), f"fold {k + 1}") for k in range(2)]
    with pytest.raises(optuna.TrialPruned):
        processes.run(tasks, 2, on_report)
    assert not multiprocessing.active_children()


def test_the_fold_jobs_option_is_checked(run_cli, tmp_path):
    result = run_cli("tune", "--model", "dense", "--fold-jobs", "0", "--runs-dir", tmp_path / "runs")
    assert result.code == 2 and result.err.strip() == "error: --fold-jobs 0: needs a value of at least 1"


def test_unmonitored_folds_are_scored_once_unless_they_stop_early():
    # In this process: a child runs the same fit_fold with the same FoldJob (the tests above), and a Keras
    # family's child costs a TensorFlow start-up.
    fold_jobs = 1
    X, y = _small_set(800)
    metrics: list[dict[str, float]] = []
    quiet = {**DENSE, "patience": 0}
    result = cv.cross_validate(
        dense.SPEC,
        quiet,
        X,
        y,
        X[:50],
        folds=2,
        fold_jobs=fold_jobs,
        monitor=False,
        on_epoch=lambda f, e, m: metrics.append(m),
    )
    assert len(metrics) == 2 and all("loss" in m and "val_accuracy" not in m for m in metrics), "no per-epoch scoring"
    assert all("val_accuracy" not in history for history in result.histories)
    assert len(result.fold_accuracies) == 2 and result.cv_accuracy > 0.5, "each fold is scored by its OOF prediction"
    # Early stopping needs the held-out scores: a fit with patience is monitored whatever is asked (decided
    # before the fold starts, in this process or a child alike).
    stopping = cv.cross_validate(dense.SPEC, DENSE, X, y, X[:50], folds=2, fold_jobs=1, monitor=False)
    assert all("val_accuracy" in history for history in stopping.histories)


@pytest.mark.parametrize("fold_jobs, folds", [(1, 3), (2, 4)])
def test_folds_behind_the_deadline_train_the_epochs_that_fit(fold_jobs, folds):
    import time

    X, y = _small_set(800)
    three = {**PARAMS, "epochs": 3, "patience": 0}
    lines: list[str] = []
    late = cv.cross_validate(
        mlp.SPEC, three, X, y, X[:50], folds=folds, fold_jobs=fold_jobs, deadline=time.time(), log=lines.append
    )
    # A deadline already passed: every fold, those that start together with no pace to go by included,
    # ends its training after one epoch (at least one runs), and says so.
    assert late.epochs == [1] * folds
    assert sum("1 of 3 epochs, to end in time" in line for line in lines) == folds, lines
    assert len(late.fold_accuracies) == folds and np.isfinite(late.oof_proba).all()
    if fold_jobs == 1:  # (the deadline reaches a fold's process as a time: the same check there)
        ahead = cv.cross_validate(mlp.SPEC, three, X, y, X[:50], folds=folds, fold_jobs=1, deadline=time.time() + 1e6)
        assert ahead.epochs == [3] * folds, "a fold on schedule runs every epoch planned"
        assert ahead.epoch_seconds is not None and ahead.epoch_seconds > 0


def test_a_folds_training_ends_in_time_for_its_predictions():
    # 100 s left; 3 epochs x 1,000 rows to train and 1,500 images to predict (a third of a training image's
    # time each): training gets 3,000 / 3,500 of the time left.
    assert cv.training_ends(50.0, 150.0, 3000, 1500) == pytest.approx(50.0 + 100.0 * 3000 / 3500)
    assert cv.training_ends(200.0, 150.0, 3000, 1500) == 200.0, "a deadline passed: now"


def test_the_eta_of_folds_side_by_side_counts_their_first_epochs_as_one_round():
    """Two folds of 8 epochs started together; the first ends its first epoch after 72 s: the 15 epochs
    left take about 15 x 36 s (two at a time), not 15 x 72 s."""
    assert cv.time_left(72.0, 1, 15, at_once=2) == pytest.approx(15 * 36.0)
    assert cv.time_left(74.0, 2, 14, at_once=2) == pytest.approx(14 * 37.0)
    assert cv.time_left(72.0, 1, 15) == pytest.approx(15 * 72.0), "one fold at a time"
    assert cv.time_left(72.0, 16, 0, at_once=2) == 0.0
    assert math.isnan(cv.time_left(5.0, 0, 16, at_once=2))


def test_the_pace_of_finished_folds_gives_the_epochs_that_still_fit():
    now = [0.0]
    pace = cv.Pace(clock=lambda: now[0])
    assert pace.epochs_within(deadline=100.0, planned=10) == 10, "nothing to go by yet"
    pace.fold_started(0)
    for end in (15.0, 20.0, 25.0, 30.0):  # a first epoch of 15 s (graph building), then 5 s each
        now[0] = end
        pace.epoch_ended(0)
    now[0] = 38.0  # predicting: the fold ends 8 s after its last epoch
    pace.fold_ended(0)
    assert pace.epoch_seconds == 5.0 and pace.overheads == [18.0]  # 38 s - 4 epochs x 5 s
    # A fold starting at 38 s with the deadline at 100 s: 100 - 38 - 18 = 44 s, 8 epochs of 5 s.
    assert pace.epochs_within(deadline=100.0, planned=10) == 8
    assert pace.epochs_within(deadline=1000.0, planned=10) == 10, "never more than planned"
    assert pace.epochs_within(deadline=0.0, planned=10) == 1, "at least one"


def test_each_child_gets_one_gpu_of_its_own(monkeypatch):
    # No GPU needed: the launcher's part is the environment each child starts with.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the two GPUs this process may use
    tasks = [processes.Task(child_devices, (), f"fold {k}") for k in range(4)]
    seen = processes.run(tasks, jobs=2)
    assert [device for device, _ in seen[:2]] == ["3", "5"], "the two started together have one GPU each"
    assert {device for device, _ in seen} == {"3", "5"}, "each later child takes the GPU a finished one freed"
    assert not any(loaded for _, loaded in seen), "the device is set before TensorFlow can load"
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5", "the parent's own environment is as it was"

    # Without GPUs the children's environment is left alone; given devices are shared out the same way.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert processes.run(tasks[:2], jobs=2, devices=[]) == [(None, False), (None, False)]
    assert [d for d, _ in processes.run(tasks[:3], jobs=3, devices=["0", "1"])] == ["0", "1", "0"]


def test_gpus_are_read_without_tensorflow(monkeypatch, tmp_path):
    from kaggle_digits.models import hardware

    driver = tmp_path / "gpus"
    for bus in ("0000:00:04.0", "0000:00:05.0"):
        (driver / bus).mkdir(parents=True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert hardware.gpu_devices(driver) == ["0", "1"]
    assert hardware.gpu_devices(tmp_path / "no-driver") == []
    for visible, expected in (("1", ["1"]), ("GPU-8f2e,GPU-77aa", ["GPU-8f2e", "GPU-77aa"]), ("", []), ("-1", [])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert hardware.gpu_devices(driver) == expected, visible


@pytest.mark.parametrize("gpus, folds, jobs", [(2, 5, 2), (2, 1, 1), (1, 4, 1), (4, 2, 2), (2, None, 2)])
def test_fold_jobs_are_one_per_gpu(monkeypatch, gpus, folds, jobs):
    from kaggle_digits.models import hardware

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(str(k) for k in range(gpus)))
    monkeypatch.setattr(hardware, "thread_budget", lambda: 16)
    assert hardware.default_fold_jobs(folds) == jobs
