"""`tune`: an Optuna study over one model family, every trial judged by stratified k-fold CV.

A trial samples the family's search space (the first trial of a new study is the family's known-good
default), cross-validates it (kaggle_digits.search.cv), reports each epoch's validation accuracy to a pruner,
and leaves its artifacts in `runs/<study>/trial-<n>/` (see kaggle_digits.search.runs). Studies live in an
Optuna storage (SQLite in the runs folder by default) and continue where they stopped when run again.
Several processes tune one study together through a shared storage (kaggle_digits.search.storage): `--jobs N`
starts N workers on this machine (kaggle_digits.cli.workers), and any number of machines can run the same
command against one database server.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from kaggle_digits import N_CLASSES, models, seeds
from kaggle_digits.data import dataset as data
from kaggle_digits.data.paths import Paths
from kaggle_digits.errors import UserError
from kaggle_digits.models import hardware
from kaggle_digits.progress import Log, silent, time_left, timing
from kaggle_digits.search import cv, liveness, runs, storage
from kaggle_digits.search.artifacts import ArtifactStore, open_artifact_store, upload_trial
from kaggle_digits.search.steps import pruner_step
from kaggle_digits.units import format_seconds

OPTION_NAMES = ("trials", "timeout", "folds", "epochs", "subsample", "precision")

# Without a preset. trials=None runs until --timeout (or Ctrl-C) when a timeout is given. A preset's
# options come from the family (models.get(model).presets); explicit options win.
DEFAULTS: dict[str, Any] = {
    "trials": 20,
    "timeout": None,
    "folds": 5,
    "epochs": None,
    "subsample": None,
    "precision": None,  # None: hardware's `auto`
}

DEFAULT_SEED = 0
DB_FILE = storage.DB_FILE
# Prune a trial whose best validation accuracy so far is below the 25th percentile of the finished
# trials at the same fold and epoch ("clearly behind"), once 3 trials have finished, and never in
# the first 3 epochs of the first fold (early validation accuracy is noisy while the weights move fast).
PRUNE_KEEP_PERCENT = 75.0
PRUNE_STARTUP_TRIALS = 3
PRUNE_WARMUP_EPOCHS = 3
TOP_SHOWN = 5  # rows of the final table
STUDY_ATTR = storage.STUDY_ATTR  # study user attr: what the study was created for (checked on resume)
PATH_ATTR = storage.PATH_ATTR  # trial user attr: the trial's artifact folder
# A worker joining a study that another worker is creating waits this long for its settings to appear.
JOIN_WAIT = 15.0
WORKER_ARG = re.compile(r"^(\d+)/(\d+)$")  # --worker K/N, given by `--jobs` to the processes it starts
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# What a study is bound to: trials with other values would not be comparable (other rows, other folds).
BINDING = ("model", "augment", "folds", "subsample", "seed", "train_sha256", "test_sha256")


# --- options: TuneOptions (what a run is asked for), Resolved (what it uses); see below ----------------


# --- storage and study ----------------------------------------------------------------------------


def choose_storage_url(given: str | None, runs_dir: Path, study_name: str, jobs: int) -> str:
    """The storage of this run: --storage, else SQLite in runs_dir for one process and the journal file
    for --jobs. A study that an earlier --jobs run left in the journal file is continued there; one that
    lives in SQLite is not taken to several processes (SQLite is for one)."""
    if given:
        return given
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    sqlite_url, journal = storage.default_url(runs_dir), runs_dir / storage.JOURNAL_FILE
    in_sqlite = (runs_dir / DB_FILE).is_file() and _has_study(sqlite_url, study_name)
    if jobs > 1:
        if in_sqlite:
            raise UserError(
                f"study '{study_name}' lives in {runs_dir / DB_FILE} (SQLite, one process at a time): continue it "
                "without --jobs, or start a new --study for --jobs"
            )
        return str(journal)
    if not in_sqlite and journal.is_file() and _has_study(str(journal), study_name):
        return str(journal)
    return sqlite_url


def _has_study(url: str, name: str) -> bool:
    return name in storage.study_names(storage.open_storage(url, heartbeat=None))


def data_fingerprint(paths: Paths, subsample: int | None) -> dict[str, Any]:
    """What a trial's rows come from: SHA-256 of train.csv and test.csv, and the subset size (None = all)."""
    return {
        "train_sha256": data.sha256(paths.train_csv),
        "test_sha256": data.sha256(paths.test_csv),
        "subsample": subsample,
    }


def make_sampler(seed: int, n_existing: int, shared: bool = False) -> optuna.samplers.TPESampler:
    """Seeded TPE. A continued study gets a seed derived from (seed, trials so far), so a second run
    does not replay the first run's random start-up points.

    shared : the storage is a journal file or a database server, where several workers sample at once:
    each process then draws its own seed (two workers started together would otherwise sample the same
    points) and TPE's constant liar keeps it away from the trials other workers are running.
    """
    if shared:
        return optuna.samplers.TPESampler(seed=int(np.random.SeedSequence().generate_state(1)[0]), constant_liar=True)
    if n_existing:
        seed = int(np.random.SeedSequence([seed, n_existing]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(prune: bool = True) -> optuna.pruners.BasePruner:
    """The percentile pruner (see PRUNE_*), or none: with --no-prune every trial runs to its end."""
    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.PercentilePruner(
        PRUNE_KEEP_PERCENT, n_startup_trials=PRUNE_STARTUP_TRIALS, n_warmup_steps=PRUNE_WARMUP_EPOCHS
    )


def open_study(
    opened: optuna.storages.BaseStorage,
    name: str,
    binding: dict[str, Any],
    spec: models.ModelSpec,
    runs_dir: Path,
    url: str,
    prune: bool = True,
    log: Log = silent,
) -> tuple[optuna.Study, bool]:
    """Create the study `name` (first trial: the family's default) or join it; True when created here.

    binding : model, augment, folds, subsample, seed, train_sha256, test_sha256 — a study continued with
    other values would mix incomparable trials, so that is a UserError naming the differences.
    The study is created once: of several workers starting together, one creates it and records its
    settings; the others join it (and wait up to JOIN_WAIT seconds for those settings). Trials left
    running by workers that are gone are marked failed (liveness.fail_lost_trials).
    """
    shown_url = storage.display_url(url)
    shared = storage.is_shared(url)
    seed = int(binding["seed"])
    exists = name in storage.study_names(opened)
    if not exists and runs.list_studies(runs_dir).count(name):
        raise UserError(
            f"{Path(runs_dir) / name}/ holds finished trials of another study '{name}' (not in {shown_url}): "
            "pass another --study, or the --storage those trials came from"
        )
    sampler, pruner = make_sampler(seed, 0, shared), make_pruner(prune)
    if not exists:
        try:
            study = optuna.create_study(
                storage=opened, study_name=name, direction="maximize", sampler=sampler, pruner=pruner
            )
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it a moment ago
            exists = True
        else:
            # The default trial is queued before the settings are recorded: a worker joining the study waits
            # for the settings, so it can never take trial 0's number from the default.
            _enqueue_default(study, spec, bool(binding["augment"]))
            study.set_user_attr(STUDY_ATTR, binding)
            return study, True
    study = optuna.load_study(study_name=name, storage=opened, sampler=sampler, pruner=pruner)
    recorded = _recorded_binding(study)
    n_existing = len(study.get_trials(deepcopy=False))
    if n_existing and not shared:
        study.sampler = make_sampler(seed, n_existing)
    if recorded is None:
        if _foreign_trials(study):
            raise UserError(f"study '{name}' in {shown_url} was not created by this tool: pick another --study")
        # Created by a process that stopped before recording its settings: finish the job.
        if not study.get_trials(deepcopy=False):
            _enqueue_default(study, spec, bool(binding["augment"]))
        study.set_user_attr(STUDY_ATTR, binding)
        return study, True
    differences = [
        f"{key} {_fmt(recorded.get(key))} (asked: {_fmt(binding[key])})"
        for key in BINDING
        if recorded.get(key) != binding[key]
    ]
    if differences:
        raise UserError(
            f"study '{name}' in {shown_url} was created with other settings: {'; '.join(differences)}. "
            "Pass the same options to continue it, or a new --study name"
        )
    liveness.fail_lost_trials(study, url, log)
    if _default_still_owed(study):
        _enqueue_default(study, spec, bool(binding["augment"]))
        log("the family's default trial did not finish (interrupted or failed): it is queued again")
    return study, False


def _enqueue_default(study: optuna.Study, spec: models.ModelSpec, augment: bool) -> None:
    """Queue the family's known-good default as the study's next trial."""
    study.enqueue_trial(spec.default_suggestions(augment), user_attrs={"default": True})


def _default_still_owed(study: optuna.Study) -> bool:
    """No trial has run the default to its end (finished or pruned) and none is queued or running with it:
    a default that failed (Ctrl-C, a full disk) is queued again rather than lost to sampled parameters."""
    defaults = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("default")]
    settled = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING)
    return bool(defaults) and not any(t.state in settled for t in defaults)


def _recorded_binding(study: optuna.Study) -> dict[str, Any] | None:
    """The settings the study was created with; a study just created by another worker gets JOIN_WAIT
    seconds to record them."""
    deadline = time.monotonic() + JOIN_WAIT
    while True:
        recorded = study.user_attrs.get(STUDY_ATTR)
        if recorded is not None or _foreign_trials(study) or time.monotonic() > deadline:
            return recorded
        time.sleep(0.2)


def _foreign_trials(study: optuna.Study) -> bool:
    """Trials other than the default one this tool queues first: a study some other code made."""
    return any(not t.user_attrs.get("default") for t in study.get_trials(deepcopy=False))


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "…"  # a SHA-256
    return str(value)


# --- one trial ------------------------------------------------------------------------------------


class Interrupts:
    """Ctrl-C (SIGINT) while tuning: a model being fitted stops at once, but a storage write in progress
    (Optuna's bookkeeping, a journal file's lock, a trial's files) is never cut in half: a stop asked for
    there waits for the next safe point (the next epoch report, the end of the trial)."""

    def __init__(self) -> None:
        self.requested = False
        self._fitting = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT this way inside the block (only the main thread can; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handler(self, signum: int, frame: object) -> None:
        self.requested = True
        if self._fitting:
            self._fitting = False
            raise KeyboardInterrupt

    def check(self) -> None:
        """A safe point: stop here if Ctrl-C was pressed."""
        if self.requested:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def fitting(self) -> Iterator[None]:
        """Inside the block (pure computation) Ctrl-C stops at once."""
        self.check()
        self._fitting = True
        try:
            yield
        finally:
            self._fitting = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """A storage write inside a `fitting` block: not interrupted; a stop asked for meanwhile follows it."""
        was, self._fitting = self._fitting, False
        try:
            yield
        finally:
            self._fitting = was
        self.check()


@dataclass
class Tuning:
    """Everything a trial needs; called by study.optimize once per trial."""

    spec: models.ModelSpec
    study_name: str
    runs_dir: Path
    augment: bool
    seed: int
    folds: int
    max_epochs: int | None
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    rows: np.ndarray
    info_data: dict[str, Any]
    trials: int | None
    fold_jobs: int = 1
    monitor: bool = True  # score the held-out fold each epoch (for the pruner); cv.cross_validate
    deadline: float | None = None  # time.time() by which a trial's folds should end; cv.cross_validate
    url: str = ""  # the storage's URL (what kind of storage decides how lost trials are found)
    artifacts: ArtifactStore | None = None  # --artifacts: where finished trials' files are uploaded
    log: Log = silent
    interrupts: Interrupts = field(default_factory=Interrupts)
    start: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)  # finished trials of this run
    current: optuna.Trial | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.current = trial
        self.interrupts.check()
        # First thing: name this process, so that if it dies the trial is known to be lost (not running).
        trial.set_user_attr(storage.WORKER_ATTR, liveness.worker_identity())
        params = self.spec.search_space(trial, self.augment)
        folder = runs.trial_dir(self.runs_dir, self.study_name, trial.number)
        runs.check_trial_dir(folder)  # a finished trial, or files of the user's, are never written over
        started = time.monotonic()
        self.log(
            f"trial {trial.number} ({self._run_position()}): "
            + ("the family's default  " if trial.user_attrs.get("default") else "")
            + format_params(params)
        )
        with self.interrupts.fitting():
            result = cv.cross_validate(
                self.spec,
                params,
                self.X,
                self.y,
                self.X_test,
                folds=self.folds,
                seed=self.seed,
                max_epochs=self.max_epochs,
                rows=self.rows,
                on_epoch=self._pruning_reporter(trial),
                log=self.log,
                label=f"trial {trial.number} ",
                fold_jobs=self.fold_jobs,
                monitor=self.monitor,
                deadline=self.deadline,
            )
        if not (np.isfinite(result.oof_proba).all() and np.isfinite(result.test_proba).all()):
            self.log(f"trial {trial.number} failed: the fit diverged (non-finite probabilities)")
            return float("nan")  # Optuna marks the trial failed
        seconds = time.monotonic() - started
        model_files = [folder / f"fold-{k}{self.spec.model_suffix}" for k in range(len(result.models))]
        before, existed = _file_identities(folder, model_files), folder.exists()
        try:
            for model, path in zip(result.models, model_files):
                self.spec.save(model, path)
            self._save_trial(trial, folder, params, result, seconds)
        except BaseException:
            # A full disk (or Ctrl-C) while saving: the files this trial wrote go, as a failed trial has none.
            _remove_written(folder, model_files, before, existed)
            raise
        trial.set_user_attr(PATH_ATTR, str(folder.resolve()))
        trial.set_user_attr("params", params)
        trial.set_user_attr("cv_std", result.cv_std)
        trial.set_user_attr("seconds", seconds)
        uploaded = upload_trial(trial, folder, self.artifacts) if self.artifacts else 0
        self.log(
            f"trial {trial.number} done: CV accuracy {result.cv_accuracy:.4f} ± {result.cv_std:.4f} "
            f"in {format_seconds(seconds)} -> {folder}"
            + (f" (+ {uploaded} files in {self.artifacts.location})" if self.artifacts and uploaded else "")
        )
        return result.cv_accuracy

    def _save_trial(
        self, trial: optuna.Trial, folder: Path, params: dict[str, Any], result: cv.CVResult, seconds: float
    ) -> None:
        info = {
            "study": self.study_name,
            "trial": trial.number,
            "model": self.spec.name,
            "augment": self.augment,
            "params": params,
            "seed": self.seed,
            "folds": self.folds,
            "subsample": self.info_data["subsample"],
            "max_epochs": self.max_epochs,
            "data": self.info_data,
        }
        metrics = {**result.metrics(), "seconds": seconds}
        runs.save_trial(folder, info, metrics, result.histories, result.oof_proba, result.oof_rows, result.test_proba)

    def _pruning_reporter(self, trial: optuna.Trial) -> cv.FoldEpochCallback:
        def report(fold: int, epoch: int, metrics: dict[str, float]) -> None:
            value = metrics.get("val_accuracy")
            if value is None:
                return
            with self.interrupts.paused():
                trial.report(float(value), pruner_step(fold, epoch))
                prune = trial.should_prune()
            if prune:
                self.log(
                    f"trial {trial.number} pruned at fold {fold + 1}/{self.folds} epoch {epoch + 1}: "
                    f"validation accuracy {value:.4f}, its best so far is below the "
                    f"{100 - PRUNE_KEEP_PERCENT:.0f}th percentile of the finished trials at that point"
                )
                raise optuna.TrialPruned(f"behind at fold {fold + 1} epoch {epoch + 1}")

        return report

    def _run_position(self) -> str:
        done = len(self.durations)
        elapsed = time.monotonic() - self.start
        text = f"{done + 1}/{self.trials} this run" if self.trials else f"{done + 1} this run"
        eta = time_left(elapsed, done, self.trials - done) if self.trials and done else None
        return f"{text}, {timing(elapsed, eta, sep=', ')}"

    def after_trial(self, timeout: float | None) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
        """An optimize callback: count finished trials; stop when the next one would end past the timeout."""

        def callback(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
            self.current = None
            if frozen.datetime_complete and frozen.datetime_start:
                self.durations.append((frozen.datetime_complete - frozen.datetime_start).total_seconds())
            if self.url:
                liveness.fail_lost_trials(study, self.url, self.log)  # workers that died meanwhile
            if timeout is None or not self.durations:
                return
            elapsed = time.monotonic() - self.start
            expected = float(np.mean(self.durations))
            if elapsed + expected > timeout and elapsed < timeout:
                self.log(
                    f"stopping: another trial (~{format_seconds(expected)}) would end after the time budget "
                    f"of {format_seconds(timeout)} (elapsed {format_seconds(elapsed)})"
                )
                study.stop()
            self.interrupts.check()  # the trial is stored: a good place to stop

        return callback


# The files runs.save_trial writes into a trial folder (beside the fold models).
TRIAL_FILES = ("params.json", "history.json", "oof.npy", "oof_rows.npy", "test.npy", runs.METRICS_FILE)


def _file_identities(folder: Path, model_files: list[Path]) -> dict[Path, tuple[int, int] | None]:
    """(inode, mtime) of each file a trial writes, None where absent: what an atomic write replaces changes."""
    identities: dict[Path, tuple[int, int] | None] = {}
    for path in [*model_files, *(folder / name for name in TRIAL_FILES)]:
        try:
            stat = path.stat()
        except OSError:
            identities[path] = None
        else:
            identities[path] = (stat.st_ino, stat.st_mtime_ns)
    return identities


def _remove_written(
    folder: Path, model_files: list[Path], before: dict[Path, tuple[int, int] | None], existed: bool
) -> None:
    """Remove the files of `before` that were written since (new or replaced), and the folder when it did
    not exist before and is empty now: nothing the toolkit did not write is touched."""
    for path, identity in _file_identities(folder, model_files).items():
        if identity is not None and identity != before[path]:
            path.unlink(missing_ok=True)
    if not existed:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def format_params(params: dict[str, Any], limit: int = 0) -> str:
    """`key=value ...` with floats to 3 significant digits (limit > 0 truncates to that many characters)."""
    parts = []
    for key, value in params.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        elif isinstance(value, (list, tuple)):
            value = "-".join(str(v) for v in value)
        parts.append(f"{key}={value}")
    text = " ".join(parts)
    return text if not limit or len(text) <= limit else text[: limit - 1] + "…"


# --- a run: options in, study summary out ----------------------------------------------------------


@dataclass
class TuneOptions:
    """What a `tune` run is asked for; None means "the preset's value, else DEFAULTS" (resolve).

    data_dir and runs_dir are the folders as the user gave them (None: the default), repeated in the
    resume command and in the commands of --jobs workers; the folders used are the `Paths` given to
    prepare.
    """

    model: str | None
    augment: bool = False
    preset: str | None = None
    trials: int | None = None
    timeout: float | None = None
    folds: int | None = None
    epochs: int | None = None
    subsample: int | None = None
    precision: str | None = None
    seed: int | None = None
    study: str | None = None
    storage: str | None = None
    prune: bool = True
    # Score the held-out fold after every epoch (progress lines, curves, the pruner). The pipeline turns it
    # off for a planned run, whose one trial nothing can prune: its folds are scored once, at the end.
    monitor: bool = True
    # A time (time.time()) by which a trial's folds should end: the pipeline's budget gives each run one,
    # and folds that start behind its pace get fewer epochs (cv.cross_validate). None: no deadline.
    deadline: float | None = None
    jobs: int | None = None
    fold_jobs: int | None = None  # folds fitted at once, each in its own process (None: 1)
    threads: int | None = None
    artifacts: str | None = None
    heartbeat: int | None = None
    worker: str | None = None  # "K/N": this process is worker K of a --jobs launcher's N
    data_dir: str | None = None
    runs_dir: str | None = None

    @property
    def study_name(self) -> str:
        return self.study or (f"{self.model}-aug" if self.augment else str(self.model))


@dataclass(frozen=True)
class Resolved:
    """A run's options as it uses them: in place of each option not given, the family's preset value,
    else DEFAULTS'. The request stays as given in `request`: the commands that repeat a run (the resume
    command, the workers of --jobs) repeat what the user gave."""

    request: TuneOptions
    trials: int | None  # None: until the timeout (or Ctrl-C)
    timeout: float | None
    folds: int
    epochs: int | None
    subsample: int | None
    precision: str | None  # None: hardware's `auto`
    seed: int

    @property
    def model(self) -> str:
        return str(self.request.model)

    @property
    def study_name(self) -> str:
        return self.request.study_name


def resolve(options: TuneOptions) -> Resolved:
    """Check `options` (check_options), then fill in what was not given: DEFAULTS, then the family's
    preset, then every given value. trials becomes None (unlimited) when only a timeout bounds the run."""
    check_options(options)
    chosen = models.get(str(options.model)).presets.get(options.preset, {}) if options.preset is not None else {}
    values: dict[str, Any] = {**DEFAULTS, **chosen}
    given = {name: getattr(options, name) for name in OPTION_NAMES if getattr(options, name) is not None}
    if "timeout" in given and "trials" not in given and "trials" not in chosen:
        values["trials"] = None
    values |= given
    return Resolved(options, seed=DEFAULT_SEED if options.seed is None else options.seed, **values)


def check_options(options: TuneOptions) -> None:
    """Every option's value, before any work; a bad one is a UserError naming it."""
    if options.model is None:
        raise UserError(f"--model is required: choose one of {', '.join(models.names())}")
    if options.model not in models.names():
        raise UserError(f"--model {options.model}: unknown model, choose one of {', '.join(models.names())}")
    if options.preset is not None and options.preset not in models.PRESET_NAMES:
        raise UserError(f"--preset {options.preset}: choose one of {', '.join(models.PRESET_NAMES)}")
    seeds.check_seed(options.seed)
    minimum = {"trials": 1, "folds": 2, "epochs": 1, "subsample": 1, "jobs": 1, "fold_jobs": 1, "threads": 1}
    minimum["heartbeat"] = 1
    for name, low in minimum.items():
        value = getattr(options, name)
        if value is not None and value < low:
            what = "at least 2 folds" if name == "folds" else f"a value of at least {low}"
            raise UserError(f"--{name.replace('_', '-')} {value}: needs {what}")
    if options.precision is not None and options.precision not in hardware.PRECISIONS:
        raise UserError(f"--precision {options.precision}: choose one of {', '.join(hardware.PRECISIONS)}")
    if options.timeout is not None and not options.timeout > 0:
        raise UserError(f"--timeout {options.timeout:g}: needs a positive number of seconds")
    if options.timeout is not None and not math.isfinite(options.timeout):
        raise UserError(f"--timeout {options.timeout:g}: needs a finite number of seconds (leave it out for no limit)")
    if options.study is not None and not STUDY_NAME.match(options.study):
        raise UserError(f"--study {options.study!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
    if options.worker is not None and not WORKER_ARG.match(options.worker):
        raise UserError(f"--worker {options.worker}: expected K/N")
    if (options.jobs or 1) > 1 and options.storage and storage.kind(options.storage) == "sqlite":
        raise UserError(
            f"--jobs {options.jobs} with --storage {options.storage}: SQLite is for one process; leave --storage out "
            f"(the workers share the journal file <runs-dir>/{storage.JOURNAL_FILE}) or give a database server URL"
        )


@dataclass(frozen=True)
class Setup:
    """A run's resolved options, storage, data and study: what one worker, or the --jobs launcher, needs."""

    options: Resolved
    url: str  # the storage's real URL (never shown: shown_url is)
    storage: optuna.storages.BaseStorage
    study: optuna.Study
    created: bool  # the study was created by this run
    before: int  # trials the study had already (queued ones not counted)
    rows: int  # train rows tuned on
    tuning: Tuning

    @property
    def request(self) -> TuneOptions:
        return self.options.request

    @property
    def seed(self) -> int:
        return self.options.seed

    @property
    def study_name(self) -> str:
        return self.options.study_name

    @property
    def shown_url(self) -> str:
        return storage.display_url(self.url)


def prepare(options: TuneOptions, paths: Paths, log: Log = silent) -> Setup:
    """Resolve the options, open the storage, load the data and create or join the study, without
    running a trial. Progress lines (what was loaded, the precision) go to `log`."""
    resolved = resolve(options)
    seed, study_name = resolved.seed, resolved.study_name
    url = choose_storage_url(options.storage, paths.runs_dir, study_name, options.jobs or 1)
    storage.check_writable(url, paths.runs_dir)
    opened = storage.open_storage(url, heartbeat=options.heartbeat or storage.DEFAULT_HEARTBEAT, log=log)
    artifacts = open_artifact_store(options.artifacts, create=True) if options.artifacts else None

    t0 = time.monotonic()
    dataset = data.load_dataset(paths.data_dir)
    subsample = resolved.subsample
    if subsample is not None and subsample > len(dataset.y_train):
        raise UserError(f"--subsample {subsample}: {paths.train_csv} has only {len(dataset.y_train):,} rows")
    if subsample is not None and subsample < N_CLASSES * resolved.folds:
        raise UserError(
            f"--subsample {subsample}: too few rows for {resolved.folds} folds (at least {N_CLASSES * resolved.folds})"
        )
    if subsample == len(dataset.y_train):
        subsample = None
    rows = cv.stratified_subset(dataset.y_train, subsample, seed) if subsample else None
    rows = np.arange(len(dataset.y_train), dtype=np.int64) if rows is None else rows
    try:
        cv.check_folds(dataset.y_train[rows], resolved.folds, what=_rows_name(paths, subsample))
    except UserError as exc:
        raise UserError(str(exc) + (" or a larger --subsample" if subsample else "")) from None
    fingerprint = data_fingerprint(paths, subsample)
    log(
        f"loaded {paths.train_csv} ({len(dataset.y_train):,} rows) and {paths.test_csv} "
        f"({len(dataset.X_test):,} rows) in {format_seconds(time.monotonic() - t0)}"
    )

    spec = models.get(resolved.model)
    # Explicit or from the preset; else `auto`, when an earlier run in this process (the pipeline's) chose
    # another that this run must not inherit. (Not configured at all: the Keras families choose `auto`.)
    if (options.jobs or 1) == 1 and (resolved.precision is not None or hardware.is_configured()):
        log(f"precision: {hardware.configure(resolved.precision or 'auto')}")
    binding = {"model": options.model, "augment": options.augment, "folds": resolved.folds}
    binding |= {"subsample": subsample, "seed": seed}
    binding |= {"train_sha256": fingerprint["train_sha256"], "test_sha256": fingerprint["test_sha256"]}
    # Our own lines say what each trial did (Optuna would add a traceback for an interrupted trial).
    optuna.logging.set_verbosity(logging.ERROR)
    with storage.storage_errors(url):
        study, created = open_study(opened, study_name, binding, spec, paths.runs_dir, url, options.prune, log)
        before = sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
    tuning = Tuning(
        spec=spec,
        study_name=study_name,
        runs_dir=paths.runs_dir,
        augment=options.augment,
        seed=seed,
        folds=resolved.folds,
        max_epochs=resolved.epochs,
        X=dataset.X_train,
        y=dataset.y_train,
        X_test=dataset.X_test,
        rows=rows,
        info_data=fingerprint,
        trials=resolved.trials,
        fold_jobs=options.fold_jobs or 1,
        monitor=options.monitor or options.prune,  # a pruner needs the per-epoch scores
        deadline=options.deadline,
        url=url,
        artifacts=artifacts,
        log=log,
    )
    return Setup(resolved, url, opened, study, created, before, len(rows), tuning)


@dataclass
class Outcome:
    """How this process's share of a study ended."""

    interrupted: bool  # Ctrl-C: the running trial was marked failed
    ended: int  # trials this run saw to their end (finished, pruned or failed)
    remaining: int | None  # trials still to run to finish what was asked (None: unlimited)


def optimize(setup: Setup) -> Outcome:
    """Run this process's trials of the study; on Ctrl-C mark the running trial failed."""
    study, tuning, options = setup.study, setup.tuning, setup.options
    interrupted = False
    try:
        with storage.storage_errors(setup.url), tuning.interrupts.installed():
            study.optimize(
                tuning,
                n_trials=options.trials,
                timeout=options.timeout,
                callbacks=[tuning.after_trial(options.timeout)],
                gc_after_trial=True,
            )
    except KeyboardInterrupt:
        interrupted = True
        if tuning.current is not None:
            # Optuna marks a trial interrupted in the objective failed; one interrupted inside Optuna's own
            # bookkeeping could still read RUNNING: make sure the study never shows it running forever.
            study.tell(tuning.current.number, state=TrialState.FAIL, skip_if_finished=True)
    with storage.storage_errors(setup.url):
        liveness.fail_lost_trials(study, setup.url, tuning.log)
    ended = len(tuning.durations)
    remaining = None if options.trials is None else options.trials - ended
    return Outcome(interrupted, ended, remaining)


@dataclass(frozen=True)
class TrialSummary:
    number: int
    value: float
    cv_std: float
    seconds: float
    params: dict[str, Any]
    path: str | None


@dataclass(frozen=True)
class StudySummary:
    """A study at a glance: how its trials ended and the best ones (best first)."""

    name: str
    complete: int
    pruned: int
    failed: int
    best: list[TrialSummary]


def summarize(study: optuna.Study, name: str, top: int = TOP_SHOWN) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    finished = sorted(
        ((float(t.value), t) for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
        key=lambda pair: (-pair[0], pair[1].number),
    )
    best = [
        TrialSummary(
            number=t.number,
            value=value,
            cv_std=float(t.user_attrs.get("cv_std", float("nan"))),
            seconds=float(t.user_attrs.get("seconds", float("nan"))),
            params=t.user_attrs.get("params", t.params),
            path=t.user_attrs.get(PATH_ATTR),
        )
        for value, t in finished[:top]
    ]
    return StudySummary(name, counts[TrialState.COMPLETE], counts[TrialState.PRUNED], counts[TrialState.FAIL], best)


def ended_trials(study: optuna.Study) -> int:
    """Trials that ran to their end (finished or pruned): interrupted ones do not use up --trials."""
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


def _rows_name(paths: Paths, subsample: int | None) -> str:
    return f"the --subsample {subsample} rows" if subsample else str(paths.train_csv)


def command_args(
    setup: Setup,
    trials: int | None,
    *,
    masked: bool,
    storage_url: str | None = None,
    jobs: int | None = None,
) -> list[str]:
    """`tune` arguments that repeat this run's settings: for the resume command (masked=True: the storage
    password as ***) and for the worker processes of --jobs (storage_url: the storage they all share)."""
    request, options = setup.request, setup.options
    parts = ["--model", str(request.model)]
    if request.augment:
        parts.append("--augment")
    if request.study:
        parts += ["--study", request.study]
    url = storage_url or request.storage
    if url:
        parts += ["--storage", storage.display_url(url) if masked else url]
    if trials is not None:
        parts += ["--trials", str(max(1, trials))]
    if options.timeout is not None:
        parts += ["--timeout", f"{options.timeout:g}"]
    parts += ["--folds", str(options.folds)]
    for name in ("epochs", "subsample"):
        if getattr(options, name) is not None:
            parts += [f"--{name}", str(getattr(options, name))]
    parts += ["--seed", str(setup.seed)]
    if not request.prune:
        parts.append("--no-prune")
    jobs = request.jobs if jobs is None else jobs
    if jobs and jobs > 1:
        parts += ["--jobs", str(jobs)]
    if options.precision is not None:
        parts += ["--precision", str(options.precision)]
    for name in ("fold_jobs", "threads", "artifacts", "heartbeat"):
        if getattr(request, name) is not None:
            parts += [f"--{name.replace('_', '-')}", str(getattr(request, name))]
    for name in ("data_dir", "runs_dir"):
        if getattr(request, name):
            parts += [f"--{name.replace('_', '-')}", str(getattr(request, name))]
    return parts
