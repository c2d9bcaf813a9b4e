"""Progress lines. Library code never prints: it reports each line (an epoch, a fold, a trial, a file
written) to a `Log`, a function taking one line, which the commands turn into output.

A long run (kaggle_digits.pipeline.run) also says which of its steps it is on, to a `Log` that listens
(a `Progress`): `notebook()` is one, a live bar in Jupyter (tqdm.auto) with the latest line beside it. A
plain function, like the commands' terminal lines, hears the lines alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kaggle_digits.units import format_seconds

Log = Callable[[str], None]


def silent(line: str) -> None:
    """The default Log: says nothing."""


class Progress:
    """A Log that also hears a run's steps. This one passes lines to `write` (none: drops them) and
    ignores the steps; subclasses show them."""

    def __init__(self, write: Log | None = None) -> None:
        self.write = write

    def __call__(self, line: str) -> None:
        if self.write is not None:
            self.write(line)

    def step(self, done: int, total: int, what: str) -> None:
        """`done` of `total` steps are over; `what` is the one now starting (or "done" at the end)."""

    def close(self) -> None:
        """The run is over (also when it failed)."""


def step(log: Log, done: int, total: int, what: str) -> None:
    """Tell `log` where a run stands, if it listens (a Progress); a plain Log hears nothing."""
    if isinstance(log, Progress):
        log.step(done, total, what)


def close(log: Log) -> None:
    if isinstance(log, Progress):
        log.close()


LINE_WIDTH = 100  # characters of the latest line shown beside the bar


class Bar(Progress):
    """A live bar (tqdm.auto: a widget in Jupyter, text elsewhere) that counts a run's steps, named by the
    step now running, with the latest progress line beside it (an epoch, a fold). With `lines`, every line
    is also written out, above the bar. tqdm_options go to tqdm (e.g. file= for text bars)."""

    def __init__(self, lines: bool = False, **tqdm_options: Any) -> None:
        super().__init__()
        self.lines, self.tqdm_options = lines, tqdm_options
        self.bar: Any = None

    def _open(self, total: int | None) -> Any:
        if self.bar is None or (total is not None and self.bar.total != total):
            from tqdm.auto import tqdm

            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, **self.tqdm_options)
        return self.bar

    def __call__(self, line: str) -> None:
        bar = self._open(None)
        if self.lines:
            bar.write(line, file=self.tqdm_options.get("file"))
        shown = " ".join(line.split())
        bar.set_postfix_str(shown if len(shown) <= LINE_WIDTH else shown[: LINE_WIDTH - 1] + "…")

    def step(self, done: int, total: int, what: str) -> None:
        bar = self._open(total)
        bar.update(done - bar.n)
        bar.set_description_str(what)  # draws the bar now
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def notebook(lines: bool = False, **tqdm_options: Any) -> Bar:
    """The Log for a notebook: a live bar of the run's steps (see Bar), e.g.
    `pipeline.run(options, paths, log=progress.notebook())`."""
    return Bar(lines=lines, **tqdm_options)


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
