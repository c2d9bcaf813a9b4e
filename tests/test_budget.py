"""pipeline --budget: a duration read in one place, a plan that fits its own estimate, and budgets that
cannot hold the smallest plan refused in one line before any work."""

from __future__ import annotations

import re

import pytest

from kaggle_digits import planner, speed
from kaggle_digits.errors import UserError
from kaggle_digits.planner import Speed
from kaggle_digits.units import parse_duration


def test_durations_read_as_seconds():
    assert [parse_duration(t) for t in ("10m", "1h", "4h", "1h30m", "90s", "600", "2.5m")] == [
        600,
        3600,
        14400,
        5400,
        90,
        600,
        150,
    ]


@pytest.mark.parametrize("bad", ["0", "-5m", "abc", "", "0m", "5 minutes"])
def test_bad_budgets_are_one_clear_line(run_cli, tmp_path, bad):
    result = run_cli("pipeline", f"--budget={bad}", "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "d")
    assert result.code == 2
    assert result.err.startswith("error: --budget") and result.err.count("\n") == 1, result.err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "d").exists()


SLOW = Speed(train_per_s=1000.0, predict_per_s=5000.0, policy="float32", machine="test")
SLOW_TWO_PROCESSES = Speed(train_per_s=800.0, predict_per_s=4000.0, policy="float32", machine="test", jobs=2)
FAST_TWO_PROCESSES = Speed(train_per_s=1800.0, predict_per_s=6000.0, policy="mixed_bfloat16", machine="test", jobs=2)


@pytest.mark.parametrize("speed", [SLOW, SLOW_TWO_PROCESSES])
@pytest.mark.parametrize("seconds", [600, 3600, 14400])
def test_the_plan_fits_its_own_estimate(seconds, speed):
    plan = planner.plan(seconds, speed)
    assert plan.expected <= planner.PLANNED_SHARE * seconds
    assert planner.MIN_EPOCHS <= plan.epochs <= planner.MAX_EPOCHS
    assert plan.jobs == speed.jobs and 1 <= plan.runs <= planner.MAX_RUNS
    if plan.runs > 1:  # more runs only while each still gets RUN_EPOCHS
        assert plan.epochs >= planner.RUN_EPOCHS
    if plan.epochs < planner.MAX_EPOCHS:  # the most epochs that fit these runs: one more would not
        more = planner.plan_steps(plan.epochs + 1, plan.runs, speed, plan.folds)
        assert sum(step.seconds for step in more) > planner.PLANNED_SHARE * seconds
    assert plan.augment == (plan.epochs >= planner.AUGMENT_FROM_EPOCHS)
    longer = planner.plan(seconds * 2, speed)
    # More time never buys less training: images trained, in rows of the training set.
    assert longer.runs * longer.epochs * (longer.folds - 1) >= plan.runs * plan.epochs * (plan.folds - 1)


def test_the_plans_steps_are_its_runs_rounds_of_folds():
    plan = planner.plan(600, FAST_TWO_PROCESSES)
    assert plan.runs == 1 and [step.what for step in plan.steps] == [
        "start-up, ensemble and files",
        f"cnn folds 1-2/4 at once: {plan.epochs} epochs",
        f"cnn folds 3-4/4 at once: {plan.epochs} epochs",
        "data, study and fold models",
    ]
    assert plan.expected == pytest.approx(sum(step.seconds for step in plan.steps))


def test_a_long_budget_buys_several_runs_of_at_least_run_epochs_each():
    plan = planner.plan(14400, SLOW_TWO_PROCESSES)
    assert plan.runs > 1 and plan.epochs >= planner.RUN_EPOCHS
    runs = [step.what for step in plan.steps if step.what.startswith("cnn run")]
    assert runs == [
        f"cnn run {k}/{plan.runs}: 4 folds (2 at once) x {plan.epochs} epochs" for k in range(1, plan.runs + 1)
    ]
    # One run more would leave each fewer than RUN_EPOCHS: the budget buys no more runs than it holds.
    assert planner.plan(14400 * plan.runs / (plan.runs + 1), SLOW_TWO_PROCESSES).runs <= plan.runs


def test_a_plan_too_short_for_four_folds_trains_one_round_of_folds_for_more_epochs():
    four = planner.plan(600, SLOW_TWO_PROCESSES, folds=4)
    assert four.epochs < planner.FULL_FOLDS_FROM_EPOCHS
    short = planner.plan(600, SLOW_TWO_PROCESSES)
    assert short.folds == 2 and short.jobs == 2 and short.epochs > 2 * four.epochs
    assert [step.what for step in short.steps][1] == f"cnn folds 1-2/2 at once: {short.epochs} epochs"
    assert short.expected <= planner.PLANNED_SHARE * 600
    # One process: two folds in two rounds instead of four in four.
    one_process = planner.plan(600, SLOW)
    assert one_process.folds == 2 and one_process.epochs > 2 * planner.plan(600, SLOW, folds=4).epochs
    # A plan whose four folds afford FULL_FOLDS_FROM_EPOCHS keeps them; so do folds given, and long budgets.
    assert planner.plan(600, FAST_TWO_PROCESSES).folds == 4
    assert planner.plan(600, FAST_TWO_PROCESSES).epochs >= planner.FULL_FOLDS_FROM_EPOCHS
    assert planner.plan(600, SLOW_TWO_PROCESSES, folds=4).folds == 4
    assert planner.plan(3600, SLOW_TWO_PROCESSES).folds == 4
    # As many processes as the plan's folds: one round already, nothing to gain from fewer.
    four_jobs = Speed(train_per_s=400.0, predict_per_s=2000.0, policy="float32", machine="test", jobs=4)
    assert planner.plan(600, four_jobs).folds == 4


def test_augmentation_starts_at_the_length_where_it_was_measured_to_pay_and_folds_at_their_own_threshold():
    # The AVX2 machine's cached speed: ten minutes buy two folds of 9 epochs, which now augment, as do 8.
    avx2 = Speed(train_per_s=441.8, predict_per_s=1576.7, policy="float32", machine="test", jobs=2)
    quick = planner.plan(600, avx2)
    assert (quick.folds, quick.epochs, quick.augment) == (2, 9, True)
    assert planner.plan(600, avx2, folds=2, runs=1) == quick  # the plan chose the two folds itself
    at_threshold = planner.plan(540, avx2)
    assert at_threshold.epochs == planner.AUGMENT_FROM_EPOCHS == 8 and at_threshold.augment
    below = planner.plan(500, avx2)
    assert below.epochs < planner.AUGMENT_FROM_EPOCHS and not below.augment
    # Four folds of 9 augmented epochs still give way to two folds of more: the fold count has its own threshold.
    assert planner.AUGMENT_FROM_EPOCHS < planner.FULL_FOLDS_FROM_EPOCHS
    nine_on_four = next(
        _speed("cnn", t) for t in range(500, 3000, 10) if planner.plan(600, _speed("cnn", t), folds=4).epochs == 9
    )
    assert planner.plan(600, nine_on_four).folds == 2


def test_two_processes_at_once_buy_more_epochs_than_one_at_their_combined_speed():
    # 2 processes at 800 images/s each train 1,600 images/s together: more than one process at 1,000.
    assert planner.plan(3600, SLOW_TWO_PROCESSES).epochs > planner.plan(3600, SLOW).epochs


def test_a_budget_too_small_for_the_smallest_plan_is_refused():
    with pytest.raises(
        UserError, match=r"--budget 1m00s: too small for the smallest plan \(the cnn on 2 folds, 1 epoch"
    ):
        planner.plan(60, SLOW)


def test_the_command_refuses_a_small_budget_before_any_work(run_cli, tmp_path, monkeypatch):
    # This machine's speed as if measured before (a slow machine), so the refusal needs no calibration.
    from kaggle_digits.io import write_json
    from kaggle_digits.models import hardware

    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "cache"))
    key = speed.machine_key(hardware.configure("fast"), hardware.default_fold_jobs(planner.PLAN_FOLDS))
    write_json(speed.cache_file(), {key: {"train_per_s": 1000.0, "predict_per_s": 5000.0}})
    folders = ("--data-dir", tmp_path / "data", "--runs-dir", tmp_path / "runs", "--submissions-dir", tmp_path / "s")
    result = run_cli("pipeline", "--budget", "1m", *folders)
    assert result.code == 2, result.err
    assert result.err.startswith("error: --budget 1m00s: too small") and result.err.count("\n") == 1
    assert not any((tmp_path / name).exists() for name in ("data", "runs", "s")), "nothing was done"
    result = run_cli("pipeline", "--budget", "10m", "--models", "mlp", *folders)
    assert result.code == 2 and "--budget plans the cnn alone or the member it chooses" in result.err


def test_the_speed_is_measured_quietly_once_and_then_read_from_the_cache(monkeypatch, tmp_path, capfd):
    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(speed, "CALIBRATION_IMAGES", 256)  # a small measurement: this checks the mechanics
    lines: list[str] = []
    first = speed.speed("fast", log=lines.append)
    assert first.train_per_s > 0 and first.predict_per_s > 0 and first.seconds > 0
    assert len(lines) == 1 and "measuring this machine's cnn speed" in lines[0]
    assert capfd.readouterr().out == "", "the fit behind the measurement prints nothing"
    again = speed.speed("fast", log=lines.append)
    assert again.seconds == 0 and again.train_per_s == first.train_per_s and len(lines) == 1


def test_with_two_processes_the_speed_is_measured_in_two_processes_at_once(monkeypatch, tmp_path, policies_given):
    """The mechanics with the unaugmented mlp, whose processes load no TensorFlow; a Keras family's processes
    are given the precision the parent measures in (the cnn's measurement itself: the test above)."""
    import multiprocessing

    from kaggle_digits.io import write_json
    from kaggle_digits.models import hardware
    from kaggle_digits.search import processes

    monkeypatch.setattr(speed, "SYNC_SECONDS", 5.0)
    monkeypatch.setattr(speed, "CALIBRATION_IMAGES", 256)  # the children measure what the parent asks
    unaugmented = {"rotation": 0.0, "zoom": 0.0, "shift": 0.0}
    measured = speed.calibrate("float32", "key", jobs=2, changes=unaugmented, model="mlp")
    assert measured.jobs == 2 and measured.train_per_s > 0 and measured.predict_per_s > 0 and measured.model == "mlp"
    assert not multiprocessing.active_children() and policies_given == [None]

    def refuse(tasks, jobs, on_report=None, policy=None, **kwargs):
        policies_given.append(policy)
        raise RuntimeError("stop before the processes start")

    monkeypatch.setattr(processes, "run", refuse)
    with pytest.raises(RuntimeError, match="stop before"):
        speed.calibrate("mixed_bfloat16", "key", jobs=2, model="cnn")
    assert policies_given == [None, "mixed_bfloat16"]

    # A speed measured in two processes is kept apart from one measured alone, and read back as such.
    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "cache"))
    policy = hardware.configure("fast")
    key = speed.machine_key(policy, jobs=2)
    assert key.endswith("| 2 processes in step") and key != speed.machine_key(policy)
    write_json(speed.cache_file(), {key: {"train_per_s": 700.0, "predict_per_s": 3000.0}})
    kept = speed.speed("fast", jobs=2)
    assert (kept.jobs, kept.train_per_s, kept.seconds, kept.machine) == (2, 700.0, 0, key), "read from the cache"


@pytest.mark.parametrize("seconds", [600, 3600, 14400])
def test_each_run_has_a_deadline_no_run_on_schedule_meets(seconds):
    plan = planner.plan(seconds, SLOW_TWO_PROCESSES)
    deadlines = planner.run_deadlines(plan)
    assert len(deadlines) == plan.runs and deadlines == sorted(deadlines)
    assert deadlines[-1] == pytest.approx(seconds - planner.FIXED_SECONDS), "the ensemble keeps its time"
    expected_ends, elapsed = [], 0.0
    for step in plan.steps[1:]:  # after start-up, the runs' steps in order
        elapsed += step.seconds
        if step.run is not None and step.run == len(expected_ends):
            expected_ends.append(elapsed)
    # Each run may end a little later than expected (the plan's headroom), never earlier.
    assert all(d > e for d, e in zip(deadlines, expected_ends, strict=True))


def test_runs_given_are_planned_for_and_refused_when_they_do_not_fit():
    plan = planner.plan(3600, SLOW_TWO_PROCESSES, runs=3)
    assert plan.runs == 3 and plan.expected <= planner.PLANNED_SHARE * 3600
    assert plan.epochs < planner.plan(3600, SLOW_TWO_PROCESSES, runs=1).epochs
    with pytest.raises(UserError, match=r"--budget 5m00s: too small for the smallest plan \(12 runs of the cnn"):
        planner.plan(300, SLOW_TWO_PROCESSES, runs=12)


def test_the_speeds_runs_saw_are_kept_and_the_next_plan_takes_their_median(tmp_path, monkeypatch):
    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "cache"))
    metrics = [
        {"epoch_seconds": 21.0, "n_rows": 42000, "fold_accuracies": [0.99] * 4},
        {"epoch_seconds": None, "n_rows": 42000, "fold_accuracies": [0.99] * 4},  # no epoch timed
    ]
    assert planner.train_speed_seen(metrics) == pytest.approx(31500 / 21.0)
    assert planner.train_speed_seen(metrics[1:]) is None
    measured = SLOW_TWO_PROCESSES  # 800 images/s
    # Runs faster than measured: the median moves up with them, and the plan buys more epochs.
    kept = speed.remember(measured, 1500.0)
    assert kept.train_per_s == pytest.approx(1150.0) and kept.jobs == 2  # median of 800 and 1,500
    kept = speed.remember(kept, 1500.0)
    assert kept.train_per_s == pytest.approx(1500.0)
    assert planner.plan(600, kept, folds=4).epochs > planner.plan(600, measured, folds=4).epochs
    cached = speed._read_cache()[measured.machine]
    assert cached["train_per_s"] == pytest.approx(1500.0) and cached["predict_per_s"] == measured.predict_per_s
    kept = speed.remember(kept, 1500.0)  # recent: 800, 1,500, 1,500, 1,500
    # One run that shared the machine with other work does not shrink the next plan.
    kept = speed.remember(kept, 500.0)
    assert kept.train_per_s == pytest.approx(1500.0)
    assert speed._read_cache()[measured.machine]["recent"] == [800.0, 1500.0, 1500.0, 1500.0, 500.0]
    # Only the last RECENT_SPEEDS count: a machine that stays slower is planned for as it is.
    for _ in range(3):
        kept = speed.remember(kept, 500.0)
    assert kept.train_per_s == pytest.approx(500.0)


def test_a_speed_is_kept_per_network_so_a_changed_recipe_is_measured_again():
    from kaggle_digits.models import cnn

    recipe = cnn.SPEC.default_params(augment=True)
    tag = speed.network_tag(recipe)
    assert tag == speed.network_tag(dict(reversed(recipe.items()))), "the params' order does not matter"
    assert speed.machine_key("float32").endswith(f"| cnn {tag}")
    for changed in ({"norm_last": False}, {"filters": [32, 64, 128]}, {"batch_size": 128}):
        assert speed.network_tag(recipe | changed) != tag, changed


@pytest.mark.parametrize(
    "bad, message",
    [
        ("1h30", "each number with its unit"),
        ("30m1h", "each number with its unit"),
        ("10000000000000000000000h", "give at most 168h00m (a week)"),
        ("169h", "give at most 168h00m (a week)"),
    ],
)
def test_a_budget_is_read_whole_or_refused(run_cli, tmp_path, bad, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_duration(bad)
    result = run_cli("pipeline", "--budget", bad, "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "d")
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert result.err.startswith(f"error: --budget {bad!r}: ")
    assert message in result.err and "plan" not in result.out
    assert parse_duration("1h30m") == 5400 and parse_duration("168h") == 7 * 24 * 3600


def test_the_planner_is_arithmetic_that_loads_no_tensorflow():
    """A plan, and the fold processes it runs at once, can be worked out where TensorFlow is not installed
    or too slow to load (a run of the mlp alone never loads it)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    probe = (
        "import sys; from kaggle_digits import planner; "
        "from kaggle_digits.models import hardware; "
        "p = planner.plan(3600, planner.Speed(800.0, 4000.0, 'float32', 'test', jobs=hardware.default_fold_jobs(4))); "
        "print(p.epochs, p.folds, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    epochs, folds, tensorflow, keras = done.stdout.split()
    assert int(epochs) >= planner.MIN_EPOCHS and int(folds) in (planner.SHORT_PLAN_FOLDS, planner.PLAN_FOLDS)
    assert (tensorflow, keras) == ("False", "False")


def test_a_home_that_cannot_hold_the_cache_keeps_the_speed_in_the_runs_folder(monkeypatch, tmp_path):
    """HOME a file (or read-only): the speed is kept under the runs folder, the line says where it could not
    be kept and where it is, and the next run reads it from there instead of measuring again."""
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(speed.CACHE_ENV, raising=False)
    monkeypatch.setattr(speed, "CALIBRATION_IMAGES", 256)  # a small measurement: this checks where it goes
    runs = tmp_path / "runs"
    lines: list[str] = []
    first = speed.speed("fast", log=lines.append, fallback=runs)
    kept = runs / speed.FALLBACK_DIR / speed.CACHE_FILE
    assert first.seconds > 0 and kept.is_file()
    assert lines[0] == (
        f"cannot keep measured speeds in {home / '.cache' / 'kaggle-digits' / 'speed.json'} (Not a directory): "
        f"keeping them in {kept}"
    )
    assert f"once per machine, kept in {kept})" in lines[1] and len(lines) == 2
    again = speed.speed("fast", log=lines.append, fallback=runs)
    assert again.seconds == 0 and again.train_per_s == first.train_per_s and len(lines) == 2, "read, not measured"
    # The speeds runs saw go there too.
    speed.remember(again, 2 * again.train_per_s, fallback=runs, log=lines.append)
    assert len(speed._read_cache(runs)[again.machine]["recent"]) == 2 and len(lines) == 2
    # Nowhere to keep it: said, and the measurement is still used (the run goes on).
    (tmp_path / "file").write_text("")
    place, problems = speed._writable_file(tmp_path / "file")
    assert place is None and len(problems) == 2 and "(Not a directory)" in problems[1]
    nowhere: list[str] = []
    speed._write_cache(first, tmp_path / "file", nowhere.append)
    assert nowhere == ["this machine's speed was not kept: the next run measures it again"]


# --- choosing the member ------------------------------------------------------------------------------------


def _member(family: str, *points: tuple[int, int, float]) -> planner.Member:
    return planner.Member(family, tuple(planner.Point(folds, epochs, accuracy) for folds, epochs, accuracy in points))


def _speed(family: str, train_per_s: float) -> Speed:
    return Speed(train_per_s, 4 * train_per_s, "float32", "test", jobs=2, model=family)


# The same fold models at every length, B three times as fast: in an hour A trains 20 epochs, B 45.
CURVE = ((4, 10, 0.9900), (4, 20, 0.9940), (4, 30, 0.9960), (4, 45, 0.9961))
A_SLOW, B_FAST = _speed("cnn", 500.0), _speed("simplecnn", 1500.0)


def test_a_member_that_reaches_the_same_accuracy_faster_is_planned():
    table = [_member("cnn", *CURVE), _member("simplecnn", *CURVE)]
    chosen = planner.choose(3600, {"cnn": A_SLOW, "simplecnn": B_FAST}, table)
    alone = planner.plan(3600, A_SLOW, member=table[0])
    assert alone.epochs < 30, "the default's hour stops short of its best length"
    assert chosen.model == "simplecnn" and chosen.epochs > alone.epochs
    assert chosen.expected_accuracy is not None and chosen.expected_accuracy > alone.expected_accuracy
    assert chosen.steps[1].what.startswith("simplecnn"), "its steps name the member they train"
    assert any(r.startswith("cnn: 1 x 4 folds x") for r in chosen.reasons)
    assert chosen.reasons[-1].startswith("planned simplecnn")
    # The same table with the members' speeds swapped: the default is the faster, and stays.
    swapped = {"cnn": _speed("cnn", 1500.0), "simplecnn": _speed("simplecnn", 500.0)}
    assert planner.choose(3600, swapped, table).model == "cnn"


def test_equal_figures_go_to_the_plan_with_more_fold_models_then_to_the_default():
    # Both reach the flat end of the curve in four hours; the faster affords more runs of it.
    table = [_member("cnn", *CURVE), _member("simplecnn", *CURVE)]
    four_hours = planner.choose(14400, {"cnn": A_SLOW, "simplecnn": B_FAST}, table)
    assert four_hours.model == "simplecnn" and four_hours.runs > planner.plan(14400, A_SLOW, member=table[0]).runs
    same = {"cnn": B_FAST, "simplecnn": _speed("simplecnn", 1500.0)}
    assert planner.choose(3600, same, table).model == "cnn", "a tie in everything: the default"


def test_without_a_speed_or_figures_the_default_is_planned_and_says_why():
    table = [_member("cnn", *CURVE), _member("simplecnn", *CURVE)]
    no_speed = planner.choose(3600, {"cnn": A_SLOW}, table)
    assert no_speed.model == "cnn" and "simplecnn: no speed measured on this machine: not planned" in no_speed.reasons
    no_figures = planner.choose(3600, {"cnn": A_SLOW, "simplecnn": B_FAST}, [table[0], _member("simplecnn")])
    assert no_figures.model == "cnn" and "simplecnn: no figures in the table: not planned" in no_figures.reasons
    # Figures only at lengths longer than the budget buys: not weighed; none weighed: the default, said so.
    long_only = [_member("cnn", (4, 44, 0.996)), _member("simplecnn", (4, 44, 0.997))]
    fallback = planner.choose(600, {"cnn": A_SLOW, "simplecnn": B_FAST}, long_only)
    assert fallback.model == "cnn" and fallback.expected_accuracy is None
    assert fallback.reasons[-1] == "planned the default, cnn: no member's figures cover this budget"
    assert planner.choose(3600, {"simplecnn": B_FAST}, table).model == "simplecnn", "weighed without the default"
    with pytest.raises(UserError, match="no speed of cnn"):
        planner.choose(3600, {"simplecnn": B_FAST}, [table[0], _member("simplecnn")])


def test_figures_are_read_between_lengths_and_flat_past_the_longest():
    member = _member("cnn", *CURVE, (2, 11, 0.9941))
    assert member.accuracy_at(4, 25) == pytest.approx((0.9940 + 0.9960) / 2)
    assert member.accuracy_at(4, 45) == member.accuracy_at(4, 60) == 0.9961
    assert member.accuracy_at(4, 5) is None and member.accuracy_at(8, 30) is None, "none below or at other folds"
    assert member.accuracy_at(2, 12) == 0.9941
    # The length a run needs before a plan buys another: the shortest within a standard error of the best.
    assert member.run_epochs(4) == 30 and planner.tie(0.996) == pytest.approx(0.00031, abs=1e-5)
    assert member.run_epochs(2) == planner.RUN_EPOCHS, "one length measured: the fixed default"


def test_time_left_after_the_longest_run_buys_another_run_of_the_flat_length():
    """A machine where one run of MAX_EPOCHS takes about half the hour: with the table's figures (flat from
    36 epochs) the hour buys two shorter runs instead of leaving its second half idle."""
    speed = _speed("cnn", 1566.0)
    table = [_member("cnn", (4, 36, 0.9959), (4, 45, 0.9959))]
    idle = planner.plan(3600, speed)  # no figures: runs only of RUN_EPOCHS or more
    assert (idle.runs, idle.epochs) == (1, planner.MAX_EPOCHS) and idle.expected < 0.6 * 3600
    filled = planner.choose(3600, {"cnn": speed}, table)
    assert filled.runs == 2 and 36 <= filled.epochs < planner.MAX_EPOCHS
    assert 0.8 * 3600 < filled.expected <= planner.PLANNED_SHARE * 3600
    # Runs that are not at MAX_EPOCHS already are not cut shorter to add one.
    assert planner.choose(1800, {"cnn": speed}, table).runs == 1


def test_the_table_holds_registered_families_the_default_first_each_figure_with_its_source():
    from kaggle_digits import models

    table = planner.members()
    assert table[0].family == planner.DEFAULT_MEMBER and table[0].points
    assert {m.family for m in table} <= set(models.FAMILIES) and len({m.family for m in table}) == len(table)
    for member in table:
        for point in member.points:
            assert 0.9 < point.accuracy < 1 and point.folds >= 2 and point.epochs >= 1 and "benchmarks/" in point.source


def test_the_pipeline_measures_only_members_with_figures_and_prints_what_it_weighed(tmp_path, monkeypatch, capsys):
    from kaggle_digits import pipeline
    from kaggle_digits.cli import pipeline as pipeline_face
    from kaggle_digits.data import paths
    from kaggle_digits.io import write_json
    from kaggle_digits.models import hardware

    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "cache"))
    policy, jobs = hardware.configure("fast"), 2
    cached = {"train_per_s": 1000.0, "predict_per_s": 5000.0}
    write_json(speed.cache_file(), {speed.machine_key(policy, jobs): cached})
    folders = paths.resolve(data_dir=tmp_path / "d", runs_dir=tmp_path / "runs", submissions_dir=tmp_path / "s")
    said: list[str] = []
    speeds = pipeline.member_speeds(pipeline.PipelineOptions(budget=3600), folders, jobs, said.append)
    assert set(speeds) == {"cnn"} and speeds["cnn"].train_per_s == 1000.0 and said == [], "read, none measured"
    # A member with figures and a kept speed is weighed too; --models cnn keeps the plan to the cnn.
    monkeypatch.setattr(planner, "members", lambda: (_member("cnn", *CURVE), _member("simplecnn", *CURVE)))
    write_json(
        speed.cache_file(), {**speed._read(speed.cache_file()), speed.machine_key(policy, jobs, "simplecnn"): cached}
    )
    assert set(pipeline.member_speeds(pipeline.PipelineOptions(budget=3600), folders, jobs, said.append)) == {
        "cnn",
        "simplecnn",
    }
    assert set(
        pipeline.member_speeds(pipeline.PipelineOptions(budget=3600, models="cnn"), folders, jobs, said.append)
    ) == {"cnn"}
    assert said == []

    plan = planner.choose(3600, {"cnn": A_SLOW, "simplecnn": B_FAST}, planner.members())
    options = pipeline.with_plan(pipeline.PipelineOptions(budget=3600), plan, started=0.0)
    assert options.models == "simplecnn"
    pipeline_face.print_plan(plan, options)
    out = capsys.readouterr().out
    assert out.startswith("plan for 1h00m: simplecnn, ") and "members weighed" in out
    assert all(f"    {reason}\n" in out for reason in plan.reasons)


@pytest.mark.parametrize("train_per_s", [300.0, 533.0, 1566.0, 2300.0])
def test_ten_minutes_plan_what_they_planned_before_the_table(train_per_s):
    """One run either way: the table changes which member and how many runs, not a one-run plan's shape."""
    speed_here = _speed("cnn", train_per_s)
    chosen, alone = planner.choose(600, {"cnn": speed_here}), planner.plan(600, speed_here)
    assert chosen.runs == alone.runs == 1 and chosen.model == "cnn"
    assert (chosen.folds, chosen.epochs, chosen.augment, chosen.steps) == (
        alone.folds,
        alone.epochs,
        alone.augment,
        alone.steps,
    )
