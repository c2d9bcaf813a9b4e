"""`tune` on small slices: artifacts, OOF bookkeeping, resume, interruption, seeding, pruning, bad options."""

from __future__ import annotations

import builtins
import errno
import os
import shlex
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import FixedTrial
from sklearn.model_selection import StratifiedKFold

from kaggle_digits import io, models, units
from kaggle_digits.data import dataset as data
from kaggle_digits.errors import UserError
from kaggle_digits.search import runs, storage, tune
from tests.conftest import REPO
from tests.stopping import interrupt_stopped, stop_in_a_trial

FAST = ("--folds", "2", "--epochs", "1")  # every test: 2 folds, 1 epoch


def _tune(run_cli, small_data, runs_dir, *args):
    return run_cli("tune", "--data-dir", small_data, "--runs-dir", runs_dir, *args)


def _study(runs_dir, name):
    return optuna.load_study(study_name=name, storage=storage.default_url(runs_dir))


# The second trial, sampled from the search space, is the same mechanism for every family: the cnn's one
# trial (its fits the slowest) checks its artifacts.
@pytest.mark.parametrize(
    "model, augment, n_trials", [("mlp", False, 2), ("mlp", True, 2), ("dense", False, 2), ("cnn", True, 1)]
)
def test_each_family_tunes_trials_with_complete_artifacts(run_cli, small_data, tmp_path, model, augment, n_trials):
    runs_dir = tmp_path / "runs"
    flags = ["--augment"] if augment else []
    umask = os.umask(0o022)
    os.umask(umask)
    # Folds in this process (a Keras family's fold processes each start TensorFlow: the pipeline's and
    # test_processes' tests run folds in processes).
    result = _tune(
        run_cli, small_data, runs_dir, "--model", model, *flags, "--trials", str(n_trials), *FAST, "--fold-jobs", "1"
    )
    assert result.code == 0, result.err
    name = f"{model}-aug" if augment else model
    assert f"trial {n_trials - 1} fold 2/2 epoch 1/1" in result.out and "ETA" in result.out
    assert "best trials:" in result.out and f"next: python scripts/ensemble.py --studies {name}" in result.out

    spec = models.get(model)
    X, y = data.load_train(small_data / "train.csv")
    X_test = data.load_test(small_data / "test.csv")
    trials = sorted(runs.list_trials(runs_dir, [name]), key=lambda t: t.number)
    assert [t.number for t in trials] == list(range(n_trials))
    assert trials[0].params == spec.default_params(augment)  # a new study starts from the family's default
    study = _study(runs_dir, name)
    for t in trials:
        assert t.info["model"] == model and t.info["augment"] == augment and t.info["folds"] == 2
        assert t.info["seed"] == 0 and t.info["study"] == name and t.info["max_epochs"] == 1
        assert t.info["data"]["train_sha256"] == data.sha256(small_data / "train.csv")
        assert t.oof_proba.shape == (1500, 10) and t.oof_proba.dtype == np.float32
        assert t.test_proba.shape == (500, 10) and t.test_proba.dtype == np.float32
        np.testing.assert_allclose(t.oof_proba.sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(t.test_proba.sum(axis=1), 1, atol=1e-5)
        assert (t.oof_rows == np.arange(1500)).all()
        assert t.cv_accuracy == pytest.approx(np.mean(t.metrics["fold_accuracies"]))
        assert [h["fold"] for h in t.history] == [0, 1] and all(len(h["val_accuracy"]) == 1 for h in t.history)
        assert study.trials[t.number].user_attrs["path"] == str(t.path.resolve())
        assert study.trials[t.number].value == pytest.approx(t.cv_accuracy)
        # Every file of a trial, the fold models too, has a new file's usual mode: a team shares runs/.
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in t.path.iterdir() if p.is_file()}
        assert set(modes.values()) == {oct(0o666 & ~umask)}, modes

        # Each OOF row is the prediction of the one fold model that did not train on it; test.npy is
        # the mean of the fold models' test predictions.
        fold_models = [spec.load(p) for p in t.fold_model_paths()]
        assert [p.name for p in t.fold_model_paths()] == [f"fold-0{spec.model_suffix}", f"fold-1{spec.model_suffix}"]
        folds = list(StratifiedKFold(2, shuffle=True, random_state=0).split(X, y))
        seen = np.zeros(1500, dtype=int)
        for k, (model_k, (_, val_idx)) in enumerate(zip(fold_models, folds)):
            np.testing.assert_allclose(t.oof_proba[val_idx], spec.predict_proba(model_k, X[val_idx]), atol=1e-5)
            accuracy = (t.oof_proba[val_idx].argmax(axis=1) == y[val_idx]).mean()
            assert t.metrics["fold_accuracies"][k] == pytest.approx(accuracy)
            seen[val_idx] += 1
        assert (seen == 1).all()
        mean_test = np.mean([spec.predict_proba(m, X_test) for m in fold_models], axis=0)
        np.testing.assert_allclose(t.test_proba, mean_test, atol=1e-5)


def test_resume_subsample_and_a_study_bound_to_its_settings(run_cli, small_data, tmp_path):
    runs_dir = tmp_path / "runs"
    args = ("--model", "mlp", "--subsample", "600", *FAST)
    first = _tune(run_cli, small_data, runs_dir, *args, "--trials", "1")
    assert first.code == 0 and "study 'mlp' in sqlite:///" in first.out and ": new (" in first.out
    again = _tune(run_cli, small_data, runs_dir, *args, "--trials", "2")
    assert again.code == 0 and "continuing after 1 trial;" in again.out
    study = _study(runs_dir, "mlp")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    # The continued run does not replay the first run's random points.
    assert study.trials[1].params != study.trials[2].params

    _, y = data.load_train(small_data / "train.csv")
    for t in runs.list_trials(runs_dir, ["mlp"]):
        assert t.oof_proba.shape == (600, 10) and len(np.unique(t.oof_rows)) == 600
        assert (np.diff(t.oof_rows) > 0).all() and t.oof_rows.max() < 1500 and t.info["subsample"] == 600
        share = np.bincount(y[t.oof_rows], minlength=10) / 600
        np.testing.assert_allclose(share, np.bincount(y, minlength=10) / 1500, atol=0.01)  # stratified

    other = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--folds", "3", "--epochs", "1", "--trials", "1")
    assert other.code == 2 and other.err.count("\n") == 1
    assert (
        "study 'mlp'" in other.err and "folds 2 (asked: 3)" in other.err and "subsample 600 (asked: none)" in other.err
    )
    assert len(_study(runs_dir, "mlp").trials) == 3

    # A new storage never writes over the trial folders of a study it does not know.
    fresh = _tune(run_cli, small_data, runs_dir, *args, "--trials", "1", "--storage", f"sqlite:///{tmp_path}/other.db")
    assert fresh.code == 2 and "holds finished trials of another study 'mlp'" in fresh.err
    assert len(runs.list_trials(runs_dir, ["mlp"])) == 3


def test_same_seed_same_sampled_params(run_cli, small_data, tmp_path):
    runs_dir = tmp_path / "runs"
    for study, seed in [("a", "7"), ("b", "7"), ("c", "8")]:
        args = ("--model", "mlp", "--study", study, "--seed", seed, "--trials", "2", "--subsample", "400", *FAST)
        assert _tune(run_cli, small_data, runs_dir, *args).code == 0
    a, b, c = (_study(runs_dir, name) for name in "abc")
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert a.trials[0].params == c.trials[0].params  # the default
    assert [t.params for t in a.trials[1:]] != [t.params for t in c.trials[1:]]


def test_a_trial_far_behind_is_pruned(run_cli, small_data, tmp_path):
    runs_dir = tmp_path / "runs"
    args = ("--model", "mlp", "--folds", "2", "--epochs", "3")
    assert _tune(run_cli, small_data, runs_dir, *args, "--trials", "3").code == 0
    study = _study(runs_dir, "mlp")
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # A net that barely learns: the smallest learning rate with the biggest batch and heavy L2.
    bad = {"hidden": "100", "pca": 0, "alpha": 0.1, "learning_rate_init": 1e-4, "batch_size": 256}
    study.enqueue_trial(bad)
    result = _tune(run_cli, small_data, runs_dir, *args, "--trials", "1")
    assert result.code == 0, result.err
    assert "trial 3 pruned at fold" in result.out and "1 pruned" in result.out
    pruned = _study(runs_dir, "mlp").trials[3]
    assert pruned.state == optuna.trial.TrialState.PRUNED and pruned.params["learning_rate_init"] == 1e-4
    assert not (runs.trial_dir(runs_dir, "mlp", 3) / runs.METRICS_FILE).exists()
    assert len(runs.list_trials(runs_dir, ["mlp"])) == 3


def test_ctrl_c_fails_the_running_trial_and_the_printed_command_resumes(run_cli, small_data, tmp_path):
    runs_dir = tmp_path / "runs"
    assert _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST).code == 0
    command = [sys.executable, "scripts/tune.py", "--model", "mlp", "--trials", "3", "--folds", "2"]
    command += ["--data-dir", str(small_data), "--runs-dir", str(runs_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # Ctrl-C while a trial of this run trains: the process is stopped where it cannot end that trial, gets
    # SIGINT, then goes on (tests/stopping.py), so how fast the machine is makes no difference.
    lines: list[str] = []
    _, interrupted = stop_in_a_trial(proc, lines, f"sqlite:///{runs_dir / 'optuna.db'}", "mlp", {"": proc.pid})
    interrupt_stopped(proc, [proc.pid])
    out = "".join(lines) + proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err
    assert "Traceback" not in err
    study = _study(runs_dir, "mlp")
    states = [t.state for t in study.trials]
    ended = interrupted - 1  # trials of this run that ended before the interrupted one
    assert len(states) == interrupted + 1 and states[interrupted] == optuna.trial.TrialState.FAIL
    assert optuna.trial.TrialState.FAIL not in states[:interrupted]
    assert "the running trial was marked failed" in err and "Resume with:" in err and "Resume" not in out
    assert (f"kept in {runs_dir / 'mlp'}/" in err) == (runs_dir / "mlp").is_dir()  # a folder that exists
    resume = shlex.split(err.split("Resume with:")[1].strip().splitlines()[0])
    assert resume[:2] == ["python", "scripts/tune.py"] and resume[resume.index("--trials") + 1] == str(3 - ended)
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    assert len(runs.list_trials(runs_dir, ["mlp"])) == complete

    # The study stays usable: the printed command (with a 1-epoch cap to keep the test short) continues it.
    resumed = run_cli("tune", *resume[2:], "--epochs", "1")
    assert resumed.code == 0, resumed.err
    states = [t.state for t in _study(runs_dir, "mlp").trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1 and len(states) == 5
    assert "1 failed" in resumed.out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "svm"], "--model svm: unknown model, choose one of mlp, dense, cnn, simplecnn"),
        ([], "--model is required"),
        (["--model", "mlp", "--folds", "1"], "--folds 1: needs at least 2 folds"),
        (["--model", "mlp", "--trials", "0"], "--trials 0: needs a value of at least 1"),
        (["--model", "mlp", "--epochs", "-2"], "--epochs -2"),
        (["--model", "mlp", "--subsample", "-5"], "--subsample -5"),
        (["--model", "mlp", "--seed", "-1"], "--seed -1"),
        (["--model", "mlp", "--seed", "4294967296"], "--seed 4294967296: needs a whole number from 0 to 2147483647"),
        (["--model", "mlp", "--timeout", "-3"], "--timeout -3: needs a positive number"),
        (["--model", "mlp", "--timeout", "inf"], "--timeout inf: needs a finite number of seconds"),
        (["--model", "mlp", "--timeout", "nan"], "--timeout nan: needs a positive number"),
        (["--model", "mlp", "--precision", "fp8"], "--precision fp8: choose one of auto, fast, float32"),
        (["--model", "mlp", "--preset", "huge"], "--preset huge: choose one of quick, standard, full"),
        (["--model", "mlp", "--study", "../x"], "--study '../x'"),
        # argparse's own mistakes: one line too, not its usage block.
        (["--model", "mlp", "--trials", "abc"], "argument --trials: invalid int value: 'abc' (see kaggle-digits tune"),
        (["--model", "mlp", "--timeout", "1h"], "argument --timeout: invalid float value: '1h'"),
        (["--model", "mlp", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["--model", "mlp", "--subsample", "100000"], "--subsample 100000:"),
        (["--model", "mlp", "--subsample", "15"], "--subsample 15: too few rows for 5 folds"),
        (["--model", "mlp", "--storage", "nosuch://x"], "--storage nosuch://x: cannot open it"),
        (["--model", "mlp", "--storage", "sqlite:////nonexistent/dir/x.db"], "unable to open database file"),
        (["--model", "mlp", "--storage", "postgresql+psycopg2://me:s3cret@127.0.0.1:1/db"], "me:***@127.0.0.1:1"),
    ],
)
def test_bad_options_are_one_line(run_cli, small_data, tmp_path, args, message):
    result = _tune(run_cli, small_data, tmp_path / "runs", *args)
    assert result.code == 2
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert message in result.err and "s3cret" not in result.err


def test_a_file_given_as_the_runs_folder_is_one_line(run_cli, small_data, tmp_path):
    blocker = tmp_path / "file.csv"
    blocker.write_text("x\n")
    result = _tune(run_cli, small_data, blocker, "--model", "mlp", *FAST)
    assert result.code == 2 and result.err.splitlines() == [f"error: {blocker}: is a file, expected a folder"]
    assert blocker.read_text() == "x\n"


@pytest.mark.parametrize(
    "error, full",
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (OSError("280000 requested and 239584 written"), True),  # NumPy's short write: no errno
        (OSError(errno.ECONNRESET, "Connection reset by peer"), False),
    ],
)
def test_what_counts_as_a_full_disk(error, full):
    assert io.is_disk_full(error) is full


def test_format_seconds_never_raises():
    assert [units.format_seconds(s) for s in (float("inf"), float("nan"), 59.6, 3600 * 30)] == [
        "?",
        "?",
        "1m00s",
        "30h00m",
    ]


def test_the_largest_seed_is_accepted(run_cli, small_data, tmp_path):
    result = _tune(
        run_cli, small_data, tmp_path / "runs", "--model", "mlp", "--trials", "1", "--seed", "2147483647", *FAST
    )
    assert result.code == 0, result.err
    assert "seed 2147483647" in result.out


def test_a_full_disk_is_one_line_naming_the_folder_and_leaves_no_partial_file(run_cli, small_data, tmp_path, full_disk):
    runs_dir = tmp_path / "runs"
    full_disk(runs_dir / "mlp")  # the trial files; the study's database beside it still has room
    result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST)
    assert result.code == 2, result.err
    folder = runs_dir / "mlp" / "trial-0"
    assert result.err.splitlines() == [
        f"error: {folder}: the disk is full (no space left on device); nothing half-written was kept"
    ]
    assert not list(folder.glob(".*")) and not (folder / runs.METRICS_FILE).exists()


def test_a_trial_folder_holding_files_tune_did_not_write_is_refused(run_cli, small_data, tmp_path):
    # runs/mlp/trial-0 is a link to a folder of the user's that holds files of the names a trial writes.
    work = tmp_path / "work"
    work.mkdir()
    (work / "history.json").write_text("[my notes]")
    (work / "oof.npy").write_bytes(b"my array")
    runs_dir = tmp_path / "runs"
    (runs_dir / "mlp").mkdir(parents=True)
    (runs_dir / "mlp" / "trial-0").symlink_to(work)
    result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST)
    assert result.code == 2 and result.err.splitlines() == [
        f"error: {runs_dir / 'mlp' / 'trial-0'} (a link to {work}) holds files that tune did not write "
        "(history.json, oof.npy): a trial is written into a folder of its own; move them away"
    ]
    assert sorted(p.name for p in work.iterdir()) == ["history.json", "oof.npy"]
    assert (work / "history.json").read_text() == "[my notes]" and (work / "oof.npy").read_bytes() == b"my array"

    # A link to nowhere is refused too, in one line (the next trial of the study is trial 1).
    (runs_dir / "mlp" / "trial-1").symlink_to(tmp_path / "gone")
    dangling = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST)
    assert dangling.code == 2 and dangling.err.splitlines() == [
        f"error: {runs_dir / 'mlp' / 'trial-1'}: a link to {tmp_path / 'gone'}, which does not exist: move it away"
    ]
    assert not (tmp_path / "gone").exists()


def test_a_trial_folder_of_the_toolkits_own_files_may_be_written_again(run_cli, small_data, tmp_path):
    runs_dir = tmp_path / "runs"
    assert _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST).code == 0
    folder = runs_dir / "mlp" / "trial-0"
    with pytest.raises(UserError, match="already holds a finished trial"):
        runs.check_trial_dir(folder)
    # What an unfinished trial leaves (everything but metrics.json) is the toolkit's own: it may be rewritten.
    (folder / runs.METRICS_FILE).unlink()
    assert runs.TrialRun(folder).fold_model_paths()  # the fold models are recorded too
    runs.check_trial_dir(folder)
    # Once the user changes one of those files, it is theirs.
    (folder / "oof.npy").write_bytes(b"edited")
    with pytest.raises(UserError, match=r"holds files that tune did not write \(oof.npy\)"):
        runs.check_trial_dir(folder)


def test_a_full_disk_after_the_fold_models_removes_them_and_the_default_runs_next(
    run_cli, small_data, tmp_path, monkeypatch
):
    """The disk fills once the fold models are saved: the failed trial leaves none of its files (nor the
    folder it made), and the next run (room again) runs the family's default that failed, not sampled
    parameters."""
    runs_dir = tmp_path / "runs"
    study_folder = (runs_dir / "mlp").resolve()
    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        path = Path(file).resolve() if isinstance(file, (str, os.PathLike)) else None
        if any(flag in mode for flag in "wax+") and path and study_folder in path.parents and "fold-" not in path.name:
            handle.close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return handle

    monkeypatch.setattr(builtins, "open", open_)
    result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST)
    assert result.code == 2 and "the disk is full" in result.err, result.err
    assert "trial 0 fold 2/2" in result.out  # both fold models were fitted (and saved) before the disk filled
    assert not (runs_dir / "mlp" / "trial-0").exists()
    monkeypatch.setattr(builtins, "open", real_open)

    result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST)
    assert result.code == 0, result.err
    assert "the family's default trial did not finish (interrupted or failed): it is queued again" in result.out
    assert "trial 1 (1/1 this run" in result.out and "the family's default" in result.out
    (trial,) = runs.list_trials(runs_dir, ["mlp"])
    assert trial.number == 1 and trial.params == models.get("mlp").default_params(False)
    states = [t.state for t in _study(runs_dir, "mlp").trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    # Once the default has finished, a later run samples.
    result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST)
    assert result.code == 0 and "queued again" not in result.out


def test_a_read_only_runs_folder_is_one_line(run_cli, small_data, tmp_path, monkeypatch):
    """As root, chmod does not stop writes: os.access is what tune asks, so that is what is simulated."""
    runs_dir = tmp_path / "runs"
    assert _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST).code == 0
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and str(runs_dir) in str(path):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    db = runs_dir / tune.DB_FILE
    result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST)
    assert result.code == 2 and result.err.splitlines() == [
        f"error: {db}: read-only (no permission to write): tune records every trial there"
    ]
    monkeypatch.setattr(
        os, "access", lambda path, mode, *a, **k: Path(path) != runs_dir and real_access(path, mode, *a, **k)
    )
    result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST)
    assert result.code == 2 and result.err.splitlines() == [
        f"error: {runs_dir}: read-only folder (no permission to write): tune writes its trials there"
    ]
    assert len(_study(runs_dir, "mlp").trials) == 1


def test_a_database_that_refuses_writes_is_one_line(run_cli, small_data, tmp_path):
    """SQLite's own "attempt to write a readonly database" (here from a read-only URI, which stops root too)."""
    runs_dir = tmp_path / "runs"
    assert _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST).code == 0
    db = runs_dir / tune.DB_FILE
    url = f"sqlite:///file:{db}?mode=ro&uri=true"
    result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", "--storage", url, *FAST)
    assert result.code == 2 and len(result.err.splitlines()) == 1, result.err
    assert "readonly database" in result.err and "Traceback" not in result.err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_a_read_only_runs_folder_really_is_one_line(run_cli, small_data, tmp_path):
    runs_dir = tmp_path / "runs"
    assert _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST).code == 0
    for path in [runs_dir, *runs_dir.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--trials", "1", *FAST)
    finally:
        for path in [runs_dir, *runs_dir.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert result.code == 2 and len(result.err.splitlines()) == 1 and "read-only" in result.err


def test_presets_set_options_and_explicit_options_win():
    def resolve(model, preset=None, **given):
        return tune.resolve(tune.TuneOptions(model, preset=preset, **given))

    fields = tune.OPTION_NAMES
    quick = resolve("cnn", "quick")
    assert {name: getattr(quick, name) for name in fields} == {**tune.DEFAULTS, **models.get("cnn").presets["quick"]}
    assert resolve("cnn", "quick", folds=4, trials=None).folds == 4
    assert {name: getattr(resolve("mlp"), name) for name in fields} == tune.DEFAULTS
    assert resolve("mlp").seed == tune.DEFAULT_SEED and resolve("mlp", seed=3).seed == 3
    assert resolve("mlp", timeout=60).trials is None  # the budget alone bounds the run
    assert resolve("mlp", timeout=60, trials=3).trials == 3
    assert models.PRESET_NAMES == ("quick", "standard", "full")
    # each family declares its own presets, among the known names
    assert all(set(models.get(name).presets) <= set(models.PRESET_NAMES) for name in models.FAMILIES)


@pytest.mark.parametrize("model", list(models.FAMILIES))
@pytest.mark.parametrize("augment", [False, True])
def test_the_first_trial_is_exactly_the_default(model, augment):
    spec = models.get(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FixedTrial only warns about a value outside the space
        assert spec.search_space(FixedTrial(spec.default_suggestions(augment)), augment) == spec.default_params(augment)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(spec.default_suggestions(augment))
    assert spec.search_space(study.ask(), augment) == spec.default_params(augment)


def test_tune_script_wrapper_runs(tmp_path, small_data):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "scripts/tune.py", "--model", "nope"], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: --model nope")


def test_ctrl_c_while_the_commands_are_imported_is_one_line(run_cli, small_data, tmp_path, monkeypatch):
    from kaggle_digits import cli

    real_import = cli.importlib.import_module

    def interrupted_import(name, *args):
        if name == "kaggle_digits.cli.report":  # the parser imports every command's module
            raise KeyboardInterrupt
        return real_import(name, *args)

    monkeypatch.setattr(cli.importlib, "import_module", interrupted_import)
    result = _tune(run_cli, small_data, tmp_path / "runs", "--model", "mlp")
    assert result.code == 130 and "Traceback" not in result.err
    assert result.err.strip().splitlines() == ["interrupted: finished files are kept; partial files were not written"]
    assert not (tmp_path / "runs").exists()


def test_a_real_ctrl_c_before_the_command_starts_is_one_line(tmp_path, small_data):
    # The child stops inside the parser's imports and says so; only then does it get SIGINT.
    child = f"""
import importlib, runpy, sys
real = importlib.import_module
def waiting_import(name, *args):
    if name == "kaggle_digits.cli.report":
        print("importing", flush=True)
        sys.stdin.readline()  # blocks until the test has sent SIGINT
    return real(name, *args)
importlib.import_module = waiting_import
sys.argv = ["scripts/tune.py", "--model", "mlp", "--runs-dir", {str(tmp_path / "runs")!r}]
runpy.run_path("scripts/tune.py", run_name="__main__")
"""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "importing"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted: finished files are kept; partial files were not written"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "study, message",
    [
        ("s" * 300, "--study ssssssssssssssssssss... (300 characters): a study name names a folder, give at most 100"),
        ("a/b", "--study 'a/b': a study name names a folder"),
        ("", "--study: an empty study name"),
    ],
    ids=["300-characters", "slash", "empty"],
)
def test_a_study_name_that_cannot_name_a_folder_is_refused_before_the_study_exists(
    run_cli, small_data, tmp_path, study, message
):
    runs_dir = tmp_path / "runs"
    result = _tune(run_cli, small_data, runs_dir, "--model", "mlp", "--study", study)
    assert result.code == 2 and len(result.err.splitlines()) == 1 and result.err.startswith(f"error: {message}")
    assert not (runs_dir / "optuna.db").exists()


def test_an_interrupted_tune_names_only_a_folder_that_exists(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from kaggle_digits.cli import tune as tune_command
    from kaggle_digits.data import paths as data_paths

    monkeypatch.setattr(tune_command, "resume_command", lambda setup, remaining: f"python scripts/tune.py {remaining}")
    setup = SimpleNamespace(study_name="never-ran")
    folders = data_paths.resolve(runs_dir=tmp_path / "runs")
    tune_command.print_resume(setup, folders, 3, "the running trial was marked failed")
    first = capsys.readouterr()
    (tmp_path / "runs" / "never-ran").mkdir(parents=True)
    tune_command.print_resume(setup, folders, 3, "the running trial was marked failed")
    second = capsys.readouterr()
    assert first.out == second.out == ""  # on stderr, as every command's interrupted line
    assert "no trial had finished. Resume with:\n  python scripts/tune.py 3" in first.err and "kept in" not in first.err
    assert f"finished trials are kept in {tmp_path / 'runs' / 'never-ran'}/. Resume with:" in second.err


def test_missing_digits_are_named_not_blamed_on_the_folds(run_cli, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    pixels = np.zeros((3, 784), dtype=np.uint8)
    data.write_pixel_csv(d / "train.csv", pixels, labels=np.array([0, 1, 2]))
    data.write_pixel_csv(d / "test.csv", pixels[:1])
    result = run_cli("tune", "--model", "mlp", "--data-dir", d, "--runs-dir", tmp_path / "runs")
    assert result.code == 2 and len(result.err.splitlines()) == 1, result.err
    assert "has no rows of digits 3, 4, 5, 6, 7, 8, 9: every digit 0-9 needs at least" in result.err
    assert "fewer folds" not in result.err
