"""Run one toolkit command as a child process and say how long it took: wall time, CPU time and load.

Shared by the benchmarks that time a whole command (tune_presets.py, pipeline_quick.py).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from kaggle_digits.units import format_seconds


def run(command: list[str]) -> tuple[int, float]:
    """Run `python <command...>` in the checkout; print the command, then its exit code, wall time, CPU time
    and the load average. Returns (exit code, wall seconds)."""
    command = [sys.executable, *command]
    print("$ " + " ".join(command[1:]), flush=True)
    start = time.monotonic()
    code = subprocess.call(command, cwd=CHECKOUT)
    seconds = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"\nexit code {code}; wall time {format_seconds(seconds)} ({seconds:.0f} s)")
    # The machine may be shared: CPU time and the load average say how much of the wall time was ours.
    print(
        f"CPU time {cpu:.0f} s ({cpu / seconds:.2f} cores busy on average); load average at the end {os.getloadavg()[0]:.1f}"
    )
    return code, seconds
