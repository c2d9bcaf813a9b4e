"""`pipeline`: the whole path in one command — download, tune each model family with a preset, ensemble
the best trials, write the submission, and (with --submit) upload it. The plan is kaggle_digits.pipeline;
each step calls the same library code as its own command and prints what that command prints."""

from __future__ import annotations

import argparse
import time

from kaggle_digits import budget, models, pipeline
from kaggle_digits.blend import ensemble
from kaggle_digits.cli import download as download_face
from kaggle_digits.cli import ensemble as ensemble_face
from kaggle_digits.cli import submit as submit_face
from kaggle_digits.cli import tune as tune_face
from kaggle_digits.cli.hints import report_command
from kaggle_digits.cli.options import from_args
from kaggle_digits.cli.output import say
from kaggle_digits.data import download
from kaggle_digits.pipeline import DEFAULT_PRESET, PRESET_BUDGETS, PRESET_MODELS, PipelineOptions
from kaggle_digits.search import runs, tune
from kaggle_digits.units import format_seconds, parse_duration

HELP = "download, tune each model family with a preset, ensemble, write (and with --submit upload) a submission"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=list(models.PRESET_NAMES),
        default=DEFAULT_PRESET,
        help=f"(default {DEFAULT_PRESET}) a time budget for the cnn: "
        + ", ".join(f"{p} {format_seconds(s)}" for p, s in PRESET_BUDGETS.items())
        + " (as --budget); with --models other than cnn, --epochs, --trials or --subsample it is each family's tune "
        "preset instead, tuning " + "; ".join(f"{p}: {', '.join(m)}" for p, m in PRESET_MODELS.items()),
    )
    parser.add_argument(
        "--budget",
        metavar="DURATION",
        help="plan the run to end within this time (10m, 1h, 4h, 1h30m): the cnn, with the epochs, folds and "
        "augmentation this machine can afford (measured once per machine); explicit options win",
    )
    parser.add_argument(
        "--models",
        metavar="M[,M...]",
        help="comma-separated families to tune, e.g. mlp,dense,cnn (default: the preset's)",
    )
    parser.add_argument("--augment", action="store_true", help="tune with random rotation, zoom and shift")
    parser.add_argument("--submit", action="store_true", help="upload the submission to Kaggle at the end (needs -m)")
    parser.add_argument("-m", "--message", help="the submission's description on Kaggle (with --submit)")
    group = parser.add_argument_group("passed to every tune run (override the preset)")
    group.add_argument("--subsample", type=int, metavar="N", help="tune on a stratified subset of N train rows")
    group.add_argument("--epochs", type=int, metavar="E", help="cap on the epochs of every fit")
    group.add_argument("--folds", type=int, metavar="K", help="cross-validation folds")
    group.add_argument("--trials", type=int, metavar="N", help="trials per family")
    group.add_argument(
        "--runs",
        type=int,
        metavar="N",
        help="cross-validations of each family, each with its own seed and fold split, all offered to the "
        "ensemble (default 1, or what the budget's plan buys)",
    )
    group.add_argument(
        "--seed", type=int, help=f"seed of folds, sampler, fits and ensemble (default {tune.DEFAULT_SEED})"
    )
    group.add_argument(
        "--fold-jobs",
        type=int,
        metavar="N",
        help="folds fitted at once, each in its own process (default: one per core on a CPU, one per GPU on a GPU machine, at most the folds)",
    )
    group.add_argument(
        "--precision", help="Keras precision policy: auto, fast, float32, mixed_bfloat16, mixed_float16 (see tune)"
    )


def options_from(args: argparse.Namespace) -> PipelineOptions:
    """The parsed command line as the library's options."""
    budget_seconds = None if args.budget is None else parse_duration(args.budget)
    return from_args(PipelineOptions, args, augment=bool(args.augment), submit=bool(args.submit), budget=budget_seconds)


def run(args: argparse.Namespace) -> int:
    start, started = time.monotonic(), time.time()
    options = options_from(args)
    families = pipeline.check(options)  # every option, before the calibration
    budget_seconds = pipeline.preset_budget(options)
    speed = None
    if budget_seconds is not None:
        from kaggle_digits.models import hardware

        jobs = options.fold_jobs or hardware.default_fold_jobs(options.folds or budget.PLAN_FOLDS)
        speed = budget.speed(options.precision or "fast", log=say, jobs=jobs)
        plan = budget.plan(budget_seconds, speed, folds=options.folds, runs=options.runs)
        options = pipeline.with_plan(options, plan, started)
        print_plan(plan, options)
        families = pipeline.families(options)
    runs_each = pipeline.run_count(options)
    steps = len(families) * runs_each + 2 + bool(options.submit)

    _step(1, steps, "download", start, budget_seconds)
    fetched = download.fetch(args.paths, log=say)
    download_face.print_files(fetched.source, fetched.files)

    tuned: list[tuple[str, str]] = []  # (family, study) of each tune run
    step = 2
    how = f"budget {format_seconds(options.budget)}" if options.budget is not None else f"preset {options.preset}"
    for model in families:
        for k in range(runs_each):
            chosen = pipeline.tune_options(options, model, k)
            of = f", run {k + 1}/{runs_each} (seed {chosen.seed})" if runs_each > 1 else ""
            _step(step, steps, f"tune {model} (study '{chosen.study}', {how}{of})", start, budget_seconds)
            step += 1
            code = tune_face.run_options(chosen, args.paths)
            if code != 0:
                return code  # interrupted: tune has said how to resume
            tuned.append((model, chosen.study))
    studies = [study for _, study in tuned]
    if speed is not None:
        _remember_speed(speed, [t for t in runs.list_trials(args.paths.runs_dir, studies) if t.finished_after(started)])

    _step(step, steps, "ensemble", start, budget_seconds)
    result = ensemble.build(
        args.paths,
        studies=studies,
        name="pipeline-budget" if options.budget is not None else f"pipeline-{options.preset}",
        seed=pipeline.seed(options),
        log=say,
    )
    ensemble_face.print_result(result, args.paths)

    if options.submit:
        _step(steps, steps, "submit to Kaggle", start, budget_seconds)
        code = submit_face.upload(args.paths, result.submission, options.message)
        if code != 0:
            return code

    _summary(args, options, tuned, result, time.monotonic() - start, budget_seconds)
    return 0


def _remember_speed(speed: budget.Speed, trials: list[runs.TrialRun]) -> None:
    """Keep the speed the folds trained at for the next plan on this machine, and say how it compared."""
    seen = budget.train_speed_seen([trial.metrics for trial in trials])
    if seen is None:
        return
    kept = budget.remember(speed, seen)
    say(
        f"the folds trained {seen:,.0f} images/s per process (the plan assumed {speed.train_per_s:,.0f}); "
        f"the next plan on this machine assumes {kept.train_per_s:,.0f}, the median of its recent runs"
    )


def print_plan(plan: budget.Plan, options: PipelineOptions) -> None:
    """The plan a budget bought, each step with its expected time."""
    print(
        f"plan for {format_seconds(plan.budget)}: cnn, "
        + (f"{options.runs} runs (each its own seed and fold split) of " if pipeline.run_count(options) > 1 else "")
        + f"{options.folds} folds ({options.fold_jobs} at once), {options.epochs} epochs"
        + (", augmented" if options.augment else "")
        + f", precision {options.precision}; expected {format_seconds(plan.expected)}"
    )
    for step in plan.steps:
        print(f"  {step.what:<46} {format_seconds(step.seconds):>7}")


def _step(i: int, n: int, what: str, start: float, budget_seconds: float | None = None) -> None:
    elapsed = time.monotonic() - start
    left = f", {format_seconds(budget_seconds - elapsed)} of the budget left" if budget_seconds else ""
    print(f"\n== pipeline step {i}/{n}: {what}  (elapsed {format_seconds(elapsed)}{left})", flush=True)


def _summary(
    args: argparse.Namespace,
    options: PipelineOptions,
    tuned: list[tuple[str, str]],
    result: ensemble.Result,
    seconds: float,
    budget_seconds: float | None,
) -> None:
    run = f"budget {format_seconds(options.budget)}" if options.budget is not None else options.preset
    augmented = any(pipeline.tune_options(options, model).augment for model, _ in tuned)
    budget_note = ""
    if budget_seconds is not None:
        budget_note = f" ({seconds / budget_seconds:.0%} of its {format_seconds(budget_seconds)} budget)"
    print(f"\npipeline ({run}{', augmented' if augmented else ''}) done in {format_seconds(seconds)}{budget_note}")
    for model, name in tuned:
        best = runs.list_trials(args.paths.runs_dir, [name])
        if best:
            print(f"  {model:<6} best CV {best[0].cv_accuracy:.5f} ± {best[0].cv_std:.5f}  ({best[0].name})")
        else:
            print(f"  {model:<6} no finished trial")
    print(f"  ensemble CV {result.cv_accuracy:.5f} (held-out check {result.heldout_accuracy:.5f})")
    if result.local_score is not None:
        print(f"  local leaderboard {result.local_score}")
        print(f"  |CV - local leaderboard| {abs(result.cv_accuracy - result.local_score.accuracy):.5f}")
    else:
        print("  local leaderboard: no solution.csv (real Kaggle data)")
    print(f"  submission: {result.submission}")
    print(
        f"  plots: {report_command(args.paths, submission_file=result.submission, studies=[name for _, name in tuned])}"
    )
