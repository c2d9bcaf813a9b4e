"""The report command: every figure a valid PNG listed in index.html; missing inputs skip with a reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from kaggle_digits.io import read_json
from kaggle_digits.search import runs
from tests.conftest import REPO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 8_000  # an empty 8x5-inch figure is ~5 kB; every real plot here is well above


def _png_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*.png"))


def _check_pngs(out: Path) -> list[str]:
    """Every PNG in `out` is a real, non-trivial PNG, and index.html shows each one (and no other)."""
    names = _png_files(out)
    for name in names:
        raw = (out / name).read_bytes()
        assert raw.startswith(PNG_SIGNATURE), name
        assert len(raw) > MIN_PNG_BYTES, (name, len(raw))
        width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
        assert width > 300 and height > 150, (name, width, height)
    page = (out / "index.html").read_text()
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == names
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    return names


def _folders(tmp_path: Path, data_dir: Path) -> list[str]:
    return [
        "--data-dir",
        str(data_dir),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--submissions-dir",
        str(tmp_path / "submissions"),
        "--reports-dir",
        str(tmp_path / "reports"),
    ]


def test_data_only_report_skips_the_rest_with_reasons(run_cli, small_data, tmp_path):
    out = tmp_path / "reports" / "first"
    result = run_cli("report", *_folders(tmp_path, small_data), "--out", out)
    assert result.code == 0, result.err
    assert _check_pngs(out) == ["data-classes.png", "data-means.png", "data-samples.png"]
    assert "data: 3 figure(s)" in result.out
    assert re.search(r"training: skipped: no study in .*runs: run `python scripts/tune.py", result.out)
    assert re.search(r"tuning: skipped: no Optuna storage at .*optuna.db", result.out)
    assert re.search(r"ensemble: skipped: no ensemble submission in .*submissions", result.out)
    assert f"open {out / 'index.html'}" in result.out
    page = (out / "index.html").read_text()
    assert "1,500" in page and "Skipped: no Optuna storage" in page
    # Reading a missing SQLite storage must not create one.
    assert not (tmp_path / "runs" / "optuna.db").exists()


def test_what_a_user_typed_never_becomes_markup(run_cli, small_data, tmp_path):
    """Study names and a submission's path reach the page as text, escaped, never as HTML."""
    out = tmp_path / "reports" / "escaped"
    typed = tmp_path / "<b>mine</b>.csv"
    result = run_cli(
        "report", *_folders(tmp_path, small_data), "--out", out, "--studies", "<i>s</i>", "--submission", typed
    )
    assert result.code == 0, result.err
    page = (out / "index.html").read_text()
    assert "&lt;b&gt;mine&lt;/b&gt;.csv: file not found" in page and "<b>mine</b>" not in page
    assert "&lt;i&gt;s&lt;/i&gt;" in page and "<i>s</i>" not in page


def test_a_users_index_and_figures_are_never_overwritten(run_cli, small_data, tmp_path):
    folders = _folders(tmp_path, small_data)
    out = tmp_path / "report"
    assert run_cli("report", *folders, "--out", out).code == 0
    again = run_cli("report", *folders, "--out", out)
    assert again.code == 0, again.err  # its own earlier report is rewritten

    # The user's page and a figure of the same name as one of ours: refused, untouched, nothing written.
    for name, content in (("index.html", b"<p>my page</p>"), ("data-classes.png", b"my figure")):
        mine = tmp_path / f"mine-{name}"
        mine.mkdir()
        (mine / name).write_bytes(content)
        result = run_cli("report", *folders, "--out", mine)
        assert result.code == 2 and result.err.count("\n") == 1, result.err
        assert result.err.startswith(f"error: --out {mine}: {name} was not written by kaggle-digits report")
        assert (mine / name).read_bytes() == content and [p.name for p in mine.iterdir()] == [name]

    # One of ours, changed by the user since: theirs now.
    (out / "index.html").write_text("<p>my notes on the report</p>")
    changed = run_cli("report", *folders, "--out", out)
    assert changed.code == 2 and "index.html was not written by kaggle-digits report" in changed.err
    assert (out / "index.html").read_text() == "<p>my notes on the report</p>"

    # Files of other names are no concern of the report's.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "holiday.png").write_bytes(b"photo")
    (shared / "notes.txt").write_text("notes")
    assert run_cli("report", *folders, "--out", shared).code == 0
    assert (shared / "holiday.png").read_bytes() == b"photo" and (shared / "notes.txt").read_text() == "notes"


def test_default_out_folder_is_timestamped_under_reports_dir(run_cli, small_data, tmp_path):
    result = run_cli("report", *_folders(tmp_path, small_data))
    assert result.code == 0, result.err
    (folder,) = (tmp_path / "reports").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}", folder.name)
    assert f"open {folder / 'index.html'}" in result.out


def test_missing_everything_skips_every_section_exit_0(run_cli, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "report",
        *_folders(tmp_path, tmp_path / "nodata"),
        "--studies",
        "cnn",
        "--submission",
        tmp_path / "missing.csv",
        "--storage",
        "sqlite:///" + str(tmp_path / "none.db"),
        "--out",
        out,
    )
    assert result.code == 0, result.err
    assert "Traceback" not in result.out + result.err
    assert re.search(r"data: skipped: .*nodata/train.csv not found: run `python scripts/download.py`", result.out)
    assert re.search(r"study cnn: no folder .*runs/cnn", result.out)
    assert re.search(r"ensemble: skipped: --submission .*missing.csv: file not found", result.out)
    assert re.search(r"tuning: skipped: no Optuna storage at .*none.db", result.out)
    assert _png_files(out) == []
    assert "Skipped:" in (out / "index.html").read_text()


def test_unreachable_storage_is_a_reason_not_a_traceback(run_cli, small_data, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "report",
        *_folders(tmp_path, small_data),
        "--storage",
        "postgresql+psycopg2://user:secret@127.0.0.1:9/none",
        "--out",
        out,
    )
    assert result.code == 0, result.err
    assert re.search(
        r"tuning: skipped: --storage postgresql\+psycopg2://user:\*\*\*@127.0.0.1:9/none: cannot open it", result.out
    )
    assert "secret" not in result.out + (out / "index.html").read_text()


def test_out_that_is_a_file_is_a_user_error(run_cli, small_data, tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine")
    result = run_cli("report", *_folders(tmp_path, small_data), "--out", target)
    assert result.code == 2 and "is not a folder" in result.err
    assert target.read_text() == "mine"


def test_tune_and_ensemble_end_by_naming_the_report_command(tuned_mlp):
    last = tuned_mlp.tune_out.strip().splitlines()[-1]
    assert last.startswith("plots: python scripts/report.py --studies mlp --data-dir ")
    submission = tuned_mlp.ensemble_json.with_suffix(".csv")
    last = tuned_mlp.ensemble_out.strip().splitlines()[-1]
    assert last.startswith(f"plots: python scripts/report.py --submission {submission} --data-dir ")


EXPECTED_PNGS = [
    "attribution-classes.png",
    "attribution-errors.png",
    "data-classes.png",
    "data-means.png",
    "data-samples.png",
    "ensemble-cv.png",
    "ensemble-disagreement.png",
    "ensemble-weights.png",
    "errors-confusion.png",
    "errors-misclassified.png",
    "errors-per-class.png",
    "training-mlp.png",
    "tuning-history-mlp.png",
    "tuning-intermediate-mlp.png",
]


def test_report_of_a_real_study_and_ensemble(run_cli, tuned_mlp, tmp_path):
    root, submission = tuned_mlp.root, tuned_mlp.ensemble_json.with_suffix(".csv")
    out = tmp_path / "full"
    result = run_cli("report", *_folders(root, tuned_mlp.data_dir), "--studies", "mlp", "--out", out)
    assert result.code == 0, result.err
    assert _check_pngs(out) == EXPECTED_PNGS
    assert "0 of 6 sections skipped" in result.out
    # Three trials are too few to rank parameters: said, not drawn.
    assert "parameter importances of mlp: 3 complete trial(s); importances need at least 5" in result.out

    manifest = read_json(tuned_mlp.ensemble_json)
    page = (out / "index.html").read_text()
    cv = f"{manifest['cv_accuracy']:.5f}"
    local = f"{manifest['local_score']['accuracy']:.5f}"
    assert f"ensemble CV: {cv} ({submission.name})" in result.out
    assert f"local leaderboard: {local}" in result.out
    # The errors section blends the constituents' OOF with the ensemble's weights: same accuracy.
    assert re.search(rf"<td>OOF accuracy</td><td>{cv}</td>", page)
    assert "<th>precision</th>" in page and "<th>weighted avg</th>" in page
    # What the models look at: the ensemble of scikit-learn MLPs is explained by occlusion, with captions
    # that say how to read the colours.
    assert "attribution: 2 figure(s)" in result.out
    assert "What the models look at" in page and "<td>method</td><td>occlusion</td>" in page
    assert page.count("Red pixels push the model toward the class") == 2
    best = max((t for t in runs.list_trials(root / "runs", ["mlp"])), key=lambda t: t.cv_accuracy)
    assert f"best mlp: {best.name} CV {best.cv_accuracy:.5f}" in result.out


def test_a_study_in_another_storage_with_enough_trials_for_importances(run_cli, small_data, tmp_path):
    # Any Optuna study can be shown, e.g. one kept in a storage of its own: here a real objective (the
    # held-out accuracy of a k-nearest-neighbours classifier on 600 rows of train.csv), 12 trials, some pruned.
    import optuna
    from sklearn.neighbors import KNeighborsClassifier

    from kaggle_digits.data import dataset as data

    X, y = data.load_train(small_data / "train.csv")
    X = X.reshape(len(X), -1)[:600] / 255.0
    y = y[:600]

    def objective(trial: optuna.Trial) -> float:
        k = trial.suggest_int("k", 1, 25)
        weights = trial.suggest_categorical("weights", ["uniform", "distance"])
        rows = trial.suggest_int("rows", 100, 400, step=100)
        # Intermediate values: held-out accuracy as the training rows grow, a learning curve.
        for step in range(4):
            n = rows * (step + 1) // 4
            model = KNeighborsClassifier(min(k, n), weights=weights).fit(X[:n], y[:n])
            accuracy = float((model.predict(X[400:]) == y[400:]).mean())
            trial.report(accuracy, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    storage = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="knn",
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
    )
    study.optimize(objective, n_trials=12)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 5 and any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)

    out = tmp_path / "report"
    result = run_cli("report", *_folders(tmp_path, small_data), "--studies", "knn", "--storage", storage, "--out", out)
    assert result.code == 0, result.err
    names = _check_pngs(out)
    assert {"tuning-history-knn.png", "tuning-importance-knn.png", "tuning-intermediate-knn.png"} <= set(names)
    assert re.search(r"study knn: no folder .*runs/knn", result.out)  # no trial artifacts: no curves
    assert (
        f"<td>best knn value</td><td>{study.best_value:.5f} (trial {study.best_trial.number})</td>"
        in (out / "index.html").read_text()
    )


def test_missing_study_and_submission_beside_a_real_one(run_cli, tuned_mlp, tmp_path):
    root = tuned_mlp.root
    out = tmp_path / "partial"
    result = run_cli(
        "report",
        *_folders(root, tuned_mlp.data_dir),
        "--studies",
        "mlp",
        "cnn-aug",
        "--submission",
        root / "submissions" / "nope.csv",
        "--out",
        out,
    )
    assert result.code == 0, result.err
    assert re.search(r"study cnn-aug: no folder .*runs/cnn-aug \(studies with trials in .*: mlp, mlp-sub\)", result.out)
    assert re.search(r"study cnn-aug: not in sqlite:///.*optuna.db \(studies there: mlp, mlp-sub\)", result.out)
    assert re.search(r"ensemble: skipped: --submission .*nope.csv: file not found", result.out)
    # Without an ensemble the errors section shows the best trial, and says so.
    assert "showing the best trial instead of an ensemble" in result.out
    names = _check_pngs(out)
    assert "training-mlp.png" in names and "errors-confusion.png" in names
    assert not [n for n in names if n.startswith("ensemble-") or "cnn-aug" in n]


def test_a_home_that_cannot_be_written_gives_no_matplotlib_warnings(tmp_path):
    home = tmp_path / "home-is-a-file"
    home.write_text("not a folder\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "scripts/report.py", "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data"]
        + ["--out", tmp_path / "report"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "atplotlib" not in proc.stderr and "mkdir" not in proc.stderr, proc.stderr
    assert (tmp_path / "report" / "index.html").is_file() and home.read_text() == "not a folder\n"
