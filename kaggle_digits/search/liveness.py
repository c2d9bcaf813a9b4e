"""Which worker process runs a trial, whether it still lives, and failing the trials whose worker is gone.

On a database server Optuna's heartbeat finds a dead worker's trial (silent for 2 heartbeats, failed by
the next worker that looks); on a file storage the trial names its worker process (machine, pid, start
time), and a trial whose process is gone is failed.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Set as AbstractSet
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from kaggle_digits.progress import Log, silent
from kaggle_digits.search.storage import WORKER_ATTR, kind

# A RUNNING trial on a file storage that names no worker is failed once this old: every trial names its
# worker right after it starts, so only a worker killed in those milliseconds leaves one.
UNNAMED_GRACE = 120.0


def _machine() -> str | None:
    """This kernel boot and PID namespace: two processes with the same value see the same process ids."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def process_started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot; tells a reused pid apart), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def worker_identity() -> dict[str, Any]:
    """Who runs a trial: host name, pid, and (on Linux) what tells whether that process still lives."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "machine": _machine(), "started": process_started(pid)}


def worker_alive(identity: dict[str, Any]) -> bool | None:
    """Whether the worker process still runs; None when it ran on another machine (unknowable here)."""
    machine = identity.get("machine")
    if machine is None or machine != _machine():
        return None
    started = process_started(int(identity.get("pid", -1)))
    return started is not None and started == identity.get("started")


def _age_seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start is None:
        return 0.0
    start = trial.datetime_start
    now = datetime.now(timezone.utc) if start.tzinfo else datetime.now()
    return (now - start).total_seconds()


def fail_lost_trials(
    study: optuna.Study, url: str, log: Log = silent, dead_pids: AbstractSet[int] = frozenset()
) -> list[int]:
    """Mark failed the RUNNING trials whose worker is gone; returns their numbers.

    Database server: Optuna's heartbeat check (trials silent for 2 heartbeats), plus trials of the local
    processes in `dead_pids` (workers `tune --jobs` saw die). File storage: every trial whose worker
    process no longer runs on this machine, or that named no worker for UNNAMED_GRACE seconds.
    """
    failed = []
    if kind(url) == "server":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            optuna.storages.fail_stale_trials(study)  # its callback says which
        now_failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        failed += sorted(before & now_failed)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in failed:
            continue
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is None:
            lost = kind(url) != "server" and _age_seconds(trial) > UNNAMED_GRACE
            why = f"it named no worker in {UNNAMED_GRACE:.0f} s"
        elif int(worker.get("pid", -1)) in dead_pids and worker.get("machine") == _machine():
            lost, why = True, f"its worker (pid {worker['pid']}) died"
        else:
            lost = kind(url) != "server" and worker_alive(worker) is False
            why = f"its worker ({worker.get('host')} pid {worker.get('pid')}) is no longer running"
        if lost and _fail(study, trial.number):
            failed.append(trial.number)
            log(f"trial {trial.number} was left running, but {why}: marked failed")
    return failed


def _fail(study: optuna.Study, number: int) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        return False
    return True
