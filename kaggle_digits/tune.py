"""`tune`: an Optuna study over one model family, every trial judged by stratified k-fold CV.

A trial samples the family's search space (the first trial of a new study is the family's known-good
default), cross-validates it (kaggle_digits.cv), reports each epoch's validation accuracy to a pruner,
and leaves its artifacts in `runs/<study>/trial-<n>/` (see kaggle_digits.runs). Studies live in an
Optuna storage (SQLite in the runs folder by default) and continue where they stopped when run again.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from . import N_CLASSES, cv, data, hardware, models, report, runs
from .cli import format_seconds
from .errors import UserError
from .paths import Paths

HELP = "tune a model family with Optuna and stratified k-fold cross-validation (OOF + test probabilities)"

MODEL_NAMES = tuple(models.FAMILIES)
PRESET_NAMES = ("quick", "standard", "full")
OPTION_NAMES = ("trials", "timeout", "folds", "epochs", "subsample")

# Without a preset. trials=None runs until --timeout (or Ctrl-C) when a timeout is given.
DEFAULTS: dict[str, Any] = {"trials": 20, "timeout": None, "folds": 5, "epochs": None, "subsample": None}

# preset -> model -> options; anything not named falls back to DEFAULTS, and explicit options win.
# quick: minutes (the first trial is the family's default, so one trial is already a good model);
# standard: about an hour on a 2-core CPU; full: the 0.9975-class recipe, uncapped (hours on a CPU).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "mlp": {"trials": 2, "folds": 3, "epochs": 20, "subsample": 20_000},
        "dense": {"trials": 2, "folds": 3, "epochs": 10},
        "cnn": {"trials": 1, "folds": 2, "epochs": 6},
    },
    "standard": {
        "mlp": {"trials": None, "timeout": 3600, "folds": 5},
        "dense": {"trials": None, "timeout": 3600, "folds": 5, "epochs": 30},
        "cnn": {"trials": None, "timeout": 3600, "folds": 3, "epochs": 25},
    },
    "full": {
        "mlp": {"trials": 50, "folds": 5},
        "dense": {"trials": 50, "folds": 5},
        "cnn": {"trials": 20, "folds": 5},
    },
}

DEFAULT_SEED = 0
DB_FILE = "optuna.db"
# The pruner's step: fold * STEP_STRIDE + epoch, one counter across folds that puts the same fold and
# epoch of every trial on the same step (no fit runs 1,000 epochs).
STEP_STRIDE = 1000
# Prune a trial whose best validation accuracy so far is below the 25th percentile of the finished
# trials at the same fold and epoch ("clearly behind"), once 3 trials have finished, and never in
# the first 3 epochs of the first fold (early validation accuracy is noisy: BatchNorm statistics lag).
PRUNE_KEEP_PERCENT = 75.0
PRUNE_STARTUP_TRIALS = 3
PRUNE_WARMUP_EPOCHS = 3
TOP_SHOWN = 5  # rows of the final table
STUDY_ATTR = "kaggle_digits"  # study user attr: what the study was created for (checked on resume)
PATH_ATTR = "path"  # trial user attr: the trial's artifact folder
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
        "--precision",
        metavar="{" + ",".join(hardware.PRECISIONS) + "}",
        help="Keras dtype policy (default auto: mixed_float16 on a GPU, float32 on a CPU)",
    )
    parser.add_argument("--study", help="study name (default: the model, or <model>-aug with --augment)")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite:///<runs-dir>/optuna.db)")


# --- options --------------------------------------------------------------------------------------


def resolve_options(model: str, preset: str | None = None, **given: Any) -> dict[str, Any]:
    """trials, timeout, folds, epochs, subsample for `model`: DEFAULTS, then PRESETS[preset][model],
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
    minimum = {"trials": 1, "folds": 2, "epochs": 1, "subsample": 1, "seed": 0}
    for name, low in minimum.items():
        value = getattr(args, name)
        if value is not None and value < low:
            what = "at least 2 folds" if name == "folds" else f"a value of at least {low}"
            raise UserError(f"--{name} {value}: needs {what}")
    if args.precision is not None and args.precision not in hardware.PRECISIONS:
        raise UserError(f"--precision {args.precision}: choose one of {', '.join(hardware.PRECISIONS)}")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout {args.timeout:g}: needs a positive number of seconds")
    if args.study is not None and not STUDY_NAME.match(args.study):
        raise UserError(f"--study {args.study!r}: use letters, digits, '.', '_' and '-' (it names a folder)")


# --- storage and study ----------------------------------------------------------------------------


def default_storage_url(runs_dir: Path) -> str:
    return f"sqlite:///{Path(runs_dir) / DB_FILE}"


def display_url(url: str) -> str:
    """`url` with any password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def open_storage(url: str | None, runs_dir: Path) -> optuna.storages.BaseStorage:
    """The Optuna storage at `url` (None: SQLite at <runs_dir>/optuna.db, folder created).

    The one place storages are opened: other kinds (a journal file for several processes, PostgreSQL
    or MySQL for several machines) belong here. A bad or unreachable URL is a UserError of one line.
    """
    if url is None:
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        url = default_storage_url(runs_dir)
    shown = display_url(url)
    try:
        return optuna.storages.RDBStorage(url)
    except ImportError as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        raise UserError(
            f"--storage {shown}: its database driver is not installed ({cause}); for PostgreSQL use "
            "postgresql+psycopg2://... after `pip install -e '.[distributed]'`"
        ) from None
    except Exception as exc:  # SQLAlchemy's errors for unparsable, unknown or unreachable URLs
        message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        password = _password(url)
        if password:
            message = message.replace(password, "***")
        raise UserError(f"--storage {shown}: cannot open it: {message}") from None


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:
        return None


def data_fingerprint(paths: Paths, subsample: int | None) -> dict[str, Any]:
    """What a trial's rows come from: SHA-256 of train.csv and test.csv, and the subset size (None = all)."""
    return {
        "train_sha256": data.sha256(paths.train_csv),
        "test_sha256": data.sha256(paths.test_csv),
        "subsample": subsample,
    }


def make_sampler(seed: int, n_existing: int) -> optuna.samplers.TPESampler:
    """Seeded TPE. A continued study gets a seed derived from (seed, trials so far), so a second run
    does not replay the first run's random start-up points."""
    if n_existing:
        seed = int(np.random.SeedSequence([seed, n_existing]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.PercentilePruner(
        PRUNE_KEEP_PERCENT, n_startup_trials=PRUNE_STARTUP_TRIALS, n_warmup_steps=PRUNE_WARMUP_EPOCHS
    )


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    binding: dict[str, Any],
    spec: models.ModelSpec,
    runs_dir: Path,
    shown_url: str,
) -> optuna.Study:
    """Create the study `name` (first trial: the family's default) or continue it.

    binding : model, augment, folds, subsample, seed, train_sha256, test_sha256 — a study continued with
    other values would mix incomparable trials, so that is a UserError naming the differences.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=make_sampler(int(binding["seed"]), 0),
        pruner=make_pruner(),
        load_if_exists=True,
    )
    n_existing = len(study.get_trials(deepcopy=False))
    if n_existing:
        study.sampler = make_sampler(int(binding["seed"]), n_existing)
    recorded = study.user_attrs.get(STUDY_ATTR)
    if recorded is None:
        if n_existing:
            raise UserError(f"study '{name}' in {shown_url} was not created by this tool: pick another --study")
        if runs.list_studies(runs_dir).count(name):
            raise UserError(
                f"{Path(runs_dir) / name}/ holds finished trials of another study '{name}' (not in {shown_url}): "
                "pass another --study, or the --storage those trials came from"
            )
        study.set_user_attr(STUDY_ATTR, binding)
        study.enqueue_trial(default_suggestions(spec, bool(binding["augment"])), user_attrs={"default": True})
        return study
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
    return study


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
    log: Callable[[str], None] = cv.say
    start: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)  # finished trials of this run
    current: optuna.Trial | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.current = trial
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
        self.log(
            f"trial {trial.number} done: CV accuracy {result.cv_accuracy:.4f} ± {result.cv_std:.4f} "
            f"in {format_seconds(seconds)} -> {folder}"
        )
        return result.cv_accuracy

    def _pruning_reporter(self, trial: optuna.Trial) -> cv.FoldEpochCallback:
        def report(fold: int, epoch: int, metrics: dict[str, float]) -> None:
            value = metrics.get("val_accuracy")
            if value is None:
                return
            trial.report(float(value), fold * STEP_STRIDE + epoch)
            if trial.should_prune():
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


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    options = resolve_options(
        args.model,
        args.preset,
        **{name: getattr(args, name) for name in OPTION_NAMES},
    )
    seed = DEFAULT_SEED if args.seed is None else args.seed
    augment = bool(args.augment)
    paths: Paths = args.paths
    study_name = args.study or (f"{args.model}-aug" if augment else args.model)
    storage = open_storage(args.storage, paths.runs_dir)
    shown_url = display_url(args.storage or default_storage_url(paths.runs_dir))

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
    if args.precision is not None:
        print(f"precision: {hardware.configure(args.precision)}", flush=True)
    binding = {"model": args.model, "augment": augment, "folds": options["folds"], "subsample": subsample}
    binding |= {"seed": seed, "train_sha256": fingerprint["train_sha256"], "test_sha256": fingerprint["test_sha256"]}
    # Our own lines say what each trial did (Optuna would add a traceback for an interrupted trial).
    optuna.logging.set_verbosity(logging.ERROR)
    study = open_study(storage, study_name, binding, spec, paths.runs_dir, shown_url)
    before = len([t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING])
    print(
        f"study '{study_name}' in {shown_url}: "
        + (
            f"continuing after {_plural(before, 'trial')}"
            if before
            else "new (its first trial is the family's default)"
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
    )
    interrupted = False
    try:
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
    _summary(study, study_name, paths, shown_url, args)
    if interrupted:
        remaining = None if options["trials"] is None else options["trials"] - len(tuning.durations)
        print(
            f"\ninterrupted: the running trial was marked failed; finished trials are kept in "
            f"{paths.runs_dir / study_name}/. Resume with:\n  {resume_command(args, options, seed, remaining)}"
        )
        return 130
    return 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _rows_name(paths: Paths, subsample: int | None) -> str:
    return f"the --subsample {subsample} rows" if subsample else str(paths.train_csv)


def resume_command(args: argparse.Namespace, options: dict[str, Any], seed: int, remaining: int | None) -> str:
    """The command that continues this study with the same settings (the storage password masked)."""
    parts = ["python", "scripts/tune.py", "--model", args.model]
    if args.augment:
        parts.append("--augment")
    if args.study:
        parts += ["--study", args.study]
    if args.storage:
        parts += ["--storage", display_url(args.storage)]
    if remaining is not None:
        parts += ["--trials", str(max(1, remaining))]
    if options["timeout"] is not None:
        parts += ["--timeout", f"{options['timeout']:g}"]
    parts += ["--folds", str(options["folds"])]
    for name in ("epochs", "subsample"):
        if options[name] is not None:
            parts += [f"--{name}", str(options[name])]
    parts += ["--seed", str(seed)]
    if args.precision is not None:
        parts += ["--precision", args.precision]
    for name in ("data_dir", "runs_dir"):
        if getattr(args, name, None):
            parts += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return shlex.join(parts)


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
    print("next: " + " ".join(["python scripts/ensemble.py --studies", shlex.quote(name), *folders]))
    storage = shown_url if args.storage else None
    print(f"plots: {report.command_line(paths, studies=[name], storage=storage)}")
