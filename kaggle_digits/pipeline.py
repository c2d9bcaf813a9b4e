"""The pipeline as one library call: `run(options, paths)` downloads the data, tunes each family,
ensembles the best trials, writes the submission and (with `submit`) uploads it, and returns a
PipelineResult. Also the plan behind it: which families a preset tunes, each one's study and tune
options, and the checks that can fail before any work. `kaggle-digits pipeline` (kaggle_digits.cli.pipeline)
parses its options and prints what `run` reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kaggle_digits import models, progress, seeds
from kaggle_digits.blend import ensemble
from kaggle_digits.blend.submission import Score
from kaggle_digits.data import download
from kaggle_digits.data.paths import Paths
from kaggle_digits.errors import UserError
from kaggle_digits.kaggle import upload
from kaggle_digits.planner import MAX_RUNS, PLAN_FOLDS, Plan, Speed, run_deadlines, train_speed_seen
from kaggle_digits.progress import Log, silent
from kaggle_digits.search import runs, tune
from kaggle_digits.search.tune import TuneOptions
from kaggle_digits.units import format_seconds

DEFAULT_PRESET = "quick"
# Each preset is a time budget (kaggle_digits.planner plans the cnn within it) unless the run is sized by
# hand (see preset_budget); then it is each family's tune preset, as `tune --preset` reads it.
PRESET_BUDGETS: dict[str, float] = {"quick": 600.0, "standard": 3600.0, "full": 14400.0}
# Options that size a run by hand: given any of them, a preset stops being a budget.
SIZING_OPTIONS = ("epochs", "trials", "subsample")
# A run's seed: the pipeline's seed plus run * RUN_SEED_STRIDE (fold k of a run fits with its seed + k,
# so runs never share a fold's seed).
RUN_SEED_STRIDE = 1000
# The families each preset tunes when none are named and it is not a budget. quick: what reaches the
# quick target within its time on a 2-core CPU (docs/benchmarks.md).
PRESET_MODELS: dict[str, tuple[str, ...]] = {
    "quick": ("cnn",),
    "standard": ("mlp", "dense", "cnn"),
    "full": ("mlp", "dense", "cnn"),
}
# Options handed to every tune run unchanged (None = the preset's value).
TUNE_OPTIONS = ("subsample", "epochs", "folds", "trials", "precision", "fold_jobs")
# Where the pipeline departs from tune's preset (options given explicitly still win). The submission
# averages the fold models, so the quick cnn uses 4 folds (each model trained on 3/4 of the rows, four of
# them averaged) rather than tune's 2, fitted side by side in one process per core (fold_jobs), which
# trains more images per second than one process on every core; with that speed it affords augmentation
# (docs/benchmarks.md).
PIPELINE_TUNE: dict[str, dict[str, dict[str, Any]]] = {"quick": {"cnn": {"folds": 4, "epochs": 8, "augment": True}}}


@dataclass
class PipelineOptions:
    """What a pipeline run is asked for. Tune options left None take the preset's values."""

    preset: str = DEFAULT_PRESET
    models: str | None = None  # "mlp,dense,cnn"; None: the preset's families
    augment: bool = False
    submit: bool = False
    message: str | None = None
    subsample: int | None = None
    epochs: int | None = None
    folds: int | None = None
    trials: int | None = None
    seed: int | None = None
    precision: str | None = None
    fold_jobs: int | None = None  # None: hardware.default_fold_jobs for the run's folds
    data_dir: str | None = None  # as given by the user, for the commands printed along the way
    runs_dir: str | None = None
    budget: float | None = None  # seconds: plan the run to end within them (planner.plan)
    runs: int | None = None  # cross-validations of each family, each its own seed and split (None: 1 or the plan's)
    planned: bool = False  # the options a budget's plan set (with_plan)
    # With a plan: time.time() by which each run's folds should end (run_deadlines from the start).
    deadlines: tuple[float, ...] = ()


def study_name(model: str, augment: bool, preset: str, run: int = 0) -> str:
    """The pipeline's study for a family: `<model>[-aug]-<preset>` (`-budget` for a --budget run), so
    presets never mix in one study; runs after the first add `-run<k>` (k from 2)."""
    return f"{model}{'-aug' if augment else ''}-{preset}" + (f"-run{run + 1}" if run else "")


def cnn_alone(options: PipelineOptions) -> bool:
    """--models is left out or names the cnn alone: the only family a budget can plan."""
    return options.models is None or models.parse_families(options.models) == ["cnn"]


def preset_budget(options: PipelineOptions) -> float | None:
    """The time budget a run is planned in: --budget, else its preset's, unless the run is sized by hand
    (--models other than the cnn, or any of SIZING_OPTIONS), when the preset sets each family's tune
    preset instead and this is None."""
    if options.budget is not None:
        return options.budget
    if not cnn_alone(options):
        return None
    if any(getattr(options, name) is not None for name in SIZING_OPTIONS):
        return None
    return PRESET_BUDGETS.get(options.preset)


def run_count(options: PipelineOptions) -> int:
    return 1 if options.runs is None else options.runs


def with_plan(options: PipelineOptions, plan: Plan, started: float) -> PipelineOptions:
    """The options a budget's plan sets: its member alone, one trial, the plan's runs, folds, epochs and
    augmentation, bf16 where the CPU has it (`fast`), and each run's deadline counted from `started`
    (time.time() at the pipeline's start); options given explicitly win."""
    if not cnn_alone(options):
        raise UserError(f"--budget plans the cnn alone or the member it chooses: leave out --models {options.models}")
    return replace(
        options,
        planned=True,
        models=plan.model,
        runs=plan.runs if options.runs is None else options.runs,
        trials=1 if options.trials is None else options.trials,
        fold_jobs=plan.jobs if options.fold_jobs is None else options.fold_jobs,
        folds=plan.folds if options.folds is None else options.folds,
        epochs=plan.epochs if options.epochs is None else options.epochs,
        augment=options.augment or plan.augment,
        precision=options.precision or "fast",
        deadlines=tuple(started + end for end in run_deadlines(plan)),
    )


def families(options: PipelineOptions) -> list[str]:
    """The families to tune, in order: --models, else the preset's."""
    if options.preset not in models.PRESET_NAMES:
        raise UserError(f"--preset {options.preset}: choose one of {', '.join(models.PRESET_NAMES)}")
    if options.models is None:
        return list(PRESET_MODELS[options.preset])
    return models.parse_families(options.models)


def seed(options: PipelineOptions) -> int:
    return tune.DEFAULT_SEED if options.seed is None else options.seed


def tune_options(options: PipelineOptions, model: str, run: int = 0) -> TuneOptions:
    """The tune run of one family (its `run`-th cross-validation, from 0): the preset, the pipeline's
    departures, then the options given. One trial is not pruned (a pruner needs finished trials to
    compare with); a planned run's held-out folds are scored once, after the last epoch, and its folds
    end by the run's deadline."""
    # A budget's plan (with_plan) replaces the preset's departures.
    chosen = {} if options.planned else dict(PIPELINE_TUNE.get(options.preset, {}).get(model, {}))
    chosen |= {name: getattr(options, name) for name in TUNE_OPTIONS if getattr(options, name) is not None}
    chosen["seed"] = seed(options) + run * RUN_SEED_STRIDE
    preset_augments = bool(chosen.pop("augment", False))
    augment = options.augment or preset_augments
    if chosen.get("fold_jobs") is None:
        from kaggle_digits.models import hardware

        chosen["fold_jobs"] = hardware.default_fold_jobs(chosen.get("folds"))
    return TuneOptions(
        model=model,
        augment=augment,
        preset=options.preset,
        study=study_name(model, augment, "budget" if options.budget is not None else options.preset, run),
        data_dir=options.data_dir,
        runs_dir=options.runs_dir,
        prune=chosen.get("trials") != 1,
        monitor=not options.planned,
        deadline=options.deadlines[run] if run < len(options.deadlines) else None,
        **chosen,
    )


def check(options: PipelineOptions) -> list[str]:
    """Every option, before any work (an upload problem is reported before an hour of tuning, not after);
    returns the families to tune."""
    seeds.check_seed(options.seed)
    if options.runs is not None and not 1 <= options.runs <= MAX_RUNS:
        raise UserError(f"--runs {options.runs}: give a whole number from 1 to {MAX_RUNS}")
    seeds.check_seed(seed(options) + (run_count(options) - 1) * RUN_SEED_STRIDE, "--seed (with --runs)")
    chosen = families(options)
    for model in chosen:
        for run in range(run_count(options)):
            tune.check_options(tune_options(options, model, run))
    if options.message and not options.submit:
        raise UserError("-m goes with --submit (the message is the uploaded submission's description)")
    if options.submit:
        if not options.message or not options.message.strip():
            raise UserError('--submit needs -m "message": the submission\'s description on Kaggle')
        from kaggle_digits.kaggle import api as kaggle_api

        if not kaggle_api.has_credentials():
            raise UserError(f"--submit needs Kaggle credentials: put them in {kaggle_api.CREDENTIAL_PLACES}")
    return chosen


# --- the run -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyResult:
    """One tune run of a family: its study and its best finished trial (None: none finished)."""

    model: str
    study: str
    best: runs.TrialRun | None


@dataclass(frozen=True)
class PipelineResult:
    """What a pipeline run did. `options` are those it ran with (a budget's plan applied); `budget` the
    seconds it was planned in (None: sized by its preset); `plan` what the budget bought."""

    options: PipelineOptions
    families: list[FamilyResult]
    blended: ensemble.Result  # the ensemble and its submission
    seconds: float
    augmented: bool  # some family was tuned with augmentation
    plan: Plan | None = None
    budget: float | None = None
    uploaded: upload.Uploaded | None = None
    studies: list[str] = field(default_factory=list)

    @property
    def submission(self) -> Path:
        """The submission written (ImageId,Label)."""
        return self.blended.submission

    @property
    def cv_accuracy(self) -> float:
        """The ensemble's accuracy on the out-of-fold rows."""
        return self.blended.cv_accuracy

    @property
    def local_score(self) -> Score | None:
        """The submission's accuracy on the mirror's solution.csv, with its 95% interval; None without one."""
        return self.blended.local_score


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a tune run: its finished trials are kept, the running one was marked failed; `setup`
    and `outcome` say where it stopped (the resume command is built from them)."""

    def __init__(self, setup: tune.Setup, outcome: tune.Outcome) -> None:
        super().__init__(f"interrupted while tuning study '{setup.study_name}'")
        self.setup, self.outcome = setup, outcome


class Events:
    """What a run reports as it goes besides its progress lines, each as it happens: the command prints
    them (the lines each step's own command prints); PipelineResult keeps what a caller needs at the end.
    Each method here does nothing."""

    def planned(self, plan: Plan, options: PipelineOptions) -> None:
        """A budget's plan (before any work), and the options it set."""

    def step(self, index: int, total: int, what: str, elapsed: float, budget: float | None) -> None:
        """Step `index` (from 1) of `total` starts, `elapsed` seconds into the run."""

    def downloaded(self, fetched: download.Fetched) -> None:
        """The competition's files are there."""

    def tune_started(self, setup: tune.Setup) -> None:
        """A family's study is open and its data loaded; its trials start."""

    def tune_ended(self, setup: tune.Setup, outcome: tune.Outcome) -> None:
        """A family's tune run ended (interrupted, when outcome says so: Interrupted follows)."""

    def ensembled(self, result: ensemble.Result) -> None:
        """The ensemble and its submission are written."""


def run(options: PipelineOptions, paths: Paths, log: Log = silent, events: Events | None = None) -> PipelineResult:
    """Download → tune each family → ensemble → submission (→ upload with options.submit), as
    `kaggle-digits pipeline` does. Every option is checked before any work (a UserError). Progress lines
    go to `log` (a progress.Progress, such as progress.notebook(), also hears the steps); `events` hears
    each step's results as they come. Ctrl-C while tuning raises Interrupted, keeping finished trials."""
    try:
        return _run(options, paths, log, events or Events())
    finally:
        progress.close(log)


def _run(options: PipelineOptions, paths: Paths, log: Log, events: Events) -> PipelineResult:
    start, started = time.monotonic(), time.time()
    chosen = check(options)  # every option, before the calibration
    budget_seconds = preset_budget(options)
    measured = plan = None
    if budget_seconds is not None:
        from kaggle_digits import planner
        from kaggle_digits.models import hardware

        jobs = options.fold_jobs or hardware.default_fold_jobs(options.folds or PLAN_FOLDS)
        speeds = member_speeds(options, paths, jobs, log)
        plan = planner.choose(budget_seconds, speeds, folds=options.folds, runs=options.runs)
        measured = speeds[plan.model]
        options = with_plan(options, plan, started)
        events.planned(plan, options)
        chosen = families(options)
    runs_each = run_count(options)
    total = len(chosen) * runs_each + 2 + bool(options.submit)

    def begin(index: int, what: str) -> None:
        events.step(index, total, what, time.monotonic() - start, budget_seconds)
        progress.step(log, index - 1, total, what)

    begin(1, "download")
    events.downloaded(download.fetch(paths, log=log))

    tuned: list[tuple[str, str]] = []  # (family, study) of each tune run
    index = 2
    how = f"budget {format_seconds(options.budget)}" if options.budget is not None else f"preset {options.preset}"
    for model in chosen:
        for k in range(runs_each):
            asked = tune_options(options, model, k)
            of = f", run {k + 1}/{runs_each} (seed {asked.seed})" if runs_each > 1 else ""
            begin(index, f"tune {model} (study '{asked.study}', {how}{of})")
            index += 1
            setup = tune.prepare(asked, paths, log=log)
            events.tune_started(setup)
            outcome = tune.optimize(setup)
            events.tune_ended(setup, outcome)
            if outcome.interrupted:
                raise Interrupted(setup, outcome)
            tuned.append((model, setup.study_name))
    studies = [study for _, study in tuned]
    if measured is not None:
        finished = [t for t in runs.list_trials(paths.runs_dir, studies) if t.finished_after(started)]
        _remember_speed(measured, finished, paths, log)

    begin(index, "ensemble")
    blended = ensemble.build(
        paths,
        studies=studies,
        name="pipeline-budget" if options.budget is not None else f"pipeline-{options.preset}",
        seed=seed(options),
        log=log,
    )
    events.ensembled(blended)

    uploaded = None
    if options.submit:
        begin(total, "submit to Kaggle")
        uploaded = upload.upload(paths, blended.submission, options.message, log=log)

    results = []
    for model, name in tuned:
        best = runs.list_trials(paths.runs_dir, [name])
        results.append(FamilyResult(model, name, best[0] if best else None))
    progress.step(log, total, total, "done")
    return PipelineResult(
        options=options,
        families=results,
        blended=blended,
        seconds=time.monotonic() - start,
        augmented=any(tune_options(options, model).augment for model, _ in tuned),
        plan=plan,
        budget=budget_seconds,
        uploaded=uploaded,
        studies=studies,
    )


def member_speeds(options: PipelineOptions, paths: Paths, jobs: int, log: Log) -> dict[str, Speed]:
    """The speed on this machine of each member a plan may choose (planner.members: the default, and each
    with figures in the table; the cnn alone when --models names it), measured where the cache has none."""
    from kaggle_digits import planner, speed

    table = planner.members()
    weighed = [m for m in table if m is table[0] or (m.points and options.models is None)]
    return {
        m.family: speed.speed(options.precision or "fast", log=log, jobs=jobs, fallback=paths.runs_dir, model=m.family)
        for m in weighed
    }


def _remember_speed(measured: Speed, trials: list[runs.TrialRun], paths: Paths, log: Log) -> None:
    """Keep the speed the folds trained at for the next plan on this machine, and say how it compared."""
    from kaggle_digits import speed

    seen = train_speed_seen([trial.metrics for trial in trials])
    if seen is None:
        return
    kept = speed.remember(measured, seen, fallback=paths.runs_dir, log=log)
    log(
        f"the folds trained {seen:,.0f} images/s per process (the plan assumed {measured.train_per_s:,.0f}); "
        f"the next plan on this machine assumes {kept.train_per_s:,.0f}, the median of its recent runs"
    )
