"""`tune`: an Optuna study over one model family, every trial judged by stratified k-fold CV.

A trial samples the family's search space (the first trial of a new study is the family's known-good
default), cross-validates it (kaggle_digits.cv), reports each epoch's validation accuracy to a pruner,
and leaves its artifacts in `runs/<study>/trial-<n>/` (see kaggle_digits.runs). Studies live in an
Optuna storage (SQLite in the runs folder by default) and continue where they stopped when run again.
Several processes tune one study together through a shared storage (kaggle_digits.storage): `--jobs N`
starts N workers on this machine (kaggle_digits.workers), and any number of machines can run the same
command against one database server.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import re
import shlex
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

from . import N_CLASSES, cv, data, hardware, models, report, runs, seeds, storage
from .cli import format_seconds
from .errors import UserError
from .paths import Paths

HELP = "tune a model family with Optuna and stratified k-fold cross-validation (OOF + test probabilities)"

MODEL_NAMES = tuple(models.FAMILIES)
PRESET_NAMES = ("quick", "standard", "full")
OPTION_NAMES = ("trials", "timeout", "folds", "epochs", "subsample", "precision")

# Without a preset. trials=None runs until --timeout (or Ctrl-C) when a timeout is given.
DEFAULTS: dict[str, Any] = {
    "trials": 20,
    "timeout": None,
    "folds": 5,
    "epochs": None,
    "subsample": None,
    "precision": None,  # None: hardware's `auto`
}

# preset -> model -> options; anything not named falls back to DEFAULTS, and explicit options win.
# quick: minutes (the first trial is the family's default, so one trial is already a good model);
# standard: about an hour on a 2-core CPU (the cnn: 1 h 42 min); full: the 0.9975-class recipe, uncapped (hours on a CPU).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "mlp": {"trials": 2, "folds": 3, "epochs": 20, "subsample": 20_000},
        "dense": {"trials": 2, "folds": 3, "epochs": 10},
        # fast: bf16 on a CPU that has it (README "Benchmarks": about 1.5x the speed of float32 here).
        "cnn": {"trials": 1, "folds": 2, "epochs": 8, "precision": "fast"},
    },
    "standard": {
        "mlp": {"trials": None, "timeout": 3600, "folds": 5},
        "dense": {"trials": None, "timeout": 3600, "folds": 5, "epochs": 30},
        # The recipe in full (45 epochs with --augment) on 5 folds, in auto precision (float32 on a CPU):
        # one trial took 1 h 42 min here, CV 0.9960 (in bf16, --precision fast: 70 min, CV 0.9954).
        "cnn": {"trials": None, "timeout": 3600, "folds": 5},
    },
    "full": {
        "mlp": {"trials": 50, "folds": 5},
        "dense": {"trials": 50, "folds": 5},
        "cnn": {"trials": 20, "folds": 5},
    },
}

DEFAULT_SEED = 0
DB_FILE = storage.DB_FILE
# The pruner's step: fold * STEP_STRIDE + epoch, one counter across folds that puts the same fold and
# epoch of every trial on the same step (no fit runs 1,000 epochs).
STEP_STRIDE = 1000
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="{mlp,dense,cnn}", help="model family to tune (required)")
    parser.add_argument("--augment", action="store_true", help="random rotation, zoom and shift of training images")
    parser.add_argument("--trials", type=int, metavar="N", help=f"trials to run now (default {DEFAULTS['trials']})")
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="time budget in seconds: no trial starts that would end after it"
    )
    parser.add_argument("--folds", type=int, metavar="K", help=f"cross-validation folds (default {DEFAULTS['folds']})")
    parser.add_argument("--epochs", type=int, metavar="E", help="cap on the epochs of every fit")
    parser.add_argument("--subsample", type=int, metavar="N", help="tune on a stratified subset of N train rows")
    parser.add_argument(
        "--seed", type=int, help=f"seed of the folds, subset, sampler and fits (default {DEFAULT_SEED})"
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
        help="Keras dtype policy (default auto: mixed_float16 on a GPU, float32 on a CPU; fast: bf16 too on a CPU "
        "that has it; the quick cnn preset uses fast)",
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


# --- options --------------------------------------------------------------------------------------


def resolve_options(model: str, preset: str | None = None, **given: Any) -> dict[str, Any]:
    """trials, timeout, folds, epochs, subsample, precision for `model`: DEFAULTS, then PRESETS[preset][model],
    then every given value that is not None. trials becomes None (unlimited) when only a timeout bounds the run.
    """
    if preset is not None and preset not in PRESETS:
        raise UserError(f"--preset {preset}: choose one of {', '.join(PRESETS)}")
    unknown = set(given) - set(OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown options: {sorted(unknown)}")
    options = dict(DEFAULTS)
    if preset is not None:
        options.update(PRESETS[preset].get(model, {}))
    explicit = {k: v for k, v in given.items() if v is not None}
    if (
        "timeout" in explicit
        and "trials" not in explicit
        and (preset is None or "trials" not in PRESETS[preset][model])
    ):
        options["trials"] = None
    options.update(explicit)
    return options


def _check_options(args: argparse.Namespace) -> None:
    if args.model is None:
        raise UserError(f"--model is required: choose one of {', '.join(MODEL_NAMES)}")
    if args.model not in MODEL_NAMES:
        raise UserError(f"--model {args.model}: unknown model, choose one of {', '.join(MODEL_NAMES)}")
    if args.preset is not None and args.preset not in PRESETS:
        raise UserError(f"--preset {args.preset}: choose one of {', '.join(PRESETS)}")
    seeds.check_seed(args.seed)
    minimum = {"trials": 1, "folds": 2, "epochs": 1, "subsample": 1, "jobs": 1, "threads": 1}
    minimum["heartbeat"] = 1
    for name, low in minimum.items():
        value = getattr(args, name)
        if value is not None and value < low:
            what = "at least 2 folds" if name == "folds" else f"a value of at least {low}"
            raise UserError(f"--{name} {value}: needs {what}")
    if args.precision is not None and args.precision not in hardware.PRECISIONS:
        raise UserError(f"--precision {args.precision}: choose one of {', '.join(hardware.PRECISIONS)}")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout {args.timeout:g}: needs a positive number of seconds")
    if args.timeout is not None and not math.isfinite(args.timeout):
        raise UserError(f"--timeout {args.timeout:g}: needs a finite number of seconds (leave it out for no limit)")
    if args.study is not None and not STUDY_NAME.match(args.study):
        raise UserError(f"--study {args.study!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
    if args.worker is not None and not WORKER_ARG.match(args.worker):
        raise UserError(f"--worker {args.worker}: expected K/N")
    if (args.jobs or 1) > 1 and args.storage and storage.kind(args.storage) == "sqlite":
        raise UserError(
            f"--jobs {args.jobs} with --storage {args.storage}: SQLite is for one process; leave --storage out (the "
            f"workers share the journal file <runs-dir>/{storage.JOURNAL_FILE}) or give a database server URL"
        )


# --- storage and study ----------------------------------------------------------------------------


def default_storage_url(runs_dir: Path) -> str:
    return storage.default_url(runs_dir)


def display_url(url: str) -> str:
    """`url` with any password replaced by ***."""
    return storage.display_url(url)


def open_storage(
    url: str | None, runs_dir: Path, heartbeat: int | None = storage.DEFAULT_HEARTBEAT
) -> optuna.storages.BaseStorage:
    """The Optuna storage at `url` (None: SQLite at <runs_dir>/optuna.db, folder created); see
    kaggle_digits.storage. A bad or unreachable URL is a UserError of one line without the password."""
    if url is None:
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        url = default_storage_url(runs_dir)
    return storage.open_storage(url, heartbeat=heartbeat)


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
) -> tuple[optuna.Study, bool]:
    """Create the study `name` (first trial: the family's default) or join it; True when created here.

    binding : model, augment, folds, subsample, seed, train_sha256, test_sha256 — a study continued with
    other values would mix incomparable trials, so that is a UserError naming the differences.
    The study is created once: of several workers starting together, one creates it and records its
    settings; the others join it (and wait up to JOIN_WAIT seconds for those settings). Trials left
    running by workers that are gone are marked failed (storage.fail_lost_trials).
    """
    shown_url = display_url(url)
    shared = storage.is_shared(url)
    seed = int(binding["seed"])
    exists = name in storage.study_names(opened)
    if not exists and runs.list_studies(runs_dir).count(name):
        raise UserError(
            f"{Path(runs_dir) / name}/ holds finished trials of another study '{name}' (not in {shown_url}): "
            "pass another --study, or the --storage those trials came from"
        )
    common = {"direction": "maximize", "sampler": make_sampler(seed, 0, shared), "pruner": make_pruner(prune)}
    if not exists:
        try:
            study = optuna.create_study(storage=opened, study_name=name, **common)
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it a moment ago
            exists = True
        else:
            study.set_user_attr(STUDY_ATTR, binding)
            study.enqueue_trial(default_suggestions(spec, bool(binding["augment"])), user_attrs={"default": True})
            return study, True
    study = optuna.load_study(study_name=name, storage=opened, sampler=common["sampler"], pruner=common["pruner"])
    recorded = _recorded_binding(study)
    n_existing = len(study.get_trials(deepcopy=False))
    if n_existing and not shared:
        study.sampler = make_sampler(seed, n_existing)
    if recorded is None:
        if n_existing:
            raise UserError(f"study '{name}' in {shown_url} was not created by this tool: pick another --study")
        # Created by a process that stopped before recording its settings: finish the job.
        study.set_user_attr(STUDY_ATTR, binding)
        study.enqueue_trial(default_suggestions(spec, bool(binding["augment"])), user_attrs={"default": True})
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
    storage.fail_lost_trials(study, url)
    return study, False


def _recorded_binding(study: optuna.Study) -> dict[str, Any] | None:
    """The settings the study was created with; a study just created by another worker gets JOIN_WAIT
    seconds to record them."""
    deadline = time.monotonic() + JOIN_WAIT
    while True:
        recorded = study.user_attrs.get(STUDY_ATTR)
        if recorded is not None or study.get_trials(deepcopy=False) or time.monotonic() > deadline:
            return recorded
        time.sleep(0.2)


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "…"  # a SHA-256
    return str(value)


class _Branch(Exception):
    def __init__(self, n: int) -> None:
        self.n = n


class _NoInverse(Exception):
    pass


class _Replay:
    """Stands in for an optuna Trial: answers suggest_* from `known` values (matched by name, as
    enqueue_trial would) or else from `path`, the choice index of each unmatched discrete parameter."""

    LIMIT = 10_000  # an integer range larger than this counts as continuous

    def __init__(self, known: dict[str, Any], path: list[int]) -> None:
        self.known, self.path, self.values, self._unmatched = known, path, {}, 0

    def _pick(self, name: str, options: list[Any] | None) -> Any:
        if name in self.known and (options is None or self.known[name] in options):
            value = self.known[name]
        elif options is None:
            raise _NoInverse(name)
        elif self._unmatched < len(self.path):
            value = options[self.path[self._unmatched]]
            self._unmatched += 1
        else:
            raise _Branch(len(options))
        self.values[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._pick(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        span = range(low, high + 1, step)
        return self._pick(name, list(span) if len(span) <= self.LIMIT else None)

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False):
        return self._pick(name, None)


def default_suggestions(spec: models.ModelSpec, augment: bool) -> dict[str, Any]:
    """The suggest_* values for which spec.search_space returns exactly spec.default_params: what
    enqueue_trial needs so the study's first trial is the default *and* Optuna knows its parameters.

    Parameters named like a key of the defaults take that value; the remaining discrete ones (e.g. a
    layer count behind a list of units) are found by a depth-first search over their choices.
    """
    import json

    target = json.loads(json.dumps(spec.default_params(augment)))
    stack: list[list[int]] = [[]]
    while stack:
        path = stack.pop()
        replay = _Replay(target, path)
        try:
            out = spec.search_space(replay, augment)
        except _Branch as branch:
            stack.extend(path + [i] for i in reversed(range(branch.n)))
            continue
        except _NoInverse:
            continue
        if json.loads(json.dumps(out)) == target:
            return replay.values
    raise ValueError(f"{spec.name}: default_params(augment={augment}) is not a point of its search_space")


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
    url: str = ""  # the storage's URL (what kind of storage decides how lost trials are found)
    artifacts: storage.ArtifactStore | None = None  # --artifacts: where finished trials' files are uploaded
    log: Callable[[str], None] = cv.say
    interrupts: Interrupts = field(default_factory=Interrupts)
    start: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)  # finished trials of this run
    current: optuna.Trial | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.current = trial
        self.interrupts.check()
        # First thing: name this process, so that if it dies the trial is known to be lost (not running).
        trial.set_user_attr(storage.WORKER_ATTR, storage.worker_identity())
        params = self.spec.search_space(trial, self.augment)
        folder = runs.trial_dir(self.runs_dir, self.study_name, trial.number)
        if (folder / runs.METRICS_FILE).exists():
            raise UserError(f"{folder} already holds a finished trial that this storage does not know: move it away")
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
            )
        if not (np.isfinite(result.oof_proba).all() and np.isfinite(result.test_proba).all()):
            self.log(f"trial {trial.number} failed: the fit diverged (non-finite probabilities)")
            return float("nan")  # Optuna marks the trial failed
        seconds = time.monotonic() - started
        for k, model in enumerate(result.models):
            self.spec.save(model, folder / f"fold-{k}{self.spec.model_suffix}")
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
        trial.set_user_attr(PATH_ATTR, str(folder.resolve()))
        trial.set_user_attr("params", params)
        trial.set_user_attr("cv_std", result.cv_std)
        trial.set_user_attr("seconds", seconds)
        uploaded = storage.upload_trial(trial, folder, self.artifacts) if self.artifacts else 0
        self.log(
            f"trial {trial.number} done: CV accuracy {result.cv_accuracy:.4f} ± {result.cv_std:.4f} "
            f"in {format_seconds(seconds)} -> {folder}"
            + (f" (+ {uploaded} files in {self.artifacts.location})" if uploaded else "")
        )
        return result.cv_accuracy

    def _pruning_reporter(self, trial: optuna.Trial) -> cv.FoldEpochCallback:
        def report(fold: int, epoch: int, metrics: dict[str, float]) -> None:
            value = metrics.get("val_accuracy")
            if value is None:
                return
            with self.interrupts.paused():
                trial.report(float(value), fold * STEP_STRIDE + epoch)
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
        text += f", elapsed {format_seconds(elapsed)}"
        if self.trials and done:
            text += f", ETA {format_seconds(elapsed / done * (self.trials - done))}"
        return text

    def after_trial(self, timeout: float | None) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
        """An optimize callback: count finished trials; stop when the next one would end past the timeout."""

        def callback(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
            self.current = None
            if frozen.datetime_complete and frozen.datetime_start:
                self.durations.append((frozen.datetime_complete - frozen.datetime_start).total_seconds())
            if self.url:
                storage.fail_lost_trials(study, self.url, self.log)  # workers that died meanwhile
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


# --- the command ----------------------------------------------------------------------------------


@dataclass
class Setup:
    """A run's resolved options, storage, data and study: what one worker, or the --jobs launcher, needs."""

    options: dict[str, Any]
    seed: int
    study_name: str
    url: str  # the storage's real URL (never printed: shown_url is)
    storage: optuna.storages.BaseStorage
    study: optuna.Study
    before: int  # trials the study had already (queued ones not counted)
    tuning: Tuning

    @property
    def shown_url(self) -> str:
        return display_url(self.url)


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    jobs = args.jobs or 1
    if args.threads is not None and jobs == 1:
        hardware.limit_threads(args.threads)
    setup = prepare(args)
    if jobs > 1:
        from . import workers

        return workers.run(args, setup)
    return optimize(args, setup)


def prepare(args: argparse.Namespace) -> Setup:
    """Resolve the options, open the storage, load the data and create or join the study (printing what
    it found), without running a trial."""
    options = resolve_options(
        args.model,
        args.preset,
        **{name: getattr(args, name) for name in OPTION_NAMES},
    )
    seed = DEFAULT_SEED if args.seed is None else args.seed
    augment = bool(args.augment)
    paths: Paths = args.paths
    study_name = args.study or (f"{args.model}-aug" if augment else args.model)
    url = choose_storage_url(args.storage, paths.runs_dir, study_name, args.jobs or 1)
    storage.check_writable(url, paths.runs_dir)
    opened = storage.open_storage(url, heartbeat=args.heartbeat or storage.DEFAULT_HEARTBEAT)
    artifacts = storage.open_artifact_store(args.artifacts, create=True) if args.artifacts else None

    t0 = time.monotonic()
    dataset = data.load_dataset(paths.data_dir)
    subsample = options["subsample"]
    if subsample is not None and subsample > len(dataset.y_train):
        raise UserError(f"--subsample {subsample}: {paths.train_csv} has only {len(dataset.y_train):,} rows")
    if subsample is not None and subsample < N_CLASSES * options["folds"]:
        raise UserError(
            f"--subsample {subsample}: too few rows for {options['folds']} folds (at least {N_CLASSES * options['folds']})"
        )
    if subsample == len(dataset.y_train):
        subsample = None
    rows = cv.stratified_subset(dataset.y_train, subsample, seed) if subsample else None
    rows = np.arange(len(dataset.y_train), dtype=np.int64) if rows is None else rows
    try:
        cv.check_folds(dataset.y_train[rows], options["folds"], what=_rows_name(paths, subsample))
    except UserError as exc:
        raise UserError(str(exc) + (" or a larger --subsample" if subsample else "")) from None
    fingerprint = data_fingerprint(paths, subsample)
    print(
        f"loaded {paths.train_csv} ({len(dataset.y_train):,} rows) and {paths.test_csv} "
        f"({len(dataset.X_test):,} rows) in {format_seconds(time.monotonic() - t0)}",
        flush=True,
    )

    spec = models.get(args.model)
    # Explicit or from the preset; else `auto`, when an earlier run in this process (the pipeline's) chose
    # another that this run must not inherit. (Not configured at all: the Keras families choose `auto`.)
    if (args.jobs or 1) == 1 and (options["precision"] is not None or hardware.is_configured()):
        print(f"precision: {hardware.configure(options['precision'] or 'auto')}", flush=True)
    binding = {"model": args.model, "augment": augment, "folds": options["folds"], "subsample": subsample}
    binding |= {"seed": seed, "train_sha256": fingerprint["train_sha256"], "test_sha256": fingerprint["test_sha256"]}
    # Our own lines say what each trial did (Optuna would add a traceback for an interrupted trial).
    optuna.logging.set_verbosity(logging.ERROR)
    with storage.storage_errors(url):
        study, created = open_study(opened, study_name, binding, spec, paths.runs_dir, url, not args.no_prune)
        before = sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
    if args.worker is None:
        print(
            f"study '{study_name}' in {display_url(url)}: "
            + (
                "new (its first trial is the family's default)"
                if created
                else f"continuing after {_plural(before, 'trial')}"
                if before
                else "joining it (another worker created it a moment ago)"
            )
            + f"; {args.model}{' with augmentation' if augment else ''}, {len(rows):,} rows, "
            f"{options['folds']} folds, seed {seed}"
            + (f", epochs capped at {options['epochs']}" if options["epochs"] else "")
            + (f", up to {_plural(options['trials'], 'trial')}" if options["trials"] else "")
            + (f", time budget {format_seconds(options['timeout'])}" if options["timeout"] else ""),
            flush=True,
        )
    tuning = Tuning(
        spec=spec,
        study_name=study_name,
        runs_dir=paths.runs_dir,
        augment=augment,
        seed=seed,
        folds=options["folds"],
        max_epochs=options["epochs"],
        X=dataset.X_train,
        y=dataset.y_train,
        X_test=dataset.X_test,
        rows=rows,
        info_data=fingerprint,
        trials=options["trials"],
        url=url,
        artifacts=artifacts,
    )
    return Setup(options, seed, study_name, url, opened, study, before, tuning)


def optimize(args: argparse.Namespace, setup: Setup) -> int:
    """Run this process's trials of the study; on Ctrl-C mark the running trial failed and say how to resume."""
    study, tuning, options = setup.study, setup.tuning, setup.options
    paths: Paths = args.paths
    interrupted = False
    try:
        with storage.storage_errors(setup.url), tuning.interrupts.installed():
            study.optimize(
                tuning,
                n_trials=options["trials"],
                timeout=options["timeout"],
                callbacks=[tuning.after_trial(options["timeout"])],
                gc_after_trial=True,
            )
    except KeyboardInterrupt:
        interrupted = True
        if tuning.current is not None:
            # Optuna marks a trial interrupted in the objective failed; one interrupted inside Optuna's own
            # bookkeeping could still read RUNNING: make sure the study never shows it running forever.
            study.tell(tuning.current.number, state=TrialState.FAIL, skip_if_finished=True)
    with storage.storage_errors(setup.url):
        storage.fail_lost_trials(study, setup.url)
    if args.worker is not None:
        # A worker of `--jobs`: its launcher prints the study's summary and the resume command.
        done = len(tuning.durations)
        print(
            f"worker {args.worker} {'stopped' if interrupted else 'done'}: {_plural(done, 'trial')} ended", flush=True
        )
        return 130 if interrupted else 0
    _summary(study, setup.study_name, paths, setup.shown_url, args)
    if interrupted:
        remaining = None if options["trials"] is None else options["trials"] - len(tuning.durations)
        print(
            f"\ninterrupted: the running trial was marked failed; finished trials are kept in "
            f"{paths.runs_dir / setup.study_name}/. Resume with:\n  "
            f"{resume_command(args, options, setup.seed, remaining)}"
        )
        return 130
    return 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _rows_name(paths: Paths, subsample: int | None) -> str:
    return f"the --subsample {subsample} rows" if subsample else str(paths.train_csv)


def resume_command(args: argparse.Namespace, options: dict[str, Any], seed: int, remaining: int | None) -> str:
    """The command that continues this study with the same settings (the storage password masked: pass
    the password through PGPASSWORD or ~/.pgpass instead of the URL and the command is exact)."""
    return shlex.join(["python", "scripts/tune.py", *command_args(args, options, seed, remaining, masked=True)])


def command_args(
    args: argparse.Namespace,
    options: dict[str, Any],
    seed: int,
    trials: int | None,
    *,
    masked: bool,
    storage_url: str | None = None,
    jobs: int | None = None,
) -> list[str]:
    """`tune` arguments that repeat this run's settings: for the resume command (masked=True: the storage
    password as ***) and for the worker processes of --jobs (storage_url: the storage they all share)."""
    parts = ["--model", args.model]
    if args.augment:
        parts.append("--augment")
    if args.study:
        parts += ["--study", args.study]
    url = storage_url or args.storage
    if url:
        parts += ["--storage", display_url(url) if masked else url]
    if trials is not None:
        parts += ["--trials", str(max(1, trials))]
    if options["timeout"] is not None:
        parts += ["--timeout", f"{options['timeout']:g}"]
    parts += ["--folds", str(options["folds"])]
    for name in ("epochs", "subsample"):
        if options[name] is not None:
            parts += [f"--{name}", str(options[name])]
    parts += ["--seed", str(seed)]
    if getattr(args, "no_prune", False):
        parts.append("--no-prune")
    jobs = args.jobs if jobs is None else jobs
    if jobs and jobs > 1:
        parts += ["--jobs", str(jobs)]
    if options.get("precision") is not None:
        parts += ["--precision", str(options["precision"])]
    for name in ("threads", "artifacts", "heartbeat"):
        if getattr(args, name, None) is not None:
            parts += [f"--{name}", str(getattr(args, name))]
    for name in ("data_dir", "runs_dir"):
        if getattr(args, name, None):
            parts += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return parts


def _summary(study: optuna.Study, name: str, paths: Paths, shown_url: str, args: argparse.Namespace) -> None:
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    finished = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
        key=lambda t: (-t.value, t.number),
    )
    print(
        f"\nstudy '{name}': {counts[TrialState.COMPLETE]} finished, {counts[TrialState.PRUNED]} pruned, "
        f"{counts[TrialState.FAIL]} failed"
    )
    if not finished:
        print("no finished trial yet")
        return
    print(f"best trials:\n  {'trial':>5}  {'CV accuracy':<16} {'seconds':>8}  params")
    for t in finished[:TOP_SHOWN]:
        std = t.user_attrs.get("cv_std", float("nan"))
        seconds = t.user_attrs.get("seconds", float("nan"))
        params = t.user_attrs.get("params", t.params)
        print(f"  {t.number:>5}  {t.value:.4f} ± {std:.4f}  {seconds:>8.0f}  {format_params(params, 90)}")
    best = finished[0]
    print(f"artifacts: {paths.runs_dir / name}/trial-<n>/ (params, metrics, history, oof, oof_rows, test, fold models)")
    print(f"best: {best.user_attrs.get(PATH_ATTR, '?')}  CV accuracy {best.value:.4f}")
    print(f"storage: {shown_url} (study '{name}')")
    folders = [f"--{n.replace('_', '-')} {shlex.quote(str(getattr(args, n)))}" for n in ("data_dir", "runs_dir")]
    folders = [f for f, n in zip(folders, ("data_dir", "runs_dir")) if getattr(args, n, None)]
    # On a database server the trials may be on other machines: the ensemble finds them through it.
    where = ["--storage", shlex.quote(shown_url)] if storage.kind(shown_url) == "server" else []
    print("next: " + " ".join(["python scripts/ensemble.py --studies", shlex.quote(name), *where, *folders]))
    elsewhere = shown_url != storage.default_url(paths.runs_dir)  # e.g. the journal file of --jobs
    print(f"plots: {report.command_line(paths, studies=[name], storage=shown_url if elsewhere else None)}")
