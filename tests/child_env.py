"""Tasks for search.processes that import nothing heavy: one reports the environment its child started
with (so that what it sees is the launcher's doing), the others fail or wait as a test needs. A child
imports this module to unpickle its task: a test module would bring its own imports along."""

from __future__ import annotations

import os
import sys
import time

from kaggle_digits.errors import UserError


def child_devices(report) -> tuple[str | None, bool]:
    """The child's CUDA devices, and whether TensorFlow is loaded yet."""
    return os.environ.get("CUDA_VISIBLE_DEVICES"), "tensorflow" in sys.modules


def fails(report):
    raise UserError("train.csv row 7: a planted mistake")


def crashes(report):
    raise ZeroDivisionError("a planted bug")


def reports_then_waits(report):
    report("started")
    time.sleep(600)  # ended by the parent long before


def tensorflow_loaded(report) -> bool:
    return "tensorflow" in sys.modules
