"""`pipeline`: the whole path in one command — download, tune each model family with a preset, ensemble
the best trials, write the submission, and (with --submit) upload it. The run is kaggle_digits.pipeline.run;
this parses its options and prints each step as that step's own command does."""

from __future__ import annotations

import argparse

from kaggle_digits import models, pipeline
from kaggle_digits.blend import ensemble
from kaggle_digits.cli import download as download_face
from kaggle_digits.cli import ensemble as ensemble_face
from kaggle_digits.cli import tune as tune_face
from kaggle_digits.cli.hints import report_command
from kaggle_digits.cli.options import from_args
from kaggle_digits.cli.output import say
from kaggle_digits.data import download
from kaggle_digits.data.paths import Paths
from kaggle_digits.pipeline import DEFAULT_PRESET, PRESET_BUDGETS, PRESET_MODELS, PipelineOptions
from kaggle_digits.planner import Plan
from kaggle_digits.search import tune
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
        help="plan the run to end within this time (10m, 1h, 4h, 1h30m): the member whose measured figures "
        "promise the most (the cnn today), with the runs, epochs, folds and augmentation this machine can afford "
        "(its speed measured once per machine); explicit options win",
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
    try:
        result = pipeline.run(options_from(args), args.paths, log=say, events=Printer(args.paths))
    except pipeline.Interrupted:
        return 130  # tune has said how to resume
    print_summary(result, args.paths)
    return 0


class Printer(pipeline.Events):
    """The pipeline's steps as lines on the terminal: each step's own command's lines."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def planned(self, plan: Plan, options: PipelineOptions) -> None:
        print_plan(plan, options)

    def step(self, index: int, total: int, what: str, elapsed: float, budget: float | None) -> None:
        left = f", {format_seconds(budget - elapsed)} of the budget left" if budget else ""
        print(f"\n== pipeline step {index}/{total}: {what}  (elapsed {format_seconds(elapsed)}{left})", flush=True)

    def downloaded(self, fetched: download.Fetched) -> None:
        download_face.print_files(fetched.source, fetched.files)

    def tune_started(self, setup: tune.Setup) -> None:
        say(tune_face.opening_line(setup))

    def tune_ended(self, setup: tune.Setup, outcome: tune.Outcome) -> None:
        tune_face.print_summary(setup, self.paths)
        if outcome.interrupted:
            tune_face.print_resume(setup, self.paths, outcome.remaining, "the running trial was marked failed")

    def ensembled(self, result: ensemble.Result) -> None:
        ensemble_face.print_result(result, self.paths)


def print_plan(plan: Plan, options: PipelineOptions) -> None:
    """The plan a budget bought, each step with its expected time."""
    print(
        f"plan for {format_seconds(plan.budget)}: {plan.model}, "
        + (f"{options.runs} runs (each its own seed and fold split) of " if pipeline.run_count(options) > 1 else "")
        + f"{options.folds} folds ({options.fold_jobs} at once), {options.epochs} epochs"
        + (", augmented" if options.augment else "")
        + f", precision {options.precision}; expected {format_seconds(plan.expected)}"
    )
    for step in plan.steps:
        print(f"  {step.what:<46} {format_seconds(step.seconds):>7}")
    if plan.reasons:
        print("  members weighed (their fold models' measured accuracy by length: kaggle_digits/members.json):")
        for reason in plan.reasons:
            print(f"    {reason}")


def print_summary(result: pipeline.PipelineResult, paths: Paths) -> None:
    """What the run did: each family's best CV, the ensemble's, the local score and where the files are."""
    options, seconds, budget_seconds = result.options, result.seconds, result.budget
    run = f"budget {format_seconds(options.budget)}" if options.budget is not None else options.preset
    budget_note = ""
    if budget_seconds is not None:
        budget_note = f" ({seconds / budget_seconds:.0%} of its {format_seconds(budget_seconds)} budget)"
    print(
        f"\npipeline ({run}{', augmented' if result.augmented else ''}) done in {format_seconds(seconds)}{budget_note}"
    )
    for family in result.families:
        best = family.best
        if best is not None:
            print(f"  {family.model:<6} best CV {best.cv_accuracy:.5f} ± {best.cv_std:.5f}  ({best.name})")
        else:
            print(f"  {family.model:<6} no finished trial")
    blended = result.blended
    print(f"  ensemble CV {blended.cv_accuracy:.5f} (held-out check {blended.heldout_accuracy:.5f})")
    if result.local_score is not None:
        print(f"  local leaderboard {result.local_score}")
        print(f"  |CV - local leaderboard| {abs(result.cv_accuracy - result.local_score.accuracy):.5f}")
    else:
        print("  local leaderboard: no solution.csv (real Kaggle data)")
    print(f"  submission: {result.submission}")
    print(f"  plots: {report_command(paths, submission_file=result.submission, studies=result.studies)}")
