"""Checks of the options several commands share, made before any command does any work: the folders,
study names, the Optuna storage and the number of worker processes."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaggle_digits.errors import UserError

# A study names a folder (<runs-dir>/<study>/) and is part of the report's file names: the file system's
# limit on a name (255 bytes) must leave room for what is added to it.
MAX_STUDY_NAME = 100
# `tune --jobs`: each worker is a process with its own copy of the data and of TensorFlow; beyond a few per
# core they only wait for each other and for memory.
JOBS_PER_CORE = 4

FOLDER_OPTIONS = ("data_dir", "runs_dir", "submissions_dir", "reports_dir")


def check_shared_options(args: argparse.Namespace) -> None:
    """UserError naming the option for a folder option that names a file, an empty or too long study name,
    a storage that is neither a URL nor a plain path, or more `--jobs` than the machine can run."""
    for name in FOLDER_OPTIONS:
        given = getattr(args, name, None)
        if given and Path(given).exists() and not Path(given).is_dir():
            raise UserError(f"{given}: is a file, expected a folder")
    study = getattr(args, "study", None)
    if study is not None:
        check_study_name(study, "--study")
    for name in getattr(args, "studies", None) or []:
        if not name.strip():
            raise UserError("--studies: an empty study name; give the studies' names, or leave --studies out for all")
    url = getattr(args, "storage", None)
    if url is not None:
        from kaggle_digits.search import storage

        storage.check_url(url)
    jobs = getattr(args, "jobs", None)
    if jobs is not None:
        check_jobs(jobs)


def check_study_name(name: str, option: str) -> None:
    """A study name that can be a folder's name; a UserError naming `option` otherwise (checked before the
    study is created, so that a refused name leaves no study behind)."""
    if not name.strip():
        raise UserError(f"{option}: an empty study name; give a name, or leave {option} out for the default")
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise UserError(f"{option} {name!r}: a study name names a folder; leave out '/', '\\' and NUL")
    if len(name) > MAX_STUDY_NAME:
        raise UserError(
            f"{option} {name[:20]}... ({len(name)} characters): a study name names a folder, "
            f"give at most {MAX_STUDY_NAME} characters"
        )


def check_jobs(jobs: int) -> None:
    """--jobs at most JOBS_PER_CORE per usable core (and the usual at-least-1 check stays tune's)."""
    from kaggle_digits.models import hardware

    cores = hardware.usable_cores()
    if jobs > JOBS_PER_CORE * cores:
        raise UserError(
            f"--jobs {jobs}: at most {JOBS_PER_CORE * cores} on this machine ({JOBS_PER_CORE} worker processes per "
            f"core, {cores} cores); more only wait for each other"
        )
