"""`submit`: score a submission locally, upload it to Kaggle (optionally waiting for the public score),
or list recent submissions.

    python scripts/submit.py FILE -m "message" [--dry-run] [--wait]
    python scripts/submit.py FILE --local
    python scripts/submit.py --list

The file is validated strictly before anything is sent and is never modified.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kaggle_digits.blend import submission
from kaggle_digits.cli.options import check_wait_options
from kaggle_digits.cli.output import say

# Importing kaggle_api does not import the client: that happens at the first call to Kaggle.
from kaggle_digits.errors import UserError
from kaggle_digits.kaggle import api as kaggle_api
from kaggle_digits.kaggle import upload as kaggle_upload
from kaggle_digits.kaggle.api import MIN_POLL_SECONDS
from kaggle_digits.kaggle.upload import DEFAULT_POLL, DEFAULT_TIMEOUT

HELP = "upload a submission to Kaggle (--wait for its score), score it locally (--local), or --list submissions"


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
    kaggle_upload.upload(
        args.paths,
        args.file,
        args.message,
        dry_run=args.dry_run,
        wait=args.wait,
        timeout=args.timeout,
        poll=args.poll,
        log=say,
    )
    return 0


def _check_wait_options(args: argparse.Namespace) -> None:
    """--timeout and --poll are checked before anything is sent: a bad value found after the upload
    would cost one of the day's submissions."""
    check_wait_options(args, "the submission list")


def _local(args: argparse.Namespace) -> int:
    score = submission.score_local(args.file, args.paths.solution_csv)
    print(f"{args.file}: valid, {score.total:,} rows")
    print(f"local leaderboard ({args.paths.solution_csv}): {score}")
    return 0


def _list() -> int:
    limits = kaggle_upload.read_limits()
    rows = kaggle_api.list_submissions()
    print(kaggle_upload.limits_line(limits))
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
