"""The command lines a command prints as its last lines: what to run next, how to resume, how to plot."""

from __future__ import annotations

import shlex
from pathlib import Path

from kaggle_digits.data.paths import Paths, resolve


def report_command(
    paths: Paths, submission_file: Path | None = None, studies: list[str] | None = None, storage: str | None = None
) -> str:
    """The `python scripts/report.py ...` line that reports on what a command just wrote; folder options
    appear only where `paths` differ from what a plain invocation would use."""
    parts = ["python", "scripts/report.py"]
    if studies:
        parts += ["--studies", *studies]
    if submission_file is not None:
        parts += ["--submission", str(submission_file)]
    if storage:
        parts += ["--storage", storage]
    plain = resolve()
    for name in ("data_dir", "runs_dir", "submissions_dir"):
        if Path(getattr(paths, name)).resolve() != Path(getattr(plain, name)).resolve():
            parts += [f"--{name.replace('_', '-')}", str(getattr(paths, name))]
    return shlex.join(parts)


def script_command(command: str, args: list[str]) -> str:
    """`python scripts/<command>.py ARGS`, quoted for a shell."""
    return shlex.join(["python", f"scripts/{command}.py", *args])
