"""The ensemble: weights on OOF only, blendable groups, the written submission and its JSON."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from kaggle_digits import data, ensemble, runs, submission
from kaggle_digits.io import read_json

# Trial folders written from real scikit-learn predictions on the small slice; each "view" is the part
# of the image a classifier sees, so members differ and blending has something to gain.
VIEWS = {
    "top": lambda X: X[:, :14].reshape(len(X), -1),
    "bottom": lambda X: X[:, 14:].reshape(len(X), -1),
    "left": lambda X: X[:, :, :14].reshape(len(X), -1),
    "all": lambda X: X.reshape(len(X), -1),
}


def _fingerprint(data_dir: Path, subsample: int | None = None) -> dict:
    return {
        "train_sha256": data.sha256(data_dir / "train.csv"),
        "test_sha256": data.sha256(data_dir / "test.csv"),
        "subsample": subsample,
    }


def _save_sklearn_trial(runs_dir, study, number, make, view, data_dir, rows=None):
    """Cross-validate a scikit-learn classifier on `rows` of train.csv (2 stratified folds) like tune does."""
    X, y = data.load_train(data_dir / "train.csv")
    X_test = data.load_test(data_dir / "test.csv")
    rows = np.arange(len(y)) if rows is None else np.sort(rows)
    Xr, yr = VIEWS[view](X[rows]) / 255.0, y[rows]
    oof = np.zeros((len(rows), 10), dtype=np.float32)
    test = np.zeros((len(X_test), 10), dtype=np.float32)
    fold_acc = []
    for fit_idx, val_idx in StratifiedKFold(2, shuffle=True, random_state=0).split(Xr, yr):
        model = make().fit(Xr[fit_idx], yr[fit_idx])
        oof[val_idx] = model.predict_proba(Xr[val_idx])
        test += model.predict_proba(VIEWS[view](X_test) / 255.0) / 2
        fold_acc.append(float((oof[val_idx].argmax(1) == yr[val_idx]).mean()))
    subsample = None if len(rows) == len(y) else len(rows)
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
            "data": _fingerprint(data_dir, subsample),
        },
        {"cv_accuracy": float(np.mean(fold_acc)), "cv_std": float(np.std(fold_acc)), "fold_accuracies": fold_acc},
        [],
        oof,
        rows,
        test,
    )


def _logreg():
    return LogisticRegression(C=0.05, max_iter=300)


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory, small_data) -> Path:
    """Two studies of real scikit-learn trials on small_data, plus one trial on a 1,000-row subsample."""
    runs_dir = tmp_path_factory.mktemp("runs")
    _save_sklearn_trial(runs_dir, "halves", 0, _logreg, "top", small_data)
    _save_sklearn_trial(runs_dir, "halves", 1, _logreg, "bottom", small_data)
    _save_sklearn_trial(runs_dir, "halves", 2, _logreg, "left", small_data)
    _save_sklearn_trial(runs_dir, "knn", 0, lambda: KNeighborsClassifier(10), "all", small_data)
    rows = np.random.default_rng(1).choice(1500, 1000, replace=False)
    _save_sklearn_trial(runs_dir, "knn-sub", 0, lambda: KNeighborsClassifier(10), "all", small_data, rows)
    return runs_dir


def _oof(runs_dir, small_data, names):
    trials = {t.name: t for t in runs.list_trials(runs_dir)}
    _, y = data.load_train(small_data / "train.csv")
    return np.stack([trials[n].oof_proba for n in names]), y.astype(np.int64)


@pytest.mark.parametrize("method", ["greedy", "weights"])
def test_blending_complementary_members_beats_each_on_oof(study_runs, small_data, method):
    # Each logistic regression sees only half of the image; together they must do better than either.
    probas, y = _oof(study_runs, small_data, ["halves/trial-0", "halves/trial-1"])
    chosen = ensemble.fit_weights(probas, y, method, seed=0)
    assert chosen.weights.min() > 0.1 and chosen.weights.sum() == pytest.approx(1.0)
    blended = ensemble.blend(probas, chosen.weights)
    singles = [ensemble.accuracy(p, y) for p in probas]
    assert ensemble.accuracy(blended, y) > max(singles) + 0.02
    assert ensemble.log_loss(blended, y) < min(ensemble.log_loss(p, y) for p in probas)
    assert np.allclose(blended.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("method", ["greedy", "weights"])
def test_weights_match_or_beat_the_best_single_trial_on_oof(study_runs, small_data, method):
    names = ["knn/trial-0", "halves/trial-0", "halves/trial-1", "halves/trial-2"]
    probas, y = _oof(study_runs, small_data, names)
    chosen = ensemble.fit_weights(probas, y, method, seed=0)
    assert (chosen.weights >= 0).all() and chosen.weights.sum() == pytest.approx(1.0)
    blended = ensemble.blend(probas, chosen.weights)
    assert ensemble.accuracy(blended, y) >= max(ensemble.accuracy(p, y) for p in probas)
    assert ensemble.log_loss(blended, y) <= min(ensemble.log_loss(p, y) for p in probas) + 1e-9
    # A duplicated member changes nothing about the blend (ties are handled, weights just split).
    doubled = ensemble.fit_weights(np.concatenate([probas, probas[:1]]), y, method, seed=0)
    assert ensemble.accuracy(ensemble.blend(np.concatenate([probas, probas[:1]]), doubled.weights), y) >= max(
        ensemble.accuracy(p, y) for p in probas
    )


def test_ensemble_command_writes_a_valid_submission_and_its_json(study_runs, small_data_copy, tmp_path, run_cli):
    subs = tmp_path / "subs"
    result = run_cli(
        "ensemble", "--runs-dir", study_runs, "--data-dir", small_data_copy, "--submissions-dir", subs, "--name", "t"
    )
    assert result.code == 0, result.err
    out = result.out
    # The subsampled trial cannot be blended with the others, and the command says why.
    assert "skipped knn-sub/trial-0: its OOF covers 1,000 train rows, the blended group's 1,500" in out
    assert "4 blendable on the same 1,500 OOF rows" in out
    for name in ("halves/trial-0", "halves/trial-1", "halves/trial-2", "knn/trial-0"):
        assert name in out
    assert "ensemble OOF accuracy" in out and "gain +" in out and "held-out check" in out
    assert "local leaderboard: " in out

    (csv,) = subs.glob("*-t-cv*.csv")
    labels = submission.read_submission(csv, n_test=500)
    manifest = read_json(csv.with_suffix(".json"))
    assert csv.name.endswith(f"-t-cv{manifest['cv_accuracy']:.5f}.csv")
    assert manifest["method"] == "greedy" and manifest["toolkit_version"] and manifest["seed"] == 0
    assert sum(c["weight"] for c in manifest["constituents"]) == pytest.approx(1.0)
    for constituent in manifest["constituents"]:
        assert runs.load_trial(constituent["path"]).name == constituent["name"]
    assert manifest["skipped"][0]["name"] == "knn-sub/trial-0"
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
def test_weights_do_not_depend_on_the_test_labels(study_runs, small_data_copy, tmp_path, run_cli, method):
    args = ["ensemble", "--runs-dir", study_runs, "--data-dir", small_data_copy, "--method", method]
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


def test_studies_and_top_choose_the_candidates(study_runs, small_data, tmp_path, run_cli):
    result = run_cli(
        "ensemble",
        *("--runs-dir", study_runs, "--data-dir", small_data, "--submissions-dir", tmp_path),
        *("--studies", "halves", "--top", "2", "--method", "mean"),
    )
    assert result.code == 0, result.err
    assert "2 trials from 1 studies (best 2 per study); 2 blendable" in result.out
    (manifest,) = tmp_path.glob("*.json")
    assert [c["weight"] for c in read_json(manifest)["constituents"]] == [0.5, 0.5]


def test_no_trials_or_bad_options_are_one_clear_line(tmp_path, small_data, run_cli):
    empty = run_cli("ensemble", "--runs-dir", tmp_path / "runs", "--data-dir", small_data)
    assert empty.code == 2 and empty.err.count("\n") == 1
    assert "no finished trials" in empty.err and "python scripts/tune.py" in empty.err
    unknown = run_cli("ensemble", "--runs-dir", tmp_path / "runs", "--studies", "nope")
    assert unknown.code == 2 and "no study 'nope'" in unknown.err


def test_trials_of_other_data_are_refused(study_runs, small_data, tmp_path, run_cli):
    # The same-sized slice with other images: the trials' train.csv fingerprint no longer matches.
    from tests.conftest import make_slice

    other = make_slice(tmp_path / "other", 1500, 500, seed=5)
    result = run_cli("ensemble", "--runs-dir", study_runs, "--data-dir", other, "--submissions-dir", tmp_path / "s")
    assert result.code == 2 and "is not the file" in result.err and "SHA-256 differs" in result.err
    assert not (tmp_path / "s").exists()
