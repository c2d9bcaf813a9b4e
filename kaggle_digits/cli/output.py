"""How the commands write to the terminal: progress lines as they happen."""

from __future__ import annotations

import sys
import time

from kaggle_digits.units import format_seconds


def say(line: str) -> None:
    """Print a progress line now (also when stdout is a pipe or a file): the `Log` the commands hand to
    the library.

    The line and its newline go out in one write: print() writes them separately, and a Ctrl-C between
    the two left a `tune --jobs` worker's last progress line open, so that the worker's next line (its
    "stopped" message) was joined to it and lost its place at the start of a line."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Progress:
    """Prints `label i/n  elapsed  ETA` lines for long loops."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.start = label, total, time.monotonic()

    def step(self, done: int, extra: str = "") -> None:
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        print(
            f"{self.label} {done}/{self.total}  elapsed {format_seconds(elapsed)}  ETA {format_seconds(eta)}"
            + (f"  {extra}" if extra else ""),
            flush=True,
        )
