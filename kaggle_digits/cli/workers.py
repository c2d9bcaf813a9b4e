"""`tune --jobs N`: the launcher of N worker processes on this machine tuning one study together.

The launcher has already created (or joined) the study in a storage that several processes can share (a
journal file by default). It starts N `tune` processes on that storage, each with its share of the trials
and cores / N threads (so the workers never oversubscribe the machine), prints their lines prefixed with
`[wK]`, and when all have ended prints the study's summary. A worker that dies (killed, out of memory)
has its running trial marked failed at once; the others go on. Ctrl-C (or SIGTERM) asks every worker to
stop: each marks its running trial failed; finished trials stay; the launcher prints the resume command.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from optuna.trial import TrialState

from kaggle_digits.data.paths import PACKAGE_DIR
from kaggle_digits.errors import UserError
from kaggle_digits.models import hardware
from kaggle_digits.search import liveness, storage, tune
from kaggle_digits.search.tune import Setup

# Seconds the workers get, after Ctrl-C, to mark their running trials failed and exit; then they are killed.
STOP_WAIT = 60.0
PR_SET_PDEATHSIG = 1  # prctl option: a signal the kernel sends a child when its parent dies


@dataclass
class Worker:
    index: int
    trials: int | None  # its share of --trials (None: until --timeout)
    process: subprocess.Popen
    started: int | None = None  # when its process started (tells it from a later process with its pid)
    error: str = ""  # its last `error: ...` line
    ended: bool = False

    @property
    def prefix(self) -> str:
        return f"[w{self.index}] "


def split_trials(total: int | None, jobs: int) -> list[int | None]:
    """Each worker's share of `total` trials (the first ones get one more when it does not divide evenly);
    workers that would get none are not started. None (no trial limit): every worker runs until the timeout."""
    if total is None:
        return [None] * jobs
    return [share for k in range(jobs) if (share := total // jobs + (k < total % jobs)) > 0]


def threads_per_worker(jobs: int, given: int | None = None) -> int:
    """--threads, else the usable cores shared out between the workers (at least 1 each)."""
    return given if given is not None else max(1, hardware.usable_cores() // jobs)


def _stop_with_parent() -> None:
    """In a worker, before exec: receive SIGINT (stop cleanly) if the launcher dies without telling it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    except (OSError, AttributeError):  # not Linux: the worker then finishes its share on its own
        pass


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(setup: Setup, summary: Callable[[], None], resume: Callable[[int | None], None]) -> int:
    """Start the workers, relay their lines, handle deaths and Ctrl-C, then print the study's summary
    (`summary()`) and, after Ctrl-C, the command that resumes it (`resume(trials left)`)."""
    jobs = setup.request.jobs or 1  # the launcher runs only for --jobs N > 1
    ended_before = tune.ended_trials(setup.study)
    shares = split_trials(setup.options.trials, jobs)
    threads = threads_per_worker(len(shares), setup.request.threads)
    env = {**os.environ, **hardware.thread_env(threads), "PYTHONUNBUFFERED": "1"}
    # The workers import this same package (a checkout's copy wins over an installed one).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")) if p)
    print(
        f"starting {len(shares)} workers on {setup.shown_url}, {threads} thread{'s' * (threads != 1)} each"
        + (f", trials {'+'.join(str(s) for s in shares)}" if setup.options.trials else "")
        + (f" ({jobs - len(shares)} fewer than --jobs: fewer trials than workers)" if len(shares) < jobs else ""),
        flush=True,
    )
    workers = []
    for k, share in enumerate(shares, start=1):
        argv = tune.command_args(setup, share, masked=False, storage_url=setup.url, jobs=1)
        command = [sys.executable, "-m", "kaggle_digits", "tune", *argv, "--worker", f"{k}/{len(shares)}"]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the launcher only, which tells each worker once
            preexec_fn=_stop_with_parent,
        )
        workers.append(Worker(k, share, process, started=liveness.process_started(process.pid)))
        print(f"[w{k}] worker {k}/{len(shares)}: pid {process.pid}", flush=True)

    lines: queue.Queue[tuple[Worker, str | None]] = queue.Queue()
    for worker in workers:
        threading.Thread(target=_pump, args=(worker, lines), daemon=True).start()
    # The launcher's own output goes through a thread of its own: a write to an output nobody reads
    # (a full pipe, a pager left waiting) blocks that thread, never the main one, which alone receives
    # Ctrl-C and must pass it on to the workers.
    output: queue.Queue[str | None] = queue.Queue()
    printer = threading.Thread(target=_print_lines, args=(output,), daemon=True)
    printer.start()

    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    # Ctrl-C as KeyboardInterrupt even when this process was started with SIGINT ignored (as a shell
    # without job control starts a command run in the background): Python then installs no handler of
    # its own, and the Ctrl-C that must be passed on to the workers would be dropped here.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupted = False
    try:
        try:
            _relay(workers, lines, setup, output)
        except KeyboardInterrupt:
            interrupted = True
            for worker in workers:
                if worker.process.poll() is None:
                    worker.process.send_signal(signal.SIGINT)
            output.put("\nstopping the workers: each marks its running trial failed ...\n")
            try:
                _relay(workers, lines, setup, output, deadline=time.monotonic() + STOP_WAIT)
            except KeyboardInterrupt:
                pass  # a second Ctrl-C: stop waiting
            for worker in workers:
                if worker.process.poll() is None:
                    worker.process.kill()
            _relay(workers, lines, setup, output)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        output.put(None)
        printer.join()

    with storage.storage_errors(setup.url):
        liveness.fail_lost_trials(setup.study, setup.url, dead_pids={w.process.pid for w in workers})
    summary()
    if interrupted:
        done = tune.ended_trials(setup.study) - ended_before
        total = setup.options.trials
        remaining = None if total is None else max(1, total - done)
        resume(remaining)
        return 130
    failed = [w for w in workers if w.process.returncode != 0]
    errors = {w.error for w in failed if w.error}
    if errors:
        raise UserError("; ".join(e.removeprefix("error: ") for e in sorted(errors)))
    if failed:
        print(
            "error: "
            + ", ".join(f"worker {w.index} {_how_it_ended(w.process.returncode)}" for w in failed)
            + " (the other workers finished their trials)",
            file=sys.stderr,
        )
        return 1
    return 0


def _pump(worker: Worker, lines: queue.Queue) -> None:
    """Read a worker's output line by line into `lines`; None marks its end."""
    assert worker.process.stdout is not None
    for line in worker.process.stdout:
        lines.put((worker, line))
    lines.put((worker, None))


def _print_lines(output: queue.Queue) -> None:
    """Print the texts put in `output` until None."""
    while (text := output.get()) is not None:
        print(text, end="", flush=True)


def _relay(
    workers: list[Worker], lines: queue.Queue, setup, output: queue.Queue, deadline: float | None = None
) -> None:
    """Hand the workers' lines with their prefix to `output` until every worker has ended (or
    `deadline`). A worker that ends by a signal or a crash has its running trials marked failed right
    away."""
    while not all(w.ended for w in workers):
        if deadline is not None and time.monotonic() > deadline:
            return
        try:
            worker, line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is not None:
            output.put(worker.prefix + line + ("" if line.endswith("\n") else "\n"))
            if line.startswith("error: "):
                worker.error = line.strip()
            continue
        worker.ended = True
        code = worker.process.wait()
        if code not in (0, 2, 130):
            with storage.storage_errors(setup.url):
                liveness.fail_lost_trials(setup.study, setup.url, log=lambda line: None, dead_pids={worker.process.pid})
                # (another worker may have been first to mark them: list what the dead one left failed)
                lost = [
                    t.number
                    for t in setup.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                    if _ran_on(t, worker)
                ]
            output.put(
                f"{worker.prefix}worker {worker.index} (pid {worker.process.pid}) {_how_it_ended(code)}"
                + (f": its trial {', '.join(map(str, lost))} marked failed" if lost else "")
                + "; the other workers go on\n"
            )


def _ran_on(trial, worker: Worker) -> bool:
    """Whether `trial` was run by this worker process."""
    identity = trial.user_attrs.get(storage.WORKER_ATTR) or {}
    return identity.get("pid") == worker.process.pid and identity.get("started") == worker.started


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
