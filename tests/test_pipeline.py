"""`pipeline` end to end on the small slice: download -> tune two families -> ensemble -> submit (fake Kaggle)."""

from __future__ import annotations

import re

import pytest

from kaggle_digits.blend import submission
from kaggle_digits.io import read_json
from kaggle_digits.search import runs


def test_pipeline_tunes_ensembles_writes_and_uploads_with_the_quick_cnn_in_fold_processes(
    run_cli, small_data_copy, tmp_path, fake_kaggle
):
    """One run serves two subjects: the steps, summary and upload of a pipeline, and the quick cnn's folds
    in processes of their own in the fast precision, which the next family does not inherit."""
    from kaggle_digits.models import hardware

    runs_dir, subs = tmp_path / "runs", tmp_path / "subs"
    folders = ("--data-dir", small_data_copy, "--runs-dir", runs_dir, "--submissions-dir", subs)
    # Two folds, so two fold processes start TensorFlow (the pipeline's own four: the next test).
    tiny = ("--trials", "1", "--folds", "2", "--epochs", "1", "--subsample", "300")
    result = run_cli("pipeline", "--models", "cnn,mlp", *tiny, "--submit", "-m", "tiny pipeline", *folders)
    assert result.code == 0, result.err
    out = result.out
    steps = [
        "step 1/5: download",
        "step 2/5: tune cnn (study 'cnn-aug-quick', preset quick)",  # the quick pipeline augments the cnn
        "step 3/5: tune mlp (study 'mlp-quick', preset quick)",
        "step 4/5: ensemble",
        "step 5/5: submit to Kaggle",
    ]
    positions = [out.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "already present and valid" in out  # the data was there: not fetched again

    # Both studies ran with the pass-through options: 1 trial, 2 folds, 300 rows; the cnn's folds in
    # processes (the default for its folds on this machine) and in the fast precision, the mlp's not.
    (cnn,) = runs.list_trials(runs_dir, ["cnn-aug-quick"])
    (mlp,) = runs.list_trials(runs_dir, ["mlp-quick"])
    for trial in (cnn, mlp):
        assert trial.info["folds"] == 2 and len(trial.oof_rows) == 300 and len(trial.metrics["fold_accuracies"]) == 2
    assert cnn.info["augment"] and not mlp.info["augment"]
    fast = hardware.choose_policy("fast", hardware.detect())
    cnn_part, mlp_part = out.split("tune mlp", 1)
    assert f"precision: {fast}" in cnn_part
    assert f"precision: {hardware.choose_policy('auto', hardware.detect())}" in mlp_part

    # The summary, with the figures that the artifacts hold.
    summary = out[out.index("pipeline (quick, augmented) done in") :]
    (csv,) = subs.glob("*-pipeline-quick-cv*.csv")
    manifest = read_json(csv.with_suffix(".json"))
    for study, best in (("cnn-aug-quick", cnn), ("mlp-quick", mlp)):
        family = study.split("-")[0]
        assert re.search(rf"{family}\s+best CV {best.cv_accuracy:.5f} ± {best.cv_std:.5f}  \({best.name}\)", summary)
    assert f"ensemble CV {manifest['cv_accuracy']:.5f}" in summary
    local = submission.score_local(csv, small_data_copy / "solution.csv")
    assert f"local leaderboard {local}" in summary and f"submission: {csv}" in summary
    assert f"plots: python scripts/report.py --studies cnn-aug-quick mlp-quick --submission {csv} " in summary
    assert {c["name"].split("/")[0] for c in manifest["constituents"]} <= {"cnn-aug-quick", "mlp-quick"}
    assert manifest["cv_accuracy"] >= manifest["best_single"]["oof_accuracy"]
    submission.read_submission(csv, n_test=500)

    # Uploaded through the submit command's code: the file itself, with the message.
    (create,) = fake_kaggle.calls("CreateSubmission")
    assert create.body["submissionDescription"] == "tiny pipeline"
    (put,) = fake_kaggle.calls("upload")
    assert put.body == csv.read_bytes()
    written, uploaded = submission.read_history(subs / "history.csv")
    assert written["file"] == uploaded["file"] == str(csv) and uploaded["message"] == "tiny pipeline"


def test_the_quick_cnn_trains_the_pipelines_folds_not_tunes():
    from kaggle_digits import models, pipeline

    options = pipeline.PipelineOptions(preset="quick")
    cnn, mlp = pipeline.tune_options(options, "cnn"), pipeline.tune_options(options, "mlp")
    assert cnn.folds == 4 and models.get("cnn").presets["quick"]["folds"] == 2  # the pipeline's, not tune's
    assert cnn.augment and not mlp.augment
    assert pipeline.tune_options(pipeline.PipelineOptions(preset="quick", folds=2), "cnn").folds == 2, "given wins"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--models", "mlp,svm"), "unknown model 'svm'"),
        (("--models", " , "), "--models"),
        (("--submit",), '--submit needs -m "message"'),
        (("-m", "hello"), "-m goes with --submit"),
        (("--submit", "-m", "x"), "--submit needs Kaggle credentials"),
        (("--preset", "huge"), "invalid choice: 'huge'"),
        (("--seed", "4294967296"), "--seed 4294967296: needs a whole number from 0 to 2147483647"),
        (("--seed", "-1"), "--seed -1: needs a whole number"),
    ],
)
def test_bad_options_stop_before_any_work(run_cli, tmp_path, args, message, capsys):
    folders = ("--data-dir", tmp_path / "data", "--runs-dir", tmp_path / "runs", "--submissions-dir", tmp_path / "s")
    try:
        result = run_cli("pipeline", *args, *folders)
    except SystemExit as exc:  # argparse's own usage errors
        assert exc.code == 2 and message in capsys.readouterr().err
        return
    assert result.code == 2 and result.err.count("\n") == 1 and message in result.err
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_a_planted_solution_with_every_label_wrong_or_none_changes_only_the_reported_score(
    run_cli, small_data_copy, tmp_path
):
    """solution.csv is read by the local scorer alone: tuning (folds in child processes too), the ensemble
    and the submission are the same whatever labels it holds, and without it."""
    import csv as csv_module

    def pipeline(name: str):
        folders = (
            "--data-dir",
            small_data_copy,
            "--runs-dir",
            tmp_path / name,
            "--submissions-dir",
            tmp_path / f"s-{name}",
        )
        result = run_cli("pipeline", "--models", "mlp", "--trials", "1", "--folds", "2", "--subsample", "600", *folders)
        assert result.code == 0, result.err
        (written,) = (tmp_path / f"s-{name}").glob("*-cv*.csv")  # (history.csv lies beside it)
        return result.out, written.read_bytes()

    true_out, true_file = pipeline("true")
    solution = small_data_copy / "solution.csv"
    with solution.open() as f:
        rows = list(csv_module.reader(f))
    wrong = [rows[0]] + [[image, str((int(label) + 1) % 10), *rest] for image, label, *rest in rows[1:]]
    with solution.open("w", newline="") as f:
        csv_module.writer(f).writerows(wrong)
    wrong_out, wrong_file = pipeline("wrong")
    assert wrong_file == true_file

    def local(out: str) -> float:
        return float(re.search(r"local leaderboard (0\.\d+)", out).group(1))

    assert local(true_out) > 0.5
    assert local(wrong_out) < 0.2, "the planted labels reached the scorer, and only it"

    solution.unlink()
    absent_out, absent_file = pipeline("absent")
    assert absent_file == true_file and "local leaderboard: no solution.csv" in absent_out


@pytest.mark.parametrize("augment", [False, True])
def test_the_quick_cnn_augments_whether_or_not_augment_is_given_and_a_budget_plans_its_own(augment):
    from kaggle_digits import pipeline, planner

    sized = pipeline.PipelineOptions(augment=augment, epochs=8)  # sized by hand: the preset's departures
    chosen = pipeline.tune_options(sized, "cnn")
    assert chosen.augment and chosen.study == "cnn-aug-quick" and chosen.folds == 4 and chosen.fold_jobs >= 1
    assert pipeline.tune_options(sized, "dense").augment == augment
    # Under --budget the plan decides: a plan too short for augmentation does not augment.
    plan = planner.Plan(600.0, folds=4, epochs=6, augment=False, steps=[], jobs=2)
    planned = pipeline.tune_options(
        pipeline.with_plan(pipeline.PipelineOptions(augment=augment, budget=600.0), plan, 0.0), "cnn"
    )
    assert planned.augment == augment and planned.epochs == 6 and planned.folds == 4 and planned.fold_jobs == 2
    assert planned.study == ("cnn-aug-budget" if augment else "cnn-budget")
    assert planned.trials == 1 and not planned.prune, "one planned trial: nothing to prune it against"
    assert not planned.monitor and chosen.monitor, "a planned run scores its held-out folds once, at the end"


@pytest.mark.parametrize(
    "given, seconds",
    [
        ({}, 600.0),
        ({"preset": "standard"}, 3600.0),
        ({"preset": "full"}, 14400.0),
        ({"models": "cnn"}, 600.0),
        ({"fold_jobs": 1, "folds": 5, "precision": "float32", "augment": True}, 600.0),
        ({"budget": 1800.0, "preset": "full"}, 1800.0),
        ({"models": "cnn,dense"}, None),
        ({"epochs": 3}, None),
        ({"trials": 2}, None),
        ({"subsample": 1000}, None),
    ],
)
def test_a_preset_is_a_time_budget_unless_the_run_is_sized_by_hand(given, seconds):
    from kaggle_digits import pipeline

    assert pipeline.preset_budget(pipeline.PipelineOptions(**given)) == seconds


def test_the_runs_of_a_plan_have_their_own_studies_and_seeds():
    from kaggle_digits import pipeline, planner

    plan = planner.Plan(3600.0, folds=4, epochs=30, augment=True, steps=[], jobs=2, runs=3)
    options = pipeline.with_plan(pipeline.PipelineOptions(preset="standard", seed=7), plan, 0.0)
    chosen = [pipeline.tune_options(options, "cnn", k) for k in range(pipeline.run_count(options))]
    assert [c.study for c in chosen] == ["cnn-aug-standard", "cnn-aug-standard-run2", "cnn-aug-standard-run3"]
    assert [c.seed for c in chosen] == [7, 7 + pipeline.RUN_SEED_STRIDE, 7 + 2 * pipeline.RUN_SEED_STRIDE]
    assert all(c.epochs == 30 and c.folds == 4 and c.trials == 1 and not c.prune and not c.monitor for c in chosen)
    # --runs given wins over the plan's
    assert pipeline.run_count(pipeline.with_plan(pipeline.PipelineOptions(runs=1), plan, 0.0)) == 1


def test_runs_are_cross_validations_of_their_own_seeds_all_offered_to_the_ensemble(run_cli, small_data_copy, tmp_path):
    runs_dir, subs = tmp_path / "runs", tmp_path / "subs"
    folders = ("--data-dir", small_data_copy, "--runs-dir", runs_dir, "--submissions-dir", subs)
    in_process = ("--fold-jobs", "1", *folders)  # the subject is the runs' seeds and studies, not the folds' processes
    result = run_cli(
        "pipeline", "--models", "mlp", "--runs", "2", "--trials", "1", "--folds", "2", "--subsample", "600", *in_process
    )
    assert result.code == 0, result.err
    assert "tune mlp (study 'mlp-quick', preset quick, run 1/2 (seed 0))" in result.out
    assert "tune mlp (study 'mlp-quick-run2', preset quick, run 2/2 (seed 1000))" in result.out
    (first,) = runs.list_trials(runs_dir, ["mlp-quick"])
    (second,) = runs.list_trials(runs_dir, ["mlp-quick-run2"])
    assert (first.info["seed"], second.info["seed"]) == (0, 1000)
    (manifest,) = subs.glob("*.json")
    blended = read_json(manifest)
    assert "mlp-quick" in str(blended) and "mlp-quick-run2" in str(blended), "both runs were ensemble candidates"


@pytest.mark.parametrize("runs_given", ["0", "13"])
def test_runs_out_of_range_is_one_line(run_cli, tmp_path, runs_given):
    result = run_cli("pipeline", "--runs", runs_given, "--data-dir", tmp_path / "d", "--runs-dir", tmp_path / "r")
    assert result.code == 2 and result.err.startswith(f"error: --runs {runs_given}:") and result.err.count("\n") == 1
    assert not (tmp_path / "d").exists()


def test_each_planned_run_ends_by_its_own_deadline():
    from kaggle_digits import pipeline, planner

    speed = planner.Speed(train_per_s=800.0, predict_per_s=4000.0, policy="float32", machine="test", jobs=2)
    plan = planner.plan(14400, speed)
    options = pipeline.with_plan(pipeline.PipelineOptions(preset="full"), plan, started=1000.0)
    deadlines = [pipeline.tune_options(options, "cnn", k).deadline for k in range(pipeline.run_count(options))]
    assert plan.runs > 1 and deadlines == [1000.0 + end for end in planner.run_deadlines(plan)]
    assert pipeline.tune_options(pipeline.PipelineOptions(epochs=3), "cnn").deadline is None, "sized by hand: none"


def test_the_pipeline_is_one_library_call_that_prints_nothing(small_data_copy, tmp_path, capsys):
    """pipeline.run: the same run as the command, its figures returned, its steps told to a Progress."""
    from kaggle_digits import pipeline, progress
    from kaggle_digits.data import paths

    class Steps(progress.Progress):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []
            self.steps: list[tuple[int, int, str]] = []
            self.closed = 0

        def __call__(self, line: str) -> None:
            self.lines.append(line)

        def step(self, done: int, total: int, what: str) -> None:
            self.steps.append((done, total, what))

        def close(self) -> None:
            self.closed += 1

    folders = paths.resolve(data_dir=small_data_copy, runs_dir=tmp_path / "runs", submissions_dir=tmp_path / "subs")
    options = pipeline.PipelineOptions(models="mlp", trials=1, folds=2, subsample=600, fold_jobs=1)
    log = Steps()
    result = pipeline.run(options, folders, log=log)
    assert capsys.readouterr().out == "", "the library reports through its log, never prints"
    assert log.steps == [
        (0, 3, "download"),
        (1, 3, "tune mlp (study 'mlp-quick', preset quick)"),
        (2, 3, "ensemble"),
        (3, 3, "done"),
    ]
    assert log.closed == 1 and any(line.startswith("trial 0 done: CV accuracy") for line in log.lines)
    (family,) = result.families
    (best,) = runs.list_trials(tmp_path / "runs", ["mlp-quick"])
    assert (family.model, family.study, family.best.name) == ("mlp", "mlp-quick", best.name)
    assert result.submission.parent == tmp_path / "subs" and result.submission.is_file()
    assert result.cv_accuracy == read_json(result.submission.with_suffix(".json"))["cv_accuracy"]
    local = submission.score_local(result.submission, small_data_copy / "solution.csv")
    assert result.local_score == local and local.ci_low < local.accuracy < local.ci_high
    assert result.plan is None and result.budget is None and result.uploaded is None and result.seconds > 0
