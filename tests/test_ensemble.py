"""The ensemble: weights on OOF only, blendable groups, the written submission and its JSON."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from kaggle_digits.blend import ensemble, submission
from kaggle_digits.data import dataset as data
from kaggle_digits.io import read_json
from kaggle_digits.search import runs
from tests.conftest import FailingFile, make_slice

# Trial folders written from real scikit-learn predictions on the small slice; each "view" is the part
# of the image a classifier sees, so members differ and blending has something to gain.
VIEWS = {
    "top": lambda X: X[:, :14],
    "bottom": lambda X: X[:, 14:],
    "left": lambda X: X[:, :, :14],
}


def _features(X: np.ndarray, view: str) -> np.ndarray:
    """One part of each image, 2x2-pooled (few features: the fits take well under a second)."""
    part = VIEWS[view](X).astype(np.float32) / 255.0
    n, h, w = part.shape
    return part.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).reshape(n, -1)


def _fingerprint(data_dir: Path) -> dict:
    return {
        "train_sha256": data.sha256(data_dir / "train.csv"),
        "test_sha256": data.sha256(data_dir / "test.csv"),
        "subsample": None,
    }


def _save_sklearn_trial(runs_dir, study, number, make, view, data_dir):
    """Cross-validate a scikit-learn classifier on train.csv (2 stratified folds) like tune does."""
    X, y = data.load_train(data_dir / "train.csv")
    X_test = data.load_test(data_dir / "test.csv")
    rows = np.arange(len(y))
    Xr, yr = _features(X, view), y
    oof = np.zeros((len(rows), 10), dtype=np.float32)
    test = np.zeros((len(X_test), 10), dtype=np.float32)
    fold_acc = []
    for fit_idx, val_idx in StratifiedKFold(2, shuffle=True, random_state=0).split(Xr, yr):
        # Tiny fits: one BLAS thread is faster, and far faster when other work keeps both cores busy.
        with threadpool_limits(1):
            model = make().fit(Xr[fit_idx], yr[fit_idx])
        oof[val_idx] = model.predict_proba(Xr[val_idx])
        test += model.predict_proba(_features(X_test, view)) / 2
        fold_acc.append(float((oof[val_idx].argmax(1) == yr[val_idx]).mean()))
    return runs.save_trial(
        runs.trial_dir(runs_dir, study, number),
        {
            "study": study,
            "trial": number,
            "model": f"sk-{view}",
            "augment": False,
            "params": {"view": view},
            "seed": 0,
            "folds": 2,
            "data": _fingerprint(data_dir),
        },
        {"cv_accuracy": float(np.mean(fold_acc)), "cv_std": float(np.std(fold_acc)), "fold_accuracies": fold_acc},
        [],
        oof,
        rows,
        test,
    )


def _logreg():
    return LogisticRegression(C=0.5, max_iter=200)


@pytest.fixture(scope="module")
def halves(tmp_path_factory, small_data) -> Path:
    """Logistic regressions that each see one part of the image: members with something to gain."""
    runs_dir = tmp_path_factory.mktemp("halves")
    for number, view in enumerate(("top", "bottom", "left")):
        _save_sklearn_trial(runs_dir, "halves", number, _logreg, view, small_data)
    return runs_dir


@pytest.fixture
def tuned(tuned_mlp) -> Path:
    """The runs folder of conftest's real studies: mlp (3 trials on all 1,500 rows) and mlp-sub (1 trial on a
    1,000-row subsample, so its OOF rows differ). Read-only."""
    return tuned_mlp.runs_dir


def _oof(runs_dir, small_data, names):
    trials = {t.name: t for t in runs.list_trials(runs_dir)}
    _, y = data.load_train(small_data / "train.csv")
    return np.stack([trials[n].oof_proba for n in names]), y.astype(np.int64)


@pytest.mark.parametrize("method", ["greedy", "weights"])
def test_blending_complementary_members_beats_each_on_oof(halves, small_data, method):
    # Each logistic regression sees only half of the image; together they must do better than either.
    probas, y = _oof(halves, small_data, ["halves/trial-0", "halves/trial-1"])
    chosen = ensemble.fit_weights(probas, y, method, seed=0)
    assert chosen.weights.min() > 0.1 and chosen.weights.sum() == pytest.approx(1.0)
    blended = ensemble.blend(probas, chosen.weights)
    singles = [ensemble.accuracy(p, y) for p in probas]
    assert ensemble.accuracy(blended, y) > max(singles) + 0.02
    assert ensemble.log_loss(blended, y) < min(ensemble.log_loss(p, y) for p in probas)
    assert np.allclose(blended.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("method", ["greedy", "weights"])
def test_weights_match_or_beat_the_best_single_trial_on_oof(tuned, halves, small_data, method):
    names = ["mlp/trial-0", "mlp/trial-1", "mlp/trial-2"]
    probas, y = _oof(tuned, small_data, names)
    probas = np.concatenate([probas, _oof(halves, small_data, ["halves/trial-2"])[0]])
    chosen = ensemble.fit_weights(probas, y, method, seed=0)
    assert (chosen.weights >= 0).all() and chosen.weights.sum() == pytest.approx(1.0)
    blended = ensemble.blend(probas, chosen.weights)
    best_single = max(ensemble.accuracy(p, y) for p in probas)
    assert ensemble.accuracy(blended, y) >= best_single
    if not chosen.note:  # a blend was kept: it also has the lowest log-loss
        assert ensemble.log_loss(blended, y) <= min(ensemble.log_loss(p, y) for p in probas) + 1e-9
    # A duplicated member is a tie everywhere: the blend is still at least as good as the best single trial.
    doubled = np.concatenate([probas, probas[:1]])
    again = ensemble.fit_weights(doubled, y, method, seed=0)
    assert ensemble.accuracy(ensemble.blend(doubled, again.weights), y) >= best_single


def test_ensemble_command_writes_a_valid_submission_and_its_json(tuned, small_data_copy, tmp_path, run_cli):
    subs = tmp_path / "subs"
    folders = ("--runs-dir", tuned, "--data-dir", small_data_copy, "--submissions-dir", subs)
    result = run_cli("ensemble", *folders, "--name", "t")
    assert result.code == 0, result.err
    out = result.out
    # The subsampled study cannot be blended with the others, and the command says why.
    assert "skipped mlp-sub/trial-0: its OOF covers 1,000 train rows, the blended group's 1,500" in out
    assert "4 trials from 2 studies (best 5 per study); 3 blendable on the same 1,500 OOF rows" in out
    for name in ("mlp/trial-0", "mlp/trial-1", "mlp/trial-2"):
        assert name in out
    assert "ensemble OOF accuracy" in out and "gain +" in out and "held-out check" in out

    (csv,) = subs.glob("*-t-cv*.csv")
    labels = submission.read_submission(csv, n_test=500)
    manifest = read_json(csv.with_suffix(".json"))
    assert csv.name.endswith(f"-t-cv{manifest['cv_accuracy']:.5f}.csv")
    assert manifest["method"] == "greedy" and manifest["toolkit_version"] and manifest["seed"] == 0
    assert sum(c["weight"] for c in manifest["constituents"]) == pytest.approx(1.0)
    for constituent in manifest["constituents"]:
        trial = runs.load_trial(constituent["path"])
        assert trial.name == constituent["name"] and trial.fold_model_paths()
    assert manifest["skipped"][0]["name"] == "mlp-sub/trial-0"
    assert manifest["cv_accuracy"] >= manifest["best_single"]["oof_accuracy"]

    # The file holds exactly the blend of the constituents' test probabilities with those weights.
    trials = [runs.load_trial(c["path"]) for c in manifest["constituents"]]
    weights = np.array([c["weight"] for c in manifest["constituents"]])
    expected = ensemble.blend(np.stack([t.test_proba for t in trials]), weights).argmax(axis=1)
    assert (labels == expected).all()
    score = submission.score_local(csv, small_data_copy / "solution.csv")
    assert manifest["local_score"]["accuracy"] == pytest.approx(score.accuracy)
    assert f"local leaderboard: {score}" in out

    (row,) = submission.read_history(subs / "history.csv")
    assert row["file"] == str(csv) and float(row["cv_accuracy"]) == pytest.approx(manifest["cv_accuracy"], abs=1e-5)


@pytest.mark.parametrize("method", ["greedy", "weights", "mean"])
def test_weights_do_not_depend_on_the_test_labels(tuned, small_data_copy, tmp_path, run_cli, method):
    args = ["ensemble", "--runs-dir", tuned, "--data-dir", small_data_copy, "--method", method]
    first = run_cli(*args, "--submissions-dir", tmp_path / "a")
    shutil.move(small_data_copy / "solution.csv", tmp_path / "solution.csv")
    second = run_cli(*args, "--submissions-dir", tmp_path / "b")
    assert first.code == 0 and second.code == 0, first.err + second.err
    assert "local leaderboard" in first.out and "local leaderboard" not in second.out
    assert "solution.csv: submit the file to get its score" in second.out
    (a,) = (tmp_path / "a").glob("*.json")
    (b,) = (tmp_path / "b").glob("*.json")
    weights_a = [(c["name"], c["weight"]) for c in read_json(a)["constituents"]]
    assert weights_a == [(c["name"], c["weight"]) for c in read_json(b)["constituents"]]
    assert a.with_suffix(".csv").read_bytes() == b.with_suffix(".csv").read_bytes()


def test_studies_and_top_choose_the_candidates(tuned, small_data, tmp_path, run_cli):
    result = run_cli(
        "ensemble",
        *("--runs-dir", tuned, "--data-dir", small_data, "--submissions-dir", tmp_path),
        *("--studies", "mlp", "--top", "2", "--method", "mean"),
    )
    assert result.code == 0, result.err
    assert "2 trials from 1 studies (best 2 per study); 2 blendable" in result.out
    (manifest,) = tmp_path.glob("*.json")
    best_two = [t.name for t in runs.list_trials(tuned, ["mlp"])[:2]]
    assert [(c["name"], c["weight"]) for c in read_json(manifest)["constituents"]] == [(n, 0.5) for n in best_two]


def test_no_trials_or_bad_options_are_one_clear_line(tmp_path, small_data, run_cli):
    empty = run_cli("ensemble", "--runs-dir", tmp_path / "runs", "--data-dir", small_data)
    assert empty.code == 2 and empty.err.count("\n") == 1
    assert "no finished trials" in empty.err and "python scripts/tune.py" in empty.err
    unknown = run_cli("ensemble", "--runs-dir", tmp_path / "runs", "--studies", "nope")
    assert unknown.code == 2 and "no study 'nope'" in unknown.err


def test_trials_of_other_data_are_refused(tuned, tmp_path, run_cli):
    # A same-sized slice with other images: the trials' train.csv fingerprint no longer matches.
    other = make_slice(tmp_path / "other", 1500, 500, seed=5)
    result = run_cli("ensemble", "--runs-dir", tuned, "--data-dir", other, "--submissions-dir", tmp_path / "s")
    assert result.code == 2 and "is not the file" in result.err and "SHA-256 differs" in result.err
    assert not (tmp_path / "s").exists()


def test_a_study_named_twice_counts_once(halves, small_data, tmp_path, run_cli):
    result = run_cli(
        "ensemble",
        *("--runs-dir", halves, "--data-dir", small_data, "--submissions-dir", tmp_path),
        *("--studies", "halves", "halves", "--method", "mean"),
    )
    assert result.code == 0, result.err
    assert "3 trials from 1 studies (best 5 per study); 3 blendable" in result.out
    (manifest,) = tmp_path.glob("*.json")
    weights = [c["weight"] for c in read_json(manifest)["constituents"]]
    assert len(weights) == 3 and weights == pytest.approx([1 / 3] * 3)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_trial_arrays_leave_the_trial_out_with_the_reason(halves, small_data, tmp_path, run_cli):
    runs_dir = tmp_path / "runs"
    shutil.copytree(halves, runs_dir)
    subs = tmp_path / "subs"
    folders = ("--runs-dir", runs_dir, "--data-dir", small_data, "--submissions-dir", subs)
    _truncate(runs_dir / "halves" / "trial-0" / "oof.npy")
    (runs_dir / "halves" / "trial-1" / "test.npy").unlink()
    result = run_cli("ensemble", *folders, "--method", "mean")
    assert result.code == 0, result.err
    assert "skipped halves/trial-0: oof.npy is truncated or damaged" in result.out
    assert "skipped halves/trial-1: test.npy is missing" in result.out
    (csv,) = subs.glob("*-cv*.csv")
    manifest = read_json(csv.with_suffix(".json"))
    assert [c["name"] for c in manifest["constituents"]] == ["halves/trial-2"]

    # The report skips what needs the damaged file, with the reason, and still writes its page.
    _truncate(runs_dir / "halves" / "trial-2" / "oof.npy")
    out = tmp_path / "report"
    report = run_cli("report", *folders, "--reports-dir", tmp_path, "--submission", csv, "--out", out)
    assert report.code == 0, report.err
    assert "Traceback" not in report.out + report.err
    assert "oof.npy is truncated or damaged" in report.out and (out / "index.html").is_file()

    _truncate(runs_dir / "halves" / "trial-1" / "oof.npy")
    none_left = run_cli("ensemble", *folders)
    assert none_left.code == 2 and none_left.err.count("\n") == 1
    assert none_left.err.startswith("error: no usable trials: halves/trial-")


def test_non_finite_arrays_or_a_test_npy_of_other_data_leave_the_trial_out(halves, small_data, tmp_path, run_cli):
    runs_dir = tmp_path / "runs"
    shutil.copytree(halves, runs_dir)
    subs = tmp_path / "subs"
    folders = ("--runs-dir", runs_dir, "--data-dir", small_data, "--submissions-dir", subs)
    trial = [runs_dir / "halves" / f"trial-{k}" for k in range(3)]
    oof = np.load(trial[0] / "oof.npy")
    np.save(trial[0] / "oof.npy", np.full_like(oof, np.nan))
    np.save(trial[1] / "test.npy", np.load(trial[1] / "test.npy")[:-1])  # one row short of test.csv
    result = run_cli("ensemble", *folders)
    assert result.code == 0, result.err
    assert "skipped halves/trial-0: oof.npy holds NaN or infinite values" in result.out
    assert (
        f"skipped halves/trial-1: test.npy has 499 rows, but {small_data / 'test.csv'} has 500 (tuned on other data?)"
        in result.out
    )
    (csv,) = subs.glob("*-cv*.csv")
    assert [c["name"] for c in read_json(csv.with_suffix(".json"))["constituents"]] == ["halves/trial-2"]

    test = np.load(trial[2] / "test.npy")
    test[7, 3] = np.inf
    np.save(trial[2] / "test.npy", test)
    none_left = run_cli("ensemble", *folders)
    assert none_left.code == 2 and none_left.err.count("\n") == 1
    assert "halves/trial-2: test.npy holds NaN or infinite values" in none_left.err


def test_a_mean_below_the_best_single_trial_is_replaced_by_that_trial(halves, small_data, tmp_path, run_cli):
    probas, y = _oof(halves, small_data, ["halves/trial-0"])
    wrong = np.eye(10, dtype=np.float32)[(y + 1) % 10]  # sure of a wrong digit on every row
    chosen = ensemble.fit_weights(np.stack([probas[0], wrong]), y, "mean")
    assert chosen.weights.tolist() == [1.0, 0.0]
    assert "below the best single trial's" in chosen.note

    # The command: a trial that is always wrong joins the study; the mean of the two is not written.
    runs_dir = tmp_path / "runs"
    shutil.copytree(halves / "halves" / "trial-0", runs_dir / "pair" / "trial-0")
    good = runs.load_trial(runs_dir / "pair" / "trial-0")
    info = {**good.info, "trial": 1}
    info["study"] = good.info["study"] = "pair"
    (runs_dir / "pair" / "trial-0" / "params.json").write_text(json.dumps(good.info))
    test_wrong = np.eye(10, dtype=np.float32)[np.zeros(len(good.test_proba), dtype=int)]
    runs.save_trial(runs_dir / "pair" / "trial-1", info, {"cv_accuracy": 0.1}, [], wrong, good.oof_rows, test_wrong)
    subs = tmp_path / "subs"
    result = run_cli(
        "ensemble", "--runs-dir", runs_dir, "--data-dir", small_data, "--submissions-dir", subs, "--method", "mean"
    )
    assert result.code == 0, result.err
    assert "that trial alone is used" in result.out
    (manifest,) = subs.glob("*.json")
    assert [(c["name"], c["weight"]) for c in read_json(manifest)["constituents"]] == [("pair/trial-0", 1.0)]
    assert read_json(manifest)["cv_accuracy"] == pytest.approx(ensemble.accuracy(probas[0], y))


def test_a_full_disk_is_one_line_naming_the_submissions_folder(halves, small_data, tmp_path, run_cli, full_disk):
    subs = tmp_path / "subs"
    full_disk(subs)
    result = run_cli("ensemble", "--runs-dir", halves, "--data-dir", small_data, "--submissions-dir", subs)
    assert result.code == 2
    assert result.err.splitlines() == [
        f"error: {subs}: the disk is full (no space left on device); nothing half-written was kept"
    ]
    assert not subs.exists() or list(subs.iterdir()) == []


@pytest.mark.parametrize("failing", ["manifest", "history"])
@pytest.mark.parametrize("error", ["disk full", "ctrl-c"])
def test_a_failure_after_the_submission_leaves_no_submission_without_its_manifest_and_row(
    halves, small_data, tmp_path, run_cli, monkeypatch, failing, error
):
    subs = tmp_path / "subs"
    args = ("ensemble", "--runs-dir", halves, "--data-dir", small_data, "--submissions-dir", subs, "--method", "mean")
    assert run_cli(*args).code == 0
    before = {p.name: p.read_bytes() for p in subs.iterdir()}
    assert len(before) == 3  # the CSV, its manifest and history.csv

    # The next write of the manifest (its temporary file beside it) or of history.csv fails half-way: a
    # disk that fills up at that moment, or Ctrl-C.
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if error == "disk full" else KeyboardInterrupt()
    part = ".json." if failing == "manifest" else "history.csv"
    real_open = builtins.open

    def open_(file, mode="r", *a, **kw):
        handle = real_open(file, mode, *a, **kw)
        if any(flag in mode for flag in "wax+") and part in Path(file).name:
            return FailingFile(handle, exc, written=0.5)
        return handle

    monkeypatch.setattr(builtins, "open", open_)
    result = run_cli(*args)
    monkeypatch.undo()
    if error == "disk full":
        assert result.code == 2 and result.err.splitlines() == [
            f"error: {subs}: the disk is full (no space left on device); nothing half-written was kept"
        ]
    else:
        assert result.code == 130 and "partial files were not written" in result.err
    assert {p.name: p.read_bytes() for p in subs.iterdir()} == before


def test_a_seed_out_of_range_is_one_line(halves, small_data, tmp_path, run_cli):
    result = run_cli("ensemble", "--runs-dir", halves, "--data-dir", small_data, "--seed", "-1")
    assert result.code == 2 and result.err.splitlines() == [
        "error: --seed -1: needs a whole number from 0 to 2147483647"
    ]


def test_a_file_as_runs_folder_and_an_empty_study_name_are_one_clear_line(small_data, tmp_path, run_cli):
    blocker = tmp_path / "runs.txt"
    blocker.write_text("not a folder\n")
    result = run_cli("ensemble", "--runs-dir", blocker, "--data-dir", small_data)
    assert result.code == 2 and result.err.splitlines() == [f"error: {blocker}: is a file, expected a folder"]
    assert blocker.read_text() == "not a folder\n"
    for command in ("ensemble", "report"):
        result = run_cli(command, "--studies", "", "--runs-dir", tmp_path / "runs", "--data-dir", small_data)
        assert result.code == 2 and result.err.splitlines() == [
            "error: --studies: an empty study name; give the studies' names, or leave --studies out for all"
        ], result.err
    assert not (tmp_path / "runs").exists()
