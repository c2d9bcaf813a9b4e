"""`ensemble`: parse the options, blend the best trials (kaggle_digits.blend.ensemble), print the table,
where the submission went and its local score."""

from __future__ import annotations

import argparse

from kaggle_digits.blend import ensemble
from kaggle_digits.blend.ensemble import (
    DEFAULT_METHOD,
    DEFAULT_NAME,
    DEFAULT_SEED,
    DEFAULT_TOP,
    HELDOUT_SPLITS,
    METHODS,
)
from kaggle_digits.cli.hints import report_command
from kaggle_digits.cli.output import say
from kaggle_digits.data.paths import Paths
from kaggle_digits.search import listing

HELP = "blend the best tuned trials (weights chosen on out-of-fold predictions) and write a submission"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--studies",
        "--study",
        nargs="+",
        metavar="S",
        help="studies to draw trials from (default: all in --runs-dir, or all in --storage)",
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="read the studies' finished trials from this Optuna storage (a database URL or a journal file), "
        "wherever their files are: their folders, a shared --runs-dir, or the artifact store",
    )
    parser.add_argument(
        "--artifacts",
        metavar="DIR|s3://BUCKET",
        help="the artifact store tune uploaded to (default: the one each trial recorded); files are cached under "
        f"<runs-dir>/{listing.CACHE_DIR}/",
    )
    parser.add_argument(
        "--top", type=int, default=DEFAULT_TOP, metavar="K", help=f"best trials per study (default {DEFAULT_TOP})"
    )
    parser.add_argument(
        "--method",
        choices=list(METHODS),
        default=DEFAULT_METHOD,
        help="; ".join(f"{k}: {v}" for k, v in METHODS.items()) + f" (default {DEFAULT_METHOD})",
    )
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"part of the file name (default '{DEFAULT_NAME}')")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of the greedy bags and checks (default {DEFAULT_SEED})"
    )


def run(args: argparse.Namespace) -> int:
    result = ensemble.build(
        args.paths,
        studies=args.studies,
        top=args.top,
        method=args.method,
        name=args.name,
        seed=args.seed,
        storage_url=args.storage,
        artifacts=args.artifacts,
        log=say,
    )
    print_result(result, args.paths, top=args.top)
    return 0


def print_result(result: ensemble.Result, paths: Paths, top: int = DEFAULT_TOP) -> None:
    """The candidates, the table of trials and weights, the blend's figures and where it was written."""
    found = result.found
    for name, why in found.unreachable:
        print(f"  cannot use {name}: {why}")
    n_studies = len({t.study for t in found.trials} | {t.study for t, _ in found.skipped})
    print(
        f"candidates: {len(found.trials) + len(found.skipped)} trials from {n_studies} studies "
        f"(best {top} per study); {len(found.trials)} blendable on the same {len(found.rows):,} OOF rows"
    )
    for trial, why in found.skipped:
        print(f"  skipped {trial.name}: {why}")
    print(f"method {result.method}: {METHODS[result.method]} ({result.seconds:.1f}s)")
    if result.note:
        print(f"  {result.note}")
    _print_table(result.members)
    best = result.best_single
    print(
        f"ensemble OOF accuracy {result.cv_accuracy:.5f} (log-loss {result.cv_log_loss:.4f}) on {len(found.rows):,} "
        f"rows; best single trial {best.trial.name} {best.oof_accuracy:.5f}: gain "
        f"{result.cv_accuracy - best.oof_accuracy:+.5f}"
    )
    print(
        f"held-out check: weights fitted on {HELDOUT_SPLITS - 1}/{HELDOUT_SPLITS} of the OOF rows score "
        f"{result.heldout_accuracy:.5f} on the rest (the OOF figure above is measured on the rows the weights were "
        "fitted on)"
    )
    print(f"wrote {result.submission} ({result.n_test:,} rows) and {result.manifest.name}")
    if result.local_score is not None:
        print(f"local leaderboard: {result.local_score}")
    else:
        print(
            f"no {paths.solution_csv}: submit the file to get its score "
            f"(`python scripts/submit.py {result.submission}`)"
        )
    print(f"plots: {report_command(paths, submission_file=result.submission)}")


def _print_table(members: list[ensemble.Member]) -> None:
    width = max(len("trial"), *(len(m.trial.name) for m in members))
    model_width = max(len("model"), *(len(m.trial.model) for m in members))
    print(
        f"  {'trial':<{width}}  {'model':<{model_width}}  {'CV accuracy':>18}  {'OOF acc':>8}  {'OOF loss':>8}  "
        f"{'weight':>6}"
    )
    for m in members:
        cv = f"{m.trial.cv_accuracy:.5f} ± {m.trial.cv_std:.5f}"
        print(
            f"  {m.trial.name:<{width}}  {m.trial.model:<{model_width}}  {cv:>18}  {m.oof_accuracy:>8.5f}  "
            f"{m.oof_log_loss:>8.4f}  {m.weight:>6.3f}"
        )
