"""The plan a time budget buys: which member, its runs, folds, epochs and augmentation, and each step's
expected time, worked out from measured speeds (kaggle_digits.speed measures them) and a table of what each
member's fold models scored at the lengths measured (members.json). Pure arithmetic: importing this module
loads no TensorFlow, so a plan can be checked anywhere.

`choose` plans each member whose speed on this machine is known and picks the one whose fold models the
table expects to score best at the length the budget buys it (see `choose`). A plan trains one member
(its learning-rate schedule fitted to the epochs that run) on PLAN_FOLDS folds, fitted `jobs` at a time
(one process per core on a CPU: hardware.default_fold_jobs), and spends the budget on epochs: the most
that fit, with augmentation from AUGMENT_FROM_EPOCHS epochs on (docs/benchmarks.md has the runs behind
both choices). A budget whose PLAN_FOLDS folds cannot afford FULL_FOLDS_FROM_EPOCHS epochs trains fewer
folds, one round of processes, for more epochs each (SHORT_PLAN_FOLDS). A budget with time left after
MAX_EPOCHS buys more runs instead — each a cross-validation of its own seed and fold split, the ensemble
averaging their fold models — while every run still gets the epochs past which the member's table shows
no gain (Member.run_epochs; RUN_EPOCHS where it has no such figures).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources

from kaggle_digits.errors import UserError
from kaggle_digits.units import format_seconds

PLAN_FOLDS = 4
# Fewer folds for a short plan: when PLAN_FOLDS folds cannot afford FULL_FOLDS_FROM_EPOCHS epochs (a slow
# CPU, a short budget), a plan trains as many folds as fit in one round of `jobs` processes (at least
# SHORT_PLAN_FOLDS): on two cores two folds at once train three times the epochs of four in two rounds,
# each on half the rows, and at a few epochs a model gains more from more epochs than from a quarter more
# rows or two more models in the average (docs/benchmarks.md).
SHORT_PLAN_FOLDS = 2
FULL_FOLDS_FROM_EPOCHS = 10
MIN_EPOCHS = 1
MAX_EPOCHS = 45  # the recipe's full length
# Augmented from this many epochs on: at 8 and at 9 epochs on a fold of 2 the default cnn scored more with the
# recipe's augmentation than without, in the same time, over 6 seeds each (docs/benchmarks.md); shorter plans,
# not measured, train on the rows as they are.
AUGMENT_FROM_EPOCHS = 8
# A plan adds a run (another seed and fold split, averaged in the ensemble) only while every run still
# gets this many epochs, near the recipe's 45, for a member whose table does not say where its fold models
# stop gaining (Member.run_epochs): a long budget then buys more models of about the recipe's length
# rather than many short ones.
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
DEFAULT_MEMBER = "cnn"
MEMBERS_FILE = "members.json"


@dataclass(frozen=True)
class Point:
    """A member's fold models at one length: their mean accuracy on their held-out rows, `folds` folds,
    `epochs` augmented epochs; `source`: the command and commit of the docs/benchmarks.md row."""

    folds: int
    epochs: int
    accuracy: float
    source: str = ""


@dataclass(frozen=True)
class Member:
    """A family a plan may train (its default params, augmented), with what its fold models scored."""

    family: str
    points: tuple[Point, ...] = ()

    def accuracy_at(self, folds: int, epochs: int) -> float | None:
        """The accuracy the table expects of a fold model trained `epochs` epochs on `folds` folds: straight
        between the two measured lengths around it, the longest's beyond it (no gain assumed); None below the
        shortest measured or with none measured on that many folds."""
        known = sorted((p.epochs, p.accuracy) for p in self.points if p.folds == folds)
        if not known or epochs < known[0][0]:
            return None
        for (e0, a0), (e1, a1) in zip(known, known[1:]):
            if e0 <= epochs <= e1:
                return a0 + (a1 - a0) * (epochs - e0) / (e1 - e0) if e1 > e0 else max(a0, a1)
        return known[-1][1]

    def run_epochs(self, folds: int) -> int:
        """The epochs a run needs before a plan buys another: the shortest measured length on `folds` folds
        whose accuracy is within one standard error (tie) of the best measured there; RUN_EPOCHS without
        two lengths measured."""
        known = [p for p in self.points if p.folds == folds]
        if len({p.epochs for p in known}) < 2:
            return RUN_EPOCHS
        best = max(p.accuracy for p in known)
        return min(p.epochs for p in known if p.accuracy >= best - tie(best))


def tie(accuracy: float, rows: int = N_TRAIN) -> float:
    """One standard error of an accuracy measured on `rows` held-out rows: two figures closer than this are
    not told apart."""
    return math.sqrt(accuracy * (1 - accuracy) / rows)


def members() -> tuple[Member, ...]:
    """The members a plan chooses from, the default (DEFAULT_MEMBER) first, with the table's figures
    (members.json, beside this module; each figure a row of docs/benchmarks.md)."""
    table = json.loads(resources.files(__package__).joinpath(MEMBERS_FILE).read_text())
    found = tuple(
        Member(
            m["family"], tuple(Point(p["folds"], p["epochs"], p["accuracy"], p.get("source", "")) for p in m["points"])
        )
        for m in table["members"]
    )
    return tuple(sorted(found, key=lambda m: m.family != DEFAULT_MEMBER))


@dataclass(frozen=True)
class Speed:
    """A member's training and prediction speed on this machine, in images per second of one of `jobs`
    processes running at once."""

    train_per_s: float
    predict_per_s: float
    policy: str  # the Keras dtype policy it was measured in
    machine: str  # what it was measured on (machine_key)
    seconds: float = 0.0  # what measuring it took (0 when read from the cache)
    jobs: int = 1
    model: str = DEFAULT_MEMBER  # the family it times


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
    runs: int = 1  # cross-validations of the member, each with its own seed and fold split
    model: str = DEFAULT_MEMBER  # the member (a family) it trains
    expected_accuracy: float | None = None  # what the table expects of its fold models (None: not measured)
    # Why this member: one line for each member weighed (choose).
    reasons: tuple[str, ...] = field(default_factory=tuple)

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
                f"{speed.model} run {run + 1}/{runs}: {folds} folds ({jobs} at once) x {epochs} epochs",
                rounds * fold + RUN_SECONDS,
                run,
            )
            for run in range(runs)
        ]
    return (
        steps
        + [
            Step(
                f"{speed.model} folds {k * jobs + 1}-{min(folds, (k + 1) * jobs)}/{folds} at once: {epochs} epochs",
                fold,
                0,
            )
            if jobs > 1
            else Step(f"{speed.model} fold {k + 1}/{folds}: {epochs} epochs", fold, 0)
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
    member: Member | None = None,
) -> Plan:
    """The plan of `member` (when None: the speed's family, with no figures) on `folds` folds, or when None
    on PLAN_FOLDS, unless those cannot afford FULL_FOLDS_FROM_EPOCHS epochs and fewer folds (short_plan_folds)
    buy more: then on those (see SHORT_PLAN_FOLDS). A budget too small for the smallest plan is a UserError
    saying how much it needs."""
    member = member or Member(speed.model)

    def at(folds: int) -> Plan:
        return _plan(budget, speed, n_train, n_test, folds, runs, member)

    if folds is not None:
        return at(folds)
    short = short_plan_folds(speed)
    if short >= PLAN_FOLDS:
        return at(PLAN_FOLDS)
    try:
        full = at(PLAN_FOLDS)
    except UserError:
        return at(short)
    if full.epochs >= FULL_FOLDS_FROM_EPOCHS:
        return full
    fewer = at(short)
    return fewer if fewer.epochs > full.epochs else full


def _plan(budget: float, speed: Speed, n_train: int, n_test: int, folds: int, runs: int | None, member: Member) -> Plan:
    """The most epochs whose expected time fits PLANNED_SHARE of the budget, the folds fitted speed.jobs
    at a time; one run, and another while the runs are at MAX_EPOCHS and each would still get
    member.run_epochs(folds) epochs, or `runs` when given.
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
            f"--budget {format_seconds(budget)}: too small for the smallest plan ({of}the {speed.model} on "
            f"{folds} folds, {MIN_EPOCHS} epoch, about {format_seconds(total(MIN_EPOCHS, least))} on this machine): "
            f"give at least {format_seconds(need)}"
        )
    if runs is None:
        runs = 1
        # Another run while these are at MAX_EPOCHS (time left over) and each would still get the length
        # past which the member's fold models stop gaining.
        while runs < MAX_RUNS and most_epochs(runs) >= MAX_EPOCHS and most_epochs(runs + 1) >= member.run_epochs(folds):
            runs += 1
    epochs = most_epochs(runs)
    steps = plan_steps(epochs, runs, speed, folds, n_train, n_test)
    if speed.seconds:
        steps.insert(0, Step("measuring this machine's speed", speed.seconds))
    return Plan(
        budget,
        folds,
        epochs,
        epochs >= AUGMENT_FROM_EPOCHS,
        steps,
        folds_at_once(speed, folds),
        runs,
        model=member.family,
        expected_accuracy=member.accuracy_at(folds, epochs),
    )


def choose(
    budget: float,
    speeds: Mapping[str, Speed],
    table: Sequence[Member] | None = None,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    folds: int | None = None,
    runs: int | None = None,
) -> Plan:
    """The plan of the member (of `table`, members() when None; the first is the default) whose fold models
    the table expects to score best at the length this budget buys it on this machine (`speeds`: each
    member's speed, by family). Members within one standard error of each other (tie) count as equal, and
    then the one with more fold models to average wins, then the earlier in the table. A member with no
    speed here, or no figure at the length it would get, is left out; the default is planned when no member
    has a figure. The plan's `reasons` say, one line a member, what was weighed."""
    table = tuple(table if table is not None else members())
    default = table[0]
    measuring = sum(speed.seconds for speed in speeds.values())  # every member's measurement, in each plan
    reasons: list[str] = []
    candidates: list[tuple[float, Plan]] = []  # (the accuracy its figures expect, the plan)
    fallback: Plan | None = None
    for member in table:
        speed = speeds.get(member.family)
        if not member.points and member is not default:
            reasons.append(f"{member.family}: no figures in the table: not planned")
            continue
        if speed is None:
            reasons.append(f"{member.family}: no speed measured on this machine: not planned")
            continue
        try:
            planned = plan(budget, replace(speed, seconds=measuring), n_train, n_test, folds, runs, member)
        except UserError:
            if member is default:
                raise
            reasons.append(f"{member.family}: the budget is too small for one epoch of it: not planned")
            continue
        if member is default:
            fallback = planned
        shape = f"{planned.runs} x {planned.folds} folds x {planned.epochs} epochs"
        expected = planned.expected_accuracy
        if expected is None:
            reasons.append(
                f"{member.family}: {shape}; its fold models not measured at that length on {planned.folds} folds"
            )
            continue
        reasons.append(f"{member.family}: {shape}; its fold models measured at {expected:.5f}")
        candidates.append((expected, planned))
    if not candidates:
        if fallback is None:
            raise UserError(f"no speed of {default.family}, the default member, to plan with")
        reasons.append(f"planned the default, {default.family}: no member's figures cover this budget")
        return replace(fallback, reasons=tuple(reasons))
    best_accuracy, best = candidates[0]
    for accuracy, other in candidates[1:]:
        margin = accuracy - best_accuracy
        if margin > tie(best_accuracy) or (
            abs(margin) <= tie(best_accuracy) and other.runs * other.folds > best.runs * best.folds
        ):
            best_accuracy, best = accuracy, other
    reasons.append(
        f"planned {best.model}: the best expected fold models"
        + ("" if len(candidates) == 1 else f" of {len(candidates)} members weighed")
    )
    return replace(best, reasons=tuple(reasons))


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
