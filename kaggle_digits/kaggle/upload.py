"""Uploading a submission to Kaggle: validate the file, check the day's submissions are not used up,
upload it, optionally wait for its public score, and record it in history.csv. Each step is a line to
`log`; `submit` and `pipeline --submit` print them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kaggle_digits.blend import submission
from kaggle_digits.data.paths import Paths
from kaggle_digits.errors import UserError
from kaggle_digits.kaggle import api as kaggle_api
from kaggle_digits.kaggle.api import SubmissionLimits
from kaggle_digits.progress import Log, silent
from kaggle_digits.units import format_seconds

DEFAULT_TIMEOUT = 900.0  # Kaggle usually scores this competition within a minute or two
DEFAULT_POLL = 10.0


@dataclass(frozen=True)
class Uploaded:
    """What an upload did: Kaggle's reference (None for a dry run) and the public score, when waited for."""

    file: Path
    ref: str | None
    public_score: float | None = None
    local_score: submission.Score | None = None


def upload(
    paths: Paths,
    file: Path,
    message: str | None,
    *,
    dry_run: bool = False,
    wait: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = DEFAULT_POLL,
    score_locally: bool = True,
    log: Log = silent,
) -> Uploaded:
    """Validate `file`, then (unless dry_run) upload it with `message`, saying each step to `log`; with
    `wait`, wait for its public score. The upload is recorded in history.csv. score_locally: also score it
    against solution.csv where there is one (not for a submission made on Kaggle's own test.csv)."""
    if not message or not message.strip():
        raise UserError('-m "message" is required to upload: it is the submission\'s description on Kaggle')
    n_test = submission.expected_rows(paths.test_csv)
    submission.read_submission(file, n_test=n_test)
    local = submission.score_local(file, paths.solution_csv) if score_locally and paths.solution_csv.exists() else None
    cv = submission.cv_from_name(file)
    log(f"{file}: valid, {n_test:,} rows" + (f"; local leaderboard {local}" if local else ""))
    if dry_run:
        where = kaggle_api.credential_source() if kaggle_api.has_credentials() else None
        log(f'dry run: would upload {file} to Kaggle\'s digit-recognizer with message "{message}"')
        log(
            f"dry run: Kaggle credentials from {where}"
            if where
            else f"dry run: no Kaggle credentials found (an upload needs {kaggle_api.CREDENTIAL_PLACES})"
        )
        log("dry run: nothing was sent")
        return Uploaded(file, None, local_score=local)
    # Kaggle's client reports success even past the daily limit: ask first, and upload nothing when none is left.
    limits = read_limits()
    if not isinstance(limits, str) and limits.exhausted:
        raise UserError(f"no submissions left today ({no_submissions_left(limits)}): nothing was uploaded")
    log(limits_line(limits))
    log(f"uploading {file} to Kaggle ...")
    ref = kaggle_api.submit(file, message)
    log(f"submitted as Kaggle submission {ref}")
    public = None

    def waiting(status: str, elapsed: float) -> None:
        log(f"waiting for Kaggle to score submission {ref}: {status}  elapsed {format_seconds(elapsed)}")

    try:
        if wait:
            public = kaggle_api.wait_for_score(ref, timeout=timeout, poll=poll, on_poll=waiting)
    finally:
        # The upload happened: it is recorded even when waiting for its score fails.
        submission.append_history(
            paths.history_csv,
            file,
            cv_accuracy=cv,
            local_score=local.accuracy if local else None,
            public_score=public,
            message=message,
        )
    if public is not None:
        log(f"Kaggle public score: {public:.5f}")
    else:
        log("Kaggle is scoring it: see the public score with `python scripts/submit.py --list`")
    log(f"recorded in {paths.history_csv}")
    return Uploaded(file, ref, public, local)


def read_limits() -> SubmissionLimits | str:
    """Kaggle's submission counts for this account, or the reason they cannot be read (a str)."""
    try:
        return kaggle_api.submission_limits()
    except kaggle_api.LimitsUnavailable as exc:
        return str(exc)


def limits_line(limits: SubmissionLimits | str) -> str:
    """One line for what read_limits gave: the submissions left today, or why that is not known."""
    if isinstance(limits, str):
        return f"submissions left today: unknown ({limits})"
    if not limits.counted:
        return "submissions left today: not counted yet (Kaggle counts from this account's first submission here)"
    if limits.exhausted:
        return f"submissions left today: 0 ({no_submissions_left(limits)})"
    cap = ", limited by the competition's lifetime cap" if limits.limited_by_total else ""
    return f"submissions left today: {limits.remaining} ({limits.made_today} made since 00:00 UTC{cap})"


def no_submissions_left(limits: SubmissionLimits) -> str:
    """Why none is left, and when that changes (Kaggle counts per UTC day, except for the lifetime cap)."""
    if limits.limited_by_total:
        return (
            f"the competition's lifetime cap is reached with {limits.made_total} made in all, and no new day resets it"
        )
    now = datetime.now(timezone.utc)
    wait = (kaggle_api.next_daily_reset(now) - now).total_seconds()
    return (
        f"{limits.made_today} made since 00:00 UTC; Kaggle's daily limit resets at 00:00 UTC, in {format_seconds(wait)}"
    )
