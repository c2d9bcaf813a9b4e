"""Stopping a tuning process at a known point of a trial, whatever the speed of the machine.

A test that kills or interrupts a worker "in the middle of a trial" must not race the trial. It stops
the process (SIGSTOP), then looks at what the process cannot change while stopped: the study (a trial of
its still RUNNING, no epoch of that trial's last fold reported yet, so the trial cannot end before the
process runs again) and /proc/locks (the process holds no file lock that the others or the test would
wait for). Stopped anywhere else, the process goes on (SIGCONT) and is looked at again a moment later.
Linux only (/proc), like the workers' own bookkeeping.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from optuna.trial import TrialState

from kaggle_digits.search import storage, tune
from kaggle_digits.search.steps import pruner_step

HANG_GUARD = 120.0  # seconds: only a hung process takes this long to stop or to receive a signal
EPOCH_LINE = r"trial (\d+) fold \d+/(\d+) epoch \d+/"


def read_until(process: subprocess.Popen, pattern: str, lines: list[str]) -> re.Match:
    """Read the process's lines into `lines` until one matches `pattern`."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(lines)}")


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"{what} (after {HANG_GUARD:.0f} s)"
        time.sleep(0.01)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def holds_a_file_lock(pid: int) -> bool:
    """Whether process `pid` holds an flock or POSIX lock (a journal file's, SQLite's)."""
    return any(line.split()[4] == str(pid) for line in Path("/proc/locks").read_text().splitlines())


def signal_pending(pid: int, signum: int) -> bool:
    """Whether `signum` was sent to the (stopped) process `pid` and waits for it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("ShdPnd:", "SigPnd:")) and int(line.split()[1], 16) >> (signum - 1) & 1:
            return True
    return False


def _running_trial(url: str, study_name: str, pid: int) -> tuple[int, bool] | None:
    """The trial process `pid` is running (its number, and whether it has reported no epoch of its last
    fold yet, so that it cannot end by itself), or None."""
    opened = storage.open_storage(url, heartbeat=None)
    study_id = opened.get_study_id_from_name(study_name)
    folds = int(opened.get_study_user_attrs(study_id)[tune.STUDY_ATTR]["folds"])
    last_fold = pruner_step(folds - 1, 0)
    for trial in opened.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if (trial.user_attrs.get(storage.WORKER_ATTR) or {}).get("pid") == pid:
            return trial.number, all(step < last_fold for step in trial.intermediate_values)
    return None


def _running(pid: int) -> bool:
    try:
        return _state(pid) not in "ZX"
    except FileNotFoundError:
        return False


def stop_in_a_trial(
    process: subprocess.Popen, lines: list[str], url: str, study_name: str, workers: dict[str, int]
) -> tuple[str, int]:
    """Stop one of `workers` (line prefix -> pid, e.g. {"[w1] ": 1234}; {"": pid} for a lone process) in
    a trial it cannot finish while stopped; returns its prefix and the trial's number.

    Once one of them prints an epoch line, each is stopped in turn and looked at: left stopped when it is
    in such a trial, else let go. (Its printed lines reach the test late, through pipes and the launcher,
    so where it is is read from the study, not from them.)"""
    prefixes = "|".join(re.escape(p) for p in workers)
    read_until(process, rf"^({prefixes}){EPOCH_LINE}", lines)
    deadline = time.monotonic() + HANG_GUARD
    while True:
        assert time.monotonic() < deadline, f"no worker could be stopped in a trial:\n{''.join(lines)}"
        alive = [prefix for prefix, pid in workers.items() if _running(pid)]
        assert alive, f"every worker ended before it could be stopped:\n{''.join(lines)}"
        for prefix in alive:
            pid = workers[prefix]
            os.kill(pid, signal.SIGSTOP)
            _wait_for(lambda pid=pid: not _running(pid) or _state(pid) in "Tt", f"process {pid} did not stop")
            if _running(pid) and not holds_a_file_lock(pid):
                found = _running_trial(url, study_name, pid)
                if found is not None and found[1]:
                    return prefix, found[0]
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)


def interrupt_stopped(process: subprocess.Popen, stopped: list[int]) -> None:
    """Ctrl-C to `process` (a `tune` command) whose workers `stopped` (pids; the process itself when it is
    the one stopped) wait stopped: once the SIGINT has reached every one of them, they go on."""
    if process.pid in stopped:
        os.kill(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGINT)  # the launcher passes it on to each worker
    for pid in stopped:
        _wait_for(lambda pid=pid: signal_pending(pid, signal.SIGINT), f"SIGINT never reached process {pid}")
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)
