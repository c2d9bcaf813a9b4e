"""Several tuning processes on one study: a journal file, `--jobs`, a real PostgreSQL 15 server, artifact stores.

The workers are real `python scripts/tune.py` processes on an 800-row slice (mlp, 2 folds). The
PostgreSQL cluster is a throwaway one this module starts itself (initdb + pg_ctl in a temporary folder,
listening on a free port of 127.0.0.1 only) and stops afterwards, also when a test fails.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from kaggle_digits.blend.submission import read_submission
from kaggle_digits.search import runs, storage
from tests.conftest import REPO, make_slice
from tests.stopping import interrupt_stopped, read_until, stop_in_a_trial

FAST = ("--model", "mlp", "--folds", "2", "--epochs", "1")
SLOW = ("--model", "mlp", "--folds", "2", "--epochs", "40")  # a trial that is still training when killed
PASSWORD = "kd-s3cret-9f2c"  # of the PostgreSQL role; must never be printed
TIMEOUT = 300  # seconds any one tune process may take here
N_TRAIN, N_TEST = 800, 200  # the slice every test here tunes on


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """800 train / 200 test rows in Kaggle format: many processes start here, each should be quick."""
    return make_slice(tmp_path_factory.mktemp("tiny") / "data", N_TRAIN, N_TEST)


# --- helpers -------------------------------------------------------------------------------------


def spawn(tiny_data: Path, runs_dir: Path, *args: str) -> subprocess.Popen:
    """A real `python scripts/tune.py` process (line-buffered output)."""
    command = [sys.executable, "scripts/tune.py", *args, "--data-dir", str(tiny_data), "--runs-dir", str(runs_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, lines: list[str] | None = None) -> tuple[int, str, str]:
    """Wait for the process; its exit code and all its output (`lines`: what read_until already read)."""
    if lines is None:
        out, err = process.communicate(timeout=TIMEOUT)
        return process.returncode, out, err
    # Not communicate(): it reads the pipe itself and would lose what the file object has read ahead.
    out = "".join(lines) + process.stdout.read()
    err = process.stderr.read()
    return process.wait(timeout=TIMEOUT), out, err


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage.open_storage(url, heartbeat=None))


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def _pids(study: optuna.Study) -> set[int]:
    """The worker processes that ran the study's trials."""
    return {t.user_attrs["worker"]["pid"] for t in study.get_trials(deepcopy=False)}


def check_complete_trials(study: optuna.Study) -> None:
    """Every COMPLETE trial's folder holds all its artifacts, consistent with the storage."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        run = runs.load_trial(t.user_attrs["path"])
        assert run.number == t.number and run.cv_accuracy == pytest.approx(t.value)
        assert run.oof_proba.shape == (N_TRAIN, 10) and run.test_proba.shape == (N_TEST, 10)
        np.testing.assert_allclose(run.oof_proba.sum(axis=1), 1, atol=1e-5)
        assert len(run.fold_model_paths()) == 2


def ensemble(run_cli, tiny_data, runs_dir, submissions_dir, *args):
    return run_cli(
        "ensemble",
        "--data-dir",
        tiny_data,
        "--runs-dir",
        runs_dir,
        "--submissions-dir",
        submissions_dir,
        "--method",
        "mean",
        *args,
    )


def written(result) -> Path:
    return Path(re.search(r"wrote (\S+\.csv)", result.out).group(1))


def manifest_of(result) -> dict:
    return json.loads(written(result).with_suffix(".json").read_text())


def blended(result) -> list[str]:
    """The trials the ensemble weighed (a weight of 0 included: a mean below the best trial keeps only it)."""
    found = manifest_of(result)
    return sorted([c["name"] for c in found["constituents"]] + found["candidates_with_zero_weight"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a throwaway PostgreSQL cluster ---------------------------------------------------------------


def find_pg_bin() -> Path | None:
    """The folder of initdb/pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (15 first)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: (not p.startswith("/usr/lib/postgresql/15/"), p)
    )
    return Path(candidates[0]).parent if candidates else None


@dataclass
class Postgres:
    port: int
    database: str = "digits"
    user: str = "kd"

    def url(self, password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql+psycopg2://{self.user}:{password}@127.0.0.1:{port or self.port}/{self.database}"


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1, with role kd (password
    PASSWORD, scram-sha-256 over TCP) and database `digits`; stopped and deleted afterwards."""
    pg_bin = find_pg_bin()
    if pg_bin is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found: .ci/run installs them"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="kd-postgres-"))
    run_as: dict = {}
    if os.geteuid() == 0:  # initdb refuses to run as root: the server runs as an unprivileged user
        name = "postgres" if _user_exists("postgres") else "nobody"
        entry = pwd.getpwnam(name)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    (root / "pw").write_text(PASSWORD + "\n")
    if run_as:
        os.chown(root / "pw", run_as["user"], run_as["group"])
    data_dir, port = root / "data", free_port()

    def pg(*command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(pg_bin / command[0]), *command[1:]], capture_output=True, text=True, cwd=root, check=check, **run_as
        )

    started = False
    try:
        pg("initdb", "-D", str(data_dir), "-U", "kd", f"--pwfile={root / 'pw'}", "--auth-host=scram-sha-256")
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
        pg("pg_ctl", "-D", str(data_dir), "-l", str(root / "server.log"), "-w", "-t", "60", "-o", options, "start")
        started = True
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="kd", password=PASSWORD, dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE digits")
        connection.close()
        yield Postgres(port)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"could not start PostgreSQL: {exc.cmd[0]}: {exc.stderr or exc.stdout}")
    finally:
        if started:
            pg("pg_ctl", "-D", str(data_dir), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- journal file: two processes, one study ---------------------------------------------------------


def test_two_processes_share_one_journal_study_and_the_ensemble_uses_all_four(run_cli, tiny_data, tmp_path):
    runs_dir, artifacts = tmp_path / "runs", tmp_path / "artifact-store"
    runs_dir.mkdir()
    journal = runs_dir / "shared.log"
    args = (*FAST, "--trials", "2", "--no-prune", "--storage", str(journal), "--artifacts", str(artifacts))
    workers = [spawn(tiny_data, runs_dir, *args) for _ in range(2)]
    results = [finish(w) for w in workers]
    for code, out, err in results:
        assert code == 0, err
        assert "Traceback" not in out + err
    study = load(str(journal), "mlp")
    assert states(study) == [TrialState.COMPLETE] * 4
    # Created once: one default trial, and both processes ran trials.
    assert [t.number for t in study.trials if t.user_attrs.get("default")] == [0]
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2
    assert sum("new (its first trial is the family's default)" in out for _, out, _ in results) == 1
    check_complete_trials(study)

    result = ensemble(run_cli, tiny_data, runs_dir, tmp_path / "subs", "--storage", journal, "--studies", "mlp")
    assert result.code == 0, result.err
    assert "4 blendable" in result.out
    assert blended(result) == [f"mlp/trial-{n}" for n in range(4)]
    first_labels = read_submission(written(result))

    # The ensemble on "another machine": the trial folders are gone from where they were written; the
    # runs folder is mounted elsewhere (a shared filesystem) ...
    moved = tmp_path / "mounted-elsewhere"
    runs_dir.rename(moved)
    shared = ensemble(run_cli, tiny_data, moved, tmp_path / "subs2", "--storage", moved / "shared.log")
    assert shared.code == 0, shared.err
    assert "4 blendable" in shared.out and "downloaded" not in shared.out
    assert {Path(c["path"]).parent for c in manifest_of(shared)["constituents"]} == {moved / "mlp"}

    # ... or not reachable at all: the files come from the artifact store into <runs-dir>/.cache/.
    (moved / "shared.log").rename(tmp_path / "shared.log")
    shutil.rmtree(moved)
    elsewhere = tmp_path / "elsewhere"
    fetched = ensemble(run_cli, tiny_data, elsewhere, tmp_path / "subs3", "--storage", tmp_path / "shared.log")
    assert fetched.code == 0, fetched.err
    assert fetched.out.count("downloaded mlp/trial-") == 4 and "4 blendable" in fetched.out
    cached = {elsewhere / ".cache" / "mlp" / f"trial-{n}" for n in range(4)}
    assert {p.parent for p in (elsewhere / ".cache" / "mlp").glob(f"trial-*/{runs.METRICS_FILE}")} == cached
    assert {Path(c["path"]) for c in manifest_of(fetched)["constituents"]} <= cached
    assert np.array_equal(read_submission(written(fetched)), first_labels)
    again = ensemble(run_cli, tiny_data, elsewhere, tmp_path / "subs4", "--storage", tmp_path / "shared.log")
    assert again.code == 0 and "downloaded" not in again.out  # the cache is reused

    # The report reads the same way: the best trial's curves and the study's tuning plots.
    report = run_cli(
        "report", "--storage", tmp_path / "shared.log", "--data-dir", tiny_data, "--runs-dir", elsewhere,
        "--submissions-dir", tmp_path / "subs4", "--out", tmp_path / "report",
    )  # fmt: skip
    assert report.code == 0, report.err
    assert "training: skipped" not in report.out and "tuning: skipped" not in report.out, report.out

    missing = ensemble(run_cli, tiny_data, elsewhere, tmp_path / "subs5", "--storage", tmp_path / "typo.log")
    assert missing.code == 2 and f"no such file {tmp_path / 'typo.log'}" in missing.err
    assert not (tmp_path / "typo.log").exists()


HOLD_THE_LOCK_AND_DIE = """
import os, signal, sys, optuna
from kaggle_digits.search import storage
journal = storage.open_storage(sys.argv[1])
optuna.create_study(study_name="locked", storage=journal)
journal._backend._lock.acquire()  # the lock the storage takes around each append, as a worker holds it
os.kill(os.getpid(), signal.SIGKILL)
"""
TEN_TRIALS = """
import sys, optuna
from kaggle_digits.search import storage
study = optuna.load_study(study_name="locked", storage=storage.open_storage(sys.argv[1]))
study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=10)
"""


def test_a_process_killed_while_it_holds_the_journal_lock_stops_nobody(tmp_path):
    # Optuna's lock file outlived such a process: the others waited 30 s, then two waiters broke the lock
    # in turn and one got `RuntimeError: Error: did not possess lock`. The kernel's flock dies with it.
    journal = str(tmp_path / "study.log")
    holder = subprocess.run([sys.executable, "-c", HOLD_THE_LOCK_AND_DIE, journal], cwd=REPO, capture_output=True)
    assert holder.returncode == -signal.SIGKILL, holder.stderr
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", TEN_TRIALS, journal],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for writer in writers:
        out, err = writer.communicate(timeout=TIMEOUT)
        assert writer.returncode == 0, err
        assert "lock" not in err.lower() and "Traceback" not in err, err  # no waiting, no lock broken
    assert states(load(journal, "locked")) == [TrialState.COMPLETE] * 20


# --- --jobs: workers on this machine ------------------------------------------------------------------


def test_jobs_share_the_trials_and_the_cores_and_survive_a_killed_worker_and_ctrl_c(run_cli, tiny_data, tmp_path):
    runs_dir = tmp_path / "runs"
    journal = str(runs_dir / storage.JOURNAL_FILE)
    # kill -9 one worker in the middle of a trial: its trial is failed at once, the other goes on. The
    # worker is stopped first where it cannot end that trial (tests/stopping.py): no race with its speed.
    process, lines = spawn(tiny_data, runs_dir, *SLOW, "--trials", "4", "--jobs", "2"), []
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    read_until(process, rf"^starting 2 workers on {re.escape(journal)}, {threads} threads? each, trials 2\+2$", lines)
    pid = int(read_until(process, r"^\[w1\] worker 1/2: pid (\d+)", lines).group(1))
    _, victim = stop_in_a_trial(process, lines, journal, "mlp", {"[w1] ": pid})
    os.kill(pid, signal.SIGKILL)
    code, out, err = finish(process, lines)
    assert code == 1 and "worker 1 was killed by SIGKILL" in err and "Traceback" not in out + err, out + err
    assert f"worker 1 (pid {pid}) was killed by SIGKILL: its trial {victim} marked failed" in out
    assert "[w2] worker 2/2 done: 2 trials ended" in out and len(re.findall(r"^\[w2\] trial \d+ done", out, re.M)) <= 2
    study = load(journal, "mlp")
    assert study.trials[victim].state == TrialState.FAIL
    assert states(study).count(TrialState.RUNNING) == 0
    by_worker = {p: [t for t in study.trials if t.user_attrs["worker"]["pid"] == p] for p in {pid, *_pids(study)}}
    assert len(by_worker) == 2 and by_worker[pid][-1].number == victim, "the killed worker's last trial failed"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in by_worker[pid][:-1])
    (other,) = set(by_worker) - {pid}
    assert len(by_worker[other]) == 2 and all(t.state != TrialState.FAIL for t in by_worker[other])
    check_complete_trials(study)
    assert f"study 'mlp': {states(study).count(TrialState.COMPLETE)} finished" in out

    # Ctrl-C: every worker marks its running trial failed; the command says how to resume. Both workers
    # are stopped in a trial, then the launcher gets SIGINT and passes it on, then they go on.
    ended_before = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states(study))
    process, lines = spawn(tiny_data, runs_dir, *SLOW, "--trials", "4", "--jobs", "2"), []
    workers = {
        f"[w{k}] ": int(read_until(process, rf"^\[w{k}\] worker {k}/2: pid (\d+)", lines).group(1)) for k in (1, 2)
    }
    running: dict[str, int] = {}
    while len(running) < 2:
        prefix, number = stop_in_a_trial(
            process, lines, journal, "mlp", {p: workers[p] for p in workers if p not in running}
        )
        running[prefix] = number
    failed_before = states(load(journal, "mlp")).count(TrialState.FAIL)
    interrupt_stopped(process, list(workers.values()))
    code, out, err = finish(process, lines)
    assert code == 130 and "Traceback" not in err + out, out + err
    assert "[w1] worker 1/2 stopped" in out and "[w2] worker 2/2 stopped" in out, out
    study = load(journal, "mlp")
    assert states(study).count(TrialState.RUNNING) == 0
    assert states(study).count(TrialState.FAIL) == failed_before + 2  # the two running trials
    assert all(study.trials[n].state == TrialState.FAIL for n in running.values())
    resume = shlex.split(err.split("Resume with:")[1].strip().splitlines()[0])
    assert resume[:2] == ["python", "scripts/tune.py"] and resume[resume.index("--jobs") + 1] == "2"
    ended = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states(study)) - ended_before
    assert resume[resume.index("--trials") + 1] == str(max(1, 4 - ended))  # the trials of the 4 still to run
    check_complete_trials(study)

    # One process later continues the same study from the journal file, without --jobs.
    n_trials = len(study.trials)
    alone = run_cli("tune", *FAST, "--trials", "1", "--data-dir", tiny_data, "--runs-dir", runs_dir)
    assert alone.code == 0, alone.err
    assert f"study 'mlp' in {journal}: continuing after {n_trials} trials" in alone.out


# --- PostgreSQL: machines joining one study -------------------------------------------------------------


def test_two_processes_share_one_postgres_study_and_the_ensemble_uses_all_four(postgres, run_cli, tiny_data, tmp_path):
    url, runs_dir = postgres.url(), tmp_path / "runs"
    args = (*FAST, "--trials", "2", "--no-prune", "--storage", url, "--study", "pg-mlp")
    results = [finish(p) for p in [spawn(tiny_data, runs_dir, *args) for _ in range(2)]]
    for code, out, err in results:
        assert code == 0, err
        assert PASSWORD not in out + err and "kd:***@127.0.0.1" in out
    study = load(url, "pg-mlp")
    assert states(study) == [TrialState.COMPLETE] * 4
    assert [t.number for t in study.trials if t.user_attrs.get("default")] == [0]
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2
    check_complete_trials(study)
    nexts = [shlex.split(out.split("next: ")[1].splitlines()[0]) for _, out, _ in results]
    assert ["python", "scripts/ensemble.py", "--studies", "pg-mlp", "--storage", postgres.url("***")] == nexts[0][:6]

    result = ensemble(run_cli, tiny_data, runs_dir, tmp_path / "subs", "--storage", url, "--study", "pg-mlp")
    assert result.code == 0, result.err
    assert "4 blendable" in result.out and PASSWORD not in result.out + result.err
    assert blended(result) == [f"pg-mlp/trial-{n}" for n in range(4)]


def test_a_killed_worker_is_found_by_its_heartbeat_and_a_new_worker_joins(postgres, tiny_data, tmp_path):
    url, runs_dir = postgres.url(), tmp_path / "runs"
    common = ("--storage", url, "--study", "pg-kill", "--heartbeat", "1", "--no-prune")
    victim_process, lines = spawn(tiny_data, runs_dir, *SLOW, "--trials", "1", *common), []
    other = spawn(tiny_data, runs_dir, *FAST, "--epochs", "3", "--trials", "2", *common)
    _, victim = stop_in_a_trial(victim_process, lines, url, "pg-kill", {"": victim_process.pid})
    victim_process.kill()  # SIGKILL in the middle of a trial: no chance to tidy up
    killed_at = time.monotonic()
    finish(victim_process, lines)
    code, out, err = finish(other)
    assert code == 0, err
    assert "study 'pg-kill': 2 finished, 0 pruned" in out

    # The heartbeat grace (2 heartbeats) runs out; the next worker to join marks the trial failed.
    time.sleep(max(0.0, killed_at + 2.5 - time.monotonic()))
    code, joined, err = finish(spawn(tiny_data, runs_dir, *FAST, "--trials", "1", *common))
    assert code == 0, err
    study = load(url, "pg-kill")
    assert study.trials[victim].state == TrialState.FAIL
    assert states(study).count(TrialState.RUNNING) == 0
    assert states(study).count(TrialState.COMPLETE) == 3
    assert f"trial {victim}" in out + joined and "sent no heartbeat" in out + joined
    assert PASSWORD not in out + joined + err
    check_complete_trials(study)
    assert not (runs.trial_dir(runs_dir, "pg-kill", victim) / runs.METRICS_FILE).exists()


@pytest.mark.parametrize("case", ["wrong password", "unreachable"])
def test_a_bad_database_url_is_one_line_without_the_password(postgres, run_cli, tiny_data, tmp_path, case):
    if case == "wrong password":
        url, expected = postgres.url(password="WrongPass-77"), 'password authentication failed for user "kd"'
    else:
        url, expected = postgres.url(password="WrongPass-77", port=free_port()), "Connection refused"
    tuned = run_cli("tune", *FAST, "--storage", url, "--data-dir", tiny_data, "--runs-dir", tmp_path / "runs")
    blended = run_cli("ensemble", "--storage", url, "--data-dir", tiny_data, "--runs-dir", tmp_path / "runs")
    for result in (tuned, blended):
        assert result.code == 2 and result.err.startswith("error: --storage postgresql+psycopg2://kd:***@")
        assert result.err.count("\n") == 1 and expected in result.err, result.err
        assert "WrongPass-77" not in result.out + result.err


@pytest.mark.parametrize(
    "scheme, missing, expected",
    [
        ("postgresql+psycopg2", ("psycopg2",), "the PostgreSQL driver psycopg2 is not installed: pip install -e"),
        ("postgresql", ("psycopg2", "psycopg"), "no PostgreSQL driver is installed (neither psycopg2 nor psycopg)"),
        ("postgresql+psycopg", ("psycopg",), "psycopg (version 3) is not installed: pip install 'psycopg[binary]'"),
    ],
)
def test_without_the_postgresql_driver_one_line_says_what_to_install(
    run_cli, tiny_data, tmp_path, monkeypatch, scheme, missing, expected
):
    for module in missing:
        monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    url = f"{scheme}://kd:Hidden-pw1@127.0.0.1:5432/digits"
    result = run_cli("tune", *FAST, "--storage", url, "--data-dir", tiny_data, "--runs-dir", tmp_path / "runs")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert expected in result.err and "Hidden-pw1" not in result.err


def test_a_postgresql_url_without_a_driver_uses_the_installed_psycopg2(postgres, run_cli, tiny_data, tmp_path):
    # SQLAlchemy 2.1 reads postgresql:// as psycopg 3; this project installs psycopg2.
    url = postgres.url().replace("postgresql+psycopg2://", "postgresql://")
    common = ("--storage", url, "--study", "plain-url", "--data-dir", tiny_data, "--runs-dir", tmp_path / "runs")
    result = run_cli("tune", *FAST, "--trials", "1", *common)
    assert result.code == 0, result.err
    assert "study 'plain-url': 1 finished" in result.out and PASSWORD not in result.out + result.err


# --- an S3-compatible artifact store --------------------------------------------------------------------


def test_artifacts_in_an_s3_bucket_reach_an_ensemble_on_another_machine(run_cli, tiny_data, tmp_path, monkeypatch):
    """Tune uploads each trial's files to a bucket of a local S3 server (moto); the ensemble runs from a
    runs folder that never saw the trials and gets them from the bucket."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        import boto3

        boto3.client("s3").create_bucket(Bucket="kd-trials")
        runs_dir, url = tmp_path / "runs", f"sqlite:///{tmp_path / 'studies.db'}"
        tuned = run_cli(
            "tune", *FAST, "--trials", "2", "--storage", url, "--artifacts", "s3://kd-trials",
            "--data-dir", tiny_data, "--runs-dir", runs_dir,
        )  # fmt: skip
        assert tuned.code == 0, tuned.err
        assert "files in s3://kd-trials" in tuned.out
        shutil.rmtree(runs_dir)  # the tuning machine's disk is not reachable from the ensemble's
        result = ensemble(run_cli, tiny_data, tmp_path / "elsewhere", tmp_path / "subs", "--storage", url)
        assert result.code == 0, result.err
        assert result.out.count("from s3://kd-trials") == 2 and "2 blendable" in result.out
        missing = run_cli(
            "tune", *FAST, "--trials", "1", "--storage", url, "--artifacts", "s3://no-such-bucket",
            "--data-dir", tiny_data, "--runs-dir", runs_dir,
        )  # fmt: skip
        assert missing.code == 2 and missing.err.count("\n") == 1
        assert "--artifacts s3://no-such-bucket: cannot use the bucket" in missing.err
        assert "trial 2" not in missing.out  # refused before any trial ran
    finally:
        server.stop()


@pytest.mark.parametrize(
    "command, url",
    [
        ("tune", "u:s3cretpw@x"),
        ("ensemble", "u:s3cretpw@x"),
        ("report", "me:s3cretpw@db.example/optuna"),
        ("tune", "postgresql:s3cretpw@host/db"),
    ],
)
def test_a_storage_without_a_scheme_is_refused_with_the_password_masked(
    run_cli, tiny_data, tmp_path, monkeypatch, command, url
):
    monkeypatch.chdir(tmp_path)  # where a journal file of that name would have appeared
    args = ["--model", "mlp"] if command == "tune" else []
    result = run_cli(command, *args, "--storage", url, "--data-dir", tiny_data, "--runs-dir", tmp_path / "runs")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert (
        result.err.startswith("error: --storage ")
        and "neither a URL (scheme://...) nor a plain file path" in result.err
    )
    assert "s3cretpw" not in result.out + result.err and ":***@" in result.err
    assert sorted(os.listdir(tmp_path)) == []
    assert storage.display_url(url) == url.replace("s3cretpw", "***")
    # A plain path is still a journal file.
    storage.check_url(str(tmp_path / "runs" / "journal@2.log"))


def test_more_jobs_than_the_machine_can_run_are_refused(run_cli, tiny_data, tmp_path):
    from kaggle_digits.models import hardware

    cap = 4 * hardware.usable_cores()
    result = run_cli("tune", *FAST, "--jobs", str(cap + 1), "--data-dir", tiny_data, "--runs-dir", tmp_path / "runs")
    assert result.code == 2 and result.err.splitlines() == [
        f"error: --jobs {cap + 1}: at most {cap} on this machine (4 worker processes per core, "
        f"{hardware.usable_cores()} cores); more only wait for each other"
    ]
    assert not (tmp_path / "runs").exists()
