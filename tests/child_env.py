"""A task for search.processes that reports the environment its child started with (importing nothing
heavy, so that what it sees is the launcher's doing)."""

from __future__ import annotations

import os
import sys


def child_devices(report) -> tuple[str | None, bool]:
    """The child's CUDA devices, and whether TensorFlow is loaded yet."""
    return os.environ.get("CUDA_VISIBLE_DEVICES"), "tensorflow" in sys.modules
