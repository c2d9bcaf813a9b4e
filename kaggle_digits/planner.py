"""The plan a time budget buys: runs, folds, epochs and augmentation of the cnn, and each step's expected
time, worked out from a measured speed (kaggle_digits.speed measures it). Pure arithmetic: importing this
module loads no TensorFlow, so a plan can be checked anywhere.

The plan trains the cnn only (the public recipe, its learning-rate schedule fitted to the epochs that
run) on PLAN_FOLDS folds, fitted `jobs` at a time (one process per core on a CPU:
hardware.default_fold_jobs), and spends the budget on epochs: the most that fit, with augmentation from
AUGMENT_FROM_EPOCHS epochs on (docs/benchmarks.md has the runs behind both choices). A budget whose
PLAN_FOLDS folds cannot afford AUGMENT_FROM_EPOCHS epochs trains fewer folds, one round of processes, for
more epochs each (SHORT_PLAN_FOLDS). A budget that gives every run at least RUN_EPOCHS epochs buys more
runs instead — each a cross-validation of its own seed and fold split — and the ensemble averages their
fold models.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from kaggle_digits.errors import UserError
from kaggle_digits.units import format_seconds

PLAN_FOLDS = 4
# Fewer folds for a short plan: when PLAN_FOLDS folds cannot afford AUGMENT_FROM_EPOCHS epochs (a slow CPU,
# a short budget), a plan trains as many folds as fit in one round of `jobs` processes (at least
# SHORT_PLAN_FOLDS): on two cores two folds at once train three times the epochs of four in two rounds,
# each on half the rows, and at a few epochs a model gains more from more epochs than from a quarter more
# rows or two more models in the average (docs/benchmarks.md).
SHORT_PLAN_FOLDS = 2
MIN_EPOCHS = 1
MAX_EPOCHS = 45  # the recipe's full length
AUGMENT_FROM_EPOCHS = 10
# A plan adds a run (another seed and fold split, averaged in the ensemble) only while every run still
# gets this many epochs, near the recipe's 45: the cnn runs here gained from 25 to 45 epochs
# (docs/benchmarks.md), so a long budget buys more models of about the recipe's length rather than many
# short ones.
RUN_EPOCHS = 40
MAX_RUNS = 12
# The share of the budget a plan may expect to use: the rest absorbs the estimate's error.
PLANNED_SHARE = 0.9
# Start-up (imports), reading the data, the ensemble and the files written, outside the folds' training.
FIXED_SECONDS = 30.0
STARTUP_STEP = "start-up, ensemble and files"
# Starting a fold's process (spawn, imports, the data sent to it) and reading its model back.
PROCESS_SECONDS = 10.0
# Each run besides: reading the data, opening its study, writing its fold models and predictions.
RUN_SECONDS = 10.0
N_TRAIN, N_TEST = 42_000, 28_000


@dataclass(frozen=True)
class Speed:
    """The cnn's training and prediction speed on this machine, in images per second of one of `jobs`
    processes running at once."""

    train_per_s: float
    predict_per_s: float
    policy: str  # the Keras dtype policy it was measured in
    machine: str  # what it was measured on (machine_key)
    seconds: float = 0.0  # what measuring it took (0 when read from the cache)
    jobs: int = 1


@dataclass(frozen=True)
class Step:
    what: str
    seconds: float
    run: int | None = None  # the run (from 0) whose work this is; None: the pipeline's own


@dataclass(frozen=True)
class Plan:
    """What a budget buys, and each step's expected time."""

    budget: float
    folds: int
    epochs: int
    augment: bool
    steps: list[Step]
    jobs: int = 1
    runs: int = 1  # cross-validations of the cnn, each with its own seed and fold split

    @property
    def expected(self) -> float:
        return sum(step.seconds for step in self.steps)


def expected_fold_seconds(epochs: int, folds: int, speed: Speed, n_train: int = N_TRAIN, n_test: int = N_TEST) -> float:
    """One fold: its epochs of training on (folds-1)/folds of the rows, then predicting the held-out rows
    and the test set (a planned run is not pruned, so the held-out rows are not scored after every epoch)."""
    held_out = n_train / folds
    return epochs * (n_train - held_out) / speed.train_per_s + (held_out + n_test) / speed.predict_per_s


def folds_at_once(speed: Speed, folds: int) -> int:
    """The folds a plan fits at once: the processes its speed was measured in, at most the folds."""
    return max(1, min(speed.jobs, folds))


def plan_steps(
    epochs: int, runs: int, speed: Speed, folds: int = PLAN_FOLDS, n_train: int = N_TRAIN, n_test: int = N_TEST
) -> list[Step]:
    """The steps of `runs` runs of `epochs` epochs on `folds` folds, fitted speed.jobs at a time, with
    each step's expected seconds (the speed's own measurement not included)."""
    jobs = folds_at_once(speed, folds)
    rounds = -(-folds // jobs)
    fold = expected_fold_seconds(epochs, folds, speed, n_train, n_test) + (PROCESS_SECONDS if jobs > 1 else 0)
    steps = [Step(STARTUP_STEP, FIXED_SECONDS)]
    if runs > 1:
        return steps + [
            Step(
                f"cnn run {run + 1}/{runs}: {folds} folds ({jobs} at once) x {epochs} epochs",
                rounds * fold + RUN_SECONDS,
                run,
            )
            for run in range(runs)
        ]
    return (
        steps
        + [
            Step(f"cnn folds {k * jobs + 1}-{min(folds, (k + 1) * jobs)}/{folds} at once: {epochs} epochs", fold, 0)
            if jobs > 1
            else Step(f"cnn fold {k + 1}/{folds}: {epochs} epochs", fold, 0)
            for k in range(rounds)
        ]
        + [Step("data, study and fold models", RUN_SECONDS, 0)]
    )


def run_deadlines(plan: Plan) -> list[float]:
    """Seconds from the pipeline's start by which each run's folds should have ended: the plan's
    expected schedule stretched over the budget, less FIXED_SECONDS kept for what follows the last run
    (the ensemble and its files). A run on schedule never meets its deadline (the plan expects
    PLANNED_SHARE of the budget); one far behind it trains its later folds shorter
    (cv.cross_validate), so the whole run stays within its budget when the machine is slower than
    measured."""
    ends: dict[int, float] = {}
    elapsed = 0.0
    for step in plan.steps:
        if step.what == STARTUP_STEP:
            continue  # kept apart, at the end
        elapsed += step.seconds
        if step.run is not None:
            ends[step.run] = elapsed
    stretch = (plan.budget - FIXED_SECONDS) / elapsed if elapsed > 0 else 1.0
    return [ends[run] * stretch for run in sorted(ends)]


def short_plan_folds(speed: Speed) -> int:
    """The folds of a short plan: one round of speed.jobs processes, at least SHORT_PLAN_FOLDS."""
    return max(SHORT_PLAN_FOLDS, min(speed.jobs, PLAN_FOLDS))


def plan(
    budget: float,
    speed: Speed,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    folds: int | None = None,
    runs: int | None = None,
) -> Plan:
    """The plan on `folds` folds, or when None on PLAN_FOLDS, unless those cannot afford
    AUGMENT_FROM_EPOCHS epochs and fewer folds (short_plan_folds) buy more: then on those (see
    SHORT_PLAN_FOLDS). A budget too small for the smallest plan is a UserError saying how much it needs."""
    if folds is not None:
        return _plan(budget, speed, n_train, n_test, folds, runs)
    short = short_plan_folds(speed)
    if short >= PLAN_FOLDS:
        return _plan(budget, speed, n_train, n_test, PLAN_FOLDS, runs)
    try:
        full = _plan(budget, speed, n_train, n_test, PLAN_FOLDS, runs)
    except UserError:
        return _plan(budget, speed, n_train, n_test, short, runs)
    if full.epochs >= AUGMENT_FROM_EPOCHS:
        return full
    fewer = _plan(budget, speed, n_train, n_test, short, runs)
    return fewer if fewer.epochs > full.epochs else full


def _plan(budget: float, speed: Speed, n_train: int, n_test: int, folds: int, runs: int | None) -> Plan:
    """The most epochs whose expected time fits PLANNED_SHARE of the budget, the folds fitted speed.jobs
    at a time; as many runs as still give each RUN_EPOCHS epochs (at least one), or `runs` when given.
    A budget too small for the runs at MIN_EPOCHS is a UserError saying how much the smallest plan needs."""
    allowed = PLANNED_SHARE * budget

    def total(epochs: int, runs: int) -> float:
        return sum(step.seconds for step in plan_steps(epochs, runs, speed, folds, n_train, n_test)) + speed.seconds

    def most_epochs(runs: int) -> int:
        """The most epochs (up to MAX_EPOCHS) that `runs` runs fit in; 0 when not even MIN_EPOCHS do."""
        epochs = 0
        while epochs < MAX_EPOCHS and total(epochs + 1, runs) <= allowed:
            epochs += 1
        return epochs if epochs >= MIN_EPOCHS else 0

    least = runs or 1
    if not most_epochs(least):
        need = total(MIN_EPOCHS, least) / PLANNED_SHARE
        of = f"{least} runs of " if least > 1 else ""
        raise UserError(
            f"--budget {format_seconds(budget)}: too small for the smallest plan ({of}the cnn on {folds} folds, "
            f"{MIN_EPOCHS} epoch, about {format_seconds(total(MIN_EPOCHS, least))} on this machine): give at least "
            f"{format_seconds(need)}"
        )
    if runs is None:
        runs = 1
        while runs < MAX_RUNS and most_epochs(runs + 1) >= RUN_EPOCHS:
            runs += 1
    epochs = most_epochs(runs)
    steps = plan_steps(epochs, runs, speed, folds, n_train, n_test)
    if speed.seconds:
        steps.insert(0, Step("measuring this machine's speed", speed.seconds))
    return Plan(budget, folds, epochs, epochs >= AUGMENT_FROM_EPOCHS, steps, folds_at_once(speed, folds), runs)


def train_speed_seen(metrics: list[dict]) -> float | None:
    """The training speed (images per second of one process) that cross-validations ran at, from their
    trials' metrics (cv.CVResult.metrics: epoch_seconds, n_rows, fold_accuracies); the median over
    them, None when none timed an epoch."""
    seen = []
    for m in metrics:
        folds = len(m.get("fold_accuracies") or [])
        if m.get("epoch_seconds") and folds > 1:
            seen.append(m["n_rows"] * (folds - 1) / folds / m["epoch_seconds"])
    return float(statistics.median(seen)) if seen else None
