"""Progress lines. Library code never prints: it reports each line (an epoch, a fold, a trial, a file
written) to a `Log`, a function taking one line, which the commands turn into output."""

from __future__ import annotations

from collections.abc import Callable

from kaggle_digits.units import format_seconds

Log = Callable[[str], None]


def silent(line: str) -> None:
    """The default Log: says nothing."""


def time_left(elapsed: float, done: int, left: int, at_once: int = 1) -> float:
    """The seconds the `left` steps (epochs, trials) should take at the pace so far (NaN before any step
    ended): the elapsed time per step ended, where `at_once` steps run side by side. Until each of those
    has ended a step, the first to end stands for all of them (they started together), not for one in a row.
    """
    if done <= 0:
        return float("nan")
    return elapsed / max(done, at_once) * max(0, left)


def timing(elapsed: float, eta: float | None = None, sep: str = "  ") -> str:
    """The end of a progress line: `elapsed 1m05s  ETA 3m10s` (no ETA when eta is None; an unknown one,
    NaN, reads `?`)."""
    text = f"elapsed {format_seconds(elapsed)}"
    return text if eta is None else f"{text}{sep}ETA {format_seconds(eta)}"
