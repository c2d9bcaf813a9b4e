"""`submit`: score a submission locally, upload it to Kaggle (optionally waiting for the public score),
or list recent submissions.

    python scripts/submit.py FILE -m "message" [--dry-run] [--wait]
    python scripts/submit.py FILE --local
    python scripts/submit.py --list

The file is validated strictly before anything is sent and is never modified.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from kaggle_digits.blend import submission
from kaggle_digits.cli.options import check_wait_options

# Importing kaggle_api does not import the client: that happens at the first call to Kaggle.
from kaggle_digits.data.paths import Paths
from kaggle_digits.errors import UserError
from kaggle_digits.kaggle import api as kaggle_api
from kaggle_digits.kaggle.api import MIN_POLL_SECONDS, SubmissionLimits
from kaggle_digits.units import format_seconds

HELP = "upload a submission to Kaggle (--wait for its score), score it locally (--local), or --list submissions"
DEFAULT_TIMEOUT = 900.0  # Kaggle usually scores this competition within a minute or two
DEFAULT_POLL = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=Path, help="submission CSV (ImageId,Label)")
    parser.add_argument("-m", "--message", help="the submission's description on Kaggle (required to upload)")
    parser.add_argument("--dry-run", action="store_true", help="validate and show what would be sent; upload nothing")
    parser.add_argument("--wait", action="store_true", help="after uploading, wait until Kaggle scores it")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"seconds --wait waits (default {DEFAULT_TIMEOUT:.0f})"
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=DEFAULT_POLL,
        help=f"seconds between looks while --wait waits (default {DEFAULT_POLL:.0f}, at least {MIN_POLL_SECONDS:.0f})",
    )
    parser.add_argument("--local", action="store_true", help="accuracy against data/solution.csv (offline mirror)")
    parser.add_argument("--list", action="store_true", help="list recent submissions on Kaggle")


def run(args: argparse.Namespace) -> int:
    _check_wait_options(args)
    if args.list:
        if args.file is not None or args.local or args.dry_run or args.wait:
            raise UserError("--list takes no FILE and no other option")
        return _list()
    if args.file is None:
        raise UserError("give a submission FILE (or --list)")
    if args.local:
        if args.message or args.dry_run or args.wait:
            raise UserError("--local only scores the file: it takes no -m, --dry-run or --wait")
        return _local(args)
    return upload(
        args.paths, args.file, args.message, dry_run=args.dry_run, wait=args.wait, timeout=args.timeout, poll=args.poll
    )


def _check_wait_options(args: argparse.Namespace) -> None:
    """--timeout and --poll are checked before anything is sent: a bad value found after the upload
    would cost one of the day's submissions."""
    check_wait_options(args, "the submission list")


def _local(args: argparse.Namespace) -> int:
    score = submission.score_local(args.file, args.paths.solution_csv)
    print(f"{args.file}: valid, {score.total:,} rows")
    print(f"local leaderboard ({args.paths.solution_csv}): {score}")
    return 0


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
) -> int:
    """Validate `file`, then (unless dry_run) upload it with `message`, printing each step; with `wait`,
    wait for its public score. The upload is recorded in history.csv. score_locally: also score it against
    solution.csv where there is one (not for a submission made on Kaggle's own test.csv)."""
    if not message or not message.strip():
        raise UserError('-m "message" is required to upload: it is the submission\'s description on Kaggle')
    n_test = submission.expected_rows(paths.test_csv)
    submission.read_submission(file, n_test=n_test)
    local = submission.score_local(file, paths.solution_csv) if score_locally and paths.solution_csv.exists() else None
    cv = submission.cv_from_name(file)
    print(f"{file}: valid, {n_test:,} rows" + (f"; local leaderboard {local}" if local else ""))
    if dry_run:
        where = kaggle_api.credential_source() if kaggle_api.has_credentials() else None
        print(f'dry run: would upload {file} to Kaggle\'s digit-recognizer with message "{message}"')
        print(
            f"dry run: Kaggle credentials from {where}"
            if where
            else f"dry run: no Kaggle credentials found (an upload needs {kaggle_api.CREDENTIAL_PLACES})"
        )
        print("dry run: nothing was sent")
        return 0
    # Kaggle's client reports success even past the daily limit: ask first, and upload nothing when none is left.
    limits = _read_limits()
    if not isinstance(limits, str) and limits.exhausted:
        raise UserError(f"no submissions left today ({_no_submissions_left(limits)}): nothing was uploaded")
    print(_limits_line(limits), flush=True)
    print(f"uploading {file} to Kaggle ...", flush=True)
    ref = kaggle_api.submit(file, message)
    print(f"submitted as Kaggle submission {ref}", flush=True)
    public = None
    try:
        if wait:
            public = kaggle_api.wait_for_score(ref, timeout=timeout, poll=poll, on_poll=_progress(ref))
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
        print(f"Kaggle public score: {public:.5f}")
    else:
        print("Kaggle is scoring it: see the public score with `python scripts/submit.py --list`")
    print(f"recorded in {paths.history_csv}")
    return 0


def _progress(ref: str):
    def report(status: str, elapsed: float) -> None:
        print(f"waiting for Kaggle to score submission {ref}: {status}  elapsed {format_seconds(elapsed)}", flush=True)

    return report


def _read_limits() -> SubmissionLimits | str:
    """Kaggle's submission counts for this account, or the reason they cannot be read (a str)."""
    try:
        return kaggle_api.submission_limits()
    except kaggle_api.LimitsUnavailable as exc:
        return str(exc)


def _limits_line(limits: SubmissionLimits | str) -> str:
    """One line for what _read_limits gave: the submissions left today, or why that is not known."""
    if isinstance(limits, str):
        return f"submissions left today: unknown ({limits})"
    if not limits.counted:
        return "submissions left today: not counted yet (Kaggle counts from this account's first submission here)"
    if limits.exhausted:
        return f"submissions left today: 0 ({_no_submissions_left(limits)})"
    cap = ", limited by the competition's lifetime cap" if limits.limited_by_total else ""
    return f"submissions left today: {limits.remaining} ({limits.made_today} made since 00:00 UTC{cap})"


def _no_submissions_left(limits: SubmissionLimits) -> str:
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


def _list() -> int:
    limits = _read_limits()
    rows = kaggle_api.list_submissions()
    print(_limits_line(limits))
    if not rows:
        print("no submissions to digit-recognizer yet")
        return 0
    width = min(max(len("message"), *(len(r.message) for r in rows)), 50)
    print(f"{'date (UTC)':<16}  {'status':<8}  {'public':>7}  {'message':<{width}}  file")
    for r in rows:
        score = f"{r.public_score:.5f}" if r.public_score is not None else "-"
        message = r.message if len(r.message) <= width else r.message[: width - 3] + "..."
        extra = f"  ({r.error})" if r.error else ""
        print(f"{r.date:<16}  {r.status:<8}  {score:>7}  {message:<{width}}  {r.file_name}{extra}")
    best = max((r.public_score for r in rows if r.public_score is not None), default=None)
    print(
        f"{len(rows)} submission{'s' if len(rows) != 1 else ''} listed"
        + (f"; best public score {best:.5f}" if best is not None else "")
    )
    return 0
