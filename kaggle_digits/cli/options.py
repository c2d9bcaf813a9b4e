"""Parsed command lines as the library's typed options."""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, TypeVar

T = TypeVar("T")


def from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """An options dataclass `cls` from parsed arguments: each of its fields that the arguments hold under
    the same name, then `given` (fields whose option is spelled otherwise, or converted)."""
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return cls(**{**values, **given})


def check_wait_options(args: argparse.Namespace, looked_at: str) -> None:
    """--timeout and --poll of a command that waits on Kaggle, checked before any request (each look at
    `looked_at` is a request to Kaggle)."""
    from kaggle_digits.errors import UserError
    from kaggle_digits.kaggle.api import MIN_POLL_SECONDS

    if not math.isfinite(args.timeout) or args.timeout < 0:
        raise UserError(f"--timeout {args.timeout:g}: give the seconds --wait waits, a number 0 or more")
    if not math.isfinite(args.poll) or args.poll < MIN_POLL_SECONDS:
        raise UserError(
            f"--poll {args.poll:g}: give the seconds between looks at {looked_at}, "
            f"{MIN_POLL_SECONDS:.0f} or more (each look is a request to Kaggle)"
        )
