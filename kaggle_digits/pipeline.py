"""`pipeline`: the whole path in one command — download, tune each model family with a preset, ensemble
the best trials, write the submission, and (with --submit) upload it.

Each step runs the same code as its own command (`download`, `tune`, `ensemble`, `submit`) in this
process, so the pipeline behaves exactly like the commands run one after the other.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from . import download, ensemble, models, report, runs, seeds, submit, tune
from .cli import format_seconds
from .errors import UserError

HELP = "download, tune each model family with a preset, ensemble, write (and with --submit upload) a submission"

DEFAULT_PRESET = "quick"
# The families each preset tunes when --models is not given. quick: what reaches the quick target
# (see README "Results") within its time budget on a 2-core CPU.
PRESET_MODELS: dict[str, tuple[str, ...]] = {
    "quick": ("cnn",),
    "standard": ("mlp", "dense", "cnn"),
    "full": ("mlp", "dense", "cnn"),
}
# Options handed to every `tune` run unchanged (None = the preset's value).
TUNE_OPTIONS = ("subsample", "epochs", "folds", "trials", "seed", "precision")
# Where the pipeline departs from tune's preset (options given on the command line still win). The
# submission averages the fold models, so the quick cnn uses 3 folds (each model trained on 2/3 of the
# rows, three of them averaged) rather than tune's 2: measured on the offline mirror, local leaderboard
# 0.9930 against 0.9900 with 2 folds (README "pipeline").
PIPELINE_TUNE: dict[str, dict[str, dict[str, Any]]] = {"quick": {"cnn": {"folds": 3}}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=list(tune.PRESETS),
        default=DEFAULT_PRESET,
        help=f"tuning budget of every family (default {DEFAULT_PRESET}): "
        + "; ".join(f"{p}: {', '.join(m)}" for p, m in PRESET_MODELS.items()),
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
        "--seed", type=int, help=f"seed of folds, sampler, fits and ensemble (default {tune.DEFAULT_SEED})"
    )
    group.add_argument(
        "--precision", help="Keras precision policy: auto, fast, float32, mixed_bfloat16, mixed_float16 (see tune)"
    )


def study_name(model: str, augment: bool, preset: str) -> str:
    """The pipeline's study for a family: `<model>[-aug]-<preset>`, so presets never mix in one study."""
    return f"{model}{'-aug' if augment else ''}-{preset}"


def run(args: argparse.Namespace) -> int:
    families = _families(args)
    _check_submit(args)
    seeds.check_seed(args.seed)
    seed = tune.DEFAULT_SEED if args.seed is None else args.seed
    start = time.monotonic()
    steps = len(families) + 2 + bool(args.submit)

    _step(1, steps, "download", start)
    download.run(_namespace(download, [], args))

    studies = []
    for i, model in enumerate(families, start=2):
        name = study_name(model, args.augment, args.preset)
        _step(i, steps, f"tune {model} (study '{name}', preset {args.preset})", start)
        argv = ["--model", model, "--preset", args.preset, "--study", name, "--seed", str(seed)]
        argv += ["--augment"] if args.augment else []
        chosen = dict(PIPELINE_TUNE.get(args.preset, {}).get(model, {}))
        chosen |= {option: getattr(args, option) for option in TUNE_OPTIONS if getattr(args, option) is not None}
        for option, value in chosen.items():
            if option != "seed":
                argv += [f"--{option}", str(value)]
        code = tune.run(_namespace(tune, argv, args))
        if code != 0:
            return code  # interrupted: tune has said how to resume
        studies.append(name)

    _step(len(families) + 2, steps, "ensemble", start)
    result = ensemble.build(args.paths, studies=studies, name=f"pipeline-{args.preset}", seed=seed)

    if args.submit:
        _step(steps, steps, "submit to Kaggle", start)
        code = submit.run(_namespace(submit, [str(result.submission), "-m", args.message], args))
        if code != 0:
            return code

    _summary(args, studies, families, result, time.monotonic() - start)
    return 0


def _families(args: argparse.Namespace) -> list[str]:
    if args.models is None:
        return list(PRESET_MODELS[args.preset])
    return models.parse_families(args.models)


def _check_submit(args: argparse.Namespace) -> None:
    """Upload problems that can be known now are reported before an hour of tuning, not after."""
    if args.message and not args.submit:
        raise UserError("-m goes with --submit (the message is the uploaded submission's description)")
    if not args.submit:
        return
    if not args.message or not args.message.strip():
        raise UserError('--submit needs -m "message": the submission\'s description on Kaggle')
    from . import kaggle_api

    if not kaggle_api.has_credentials():
        raise UserError(f"--submit needs Kaggle credentials: put them in {kaggle_api.CREDENTIAL_PLACES}")


def _namespace(command: Any, argv: list[str], args: argparse.Namespace) -> argparse.Namespace:
    """The arguments another command would get from `kaggle-digits <command> ARGV` with our folders."""
    parser = argparse.ArgumentParser(prog=f"kaggle-digits {command.__name__.rsplit('.', 1)[-1]}")
    command.add_arguments(parser)
    namespace = parser.parse_args(argv)
    for name in ("data_dir", "runs_dir", "submissions_dir", "reports_dir"):
        setattr(namespace, name, getattr(args, name, None))
    namespace.paths = args.paths
    return namespace


def _step(i: int, n: int, what: str, start: float) -> None:
    print(f"\n== pipeline step {i}/{n}: {what}  (elapsed {format_seconds(time.monotonic() - start)})", flush=True)


def _summary(
    args: argparse.Namespace, studies: list[str], families: list[str], result: ensemble.Result, seconds: float
) -> None:
    print(f"\npipeline ({args.preset}{', augmented' if args.augment else ''}) done in {format_seconds(seconds)}")
    for model, name in zip(families, studies):
        best = runs.list_trials(args.paths.runs_dir, [name])
        if best:
            print(f"  {model:<6} best CV {best[0].cv_accuracy:.5f} ± {best[0].cv_std:.5f}  ({best[0].name})")
        else:
            print(f"  {model:<6} no finished trial")
    print(f"  ensemble CV {result.cv_accuracy:.5f} (held-out check {result.heldout_accuracy:.5f})")
    if result.local_score is not None:
        print(f"  local leaderboard {result.local_score}")
    else:
        print("  local leaderboard: no solution.csv (real Kaggle data)")
    print(f"  submission: {result.submission}")
    print(f"  plots: {report.command_line(args.paths, submission_file=result.submission, studies=studies)}")
