"""Stopping a tuning process at a known point of a trial, whatever the speed of the machine.

A test that kills or interrupts a worker "in the middle of a trial" must not race the trial. It stops
the process (SIGSTOP) when it prints an epoch line, then looks at what the process cannot change while
stopped: the study (the trial still RUNNING, no epoch of its last fold reported yet, so the trial cannot
end before the process runs again) and /proc/locks (the process holds no file lock that the others or
the test would wait for). Stopped anywhere else, the process goes on (SIGCONT) to its next epoch line.
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


def _before_its_last_fold(url: str, study_name: str, number: int, folds: int) -> bool:
    """Trial `number` is RUNNING and has reported no epoch of its last fold: it cannot end by itself."""
    study = storage.open_storage(url, heartbeat=None)
    study_id = study.get_study_id_from_name(study_name)
    trial = study.get_trial(study.get_trial_id_from_study_id_trial_number(study_id, number))
    last_fold = (folds - 1) * tune.STEP_STRIDE
    return trial.state == TrialState.RUNNING and all(step < last_fold for step in trial.intermediate_values)


def stop_in_a_trial(
    process: subprocess.Popen, lines: list[str], url: str, study_name: str, workers: dict[str, int]
) -> tuple[str, int]:
    """Stop one of `workers` (line prefix -> pid, e.g. {"[w1] ": 1234}; {"": pid} for a lone process) in
    a trial it cannot finish while stopped; returns its prefix and the trial's number."""
    prefixes = "|".join(re.escape(p) for p in workers)
    pattern = rf"^({prefixes}){EPOCH_LINE}|^({prefixes})worker \d+/\d+ done"
    while True:
        found = read_until(process, pattern, lines)
        assert found.group(1) is not None, f"a worker ended before it could be stopped:\n{''.join(lines)}"
        prefix, number, folds = found.group(1), int(found.group(2)), int(found.group(3))
        pid = workers[prefix]
        os.kill(pid, signal.SIGSTOP)
        _wait_for(lambda pid=pid: _state(pid) in "Tt", f"process {pid} did not stop")
        if not holds_a_file_lock(pid) and _before_its_last_fold(url, study_name, number, folds):
            return prefix, number
        os.kill(pid, signal.SIGCONT)


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
