"""Model work in child processes that run at once, each with its share of the cores.

On a CPU with few cores, two TensorFlow processes of one thread each train more images per second
than one process of two threads (a small convolution leaves the second thread of a step waiting;
docs/experiments.md, "Folds in parallel"), so the folds of a cross-validation can run side by side.

`run(tasks, jobs)` starts at most `jobs` children; each gets cores // jobs threads and the parent's
precision policy *before* it imports TensorFlow or unpickles its task, and on a machine with GPUs one
GPU (CUDA_VISIBLE_DEVICES in the environment it starts with; the least busy GPU, so that `jobs` children
on as many GPUs have one each), then calls the task's function
with a `report` callable whose arguments reach the parent's `on_report`. A child ignores Ctrl-C: the
parent decides, and whatever ends the parent's wait (Ctrl-C, a pruned trial, a child's error) ends
every child before it propagates. A child's exception is raised again in the parent (a UserError as
itself); a child that dies without answering is a RuntimeError naming its task.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue as queue_module
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kaggle_digits.errors import UserError
from kaggle_digits.models import hardware

# How often the parent looks at its children while waiting for their messages, in seconds.
POLL_SECONDS = 0.5
# How long a finished child's last message may take to arrive after it exited.
LAST_MESSAGE_SECONDS = 30.0


@dataclass(frozen=True)
class Task:
    """One call `function(*args, report=report)` in a child. `function` must be importable by name
    (a module-level function); `what` names the task in errors ("fold 2")."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    what: str


def threads_per_job(jobs: int) -> int:
    """Each child's threads: this process's thread budget shared by `jobs` children (at least 1)."""
    return max(1, hardware.thread_budget() // max(1, jobs))


def run(
    tasks: Sequence[Task],
    jobs: int,
    on_report: Callable[[int, tuple[Any, ...]], None] | None = None,
    policy: str | None = None,
    on_done: Callable[[int, Any], None] | None = None,
    prepare: Callable[[int, Task], Task] | None = None,
    devices: Sequence[str] | None = None,
) -> list[Any]:
    """Run every task, at most `jobs` at a time, in the order given; return their results in that order.

    on_report(i, args) is called in this process, in arrival order, for each `report(*args)` of task i;
    whatever it raises stops every child and propagates. on_done(i, result) is called as task i ends.
    prepare(i, task), when given, is called as task i is about to start and returns the task to run in
    its place (what a task does can then depend on how the ones before it went). policy: the Keras dtype
    policy each child configures (None: the child configures nothing itself)."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that runs TensorFlow's threads
    messages = context.Queue()
    threads = threads_per_job(min(jobs, len(tasks)))
    results: dict[int, Any] = {}
    running: dict[int, multiprocessing.process.BaseProcess] = {}
    waiting = list(range(len(tasks)))
    gpus = list(hardware.gpu_devices() if devices is None else devices)
    device_of: dict[int, str] = {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                i = waiting.pop(0)
                task = tasks[i] if prepare is None else prepare(i, tasks[i])
                payload = pickle.dumps((task.function, task.args))
                process: multiprocessing.process.BaseProcess = context.Process(
                    target=_child,
                    args=(i, payload, threads, policy, messages, os.getpid()),
                    name=f"kaggle-digits {tasks[i].what}",
                    daemon=True,
                )
                device = _least_busy(gpus, [device_of[j] for j in running if j in device_of])
                with _environment({hardware.CUDA_DEVICES_ENV: device} if device is not None else {}):
                    process.start()
                running[i] = process
                if device is not None:
                    device_of[i] = device
            try:
                kind, i, body = messages.get(timeout=POLL_SECONDS)
            except queue_module.Empty:
                _check_alive(running, tasks, messages, results, on_report, on_done)
                continue
            _handle(kind, i, body, tasks, running, results, on_report, on_done)
    finally:
        for process in running.values():
            if process.is_alive():
                process.terminate()
        for process in running.values():
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        messages.close()
    return [results[i] for i in range(len(tasks))]


def _least_busy(gpus: list[str], busy: list[str]) -> str | None:
    """The GPU the fewest running children use (the first such), or None without GPUs."""
    return min(gpus, key=busy.count) if gpus else None


@contextlib.contextmanager
def _environment(changes: dict[str, str]) -> Iterator[None]:
    """This process's environment with `changes` while a child starts (a spawned child starts with a copy),
    then as it was."""
    before = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _handle(kind, i, body, tasks, running, results, on_report, on_done) -> None:
    if kind == "report":
        if on_report is not None:
            on_report(i, body)
    elif kind == "done":
        results[i] = body
        running.pop(i).join(timeout=LAST_MESSAGE_SECONDS)
        if on_done is not None:
            on_done(i, body)
    else:  # "error": a UserError, or a bug's traceback
        running.pop(i).join(timeout=LAST_MESSAGE_SECONDS)
        if isinstance(body, BaseException):
            raise body
        raise RuntimeError(f"{tasks[i].what} failed in its process:\n{body}")


def _check_alive(running, tasks, messages, results, on_report, on_done) -> None:
    """A child that exited without its last message: wait briefly for it (it may be in the queue's
    pipe), then report the task as lost."""
    for i, process in list(running.items()):
        if process.is_alive() or i not in running:
            continue
        try:
            while i in running:
                kind, j, body = messages.get(timeout=LAST_MESSAGE_SECONDS if process.exitcode == 0 else 1.0)
                _handle(kind, j, body, tasks, running, results, on_report, on_done)
        except queue_module.Empty:
            running.pop(i, None)
            raise RuntimeError(
                f"{tasks[i].what}: its process ended (exit code {process.exitcode}) without a result"
            ) from None


def _child(index: int, payload: bytes, threads: int, policy: str | None, messages, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends its children
    hardware.limit_threads(threads)
    try:
        if policy is not None:
            hardware.configure(policy)
        function, args = pickle.loads(payload)

        def report(*values: Any) -> None:
            if os.getppid() != parent:  # the parent is gone: nobody will read this work
                os._exit(1)
            messages.put(("report", index, values))

        result = function(*args, report=report)
    except UserError as exc:  # the user's mistake: one line in the parent too
        messages.put(("error", index, UserError(str(exc))))
        return
    except BaseException:  # noqa: BLE001 - a bug: its traceback goes back to the parent
        messages.put(("error", index, traceback.format_exc()))
        return
    messages.put(("done", index, result))
