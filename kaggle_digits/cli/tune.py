"""`tune`: parse the options, run the study (kaggle_digits.search.tune), print its summary."""

from __future__ import annotations

import argparse
import shlex
import sys

from kaggle_digits import models
from kaggle_digits.cli.hints import report_command, script_command
from kaggle_digits.cli.options import from_args
from kaggle_digits.cli.output import plural, say
from kaggle_digits.data.paths import Paths
from kaggle_digits.models import hardware
from kaggle_digits.search import storage, tune
from kaggle_digits.search.tune import Setup, TuneOptions
from kaggle_digits.units import format_seconds

HELP = "tune a model family with Optuna and stratified k-fold cross-validation (OOF + test probabilities)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="{" + ",".join(models.names()) + "}", help="model family to tune (required)")
    parser.add_argument("--augment", action="store_true", help="random rotation, zoom and shift of training images")
    parser.add_argument(
        "--trials", type=int, metavar="N", help=f"trials to run now (default {tune.DEFAULTS['trials']})"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="time budget in seconds: no trial starts that would end after it"
    )
    parser.add_argument(
        "--folds", type=int, metavar="K", help=f"cross-validation folds (default {tune.DEFAULTS['folds']})"
    )
    parser.add_argument("--epochs", type=int, metavar="E", help="cap on the epochs of every fit")
    parser.add_argument("--subsample", type=int, metavar="N", help="tune on a stratified subset of N train rows")
    parser.add_argument(
        "--seed", type=int, help=f"seed of the folds, subset, sampler and fits (default {tune.DEFAULT_SEED})"
    )
    parser.add_argument(
        "--preset",
        metavar="{quick,standard,full}",
        help="sets trials/timeout/folds/epochs/subsample; explicit options win",
    )
    parser.add_argument(
        "--no-prune",
        action="store_true",
        help="run every trial to its end (no pruning): each finished trial is then an ensemble candidate",
    )
    parser.add_argument(
        "--precision",
        metavar="{" + ",".join(hardware.PRECISIONS) + "}",
        help="Keras dtype policy (default auto, as fast: mixed_float16 on a GPU, bf16 on a CPU with AVX512_BF16 or "
        "AMX, float32 on any other CPU)",
    )
    parser.add_argument("--study", help="study name (default: the model, or <model>-aug with --augment)")
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: sqlite:///FILE, a journal FILE path (several processes on one machine) or a database "
        "URL such as postgresql+psycopg2://user@host/db (several machines). Default: sqlite:///<runs-dir>/optuna.db, "
        f"or the journal file <runs-dir>/{storage.JOURNAL_FILE} with --jobs",
    )
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="worker processes on this machine tuning the study together (default 1)"
    )
    parser.add_argument(
        "--fold-jobs",
        type=int,
        metavar="N",
        help="folds of a trial fitted at once, each in its own process with a share of the threads (default 1; "
        "on a CPU, 2 processes of 1 thread train faster than 1 of 2)",
    )
    parser.add_argument(
        "--threads", type=int, metavar="N", help="threads per worker process (default: the usable cores / --jobs)"
    )
    parser.add_argument(
        "--artifacts",
        metavar="DIR|s3://BUCKET",
        help="also upload each finished trial's files to this Optuna artifact store, for an ensemble elsewhere",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        metavar="S",
        help="with a database server: seconds between a running trial's heartbeats; a trial silent for 2 of them "
        f"is taken as crashed and marked failed (default {storage.DEFAULT_HEARTBEAT})",
    )
    parser.add_argument("--worker", metavar="K/N", help=argparse.SUPPRESS)  # set by --jobs on its workers


def options_from(args: argparse.Namespace) -> TuneOptions:
    """The parsed command line as the library's options."""
    return from_args(TuneOptions, args, augment=bool(args.augment), prune=not args.no_prune)


def run(args: argparse.Namespace) -> int:
    return run_options(options_from(args), args.paths)


def run_options(options: TuneOptions, paths: Paths) -> int:
    """Tune as asked, printing progress and the summary; the exit code (130: interrupted)."""
    tune.check_options(options)
    jobs = options.jobs or 1
    if options.threads is not None and jobs == 1:
        hardware.limit_threads(options.threads)
    setup = tune.prepare(options, paths, log=say)
    if options.worker is None:
        say(opening_line(setup))
    if jobs > 1:
        from kaggle_digits.cli import workers

        return workers.run(
            setup,
            summary=lambda: print_summary(setup, paths),
            resume=lambda remaining: print_resume(setup, paths, remaining, "the running trials were marked failed"),
        )
    outcome = tune.optimize(setup)
    if options.worker is not None:
        # A worker of `--jobs`: its launcher prints the study's summary and the resume command.
        say(
            f"worker {options.worker} {'stopped' if outcome.interrupted else 'done'}: {plural(outcome.ended, 'trial')} ended"
        )
        return 130 if outcome.interrupted else 0
    print_summary(setup, paths)
    if outcome.interrupted:
        print_resume(setup, paths, outcome.remaining, "the running trial was marked failed")
        return 130
    return 0


def opening_line(setup: Setup) -> str:
    """What the run found: the study (new, continued or joined) and what it will do."""
    options, request = setup.options, setup.request
    if setup.created:
        state = "new (its first trial is the family's default)"
    elif setup.before:
        state = f"continuing after {plural(setup.before, 'trial')}"
    else:
        state = "joining it (another worker created it a moment ago)"
    return (
        f"study '{setup.study_name}' in {setup.shown_url}: {state}; "
        f"{request.model}{' with augmentation' if request.augment else ''}, {setup.rows:,} rows, "
        f"{options.folds} folds, seed {setup.seed}"
        + (f", epochs capped at {options.epochs}" if options.epochs else "")
        + (f", up to {plural(options.trials, 'trial')}" if options.trials else "")
        + (f", time budget {format_seconds(options.timeout)}" if options.timeout else "")
    )


def resume_command(setup: Setup, remaining: int | None) -> str:
    """The command that continues this study with the same settings (the storage password masked: pass
    the password through PGPASSWORD or ~/.pgpass instead of the URL and the command is exact)."""
    return script_command("tune", tune.command_args(setup, remaining, masked=True))


def print_resume(setup: Setup, paths: Paths, remaining: int | None, what: str) -> None:
    """On stderr, as every command's interrupted line; the study's folder named only when it exists."""
    folder = paths.runs_dir / setup.study_name
    kept = f"finished trials are kept in {folder}/" if folder.is_dir() else "no trial had finished"
    print(f"\ninterrupted: {what}; {kept}. Resume with:\n  {resume_command(setup, remaining)}", file=sys.stderr)


def print_summary(setup: Setup, paths: Paths) -> None:
    """The study's trials, the best ones, where their files are and the next commands."""
    name, shown_url, request = setup.study_name, setup.shown_url, setup.request
    summary = tune.summarize(setup.study, name)
    print(f"\nstudy '{name}': {summary.complete} finished, {summary.pruned} pruned, {summary.failed} failed")
    if not summary.best:
        print("no finished trial yet")
        return
    print(f"best trials:\n  {'trial':>5}  {'CV accuracy':<16} {'seconds':>8}  params")
    for t in summary.best:
        print(f"  {t.number:>5}  {t.value:.4f} ± {t.cv_std:.4f}  {t.seconds:>8.0f}  {tune.format_params(t.params, 90)}")
    best = summary.best[0]
    print(f"artifacts: {paths.runs_dir / name}/trial-<n>/ (params, metrics, history, oof, oof_rows, test, fold models)")
    print(f"best: {best.path or '?'}  CV accuracy {best.value:.4f}")
    print(f"storage: {shown_url} (study '{name}')")
    folders = []
    for option, given in (("--data-dir", request.data_dir), ("--runs-dir", request.runs_dir)):
        if given:
            folders += [option, shlex.quote(str(given))]
    # On a database server the trials may be on other machines: the ensemble finds them through it.
    where = ["--storage", shlex.quote(shown_url)] if storage.kind(shown_url) == "server" else []
    print("next: " + " ".join(["python scripts/ensemble.py --studies", shlex.quote(name), *where, *folders]))
    elsewhere = shown_url != storage.default_url(paths.runs_dir)  # e.g. the journal file of --jobs
    print(f"plots: {report_command(paths, studies=[name], storage=shown_url if elsewhere else None)}")
