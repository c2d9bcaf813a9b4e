"""Progress lines. Library code never prints: it reports each line (an epoch, a fold, a trial, a file
written) to a `Log`, a function taking one line, which the commands turn into output."""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]


def silent(line: str) -> None:
    """The default Log: says nothing."""
