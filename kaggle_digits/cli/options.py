"""Parsed command lines as the library's typed options."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """An options dataclass `cls` from parsed arguments: each of its fields that the arguments hold under
    the same name, then `given` (fields whose option is spelled otherwise, or converted)."""
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return cls(**{**values, **given})
